"""Cohere adapter (priority 150): v2 ``V2ChatResponse`` (and v1 chat responses),
plus v2 stream events. Cohere's responses do not name the model: it comes from the
request (``model=``).

Token counts are ``usage.billed_units``, what Cohere bills (and what genai-prices
reads); ``usage.tokens`` also counts the prompt template Cohere adds, which is not
billed, and is used only when a response has no billed units.
"""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    in_package,
    int_or_none,
    str_or_none,
)

__all__ = ["CohereAdapter"]

_RESPONSES: Final = frozenset(("V2ChatResponse", "NonStreamedChatResponse", "ChatResponse"))
_CLIENTS: Final = frozenset(("Client", "ClientV2", "AsyncClient", "AsyncClientV2"))


def _ours(cls: type) -> bool:
    return in_package(cls, "cohere")


def _usage(r: AdapterResult | TokenDelta, usage: Any) -> None:
    if usage is None:
        return
    billed = getattr(usage, "billed_units", None)
    tin = tout = None
    if billed is not None:
        tin = int_or_none(getattr(billed, "input_tokens", None))
        tout = int_or_none(getattr(billed, "output_tokens", None))
    if tin is None and tout is None:
        tokens = getattr(usage, "tokens", None)
        if tokens is not None:
            tin = int_or_none(getattr(tokens, "input_tokens", None))
            tout = int_or_none(getattr(tokens, "output_tokens", None))
    r.tokens_input = tin
    r.tokens_output = tout
    cached = int_or_none(getattr(usage, "cached_tokens", None))
    if cached:
        r.cache_read_tokens = cached


class CohereAdapter(BaseAdapter):
    name = "cohere"
    priority = 150
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return cls.__name__ in _RESPONSES and _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult(provider="cohere")
        r.response_id = str_or_none(getattr(result, "id", None)) or str_or_none(
            getattr(result, "response_id", None)
        )
        r.finish_reason = str_or_none(getattr(result, "finish_reason", None))
        usage = getattr(result, "usage", None)
        if usage is None:
            usage = getattr(result, "meta", None)
        _usage(r, usage)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        message = getattr(result, "message", None)
        content = getattr(message, "content", None) if message else getattr(result, "text", None)
        return [{"role": "assistant", "parts": to_parts(content)}]

    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in _CLIENTS and _ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider="cohere")

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__.endswith("StreamResponse") and _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta(provider="cohere")
        kind = getattr(chunk, "type", None)
        if kind in ("content-delta", "tool-call-start", "tool-plan-delta"):
            d.content = True
            message = getattr(getattr(chunk, "delta", None), "message", None)
            content = getattr(message, "content", None) if message is not None else None
            text = getattr(content, "text", None) if content is not None else None
            if isinstance(text, str):
                d.text = text
        elif kind == "message-start":
            d.response_id = str_or_none(getattr(chunk, "id", None))
        elif kind == "message-end":
            delta = getattr(chunk, "delta", None)
            d.finish_reason = str_or_none(getattr(delta, "finish_reason", None))
            _usage(d, getattr(delta, "usage", None))
        return d
