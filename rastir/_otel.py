"""The OpenTelemetry bridge: one trace whether a span was started by rastir or by OTel.

When the bridge is on:

* every rastir span, while current, is also the current span of the OpenTelemetry
  context (as a non-recording span with the same ids), so OTel spans started inside
  it are its children, and OTel propagators (mcp 2.x's ``_meta`` injection, the OTel
  httpx and requests instrumentations) carry rastir's trace;
* a rastir span started while an OTel span is current, and newer than the current
  rastir span, takes that OTel span as its parent.

How it is decided: ``configure(otel_bridge=None)`` (the default) turns it on when
``opentelemetry`` has already been imported by the application and its global tracer
provider is an SDK provider rather than the API's proxy or no-op one. rastir never
imports OpenTelemetry itself in that case, so an application without it pays
nothing; the wrappers test one attribute per call. ``otel_bridge=True`` turns it on
whenever ``opentelemetry-api`` is importable (useful with the API alone, for mcp's
own propagation); ``False`` keeps it off.
"""

from __future__ import annotations

import sys
from typing import Any

from rastir.spans import Span, SpanContext

__all__ = ["OTelBridge", "otel_sdk_configured"]


def otel_sdk_configured() -> bool:
    """True when the application already imported OTel and set an SDK tracer provider."""
    trace_mod = sys.modules.get("opentelemetry.trace")
    if trace_mod is None:
        return False
    try:
        provider = trace_mod.get_tracer_provider()
    except Exception:
        return False
    name = type(provider).__name__
    return name not in ("ProxyTracerProvider", "NoOpTracerProvider")


class OTelBridge:
    """Keeps the OTel context in step with rastir's. Built only when enabled.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
    """

    def __init__(self) -> None:
        try:
            from opentelemetry import context as otel_context
            from opentelemetry import trace as otel_trace
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the OpenTelemetry bridge needs opentelemetry-api: pip install 'rastir[otel]'"
            ) from e
        self._attach = otel_context.attach
        self._detach = otel_context.detach
        self._get_current_span = otel_trace.get_current_span
        self._set_span_in_context = otel_trace.set_span_in_context
        self._non_recording = otel_trace.NonRecordingSpan
        self._span_context = otel_trace.SpanContext
        self._trace_state = otel_trace.TraceState
        self._trace_flags = otel_trace.TraceFlags

    def parent(self, current: Span | SpanContext | None) -> Span | SpanContext | None:
        """The parent for a new rastir span: the OTel current span when it is newer."""
        try:
            ctx = self._get_current_span().get_span_context()
        except Exception:
            return current
        if not ctx.is_valid:
            return current
        if current is not None and ctx.span_id == current.sid and ctx.trace_id == current.tid:
            return current  # the OTel context shows our own current span
        state = None
        if ctx.trace_state:
            state = ",".join(f"{k}={v}" for k, v in ctx.trace_state.items()) or None
        return SpanContext(
            ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state, remote=ctx.is_remote
        )

    def attach(self, span: Span | SpanContext) -> Any:
        """Make ``span`` the OTel current span too; returns the token for :meth:`detach`."""
        try:
            state = span.tracestate
            otel_ctx = self._span_context(
                trace_id=span.tid,
                span_id=span.sid,
                is_remote=isinstance(span, SpanContext) and span.remote,
                trace_flags=self._trace_flags(span.flags & 0xFF),
                trace_state=self._trace_state.from_header([state]) if state else None,
            )
            return self._attach(self._set_span_in_context(self._non_recording(otel_ctx)))
        except Exception:
            return None

    def detach(self, token: Any) -> None:
        if token is not None:
            try:
                self._detach(token)
            except Exception:
                pass
