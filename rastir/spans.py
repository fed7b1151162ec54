"""The span record and the ids it carries.

A span is kept as small and cheap as possible on the application's thread: ids are
plain integers (formatted as hex only when read or exported), times come from one
wall-clock read and a monotonic clock, and everything else is created on demand.
"""

from __future__ import annotations

import os
import time
from _random import Random as _Random
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, get_args

from rastir.sampling import HEAD as _HEAD

__all__ = [
    "KINDS",
    "STATUSES",
    "AttributeValue",
    "Span",
    "SpanContext",
    "SpanEvent",
    "SpanKind",
    "SpanLink",
    "new_span_id",
    "new_trace_id",
    "remote_child",
]

SpanKind = Literal[
    "agent",
    "llm",
    "tool",
    "retrieval",
    "trace",
    "http.server",
    "http.client",
    "mcp.client",
    "mcp.server",
    "custom",
]
KINDS: Final[frozenset[str]] = frozenset(get_args(SpanKind))
SpanStatus = Literal["ok", "error", "cancelled"]
STATUSES: Final[frozenset[str]] = frozenset(("ok", "error", "cancelled"))

AttributeValue = str | int | float | bool | Sequence[str | int | float | bool]

_perf_ns = time.perf_counter_ns


class _Clock:
    """Maps the monotonic clock to Unix time.

    Spans read only ``perf_counter_ns`` (one clock call at each end, and durations that
    no wall-clock step can bend). Their Unix timestamps are the monotonic reading plus
    this offset, which the exporter re-reads on every batch so it follows NTP slews.
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0
        self.resync()

    def resync(self) -> None:
        # Bracket the wall-clock read between two monotonic reads to halve the error.
        a = _perf_ns()
        wall = time.time_ns()
        b = _perf_ns()
        self.offset = wall - (a + b) // 2


_clock = _Clock()


# Ids come from a generator of our own, not from the ``random`` module: importing
# ``random`` costs about 1.3 ms of ``import rastir`` (bisect, _sha512, ...), and a
# private generator neither shifts the application's random sequence nor repeats ids
# when the application calls ``random.seed()``. It is seeded from os.urandom, and
# reseeded in a forked child as ``random`` does, so that workers forked from one
# parent never draw the same ids.
_rng = _Random()
getrandbits = _rng.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_trace_id() -> int:
    """A random 128-bit trace id, never zero (W3C trace-context §3.2.2.3)."""
    tid = getrandbits(128)
    while not tid:
        tid = getrandbits(128)
    return tid


def new_span_id() -> int:
    """A random 64-bit span id, never zero (W3C trace-context §3.2.2.4)."""
    sid = getrandbits(64)
    while not sid:
        sid = getrandbits(64)
    return sid


class SpanContext:
    """The identity of a span that lives elsewhere: a remote parent or a link target.

    ``tid`` and ``sid`` are the integer ids; ``trace_id`` and ``span_id`` are their
    W3C hex forms. ``baggage`` holds the W3C baggage entries that arrived with it.
    """

    __slots__ = ("baggage", "flags", "remote", "sid", "tid", "tracestate")

    def __init__(
        self,
        tid: int,
        sid: int,
        flags: int = 1,
        tracestate: str | None = None,
        *,
        remote: bool = True,
        baggage: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.tid = tid
        self.sid = sid
        self.flags = flags
        self.tracestate = tracestate
        self.remote = remote
        self.baggage = baggage

    @property
    def trace_id(self) -> str:
        return f"{self.tid:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.sid:016x}"

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    @property
    def _ctx(self) -> SpanContext:
        # A span whose parent is this remote context inherits flags and tracestate
        # from it: ``Span.__init__`` reads ``parent._ctx`` whatever the parent is.
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanContext):
            return NotImplemented
        return (self.tid, self.sid, self.flags, self.tracestate) == (
            other.tid,
            other.sid,
            other.flags,
            other.tracestate,
        )

    def __hash__(self) -> int:
        return hash((self.tid, self.sid))

    def __repr__(self) -> str:
        return (
            f"SpanContext(trace_id={self.trace_id!r}, span_id={self.span_id!r}, "
            f"flags={self.flags:02x}, remote={self.remote})"
        )


class SpanEvent:
    """Something that happened at one instant inside a span, such as a first token."""

    __slots__ = ("attributes", "name", "time_unix_nano")

    def __init__(
        self, name: str, time_unix_nano: int, attributes: dict[str, AttributeValue] | None
    ) -> None:
        self.name = name
        self.time_unix_nano = time_unix_nano
        self.attributes = attributes

    def __repr__(self) -> str:
        return f"SpanEvent({self.name!r}, {self.attributes!r})"


class SpanLink:
    """A causal link to a span that is not the parent."""

    __slots__ = ("attributes", "context")

    def __init__(self, context: SpanContext, attributes: dict[str, AttributeValue] | None) -> None:
        self.context = context
        self.attributes = attributes

    def __repr__(self) -> str:
        return f"SpanLink({self.context!r}, {self.attributes!r})"


class Span:
    """One timed operation.

    Spans are created by the decorators and middleware, never directly by users: use
    :func:`rastir.span` for manual spans. The integer ids ``tid``, ``sid`` and ``psid``
    (0 for a root) are what the hot path uses; the hex properties are for reading.

    Only what every span needs is set when it starts. ``status``, ``error``,
    ``events`` and ``links`` read from class defaults until something sets them, and
    both timestamps come from the monotonic clock (``_t0``, ``_t1``), turned into Unix
    time with the process's clock anchor when read. The attribute dict is made on
    first use (``attributes``): a bare ``@trace`` span never has one, which spares an
    allocation and, while the span waits in the export queue, a garbage-collector
    count. Code that created the span with a dict reads ``_attrs`` directly.
    """

    __slots__ = (
        "__dict__",
        "_attrs",
        "_ctx",
        "_t0",
        "_t1",
        "kind",
        "name",
        "psid",
        "sid",
        "tid",
    )

    name: str
    kind: str
    tid: int
    sid: int
    psid: int
    _attrs: dict[str, Any] | None
    _ctx: SpanContext | None
    _t0: int
    _t1: int
    status: str = "ok"
    error: dict[str, str] | None = None
    events: list[SpanEvent] | None = None
    links: list[SpanLink] | None = None
    # The LLM spans started directly inside this one, when it is an LLM span and
    # any were (``rastir.adapters._nested``): set only then.
    _inner_llm: list[Span] | None = None

    def __init__(
        self,
        name: str,
        kind: str,
        parent: Span | SpanContext | None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        if parent is None:
            self.tid = getrandbits(128) or new_trace_id()
            self.psid = 0
            self._ctx = None
        else:
            self.tid = parent.tid
            self.psid = parent.sid
            self._ctx = parent._ctx
        self.sid = getrandbits(64) or new_span_id()
        self._attrs = attributes
        self._t1 = 0
        self._t0 = _perf_ns()

    @property
    def attributes(self) -> dict[str, Any]:
        """The span's attributes (a dict of its own, made on first use)."""
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = {}
        return attrs

    @attributes.setter
    def attributes(self, value: dict[str, Any]) -> None:
        self._attrs = value

    # -- reading ------------------------------------------------------------------
    @property
    def trace_id(self) -> str:
        return f"{self.tid:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.sid:016x}"

    @property
    def parent_span_id(self) -> str | None:
        return f"{self.psid:016x}" if self.psid else None

    @property
    def flags(self) -> int:
        """W3C trace flags: the remote parent's, else the head-sampling decision.

        A trace started in this process is sampled per :mod:`rastir.sampling` (a pure
        function of the trace id); a continued trace keeps its parent's flags.
        """
        ctx = self._ctx
        return _HEAD.flags(self.tid) if ctx is None else ctx.flags

    @property
    def sampled(self) -> bool:
        """Whether the trace is kept: stored and exported, not only counted in metrics."""
        ctx = self._ctx
        return _HEAD.sampled(self.tid) if ctx is None else bool(ctx.flags & 1)

    @property
    def tracestate(self) -> str | None:
        """W3C tracestate, inherited unchanged from the remote parent."""
        ctx = self._ctx
        return None if ctx is None else ctx.tracestate

    @property
    def context(self) -> SpanContext:
        ctx = self._ctx
        if ctx is None:
            return SpanContext(self.tid, self.sid, _HEAD.flags(self.tid), None, remote=False)
        return SpanContext(self.tid, self.sid, ctx.flags, ctx.tracestate, remote=False)

    @property
    def start_time_unix_nano(self) -> int:
        return self._t0 + _clock.offset

    @property
    def end_time_unix_nano(self) -> int:
        """0 while the span is open."""
        return self._t1 + _clock.offset if self._t1 else 0

    @property
    def duration_ns(self) -> int:
        """0 while the span is open."""
        return self._t1 - self._t0 if self._t1 else 0

    @property
    def ended(self) -> bool:
        return self._t1 != 0

    # -- writing ------------------------------------------------------------------
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        attrs = self._attrs
        if attrs is None:
            self._attrs = {key: value}
        else:
            attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)

    def add_event(
        self,
        name: str,
        attributes: dict[str, AttributeValue] | None = None,
        *,
        time_unix_nano: int | None = None,
    ) -> None:
        if time_unix_nano is None:
            time_unix_nano = _perf_ns() + _clock.offset
        event = SpanEvent(name, time_unix_nano, attributes)
        if self.events is None:
            self.events = [event]
        else:
            self.events.append(event)

    def add_link(
        self, context: SpanContext, attributes: dict[str, AttributeValue] | None = None
    ) -> None:
        link = SpanLink(context, attributes)
        if self.links is None:
            self.links = [link]
        else:
            self.links.append(link)

    def set_error(self, category: str, exc_type: str, message: str) -> None:
        """Mark the span failed with one of the error categories."""
        self.status = "error"
        self.error = {"type": category, "exception_type": exc_type, "message": message}

    def elapsed_ns(self) -> int:
        """Nanoseconds since the span started, from the monotonic clock."""
        return _perf_ns() - self._t0

    def finish(self) -> None:
        """Stamp the end. Decorators inline this as ``span._t1 = perf_counter_ns()``."""
        self._t1 = _perf_ns()

    def __repr__(self) -> str:
        return (
            f"Span({self.name!r}, kind={self.kind!r}, trace_id={self.trace_id}, "
            f"span_id={self.span_id}, parent={self.parent_span_id}, status={self.status!r})"
        )


