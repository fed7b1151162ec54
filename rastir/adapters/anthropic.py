"""Anthropic adapter (priority 150): ``Message`` and the streaming events.

Anthropic's ``input_tokens`` excludes cached tokens: cache reads and cache writes are
separate counts (``cache_read_input_tokens``, ``cache_creation_input_tokens``). The
writes with a 1-hour lifetime (``cache_creation.ephemeral_1h_input_tokens``, part of
``cache_creation_input_tokens``) cost more than the 5-minute ones and are priced apart.
"""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    add_usage_detail,
    class_name,
    in_package,
    int_or_none,
    str_or_none,
)
from rastir.adapters.openai import RAW_RESPONSES, read_raw_response

__all__ = ["AnthropicAdapter"]

_RESPONSES: Final = frozenset(("Message", "ParsedMessage", "BetaMessage", "ParsedBetaMessage"))
_CLIENTS: Final = {
    "Anthropic": "anthropic",
    "AsyncAnthropic": "anthropic",
    "AnthropicBedrock": "aws.bedrock",
    "AsyncAnthropicBedrock": "aws.bedrock",
    "AnthropicBedrockMantle": "aws.bedrock",
    "AsyncAnthropicBedrockMantle": "aws.bedrock",
    "AnthropicAWS": "aws.bedrock",
    "AsyncAnthropicAWS": "aws.bedrock",
    "AnthropicVertex": "gcp.vertex_ai",
    "AsyncAnthropicVertex": "gcp.vertex_ai",
    "AnthropicGoogleCloud": "gcp.vertex_ai",
    "AsyncAnthropicGoogleCloud": "gcp.vertex_ai",
    "AnthropicFoundry": "azure.ai.inference",
    "AsyncAnthropicFoundry": "azure.ai.inference",
}


def _usage(r: AdapterResult | TokenDelta, usage: Any) -> None:
    tin = int_or_none(getattr(usage, "input_tokens", None))
    if tin is not None:
        r.tokens_input = tin
    tout = int_or_none(getattr(usage, "output_tokens", None))
    if tout is not None:
        r.tokens_output = tout
    cr = int_or_none(getattr(usage, "cache_read_input_tokens", None))
    if cr is not None:
        r.cache_read_tokens = cr
    cw = int_or_none(getattr(usage, "cache_creation_input_tokens", None))
    if cw is not None:
        r.cache_write_tokens = cw
        if cw:
            # Two reads, and only for a call that wrote the cache.
            hour = getattr(getattr(usage, "cache_creation", None), "ephemeral_1h_input_tokens", 0)
            if hour:
                add_usage_detail(r, "cache_write_1h_tokens", hour)


def _ours(cls: type) -> bool:
    return in_package(cls, "anthropic")


class AnthropicAdapter(BaseAdapter):
    name = "anthropic"
    priority = 150
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        name = class_name(cls)  # ParsedMessage[Answer]: a generic
        return (name in _RESPONSES or name in RAW_RESPONSES) and _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        if type(result).__name__ in RAW_RESPONSES:  # with_raw_response
            return read_raw_response(result, "anthropic")
        r = AdapterResult(provider="anthropic")
        r.model = str_or_none(getattr(result, "model", None))
        r.response_id = str_or_none(getattr(result, "id", None))
        r.finish_reason = str_or_none(getattr(result, "stop_reason", None))
        usage = getattr(result, "usage", None)
        if usage is not None:
            _usage(r, usage)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        item: dict[str, Any] = {
            "role": "assistant",
            "parts": to_parts(getattr(result, "content", None)),
        }
        reason = getattr(result, "stop_reason", None)
        if reason:
            item["finish_reason"] = str(reason)
        return [item]

    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in _CLIENTS and _ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider=_CLIENTS.get(type(obj).__name__, "anthropic"))

    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__.endswith("Event") and _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        kind = getattr(chunk, "type", None)
        d = TokenDelta(provider="anthropic")
        if kind == "message_start":
            message = chunk.message
            d.model = str_or_none(getattr(message, "model", None))
            d.response_id = str_or_none(getattr(message, "id", None))
            usage = getattr(message, "usage", None)
            if usage is not None:
                _usage(d, usage)
        elif kind == "content_block_delta":
            delta = chunk.delta
            text = getattr(delta, "text", None)
            d.content = True
            if isinstance(text, str):
                d.text = text
        elif kind == "content_block_start":
            block = getattr(chunk, "content_block", None)
            d.content = getattr(block, "type", None) == "tool_use"
        elif kind == "message_delta":
            d.finish_reason = str_or_none(getattr(chunk.delta, "stop_reason", None))
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                _usage(d, usage)
        elif kind == "text":
            # The MessageStream helper's TextEvent repeats the text of the raw
            # content_block_delta it also yields: content, but no new text.
            d.content = True
        return d
