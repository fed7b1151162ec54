"""Keeping mcp's own OpenTelemetry propagation on rastir's trace.

mcp 2.x opens an OpenTelemetry span around every request it sends and writes the
*OpenTelemetry* current context into ``params._meta`` (``mcp/shared/_otel.py``),
overwriting any ``traceparent`` already there. So while an ``mcp.client`` span is
open, rastir's span is made the OpenTelemetry current span too, whether or not the
OTel bridge is configured: with no OTel SDK, mcp's no-op span then carries rastir's
ids and mcp writes rastir's ``traceparent``; with an SDK, mcp's client span is a child
of rastir's and what it writes is still in rastir's trace.

opentelemetry-api is a dependency of mcp, so it is always importable here.
"""

from __future__ import annotations

from typing import Any

from rastir._otel import OTelBridge
from rastir.export._pipeline import PIPELINE
from rastir.spans import Span

__all__ = ["attach_for_mcp", "detach_for_mcp"]

_bridge: OTelBridge | None = None


def _get() -> OTelBridge:
    global _bridge
    if _bridge is None:
        _bridge = OTelBridge()
    return _bridge


def attach_for_mcp(span: Span) -> Any:
    """Make ``span`` the OTel current span unless the configured bridge already did.

    Returns the token for :func:`detach_for_mcp` (None when nothing was attached).
    """
    if PIPELINE.bridge is not None:
        return None  # start_span attached it through the configured bridge
    return _get().attach(span)


def detach_for_mcp(token: Any) -> None:
    if token is not None:
        _get().detach(token)
