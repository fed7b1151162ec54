"""Gemini adapter (priority 150): ``google-genai`` ``GenerateContentResponse``.

Streams yield the same class, one per chunk, each carrying running usage totals.
``prompt_token_count`` includes cached tokens (``cached_content_token_count``), as
OpenAI's prompt count does.

Gemini reports thinking tokens (``thoughts_token_count``) apart from
``candidates_token_count``, and bills them as output. The output count recorded is
their sum, as OpenAI's ``completion_tokens`` already includes its reasoning tokens
(and as genai-prices counts them); the thinking tokens are also recorded alone as
``gen_ai.usage.reasoning.output_tokens``. Likewise the input count adds
``tool_use_prompt_token_count`` (the results of built-in tools), billed as input.

Audio input costs more than text: the ``AUDIO`` entries of ``prompt_tokens_details``
and ``cache_tokens_details`` are read as the audio part of the prompt and of the cache
reads, and priced with the model's audio prices (as genai-prices does).
"""

from __future__ import annotations

from typing import Any

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    add_usage_detail,
    int_or_none,
    str_or_none,
)

__all__ = ["GeminiAdapter"]


def _ours(cls: type) -> bool:
    return cls.__name__ == "GenerateContentResponse" and cls.__module__.startswith("google.")


def _audio(details: Any) -> int | None:
    """The ``AUDIO`` token count of a list of ``ModalityTokenCount``, or None."""
    if not details:
        return None
    total = None
    for item in details:
        modality = getattr(item, "modality", None)
        if str_or_none(modality) == "AUDIO":
            count = int_or_none(getattr(item, "token_count", None))
            if count:
                total = (total or 0) + count
    return total


def _read(r: AdapterResult | TokenDelta, result: Any) -> None:
    r.model = str_or_none(getattr(result, "model_version", None))
    r.response_id = str_or_none(getattr(result, "response_id", None))
    usage = getattr(result, "usage_metadata", None)
    if usage is not None:
        tin = int_or_none(getattr(usage, "prompt_token_count", None))
        tools = int_or_none(getattr(usage, "tool_use_prompt_token_count", None))
        if tools:
            tin = (tin or 0) + tools
        r.tokens_input = tin
        out = int_or_none(getattr(usage, "candidates_token_count", None))
        thoughts = int_or_none(getattr(usage, "thoughts_token_count", None))
        if thoughts:
            out = (out or 0) + thoughts
            extra = r.extra_attributes
            if extra is None:
                extra = r.extra_attributes = {}
            extra["gen_ai.usage.reasoning.output_tokens"] = thoughts
        r.tokens_output = out
        r.cache_read_tokens = int_or_none(getattr(usage, "cached_content_token_count", None))
        audio = _audio(getattr(usage, "prompt_tokens_details", None))
        if audio:
            add_usage_detail(r, "input_audio_tokens", audio)
            cached = _audio(getattr(usage, "cache_tokens_details", None))
            add_usage_detail(r, "cache_audio_read_tokens", cached)
    candidates = getattr(result, "candidates", None)
    if candidates:
        reason = getattr(candidates[0], "finish_reason", None)
        if reason is not None:
            r.finish_reason = str_or_none(getattr(reason, "name", reason))


class GeminiAdapter(BaseAdapter):
    name = "gemini"
    priority = 150
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult(provider="gcp.gemini")
        _read(r, result)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        out = []
        for cand in getattr(result, "candidates", None) or ():
            content = getattr(cand, "content", None)
            parts = getattr(content, "parts", None) if content is not None else None
            out.append({"role": "assistant", "parts": to_parts(parts or [])})
        return out or None

    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in ("Client", "AsyncClient") and cls.__module__.startswith(
            "google.genai"
        )

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        try:
            vertex = bool(getattr(obj, "vertexai", False))
        except Exception:
            vertex = False
        return AdapterResult(provider="gcp.vertex_ai" if vertex else "gcp.gemini")

    def match_stream_type(self, cls: type) -> bool | None:
        return _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta(provider="gcp.gemini")
        _read(d, chunk)
        for cand in getattr(chunk, "candidates", None) or ():
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or ():
                text = getattr(part, "text", None)
                if text or getattr(part, "function_call", None) is not None:
                    d.content = True
                    if text:
                        d.text = (d.text or "") + text
        return d
