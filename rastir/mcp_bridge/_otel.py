"""Keeping mcp's own OpenTelemetry propagation on rastir's trace.

mcp 2.x opens an OpenTelemetry span around every request it sends and writes the
*OpenTelemetry* current context into ``params._meta`` (``mcp/shared/_otel.py``),
overwriting any ``traceparent`` already there. So while an ``mcp.client`` span is
open, rastir's span is made the OpenTelemetry current span too, whether or not the
OTel bridge is configured: with no OTel SDK, mcp's no-op span then carries rastir's
ids and mcp writes rastir's ``traceparent``; with an SDK, mcp's client span is a child
of rastir's and what it writes is still in rastir's trace.

The same holds on the server: mcp's server middleware makes the context it extracted
from ``_meta`` (the caller's span) the OpenTelemetry current one while the tool runs,
so ``@mcp_endpoint`` makes its ``mcp.server`` span current there too, and a plain mcp
client used in the tool continues from it rather than from the caller.

When rastir writes the ``traceparent`` itself and mcp would write nothing over it (the
OpenTelemetry context is empty and no SDK is installed), the attach is skipped: it is
the dearest part of a client span (about 2 µs).

opentelemetry-api is a dependency of mcp, so it is always importable here.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from rastir._otel import OTelBridge, otel_sdk_configured
from rastir.spans import Span, SpanContext

__all__ = ["attach_for_mcp", "detach_for_mcp", "otel_parent"]

_bridge: OTelBridge | None = None


def _current_getter() -> Any:
    """OpenTelemetry's ``get_current``, or the ``get`` of the ContextVar behind it.

    The default runtime context keeps the current context in one ContextVar, and
    reading it directly skips two Python calls on every MCP request. Another runtime
    context (``OTEL_PYTHON_CONTEXT``), or a release that moves the attribute, gets
    the public function.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if isinstance(var, ContextVar) and type(runtime).__name__ == "ContextVarsRuntimeContext":
        return var.get
    return otel_context.get_current


_get_current = _current_getter()
_trace_api: Any = otel_trace
_MISSING: Any = object()
# OpenTelemetry sets its global tracer provider at most once, so an SDK, once seen,
# stays; a provider found not to be one is remembered until the global changes.
_sdk_seen = False
_checked: Any = _MISSING


def _get() -> OTelBridge:
    global _bridge
    if _bridge is None:
        _bridge = OTelBridge()
    return _bridge


def _sdk() -> bool:
    """Whether an OTel SDK tracer provider is installed; a global read on the hot path."""
    global _sdk_seen, _checked
    if _sdk_seen:
        return True
    # opentelemetry.trace keeps the provider set with set_tracer_provider() in a
    # module global (None until then). If a release renames it, check every time.
    provider = getattr(_trace_api, "_TRACER_PROVIDER", _MISSING)
    if provider is None or (provider is _checked and provider is not _MISSING):
        return False
    _checked = provider
    _sdk_seen = otel_sdk_configured()
    return _sdk_seen


# OTel's own TraceFlags for every flags byte, so that attaching builds none.
_FLAGS: Final = tuple(otel_trace.TraceFlags(i) for i in range(256))
_SpanContext: Any = otel_trace.SpanContext
_NonRecordingSpan: Any = otel_trace.NonRecordingSpan
_set_span_in_context = otel_trace.set_span_in_context
_attach = otel_context.attach
_detach = otel_context.detach


def attach_for_mcp(span: Span, injected: bool) -> Any:
    """Make ``span`` the OTel current span for mcp, unless nothing needs it.

    Call it only when the configured bridge is off (with the bridge on, ``start_span``
    attached the span already, and ``@mcp_endpoint`` attaches through the bridge).

    Args:
        span: The ``mcp.client`` or ``mcp.server`` span.
        injected: Nothing but mcp's propagation reads the OTel context on this path:
            on the client, rastir wrote the trace keys into ``_meta`` itself; on the
            server, always.

    Returns:
        The token for :func:`detach_for_mcp` (None when nothing was attached).
    """
    if injected and not _get_current() and not _sdk():
        # mcp's span would be a no-op with no parent: it injects nothing.
        return None
    # OTelBridge.attach, for a span of this process, through OTel's public API with
    # positional arguments and the flags prebuilt: about half its cost, on every MCP
    # request the server answers.
    try:
        state = span.tracestate
        ctx = _SpanContext(
            span.tid,
            span.sid,
            False,
            _FLAGS[span.flags & 0xFF],
            otel_trace.TraceState.from_header([state]) if state else None,
        )
        return _attach(_set_span_in_context(_NonRecordingSpan(ctx)))
    except Exception:
        return None


def detach_for_mcp(token: Any) -> None:
    if token is not None:
        try:
            _detach(token)
        except Exception:
            pass


def otel_parent(current: Span | SpanContext | None) -> Span | SpanContext | None:
    """OpenTelemetry's current span when it is newer than ``current`` (else ``current``).

    For a server span that cannot read ``_meta``: mcp's server middleware has made the
    context it extracted from ``_meta`` OpenTelemetry's current one (a no-op span
    carries its ids when there is no SDK).
    """
    return _get().parent(current)
