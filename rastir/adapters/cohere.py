"""Cohere adapter (priority 150): chat (v2 ``V2ChatResponse``, v1
``NonStreamedChatResponse``), embed (``EmbedByTypeResponse``, ``EmbedFloatsResponse``)
and rerank (``RerankResponse``, ``V2RerankResponse``) answers, plus the chat stream
events of both APIs (v2 ``*V2ChatStreamResponse``, v1 ``*StreamedChatResponse``).

No Cohere answer names the model (none of these classes has a model field): it comes
from the request (``model=``) only. Without it, none is invented: the span has no
``gen_ai.request.model``, and with tokens it is marked ``rastir.cost.unknown=true``
and left unpriced (the pricing step does this for any span with tokens and no model).
A rerank is billed in search units, which no token price covers: its span always
carries ``rastir.cost.unknown=true`` and the units as ``cohere.billed_units.search_units``.

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

_CHAT: Final = frozenset(("V2ChatResponse", "NonStreamedChatResponse", "ChatResponse"))
_EMBED: Final = frozenset(("EmbedByTypeResponse", "EmbedFloatsResponse", "EmbedResponse"))
_RERANK: Final = frozenset(("RerankResponse", "V2RerankResponse"))
_RESPONSES: Final = _CHAT | _EMBED | _RERANK
# The suffixes of the stream event classes: v2 (``MessageEndV2ChatStreamResponse``,
# with ``StreamedChatResponseV2`` aliases) and v1 (``StreamEndStreamedChatResponse``).
_STREAM_SUFFIXES: Final = ("StreamResponse", "StreamedChatResponse", "StreamedChatResponseV2")
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
    if isinstance(r, AdapterResult) and billed is not None:
        units = int_or_none(getattr(billed, "search_units", None))
        if units is not None:
            r.extra_attributes["cohere.billed_units.search_units"] = units
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
        usage = getattr(result, "usage", None)
        if usage is None:
            usage = getattr(result, "meta", None)
        _usage(r, usage)
        name = type(result).__name__
        if name in _EMBED:
            r.extra_attributes["gen_ai.operation.name"] = "embeddings"
        elif name in _RERANK:
            r.extra_attributes["gen_ai.operation.name"] = "rerank"
            r.extra_attributes["rastir.cost.unknown"] = True
        else:
            r.finish_reason = str_or_none(getattr(result, "finish_reason", None))
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        if type(result).__name__ not in _CHAT:
            return None
        message = getattr(result, "message", None)
        content = getattr(message, "content", None) if message else getattr(result, "text", None)
        return [{"role": "assistant", "parts": to_parts(content)}]

    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in _CLIENTS and _ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider="cohere")

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__.endswith(_STREAM_SUFFIXES) and _ours(cls)

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
        elif kind is None:
            _v1_event(d, chunk)
        return d


def _v1_event(d: TokenDelta, chunk: Any) -> None:
    """A v1 ``chat_stream`` event (``event_type``): text and tool calls are content;
    ``stream-end`` carries the whole response, with its usage in ``meta``."""
    event = getattr(chunk, "event_type", None)
    if event in ("text-generation", "tool-calls-chunk", "tool-calls-generation"):
        d.content = True
        text = getattr(chunk, "text", None)
        if isinstance(text, str) and text:
            d.text = text
    elif event == "stream-end":
        d.finish_reason = str_or_none(getattr(chunk, "finish_reason", None))
        response = getattr(chunk, "response", None)
        if response is not None:
            d.response_id = str_or_none(getattr(response, "response_id", None))
            _usage(d, getattr(response, "meta", None))
