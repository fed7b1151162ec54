"""LangChain adapter (framework, priority 250).

Response: ``AIMessage``/``AIMessageChunk`` (``usage_metadata`` and
``response_metadata``), ``ChatResult``/``LLMResult`` and ``ChatGeneration`` (unwrapped
to their message). Request: LangChain chat model objects among the arguments
(``ChatOpenAI(model=...)``, ``ChatAnthropic``, ``ChatBedrockConverse``, a
``RunnableBinding`` around one). Streaming: ``AIMessageChunk``, whose usage counts are
increments that add up.

LangChain's ``usage_metadata.input_tokens`` includes cache reads and writes for every
provider; for Anthropic the counts are turned back into Anthropic's own meaning
(cache excluded) so that cost is computed right. Its output count includes reasoning
tokens for every provider (langchain-xai and langchain-google-genai add them).

The token details that cost more than text are read as parts of those counts
(``usage_details``): ``input_token_details.audio`` and ``output_token_details.audio``
(langchain-openai copies them from any Chat Completion), and langchain-anthropic's
``ephemeral_1h_input_tokens`` (1-hour cache writes). No integration reports image or
video counts there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters._apply import parse_bedrock_model_id
from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    FRAMEWORK,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    add_usage_detail,
    detect_provider_from_module,
    infer_cached_part,
    int_or_none,
    str_or_none,
)

__all__ = [
    "LangChainAdapter",
    "chat_model_info",
    "is_langchain_model",
    "message_chunk_delta",
    "read_message",
]

_MESSAGES: Final = frozenset(("AIMessage", "AIMessageChunk"))
_WRAPPERS: Final = frozenset(("ChatResult", "LLMResult", "ChatGeneration", "ChatGenerationChunk"))
# ``response_metadata["model_provider"]`` (langchain-core >= 1) -> OTel provider name.
_PROVIDERS: Final = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "groq": "groq",
    "mistralai": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
}
_MODEL_ATTRS: Final = ("model_name", "model", "model_id", "deployment_name", "azure_deployment")
# Providers whose own input count leaves the cache out (LangChain's includes it).
_CACHE_OUTSIDE: Final = frozenset(("anthropic", "aws.bedrock"))


def _is_langchain(cls: type) -> bool:
    return cls.__module__.startswith("langchain")


def _usage(
    r: AdapterResult | TokenDelta, usage: Any, provider: str | None, model: str | None = None
) -> None:
    if not isinstance(usage, Mapping):
        return
    tin = int_or_none(usage.get("input_tokens"))
    r.tokens_output = int_or_none(usage.get("output_tokens"))
    details = usage.get("input_token_details")
    cr = cw = None
    if details:  # most messages have none, or an empty dict
        cr, cw = _input_details(r, details)
    r.cache_read_tokens = cr
    r.cache_write_tokens = cw
    outside = provider in _CACHE_OUTSIDE
    if not outside and (cr or cw) and model and "claude" in model.lower():
        # Claude on Vertex AI or Azure, or with no provider named: pricing reads its
        # counts in Anthropic's shape, so they are turned back as for Anthropic.
        from rastir.pricing import input_excludes_cache

        outside = input_excludes_cache(provider, model)
    if tin is not None and outside:
        tin = max(0, tin - (cr or 0) - (cw or 0))
    r.tokens_input = tin
    out = usage.get("output_token_details")
    if out and (out.__class__ is dict or isinstance(out, Mapping)):
        audio = out.get("audio")
        if audio:
            add_usage_detail(r, "output_audio_tokens", audio)
        reasoning = int_or_none(out.get("reasoning"))
        if reasoning and isinstance(r, AdapterResult):
            # Shown, not added: LangChain's output count already holds them. A
            # stream's chunks carry increments, which attributes cannot sum: not there.
            r.extra_attributes["gen_ai.usage.reasoning.output_tokens"] = reasoning
    parts = r.usage_details
    if parts is not None and tin is not None:
        audio = parts.get("input_audio_tokens")
        if audio:
            uncached = tin if outside else tin - (cr or 0) - (cw or 0)
            infer_cached_part(r, "cache_audio_read_tokens", audio, uncached, cr)


def _input_details(r: AdapterResult | TokenDelta, details: Any) -> tuple[int | None, int | None]:
    """Cache reads and writes of ``input_token_details``; its parts into ``r``.

    Most values are 0 or absent: those take one dict lookup and a class check each.
    """
    if details.__class__ is not dict and not isinstance(details, Mapping):
        return None, None
    get = details.get
    cr = get("cache_read")
    if cr.__class__ is not int or cr < 0:
        if cr is None:
            # langchain-openai prefixes the key with a flex or priority service tier.
            cr = get("flex_cache_read", get("priority_cache_read"))
        cr = int_or_none(cr)
    cw = get("cache_creation")
    if cw.__class__ is not int or cw < 0:
        cw = int_or_none(cw)
    five = get("ephemeral_5m_input_tokens")
    hour = get("ephemeral_1h_input_tokens")
    if five or hour:
        # langchain-anthropic: the writes by lifetime, which add up to all of them.
        # Its releases since March 2026 (langchain#35845) then set cache_creation to
        # 0, and older ones to the total: the larger of the two is the writes.
        written = (int_or_none(five) or 0) + (int_or_none(hour) or 0)
        if written > (cw or 0):
            cw = written
        if hour:
            add_usage_detail(r, "cache_write_1h_tokens", hour)
    audio = get("audio")
    if audio:
        add_usage_detail(r, "input_audio_tokens", audio)
    return cr, cw


def _provider_of(meta: Mapping[str, Any]) -> str | None:
    name = meta.get("model_provider") or meta.get("ls_provider")
    if isinstance(name, str):
        return _PROVIDERS.get(name, name)
    return None


def read_message(message: Any, r: AdapterResult | TokenDelta) -> None:
    """Model, provider, tokens and finish reason of an ``AIMessage`` into ``r``."""
    meta = getattr(message, "response_metadata", None) or {}
    if isinstance(meta, Mapping):
        provider = _provider_of(meta)
        model = meta.get("model_name") or meta.get("model") or meta.get("model_id")
        if isinstance(model, str) and model:
            parsed = parse_bedrock_model_id(model) if "." in model else None
            if parsed is not None:
                # The span shows the short model, as for a direct Bedrock call; the raw
                # id is kept, and is what the call is priced with.
                extra = r.extra_attributes
                if extra is None:
                    extra = r.extra_attributes = {}
                extra["aws.bedrock.model_id"] = model
                extra["rastir.model.vendor"] = parsed[1]
                model = parsed[0]
                provider = provider or "aws.bedrock"
            r.model = model
        r.provider = provider
        reason = meta.get("finish_reason") or meta.get("stop_reason") or meta.get("stopReason")
        r.finish_reason = str_or_none(reason)
        rid = meta.get("id")
        if isinstance(rid, str) and rid:
            r.response_id = rid
    else:
        provider = None
    usage = getattr(message, "usage_metadata", None)
    if usage:
        _usage(r, usage, r.provider, r.model)
    elif isinstance(meta, Mapping):
        token_usage = meta.get("token_usage") or meta.get("usage")
        if isinstance(token_usage, Mapping):
            r.tokens_input = int_or_none(
                token_usage.get("prompt_tokens", token_usage.get("input_tokens"))
            )
            r.tokens_output = int_or_none(
                token_usage.get("completion_tokens", token_usage.get("output_tokens"))
            )


def is_langchain_model(cls: type) -> bool:
    """A LangChain chat model, LLM or a binding around one, user subclasses included
    (by the names and modules of the class and its bases)."""
    if cls.__name__ in ("RunnableBinding", "RunnableWithFallbacks"):
        return _is_langchain(cls)
    for base in cls.__mro__[1:]:
        if base.__name__ in ("BaseChatModel", "BaseLLM") and _is_langchain(base):
            return True
    return False


def chat_model_info(obj: Any, depth: int = 0) -> AdapterResult | None:
    """Model and provider of a LangChain model object."""
    if depth > 4:
        return None
    cls = type(obj)
    if cls.__name__ in ("RunnableBinding", "RunnableWithFallbacks"):
        inner = getattr(obj, "bound", None) or getattr(obj, "runnable", None)
        return None if inner is None else chat_model_info(inner, depth + 1)
    model = BaseAdapter._extract_model_attr(obj, _MODEL_ATTRS)
    provider = detect_provider_from_module(cls.__module__)
    if "Azure" in cls.__name__:
        provider = "azure.ai.openai"
    # A Bedrock id is handed on as it is: the request phase records it
    # (``aws.bedrock.model_id``, the vendor) and shows the short model.
    if model is not None and "." in model and parse_bedrock_model_id(model) is not None:
        provider = "aws.bedrock"
    if model is None and provider is None:
        return None
    return AdapterResult(model=model, provider=provider)


class LangChainAdapter(BaseAdapter):
    name = "langchain"
    kind = FRAMEWORK
    priority = 250
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return (cls.__name__ in _MESSAGES or cls.__name__ in _WRAPPERS) and _is_langchain(cls)

    def transform(self, result: Any) -> AdapterResult:
        name = type(result).__name__
        r = AdapterResult()
        if name in _MESSAGES:
            read_message(result, r)
            return r
        if name in ("ChatGeneration", "ChatGenerationChunk"):
            r.unwrapped_result = getattr(result, "message", None)
            return r
        # ChatResult / LLMResult: llm_output carries the totals; the first
        # generation's message carries the rest.
        output = getattr(result, "llm_output", None)
        if isinstance(output, Mapping):
            model = output.get("model_name") or output.get("model")
            r.model = str_or_none(model)
            usage = output.get("token_usage") or output.get("usage")
            if isinstance(usage, Mapping):
                r.tokens_input = int_or_none(usage.get("prompt_tokens"))
                r.tokens_output = int_or_none(usage.get("completion_tokens"))
        generations = getattr(result, "generations", None) or []
        first = generations[0] if generations else None
        if isinstance(first, list):
            first = first[0] if first else None
        message = getattr(first, "message", None)
        if message is not None:
            r.unwrapped_result = message
        elif first is not None:
            info = getattr(first, "generation_info", None) or {}
            r.finish_reason = str_or_none(info.get("finish_reason"))
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        if type(result).__name__ not in _MESSAGES:
            return None
        return [{"role": "assistant", "parts": to_parts(getattr(result, "content", None))}]

    def match_request_type(self, cls: type) -> bool:
        return is_langchain_model(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return chat_model_info(obj)

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__ in ("AIMessageChunk", "ChatGenerationChunk") and _is_langchain(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        if type(chunk).__name__ == "ChatGenerationChunk":
            chunk = getattr(chunk, "message", None)
            if chunk is None:
                return None
        return message_chunk_delta(chunk)


def message_chunk_delta(chunk: Any) -> TokenDelta:
    """What one ``AIMessageChunk`` says; its token counts are increments."""
    d = TokenDelta(cumulative=False)
    read_message(chunk, d)
    content = getattr(chunk, "content", None)
    if content:
        d.content = True
        if isinstance(content, str):
            d.text = content
    elif getattr(chunk, "tool_call_chunks", None):
        d.content = True
    return d
