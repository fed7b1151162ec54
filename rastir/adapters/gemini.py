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

Audio, image and video tokens can cost more than text (audio input, the image models'
output at 10-12x the text price): the ``AUDIO``, ``IMAGE`` and ``VIDEO`` entries of
``prompt_tokens_details`` (and of ``tool_use_prompt_tokens_details``), of
``cache_tokens_details`` and of ``candidates_tokens_details`` are read as those parts
of the prompt, of the cache reads and of the output, and priced with the model's own
prices for them (as genai-prices does, which also counts ``DOCUMENT`` entries, PDF
pages read as images, as image tokens).

``gen_ai.operation.name`` follows the response class, as the GenAI semantic
conventions name the operations: a ``GenerateContentResponse`` (``generate_content``,
its stream, and a chat session's ``send_message``, which runs ``generate_content``) is
``generate_content``; an ``EmbedContentResponse`` is ``embeddings`` (input tokens from
its ``usage_metadata``, else the sum of its embeddings' ``statistics.token_count``).
"""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    int_or_none,
    str_or_none,
)

__all__ = ["GeminiAdapter"]


_GENERATE: Final = "GenerateContentResponse"
_EMBED: Final = "EmbedContentResponse"
# The response class -> the GenAI semconv operation it is the answer of.
_OPERATIONS: Final = {_GENERATE: "generate_content", _EMBED: "embeddings"}


def _ours(cls: type) -> bool:
    return cls.__name__ in _OPERATIONS and cls.__module__.startswith("google.")


def _generated(cls: type) -> bool:
    return cls.__name__ == _GENERATE and cls.__module__.startswith("google.")


# A ModalityTokenCount's modality -> the TokenUsage part it counts toward in the
# prompt, in the cache reads and in the output. TEXT is the rest of each count.
_AUDIO: Final = ("input_audio_tokens", "cache_audio_read_tokens", "output_audio_tokens")
_IMAGE: Final = ("input_image_tokens", "cache_image_read_tokens", "output_image_tokens")
_VIDEO: Final = ("input_video_tokens", "cache_video_read_tokens", "output_video_tokens")
_PARTS: Final = {"AUDIO": _AUDIO, "IMAGE": _IMAGE, "DOCUMENT": _IMAGE, "VIDEO": _VIDEO}
_PROMPT, _CACHE, _OUTPUT = 0, 1, 2


def _add_parts(r: AdapterResult | TokenDelta, details: Any, where: int) -> None:
    """Add the non-text entries of a list of ``ModalityTokenCount`` to the parts of
    ``r.usage_details`` they count toward (``where``: prompt, cache or output)."""
    for item in details:
        keys = _PARTS.get(str_or_none(getattr(item, "modality", None)) or "")
        if keys is not None:
            count = int_or_none(getattr(item, "token_count", None))
            if count:
                found = r.usage_details
                if found is None:
                    found = r.usage_details = {}
                key = keys[where]
                found[key] = found.get(key, 0) + count


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
        cached = int_or_none(getattr(usage, "cached_content_token_count", None))
        r.cache_read_tokens = cached
        details = getattr(usage, "prompt_tokens_details", None)
        if details:
            _add_parts(r, details, _PROMPT)
        if tools:
            details = getattr(usage, "tool_use_prompt_tokens_details", None)
            if details:
                _add_parts(r, details, _PROMPT)
        if cached:
            details = getattr(usage, "cache_tokens_details", None)
            if details:
                _add_parts(r, details, _CACHE)
        details = getattr(usage, "candidates_tokens_details", None)
        if details:
            _add_parts(r, details, _OUTPUT)
    candidates = getattr(result, "candidates", None)
    if candidates:
        reason = getattr(candidates[0], "finish_reason", None)
        if reason is not None:
            r.finish_reason = str_or_none(getattr(reason, "name", reason))


def _read_embedding(r: AdapterResult, result: Any) -> None:
    """Input tokens of an ``embed_content`` answer (embeddings generate none)."""
    usage = getattr(result, "usage_metadata", None)
    tokens = int_or_none(getattr(usage, "prompt_token_count", None)) if usage else None
    if tokens is None:
        counted = [
            int_or_none(getattr(getattr(e, "statistics", None), "token_count", None))
            for e in getattr(result, "embeddings", None) or ()
        ]
        if counted and None not in counted:
            tokens = sum(c for c in counted if c is not None)
    r.tokens_input = tokens


class GeminiAdapter(BaseAdapter):
    name = "gemini"
    priority = 150
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult(provider="gcp.gemini")
        name = type(result).__name__
        r.extra_attributes["gen_ai.operation.name"] = _OPERATIONS.get(name, "generate_content")
        if name == _EMBED:
            _read_embedding(r, result)
        else:
            _read(r, result)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        if type(result).__name__ == _EMBED:
            return None
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
        return _generated(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta(provider="gcp.gemini")
        _read(d, chunk)
        # generate_content_stream: the chunks are GenerateContentResponses.
        extra = d.extra_attributes
        if extra is None:
            extra = d.extra_attributes = {}
        extra["gen_ai.operation.name"] = "generate_content"
        for cand in getattr(chunk, "candidates", None) or ():
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or ():
                text = getattr(part, "text", None)
                if text or getattr(part, "function_call", None) is not None:
                    d.content = True
                    if text:
                        d.text = (d.text or "") + text
        return d