# A span continued from a remote parent keeps, as its ``_ctx``, what it inherits from
# that parent: flags, tracestate and baggage (its trace id and parent span id are its
# own ``tid`` and ``psid``). Most remote parents carry flags 00 or 01 and neither of the
# other two, so these shared contexts serve them, and a traced request allocates no
# ``SpanContext`` of its own. Their ids are zero: only flags, tracestate and baggage
# are read from a span's ``_ctx``.
_REMOTE_SAMPLED: Final = SpanContext(0, 0, 1, None)
_REMOTE_UNSAMPLED: Final = SpanContext(0, 0, 0, None)
_new_object = object.__new__


def remote_child(
    name: str, kind: str, tid: int, psid: int, flags: int, attributes: dict[str, Any] | None
) -> Span:
    """``Span(name, kind, SpanContext(tid, psid, flags), attributes)``, for a remote
    parent without tracestate or baggage, in half the instructions (no class call, no
    parent object). Used by the HTTP middleware on every request with a ``traceparent``.
    """
    span: Span = _new_object(Span)
    span.name = name
    span.kind = kind
    span.tid = tid
    span.psid = psid
    if flags == 1:
        span._ctx = _REMOTE_SAMPLED
    elif flags == 0:
        span._ctx = _REMOTE_UNSAMPLED
    else:
        span._ctx = SpanContext(tid, psid, flags, None)
    span.sid = getrandbits(64) or new_span_id()
    span._attrs = attributes
    span._t1 = 0
    span._t0 = _perf_ns()
    return span
