"""The contract every trace store keeps.

The ingest path hands decoded spans to a store with :meth:`TraceStore.submit`, which
never blocks the event loop: the store queues them (bounded) and writes them off the
request path. In committed mode the ingest path awaits :meth:`TraceStore.write`
instead, which returns only once the spans are durable.

Spans of one trace may arrive from several services, in any order, children before
parents, or late. Stores keep spans, not trees: a tree is assembled on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from rastir._wire import WireSpan

__all__ = [
    "SpanRow",
    "StoreStats",
    "TraceDetail",
    "TracePage",
    "TraceQuery",
    "TraceStore",
    "TraceSummary",
]


@dataclass(frozen=True, slots=True)
class SpanRow:
    """One stored span: the wire span plus the service that sent it."""

    service: str
    span: WireSpan


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Filters for ``GET /v1/traces``. Times are Unix nanoseconds; all filters AND."""

    service: str | None = None
    agent: str | None = None
    model: str | None = None
    status: Literal["ok", "error"] | None = None
    error_type: str | None = None
    min_duration_ns: int | None = None
    start_ns: int | None = None  # trace started at or after
    end_ns: int | None = None  # trace started before
    limit: int = 50
    cursor: str | None = None  # opaque, from TracePage.next_cursor


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    root_name: str
    services: list[str]
    span_count: int
    start_time_unix_nano: int
    duration_ns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_count: int
    status: Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class TracePage:
    traces: list[TraceSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """A trace as stored: its summary and every span (tree assembly is shared code)."""

    summary: TraceSummary
    spans: list[SpanRow]


@dataclass(slots=True)
class StoreStats:
    spans_stored: int = 0
    traces_stored: int = 0
    queue_depth: int = 0
    queue_capacity: int = 0
    dropped_spans: int = 0  # refused by a full write queue
    lag_seconds: float = 0.0  # age of the oldest span not yet written
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TraceStore(Protocol):
    async def start(self) -> None:
        """Open files, start the writer. Called from the app's lifespan."""

    async def close(self, timeout: float = 5.0) -> None:
        """Write everything queued (within ``timeout``), then release resources."""

    def submit(self, rows: list[SpanRow]) -> bool:
        """Queue spans for writing without blocking. False when the queue is full."""

    async def write(self, rows: list[SpanRow]) -> None:
        """Write spans and return once they are durable (committed mode)."""

    async def get_trace(self, trace_id: str) -> TraceDetail | None:
        """Every span of one trace, or None when the trace is unknown."""

    async def list_traces(self, query: TraceQuery) -> TracePage:
        """Trace summaries matching ``query``, newest first."""

    def stats(self) -> StoreStats:
        """Cheap counters for the collector's own metrics."""
