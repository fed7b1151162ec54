"""Fallback adapter (priority 0): the common shapes of anything no other adapter knows.

Objects or dicts with ``model``, ``usage`` (``prompt_tokens``/``input_tokens`` and
friends) and finish reasons, as OpenAI-, Anthropic- and Bedrock-style APIs and many
gateways return them. It names no provider: one found by the request phase stays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from rastir.adapters.base import FALLBACK, AdapterResult, BaseAdapter, int_or_none, str_or_none

__all__ = ["FallbackAdapter"]

_INPUT_KEYS: Final = ("input_tokens", "prompt_tokens", "inputTokens", "prompt_token_count")
_OUTPUT_KEYS: Final = (
    "output_tokens",
    "completion_tokens",
    "outputTokens",
    "candidates_token_count",
)
_REASON_KEYS: Final = ("stop_reason", "stopReason", "finish_reason")
_SCALARS: Final = (str, bytes, int, float, bool, type(None))


def _reader(obj: Any) -> Callable[[str], Any]:
    """``obj.get`` for mappings, attribute access otherwise (decided once per object)."""
    if obj.__class__ is dict or isinstance(obj, Mapping):
        return obj.get

    def attr(key: str) -> Any:
        try:
            return getattr(obj, key, None)
        except Exception:
            return None

    return attr


def _first_int(read: Callable[[str], Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = read(key)
        if value.__class__ is int or value is not None:
            found = int_or_none(value)
            if found is not None:
                return found
    return None


class FallbackAdapter(BaseAdapter):
    name = "fallback"
    kind = FALLBACK
    priority = 0

    def match_type(self, cls: type) -> bool | None:
        return cls not in _SCALARS

    def transform(self, result: Any) -> AdapterResult:
        read = _reader(result)
        r = AdapterResult()
        r.model = str_or_none(read("model"))
        r.response_id = str_or_none(read("id"))
        usage = read("usage")
        if usage is None:
            usage = read("usage_metadata")
        if usage is not None:
            read_usage = _reader(usage)
            r.tokens_input = _first_int(read_usage, _INPUT_KEYS)
            r.tokens_output = _first_int(read_usage, _OUTPUT_KEYS)
        reasons: list[str] = []
        choices = read("choices")
        if choices.__class__ in (list, tuple):
            for choice in choices:
                reason = str_or_none(_reader(choice)("finish_reason"))
                if reason:
                    reasons.append(reason)
        for key in _REASON_KEYS:
            reason = read(key)
            if reason is not None:
                reason = str_or_none(reason)
                if reason:
                    reasons.append(reason)
        if reasons:
            r.finish_reasons = reasons
        return r
