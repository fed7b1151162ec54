"""LlamaIndex adapter (framework, priority 240).

Response: ``ChatResponse`` and ``CompletionResponse`` unwrap to ``raw``, the provider's
own response, for a provider adapter to read; query-engine ``Response`` and agent
responses record how many source nodes they used. Request: LlamaIndex LLM objects
among the arguments (``llama_index.llms.*``). Streaming: ``ChatResponse`` chunks
(``delta``), with their ``raw`` chunk read by the provider adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    FRAMEWORK,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    detect_provider_from_module,
    int_or_none,
)

__all__ = ["LlamaIndexAdapter"]

_LLM_RESPONSES: Final = frozenset(("ChatResponse", "CompletionResponse"))
_QUERY_RESPONSES: Final = frozenset(
    ("Response", "StreamingResponse", "AgentChatResponse", "StreamingAgentChatResponse")
)


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("llama_index")


def _is_llm(cls: type) -> bool:
    """A LlamaIndex LLM, user subclasses included (by its bases' names and modules)."""
    return any(
        b.__name__ in ("LLM", "BaseLLM", "FunctionCallingLLM") and _ours(b) for b in cls.__mro__[1:]
    )


class LlamaIndexAdapter(BaseAdapter):
    name = "llamaindex"
    kind = FRAMEWORK
    priority = 240
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        name = cls.__name__
        return (name in _LLM_RESPONSES or name in _QUERY_RESPONSES) and _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        if type(result).__name__ in _LLM_RESPONSES:
            raw = getattr(result, "raw", None)
            if raw is not None:
                r.unwrapped_result = raw
            extra = getattr(result, "additional_kwargs", None)
            if isinstance(extra, Mapping):
                r.tokens_input = int_or_none(extra.get("prompt_tokens"))
                r.tokens_output = int_or_none(extra.get("completion_tokens"))
            return r
        nodes = getattr(result, "source_nodes", None)
        if isinstance(nodes, list):
            r.extra_attributes["rastir.retrieval.documents"] = len(nodes)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        message = getattr(result, "message", None)
        if message is not None:
            return [{"role": "assistant", "parts": to_parts(getattr(message, "content", None))}]
        text = getattr(result, "text", None) or getattr(result, "response", None)
        return [{"role": "assistant", "parts": to_parts(text)}] if text else None

    def match_request_type(self, cls: type) -> bool:
        return _is_llm(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        cls = type(obj)
        model = self._extract_model_attr(obj, ("model", "model_name", "engine", "deployment_name"))
        provider = detect_provider_from_module(cls.__module__.removeprefix("llama_index.llms."))
        if "Azure" in cls.__name__:
            provider = "azure.ai.openai"
        return AdapterResult(model=model, provider=provider)

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__ in _LLM_RESPONSES and _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        from rastir.adapters.registry import get_registry

        raw = getattr(chunk, "raw", None)
        d = get_registry().stream_delta(raw) if raw is not None else None
        if d is None:
            d = TokenDelta()
        delta = getattr(chunk, "delta", None)
        if delta:
            d.content = True
            if isinstance(delta, str):
                d.text = delta
        return d
