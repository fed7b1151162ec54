"""LlamaIndex adapter (framework, priority 240).

Response: ``ChatResponse`` and ``CompletionResponse`` (and the integrations' subclasses,
such as llama-index-llms-anthropic's ``AnthropicChatResponse``) unwrap to ``raw``, the
provider's own response, for a provider adapter to read; query-engine ``Response`` and
agent responses record how many source nodes they used. Request: LlamaIndex LLM objects
among the arguments (``llama_index.llms.*``). Streaming: ``ChatResponse`` chunks
(``delta``), with their ``raw`` chunk read by the provider adapter.

llama-index-llms-anthropic keeps ``raw`` as ``dict(message)``: a plain dict that no
provider adapter recognises, whose ``usage`` is still the SDK's object. It is read here,
cache reads and writes (1-hour ones apart) included, as the Anthropic adapter reads a
``Message``.
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
    add_usage_detail,
    detect_provider_from_module,
    get,
    int_or_none,
    str_or_none,
)

__all__ = ["LlamaIndexAdapter"]

_LLM_RESPONSES: Final = frozenset(("ChatResponse", "CompletionResponse"))
_QUERY_RESPONSES: Final = frozenset(
    ("Response", "StreamingResponse", "AgentChatResponse", "StreamingAgentChatResponse")
)


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("llama_index")


def _is_llm_response(cls: type) -> bool:
    """A ``ChatResponse`` or ``CompletionResponse``, or an integration's subclass of one."""
    return any(b.__name__ in _LLM_RESPONSES and _ours(b) for b in cls.__mro__)


def _is_anthropic_message(raw: Any) -> bool:
    """llama-index-llms-anthropic's ``raw``: ``dict(message)`` of an Anthropic ``Message``."""
    return raw.__class__ is dict and raw.get("type") == "message" and "usage" in raw


def _anthropic_message(r: AdapterResult, raw: dict[str, Any]) -> None:
    """Model, counts and finish reason of an Anthropic ``Message`` kept as a dict.

    Anthropic's ``input_tokens`` leaves the cache out; the 1-hour cache writes are part
    of ``cache_creation_input_tokens``. ``usage`` may be the SDK's object or a dict.
    """
    r.provider = "anthropic"
    r.model = str_or_none(raw.get("model"))
    r.response_id = str_or_none(raw.get("id"))
    r.finish_reason = str_or_none(raw.get("stop_reason"))
    usage = raw["usage"]
    r.tokens_input = int_or_none(get(usage, "input_tokens"))
    r.tokens_output = int_or_none(get(usage, "output_tokens"))
    r.cache_read_tokens = int_or_none(get(usage, "cache_read_input_tokens"))
    written = r.cache_write_tokens = int_or_none(get(usage, "cache_creation_input_tokens"))
    if written:
        hour = get(get(usage, "cache_creation"), "ephemeral_1h_input_tokens")
        add_usage_detail(r, "cache_write_1h_tokens", hour)


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
        return (cls.__name__ in _QUERY_RESPONSES and _ours(cls)) or _is_llm_response(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        if type(result).__name__ not in _QUERY_RESPONSES:  # match_type took an LLM response
            extra = getattr(result, "additional_kwargs", None)
            if isinstance(extra, Mapping):
                r.tokens_input = int_or_none(extra.get("prompt_tokens"))
                r.tokens_output = int_or_none(extra.get("completion_tokens"))
            raw = getattr(result, "raw", None)
            if raw is not None:
                if _is_anthropic_message(raw):
                    _anthropic_message(r, raw)
                else:
                    r.unwrapped_result = raw
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
        return _is_llm_response(cls)

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
