"""What ``@llm`` reads from a call and its response.

This is the generic layer: keyword arguments before the call, and the common shapes
of responses after it (objects or dicts with ``model``, ``usage`` and finish
reasons, as OpenAI-, Anthropic- and Bedrock-style APIs return them). Nothing here
imports a provider SDK; values are read by attribute or key name only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rastir.spans import Span

__all__ = ["llm_complete", "request_model"]

_MODEL_KWARGS = ("model", "model_id", "modelId", "model_name")
_INPUT_KEYS = ("input_tokens", "prompt_tokens", "inputTokens", "prompt_token_count")
_OUTPUT_KEYS = ("output_tokens", "completion_tokens", "outputTokens", "candidates_token_count")


def request_model(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The model named in the call's keyword arguments, if any."""
    if not kwargs:
        return None
    for key in _MODEL_KWARGS:
        value = kwargs.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _first_int(obj: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _get(obj, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _finish_reasons(result: Any) -> list[str]:
    reasons: list[str] = []
    choices = _get(result, "choices")
    if isinstance(choices, (list, tuple)):
        for choice in choices:
            reason = _get(choice, "finish_reason")
            if isinstance(reason, str):
                reasons.append(reason)
    for key in ("stop_reason", "stopReason", "finish_reason"):
        reason = _get(result, key)
        if isinstance(reason, str):
            reasons.append(reason)
    return reasons


def llm_complete(
    span: Span,
    result: Any,
    *,
    model_override: str | None = None,
    provider_override: str | None = None,
) -> None:
    """Enrich an ``@llm`` span from the response. Never raises on odd shapes."""
    if result is None or isinstance(result, (str, bytes, int, float)):
        return
    attrs = span.attributes
    model = _get(result, "model")
    if isinstance(model, str) and model:
        attrs["gen_ai.response.model"] = model
        if model_override is None and "gen_ai.request.model" not in attrs:
            attrs["gen_ai.request.model"] = model
    response_id = _get(result, "id")
    if isinstance(response_id, str) and response_id:
        attrs["gen_ai.response.id"] = response_id
    usage = _get(result, "usage")
    if usage is None:
        usage = _get(result, "usage_metadata")
    if usage is not None:
        tokens_in = _first_int(usage, _INPUT_KEYS)
        tokens_out = _first_int(usage, _OUTPUT_KEYS)
        if tokens_in is not None:
            attrs["gen_ai.usage.input_tokens"] = tokens_in
        if tokens_out is not None:
            attrs["gen_ai.usage.output_tokens"] = tokens_out
    reasons = _finish_reasons(result)
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
