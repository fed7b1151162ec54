"""Mistral adapter (priority 150): ``mistralai`` ``ChatCompletionResponse`` and the
``CompletionEvent`` chunks of its streams."""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import AdapterResult, BaseAdapter, TokenDelta, str_or_none
from rastir.adapters.openai import read_chat_usage

__all__ = ["MistralAdapter"]

_RESPONSES: Final = frozenset(("ChatCompletionResponse", "FIMCompletionResponse"))


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("mistralai")


class MistralAdapter(BaseAdapter):
    name = "mistral"
    priority = 150
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return cls.__name__ in _RESPONSES and _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult(provider="mistral_ai")
        r.model = str_or_none(getattr(result, "model", None))
        r.response_id = str_or_none(getattr(result, "id", None))
        usage = getattr(result, "usage", None)
        if usage is not None:
            read_chat_usage(r, usage)
        choices = getattr(result, "choices", None) or ()
        reasons = [str_or_none(c.finish_reason) for c in choices]
        found = [x for x in reasons if x]
        if len(found) == 1:
            r.finish_reason = found[0]
        elif found:
            r.finish_reasons = found
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        return [
            {
                "role": "assistant",
                "parts": to_parts(getattr(getattr(c, "message", None), "content", None)),
                "finish_reason": str(c.finish_reason),
            }
            for c in getattr(result, "choices", None) or ()
        ] or None

    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ == "Mistral" and _ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider="mistral_ai")

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__ in ("CompletionEvent", "CompletionChunk") and _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        data = getattr(chunk, "data", chunk)
        d = TokenDelta(provider="mistral_ai")
        d.model = str_or_none(getattr(data, "model", None))
        d.response_id = str_or_none(getattr(data, "id", None))
        usage = getattr(data, "usage", None)
        if usage is not None:
            read_chat_usage(d, usage)
        for choice in getattr(data, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None) if delta is not None else None
            if content or (delta is not None and getattr(delta, "tool_calls", None)):
                d.content = True
                if isinstance(content, str):
                    d.text = content
            reason = str_or_none(getattr(choice, "finish_reason", None))
            if reason:
                d.finish_reason = reason
        return d
