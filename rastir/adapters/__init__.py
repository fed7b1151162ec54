"""Adapters: what ``@llm`` learns from a call's arguments and from what it returns.

Two phases (seed 001). The request phase reads the arguments before the call
(``model=``-style keywords, Bedrock model ids, SDK client and model objects), so the
model and provider are on the span even when the call fails. The response phase runs
the adapter chain on the return value: framework unwrapping, then provider
extraction, then a fallback. Nothing here imports a provider SDK.

Framework integrations call :func:`apply_request` and :func:`apply_response` on spans
they manage themselves; custom adapters are added with :func:`register_adapter`.
"""

from __future__ import annotations

from typing import Any

from rastir.adapters._apply import parse_bedrock_model_id, request_phase, response_phase
from rastir.adapters._nested import mark_if_counted_inside
from rastir.adapters.base import (
    FALLBACK,
    FRAMEWORK,
    PROVIDER,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    detect_provider_from_module,
)
from rastir.adapters.registry import AdapterRegistry, get_registry
from rastir.spans import Span

__all__ = [
    "FALLBACK",
    "FRAMEWORK",
    "PROVIDER",
    "AdapterRegistry",
    "AdapterResult",
    "BaseAdapter",
    "TokenDelta",
    "apply_request",
    "apply_response",
    "detect_provider_from_module",
    "get_registry",
    "parse_bedrock_model_id",
    "register_adapter",
    "unregister_adapter",
]


def apply_request(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run the request phase on ``span``: model, provider, request parameters and,
    with ``capture_content``, the prompt. Never raises."""
    try:
        request_phase(span.attributes, args, kwargs)
    except Exception:  # telemetry never breaks the host
        pass


def apply_response(span: Span, result: Any) -> None:
    """Run the response phase on ``span``: model, provider, tokens, finish reasons,
    cost and, with ``capture_content``, the output. Never raises."""
    try:
        response_phase(span.attributes, result)
        if span._inner_llm is not None:
            mark_if_counted_inside(span)
    except Exception:
        pass


def register_adapter(adapter: BaseAdapter, *, replace: bool = True) -> BaseAdapter:
    """Add a custom adapter to the process's registry (see ``docs/adapters.md``).

    Returns the adapter, so it can be used as ``register_adapter(MyAdapter())``.

    Raises:
        TypeError: not a :class:`BaseAdapter` instance.
        ValueError: an unknown kind, a priority outside its kind's range, or a
            duplicate name with ``replace=False``.
    """
    return get_registry().register(adapter, replace=replace)


def unregister_adapter(name: str) -> bool:
    """Remove the adapter called ``name``; False when there was none."""
    return get_registry().unregister(name)
