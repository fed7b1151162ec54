"""OpenAI adapter (priority 150): Chat Completions, Completions, Responses, and chunks.

Also the base of the Azure OpenAI and Groq adapters, which read the same shapes.
OpenAI counts cached prompt tokens inside ``prompt_tokens``; the cached part is
reported separately as the cache-read count.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    in_package,
    int_or_none,
    str_or_none,
)

__all__ = ["OpenAIAdapter", "read_chat_usage"]

_RESPONSES: Final = frozenset(
    ("ChatCompletion", "ParsedChatCompletion", "Completion", "Response", "ParsedResponse")
)
_CHUNKS: Final = frozenset(("ChatCompletionChunk", "Completion"))


def read_chat_usage(r: AdapterResult | TokenDelta, usage: Any) -> None:
    """``prompt_tokens``/``completion_tokens`` (or the Responses API names) into ``r``."""
    tin = getattr(usage, "prompt_tokens", None)
    if tin is None:
        tin = getattr(usage, "input_tokens", None)
        tout = getattr(usage, "output_tokens", None)
        details = getattr(usage, "input_tokens_details", None)
    else:
        tout = getattr(usage, "completion_tokens", None)
        details = getattr(usage, "prompt_tokens_details", None)
    r.tokens_input = int_or_none(tin)
    r.tokens_output = int_or_none(tout)
    if details is not None:
        r.cache_read_tokens = int_or_none(getattr(details, "cached_tokens", None))


class OpenAIAdapter(BaseAdapter):
    name = "openai"
    priority = 150
    supports_request = True
    supports_streaming = True
    provider: ClassVar[str] = "openai"
    package: ClassVar[str] = "openai"
    clients: ClassVar[frozenset[str]] = frozenset(("OpenAI", "AsyncOpenAI"))

    def _ours(self, cls: type) -> bool:
        return in_package(cls, self.package)

    def match_type(self, cls: type) -> bool | None:
        return cls.__name__ in _RESPONSES and self._ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        # The hot path of the most common response: the class is known (cached match),
        # so its declared fields are read directly.
        model = result.model
        rid = result.id
        usage = result.usage
        tin = tout = cached = written = None
        if usage is not None:
            tin = getattr(usage, "prompt_tokens", None)
            if tin is not None:
                tout = usage.completion_tokens
                details = getattr(usage, "prompt_tokens_details", None)
            else:  # Responses API names
                tin = getattr(usage, "input_tokens", None)
                tout = getattr(usage, "output_tokens", None)
                details = getattr(usage, "input_tokens_details", None)
            if details is not None:
                cached = details.cached_tokens
                written = getattr(details, "cache_write_tokens", None)
        finish = reasons = None
        choices = getattr(result, "choices", None)
        if choices:
            if len(choices) == 1:
                finish = choices[0].finish_reason
            else:
                reasons = [str(c.finish_reason) for c in choices if c.finish_reason]
        elif choices is None:  # Responses API: a status, and why it is incomplete
            incomplete = getattr(result, "incomplete_details", None)
            reason = getattr(incomplete, "reason", None) if incomplete is not None else None
            finish = str_or_none(reason) or str_or_none(getattr(result, "status", None))
        # Positional: the cheapest way to build the result.
        return AdapterResult(
            None,
            model if model.__class__ is str and model else str_or_none(model),
            self.provider,
            int_or_none(tin) if tin.__class__ is not int else tin,
            int_or_none(tout) if tout.__class__ is not int else tout,
            finish if finish.__class__ is str or finish is None else str_or_none(finish),
            {},
            cached if cached.__class__ is int else None,
            written if written.__class__ is int else None,
            rid if rid.__class__ is str and rid else None,
            reasons,
        )

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        choices = getattr(result, "choices", None)
        if choices:
            out = []
            for c in choices:
                message = getattr(c, "message", None)
                text = getattr(message, "content", None) if message else getattr(c, "text", None)
                item: dict[str, Any] = {"role": "assistant", "parts": to_parts(text)}
                if c.finish_reason:
                    item["finish_reason"] = str(c.finish_reason)
                out.append(item)
            return out
        text = getattr(result, "output_text", None)
        if isinstance(text, str):
            return [{"role": "assistant", "parts": to_parts(text)}]
        return None

    # -- request: the SDK's client objects name the provider -------------------------
    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in self.clients and self._ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider=self.provider)

    # -- streaming ---------------------------------------------------------------------
    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__ in _CHUNKS and self._ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta(provider=self.provider)
        d.model = str_or_none(getattr(chunk, "model", None))
        d.response_id = str_or_none(getattr(chunk, "id", None))
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            read_chat_usage(d, usage)
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if delta is not None:
                text = getattr(delta, "content", None)
                if text:
                    d.content = True
                    d.text = text
                elif getattr(delta, "tool_calls", None) or getattr(delta, "refusal", None):
                    d.content = True
            elif getattr(choice, "text", None):
                d.content = True
                d.text = choice.text
            if choice.finish_reason:
                d.finish_reason = str(choice.finish_reason)
        return d
