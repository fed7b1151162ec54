"""Trace context in MCP ``params._meta``: reading it and merging it with the user's.

SEP-414 carries the W3C keys in ``_meta`` unprefixed, the same three as HTTP:
``traceparent``, ``tracestate`` and ``baggage``. mcp 2.x writes and reads them through
opentelemetry-api; rastir writes and reads the same keys, so the two interoperate.

``_meta`` arrives from another process: whatever it holds, reading it never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rastir.context import _current_baggage
from rastir.propagation import (
    _MASK128,
    _TRACEPARENT_FORMAT,
    BAGGAGE,
    TRACEPARENT,
    TRACESTATE,
    extract,
    format_baggage,
    inject,
)
from rastir.sampling import HEAD as _HEAD
from rastir.spans import Span, SpanContext

__all__ = ["TRACE_KEYS", "merge_meta", "read_meta"]

TRACE_KEYS: Final = (TRACEPARENT, TRACESTATE, BAGGAGE)

# A _meta with more keys than this is not scanned for a traceparent spelled in
# another case; the exact key is still read. Bounds the work a hostile _meta costs.
_MAX_SCAN: Final = 64


def merge_meta(user: Mapping[str, Any] | None, context: Span | SpanContext) -> dict[str, Any]:
    """A new ``_meta`` dict: the user's keys, then the trace keys of ``context``.

    The user's entries are kept, except the trace keys themselves: those describe the
    call being made, so they are ours. ``baggage`` comes from the current context.
    The user's mapping is never modified.

    Args:
        user: The ``meta`` the caller passed, or None.
        context: The client span of this call.

    Returns:
        The merged ``_meta``.
    """
    merged: dict[str, Any] = dict(user) if user else {}
    tid = context.tid
    if type(context) is not Span or not 0 < tid <= _MASK128:
        inject(merged, context)
        return merged
    # inject() for a span of this process, inlined: its span id is valid by
    # construction (the trace id may come from a remote parent, hence the check), and
    # reading flags and tracestate from the span's remote parent directly saves three
    # property calls on every MCP request.
    ctx = context._ctx
    if ctx is None:
        merged[TRACEPARENT] = _TRACEPARENT_FORMAT % (tid, context.sid, _HEAD.flags(tid))
    else:
        merged[TRACEPARENT] = _TRACEPARENT_FORMAT % (tid, context.sid, ctx.flags & 0xFF)
        if ctx.tracestate:
            merged[TRACESTATE] = ctx.tracestate
    entries = _current_baggage.get()
    if entries:
        header = format_baggage(entries)
        if header:
            merged[BAGGAGE] = header
    return merged


def read_meta(meta: Any) -> tuple[SpanContext | None, bool]:
    """Read the caller's trace context from an inbound ``_meta``.

    Args:
        meta: ``params._meta`` as received: a mapping, or anything at all.

    Returns:
        ``(context, refused)``. ``context`` is the remote parent with its tracestate
        and baggage, or None. ``refused`` is True when a ``traceparent`` was sent but
        is not valid W3C trace context (wrong type, bad format, all-zero ids, version
        ``ff``, oversized): the receiver then starts a new trace (W3C Trace Context
        §3.2.2, "restart the trace") rather than continue whatever is ambient.
        Never raises.
    """
    if type(meta) is not dict and not isinstance(meta, Mapping):
        return None, False
    try:
        context = extract(meta)
        if context is not None:
            return context, False
        if meta.get(TRACEPARENT) is not None:
            return None, True
        if len(meta) > _MAX_SCAN:
            return None, False
        for key in meta:
            if isinstance(key, str) and len(key) == 11 and key.lower() == TRACEPARENT:
                return None, True
    except Exception:
        # A mapping whose methods raise is treated as carrying a broken context.
        return None, True
    return None, False
