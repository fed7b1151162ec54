"""Fallback adapter (priority 0): the common shapes of anything no other adapter knows.

Objects or dicts with ``model``, ``usage`` (``prompt_tokens``/``input_tokens`` and
friends) and finish reasons, as OpenAI-, Anthropic- and Bedrock-style APIs and many
gateways return them. It names no provider: one found by the request phase stays.
"""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters.base import FALLBACK, AdapterResult, BaseAdapter, get, int_or_none, str_or_none

__all__ = ["FallbackAdapter"]

_INPUT_KEYS: Final = ("input_tokens", "prompt_tokens", "inputTokens", "prompt_token_count")
_OUTPUT_KEYS: Final = (
    "output_tokens",
    "completion_tokens",
    "outputTokens",
    "candidates_token_count",
)
_SCALARS: Final = (str, bytes, int, float, bool, type(None))


def _first_int(obj: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = int_or_none(get(obj, key))
        if value is not None:
            return value
    return None


class FallbackAdapter(BaseAdapter):
    name = "fallback"
    kind = FALLBACK
    priority = 0

    def match_type(self, cls: type) -> bool | None:
        return cls not in _SCALARS

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        r.model = str_or_none(get(result, "model"))
        r.response_id = str_or_none(get(result, "id"))
        usage = get(result, "usage")
        if usage is None:
            usage = get(result, "usage_metadata")
        if usage is not None:
            r.tokens_input = _first_int(usage, _INPUT_KEYS)
            r.tokens_output = _first_int(usage, _OUTPUT_KEYS)
        reasons: list[str] = []
        choices = get(result, "choices")
        if isinstance(choices, (list, tuple)):
            for choice in choices:
                reason = str_or_none(get(choice, "finish_reason"))
                if reason:
                    reasons.append(reason)
        for key in ("stop_reason", "stopReason", "finish_reason"):
            reason = str_or_none(get(result, key))
            if reason:
                reasons.append(reason)
        if reasons:
            r.finish_reasons = reasons
        return r
