"""The span record and the ids it carries.

A span is kept as small and cheap as possible on the application's thread: ids are
plain integers (formatted as hex only when read or exported), times come from one
wall-clock read and a monotonic clock, and everything else is created on demand.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from random import getrandbits
from typing import Any, Final, Literal

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
KINDS: Final[frozenset[str]] = frozenset(
    (
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
    )
)
SpanStatus = Literal["ok", "error", "cancelled"]
STATUSES: Final[frozenset[str]] = frozenset(("ok", "error", "cancelled"))

AttributeValue = str | int | float | bool | Sequence[str | int | float | bool]

_time_ns = time.time_ns
_perf_ns = time.perf_counter_ns


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
    :func:`rastir.start_span` for manual spans. The integer ids ``tid``, ``sid`` and
    ``psid`` (0 for a root) are what the hot path uses; the hex properties are for
    reading.
    """

    __slots__ = (
        "_t0",
        "attributes",
        "duration_ns",
        "end_time_unix_nano",
        "error",
        "events",
        "flags",
        "kind",
        "links",
        "name",
        "psid",
        "sid",
        "start_time_unix_nano",
        "status",
        "tid",
        "tracestate",
    )

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
            self.tid = new_trace_id()
            self.psid = 0
            self.flags = 1
            self.tracestate = None
        else:
            self.tid = parent.tid
            self.psid = parent.sid
            self.flags = parent.flags
            self.tracestate = parent.tracestate
        sid = getrandbits(64)
        self.sid = sid or new_span_id()
        self.attributes = {} if attributes is None else attributes
        self.status = "ok"
        self.error: dict[str, str] | None = None
        self.events: list[SpanEvent] | None = None
        self.links: list[SpanLink] | None = None
        self.end_time_unix_nano = 0
        self.duration_ns = 0
        self.start_time_unix_nano = _time_ns()
        self._t0 = _perf_ns()

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
    def context(self) -> SpanContext:
        return SpanContext(self.tid, self.sid, self.flags, self.tracestate, remote=False)

    @property
    def ended(self) -> bool:
        return self.end_time_unix_nano != 0

    # -- writing ------------------------------------------------------------------
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

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
            time_unix_nano = self.start_time_unix_nano + (_perf_ns() - self._t0)
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
        """Mark the span failed with one of the six error categories."""
        self.status = "error"
        self.error = {"type": category, "exception_type": exc_type, "message": message}

    def elapsed_ns(self) -> int:
        """Nanoseconds since the span started, from the monotonic clock."""
        return _perf_ns() - self._t0

    def finish(self) -> None:
        """Stamp the end time. Monotonic: the wall-clock end is start plus duration."""
        duration = _perf_ns() - self._t0
        self.duration_ns = duration
        self.end_time_unix_nano = self.start_time_unix_nano + duration

    def __repr__(self) -> str:
        return (
            f"Span({self.name!r}, kind={self.kind!r}, trace_id={self.trace_id}, "
            f"span_id={self.span_id}, parent={self.parent_span_id}, status={self.status!r})"
        )
