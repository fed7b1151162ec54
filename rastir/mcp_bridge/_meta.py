"""Trace context in MCP ``params._meta``: reading it and merging it with the user's.

SEP-414 carries the W3C keys in ``_meta`` unprefixed, the same three as HTTP:
``traceparent``, ``tracestate`` and ``baggage``. mcp 2.x writes and reads them through
opentelemetry-api; rastir writes and reads the same keys, so the two interoperate.

``_meta`` arrives from another process: whatever it holds, reading it never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from rastir.context import _current_baggage
from rastir.export._pipeline import PIPELINE
from rastir.propagation import (
    _MASK128,
    _TRACEPARENT_FORMAT,
    BAGGAGE,
    TRACEPARENT,
    TRACESTATE,
    RefusedContextStats,
    extract,
    format_baggage,
    inject,
    merge_baggage,
    parse_baggage,
)
from rastir.sampling import HEAD as _HEAD
from rastir.spans import Span, SpanContext

__all__ = ["TRACE_KEYS", "MetaStats", "merge_meta", "read_meta", "stats"]

TRACE_KEYS: Final = (TRACEPARENT, TRACESTATE, BAGGAGE)

_Entries = tuple[tuple[str, str], ...]

# A _meta with more keys than this is not scanned for a traceparent spelled in
# another case; the exact key is still read. Bounds the work a hostile _meta costs.
_MAX_SCAN: Final = 64
# W3C Baggage limits, as rastir.propagation applies them: a longer value, or one with
# more members, was cut to what fits.
_MAX_BAGGAGE_BYTES: Final = 8192
_MAX_BAGGAGE_MEMBERS: Final = 180


class MetaStats(RefusedContextStats):
    """Process-wide counts of the trace context refused in inbound MCP ``_meta``.

    The same three counters as :data:`rastir.middleware.stats` has for HTTP headers,
    for what arrives in ``params._meta`` (a tool call, a read, a prompt, or a request
    the server sends to a wrapped client's callback).

    Attributes:
        invalid_traceparent: a ``traceparent`` that is not valid W3C trace context
            (wrong type, malformed, all-zero ids, version ``ff``, oversized): the
            span started a new trace (``rastir.mcp.invalid_trace_context=true``).
        invalid_tracestate: a ``tracestate`` dropped whole (bad member, too long,
            not a string) while the valid parent was kept.
        invalid_baggage: a ``baggage`` that held no valid entry or was cut to the
            W3C limits (8192 bytes, 180 members); what fitted was kept.

    Each batch sent to a rastir collector carries their increase (``mcp.*`` in
    ``sdk_events``), exported as ``rastir_collector_client_events_total``.
    """

    EVENT_NAMES: ClassVar[dict[str, str]] = {
        "invalid_traceparent": "mcp.invalid_traceparent",
        "invalid_tracestate": "mcp.invalid_tracestate",
        "invalid_baggage": "mcp.invalid_baggage",
    }


stats = MetaStats()
PIPELINE.add_event_source(stats)


def merge_meta(user: Mapping[str, Any] | None, context: Span | SpanContext) -> dict[str, Any]:
    """A new ``_meta`` dict: the user's keys, then the trace keys of ``context``.

    The user's entries are kept, except the trace keys: those describe the call being
    made, so they are ours. A ``traceparent`` or ``tracestate`` the user passed is
    dropped even when ``context`` has no tracestate (W3C Trace Context §3.3: a
    tracestate belongs to the traceparent it came with). A ``baggage`` the user passed
    is merged with the current baggage: the current entries first and winning on a
    duplicate key, then the user's others, within the W3C limits (180 entries, 8192
    bytes; what does not fit is dropped, the user's entries first). The user's
    mapping is never modified.

    Args:
        user: The ``meta`` the caller passed, or None.
        context: The client span of this call.

    Returns:
        The merged ``_meta``.
    """
    extra: Any = None
    if user:
        merged: dict[str, Any] = dict(user)
        merged.pop(TRACEPARENT, None)
        merged.pop(TRACESTATE, None)
        extra = merged.pop(BAGGAGE, None)
    else:
        merged = {}
    tid = context.tid
    if type(context) is not Span or not 0 < tid <= _MASK128:
        inject(merged, context)
        if extra is not None:
            ours = merged.get(BAGGAGE)
            entries = merge_baggage(parse_baggage(ours) if ours else (), extra)
            _write_baggage(merged, entries)
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
    if extra is not None:
        entries = merge_baggage(entries, extra)
    if entries:
        _write_baggage(merged, entries)
    return merged


def _write_baggage(meta: dict[str, Any], entries: _Entries) -> None:
    header = format_baggage(entries)
    if header:
        meta[BAGGAGE] = header
    else:
        meta.pop(BAGGAGE, None)


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
            if context.tracestate is None and meta.get(TRACESTATE):
                stats.count("invalid_tracestate")
            sent = meta.get(BAGGAGE)
            if sent and _baggage_cut(sent, context.baggage):
                stats.count("invalid_baggage")
            return context, False
        if meta.get(TRACEPARENT) is not None:
            stats.count("invalid_traceparent")
            return None, True
        if len(meta) > _MAX_SCAN:
            return None, False
        for key in meta:
            if isinstance(key, str) and len(key) == 11 and key.lower() == TRACEPARENT:
                stats.count("invalid_traceparent")
                return None, True
    except Exception:
        # A mapping whose methods raise is treated as carrying a broken context.
        stats.count("invalid_traceparent")
        return None, True
    return None, False


def _baggage_cut(sent: Any, kept: _Entries) -> bool:
    """Whether a ``baggage`` sent in ``_meta`` lost entries on the way in: it held no
    valid entry, or it was longer than the W3C limits let through whole."""
    if not kept:
        return True
    if type(sent) is not str:
        return False  # bytes or a list of lines: read as headers are, not re-measured
    return len(sent) > _MAX_BAGGAGE_BYTES or (
        len(kept) == _MAX_BAGGAGE_MEMBERS and sent.count(",") >= _MAX_BAGGAGE_MEMBERS
    )
