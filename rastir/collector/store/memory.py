"""An in-memory trace store, bounded by span count: for tests, demos and development.

Everything happens on the caller's thread, synchronously and in O(batch): the
collector calls it from its event loop only, so it needs no lock. When a write
takes it over ``max_spans``, whole traces are evicted, the first seen first, until
it fits again; a trace larger than ``max_spans`` on its own is evicted at once.

Spans are kept encoded, not as objects: each write appends one msgpack chunk per
trace (the spans of that trace in the batch), and reads decode them. A decoded
span is a handful of objects the garbage collector tracks (the Struct, its
attribute dict, its event and link lists); 100,000 of them made every full
collection walk some 400,000 objects (pauses near 200 ms, a fifth of the ingest
CPU) and cost about 1.5 kB each. A chunk is one untracked ``bytes`` of about 380
bytes per span. Reads are rare next to writes, and decoding a 100-span trace takes
about 0.1 ms. Span ids, to tell a repeated span from a new one, are kept as a sorted
array of their hashes (8 bytes each).

A write that repeats spans already stored (a sender retrying a batch whose 202 was
lost) rewrites its trace as one chunk per service of its distinct spans: the chunks
never hold more spans than the count the bound is checked against, however often a
trace is sent again.

Reads keep the event loop free. ``get_trace`` takes a snapshot of the trace on the
loop (its summary and its list of chunks: chunks are immutable bytes and writes
append to, or replace, the list, so a copy of the list is the whole snapshot) and,
for a trace of more than :data:`INLINE_READ_SPANS` spans, decodes it in a worker
thread, at most :data:`READ_THREADS` at once (msgspec's decoders are thread-safe).
Decoding a 50,000-span trace held the loop for about 0.5 s here before. Writes and
evictions meanwhile do not change that answer; the bytes it holds are freed when it
ends. ``list_traces`` walks on the loop but yields to it every :data:`LIST_SLICE`
traces it looks at (an unselective filter over 50,000 traces held the loop for
100 to 200 ms): it resumes below the last key it gave, so it never gives a trace
twice or out of order, and a trace that moved or went meanwhile is left out.
A decoded trace is still about 4.8 objects the garbage collector tracks per span
(the row, the span, its event and link lists, attribute dicts holding lists), and
a collection walking them pauses every thread, the loop included. ``rastir
collector`` freezes what it made at startup and raises the thresholds
(``cli._tune_gc``): no full collection then runs while a 50,000-span trace is
answered (three did with CPython's defaults), and the longest pause fell from
about 160 ms to 20 to 60 ms.

With ``retention_seconds``, traces that ended longer ago are deleted by a sweep
that runs, at most every ``maintenance_interval`` seconds, on the next write or
read (as the SQLite store's retention pass, which also judges by span times).
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from itertools import chain, islice, repeat
from operator import attrgetter, eq
from typing import Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec

from rastir._wire import WireError, WireEvent, WireLink, WireSpan
from rastir.collector.store._aggregate import Tag, TraceAggregate, query_tags
from rastir.collector.store._cursor import decode_cursor, encode_cursor
from rastir.collector.store.base import (
    SpanRow,
    StoreStats,
    TraceDetail,
    TracePage,
    TraceQuery,
    TraceSummary,
)

__all__ = ["INLINE_READ_SPANS", "LIST_SLICE", "READ_THREADS", "MemoryStore"]

_Key = tuple[int, str]  # (trace start, trace_id): the listing order

#: A trace of at most this many spans is decoded on the loop (about 0.5 ms); a
#: bigger one in a worker thread.
INLINE_READ_SPANS: Final = 500
#: Worker threads decoding traces at once: each holds a decoded trace (about 1.5 kB
#: a span) until its answer is sent.
READ_THREADS: Final = 2
#: Traces a listing looks at between yields to the event loop.
LIST_SLICE: Final = 1024


_encode_msgpack = msgspec.msgpack.Encoder().encode
_decode_msgpack = msgspec.msgpack.Decoder(list[WireSpan]).decode
_decode_msgpack_raw = msgspec.msgpack.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder(list[WireSpan]).decode
_decode_json_raw = msgspec.json.Decoder().decode


def _encode(spans: list[WireSpan]) -> bytes:
    """msgpack, or JSON for the rare batch msgpack cannot hold.

    JSON numbers have no range, so the wire accepts an integer attribute beyond
    64 bits, which msgpack refuses. A JSON chunk starts with ``[``, which can never
    start a msgpack list (it is the positive fixint 91), so the two are told apart
    by their first byte.
    """
    try:
        return _encode_msgpack(spans)
    except OverflowError:
        return _encode_json(spans)


def _decode(data: bytes) -> list[WireSpan]:
    return _decode_json(data) if data[:1] == b"[" else _decode_msgpack(data)


def _decode_raw(data: bytes) -> Any:
    return _decode_json_raw(data) if data[:1] == b"[" else _decode_msgpack_raw(data)


_get_span = attrgetter("span")
_get_span_id = attrgetter("span_id")
_get_service = attrgetter("service")


class _Trace:
    __slots__ = ("aggregate", "chunks", "span_ids")

    def __init__(self) -> None:
        #: (service, msgpack of a list of WireSpan), in write order.
        self.chunks: list[tuple[str, bytes]] = []
        #: hash() of every stored span_id, sorted.
        self.span_ids: array[int] = array("q")
        self.aggregate = TraceAggregate()

    def rows(self) -> list[SpanRow]:
        """The stored spans, one per ``span_id``: the last write wins, in first-write order."""
        return _rows(self.chunks)


def _rows(chunks: Iterable[tuple[str, bytes]]) -> list[SpanRow]:
    """The spans of these chunks, one per ``span_id``: the last write wins."""
    latest: dict[str, SpanRow] = {}
    for service, data in chunks:
        for span in _decode_spans(data):
            latest[span.span_id] = SpanRow(service, span)
    return list(latest.values())


def _decode_spans(data: bytes) -> list[WireSpan]:
    try:
        return _decode(data)
    except msgspec.ValidationError:
        # A span the collector made itself (OTLP receive, evaluation) is never
        # validated against the wire's constraints: rebuild it as it was.
        return [_span(raw) for raw in _decode_raw(data)]


def _span(raw: dict[str, Any]) -> WireSpan:
    error = raw.pop("error", None)
    events = raw.pop("events", None) or []
    links = raw.pop("links", None) or []
    return WireSpan(
        **raw,
        error=None if error is None else WireError(**error),
        events=[WireEvent(**e) for e in events],
        links=[WireLink(**link) for link in links],
    )


class MemoryStore:
    """A bounded in-memory :class:`~rastir.collector.store.base.TraceStore`.

    Args:
        max_spans: the most spans kept; older traces are evicted whole beyond it.
        retention_seconds: delete traces that ended longer ago than this.
        maintenance_interval: seconds between retention sweeps (0: before every
            write and read).

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        max_spans: int = 100_000,
        *,
        retention_seconds: float | None = None,
        maintenance_interval: float = 10.0,
    ) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, not {max_spans}")
        if retention_seconds is not None and not retention_seconds > 0:
            raise ValueError(f"retention_seconds must be positive, not {retention_seconds}")
        if not maintenance_interval >= 0:
            raise ValueError(f"maintenance_interval must be >= 0, not {maintenance_interval}")
        self._max_spans = max_spans
        self._traces: dict[str, _Trace] = {}
        # Eviction order. An entry whose trace was deleted by retention (or deleted
        # and made again) is stale: skipped when reached, pruned when they pile up.
        self._first_seen: deque[tuple[str, _Trace]] = deque()
        self._stale = 0
        self._order: list[_Key] = []  # sorted ascending; listed from the end
        self._by_tag: dict[Tag, set[str]] = {}
        self._span_count = 0
        self._evicted_spans = 0
        self._evicted_traces = 0
        self._retention_ns = (
            None if retention_seconds is None else math.ceil(retention_seconds * 1e9)
        )
        self._sweep_interval = maintenance_interval
        self._next_sweep = (
            math.inf if retention_seconds is None else time.monotonic() + maintenance_interval
        )
        self._retention_deleted_spans = 0
        self._retention_deleted_traces = 0
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        """Nothing to open."""

    # The protocol's signature: the timeout bounds a drain, not an awaited call.
    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Nothing to release; the spans stay readable."""

    async def flush(self) -> None:
        """Nothing is ever queued: spans are stored when submitted."""

    def submit(self, rows: list[SpanRow]) -> bool:
        """Store spans now. Never refuses: the oldest traces make room."""
        if rows:
            self._apply(rows)
        return True

    async def write(self, rows: list[SpanRow]) -> None:
        """Store spans now (memory is as durable as this store gets)."""
        if rows:
            self._apply(rows)

    async def get_trace(self, trace_id: str) -> TraceDetail | None:
        """The trace as it is now; a big one is decoded off the event loop."""
        if time.monotonic() >= self._next_sweep:
            self._expire()
        trace = self._traces.get(trace_id)
        if trace is None:
            return None
        summary = trace.aggregate.summary(trace_id)
        if summary.span_count <= INLINE_READ_SPANS:
            return TraceDetail(summary, trace.rows())
        # The snapshot: writes append to, or replace, the trace's list of chunks,
        # never a chunk, so the copy and the summary stay as they are now.
        chunks = list(trace.chunks)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(READ_THREADS)
        rows = await anyio.to_thread.run_sync(self._read_snapshot, chunks, limiter=self._limiter)
        return TraceDetail(summary, rows)

    def _read_snapshot(self, chunks: list[tuple[str, bytes]]) -> list[SpanRow]:
        """A snapshot's spans; runs in a worker thread, so touches nothing of the store."""
        return _rows(chunks)

    async def list_traces(self, query: TraceQuery) -> TracePage:
        """Trace summaries matching ``query``, newest first.

        Raises:
            ValueError: ``query.limit`` is below 1, or ``query.cursor`` is invalid.
        """
        if query.limit < 1:
            raise ValueError(f"limit must be at least 1, not {query.limit}")
        high: _Key = decode_cursor(query.cursor, str, query) if query.cursor else (1 << 64, "")
        if time.monotonic() >= self._next_sweep:
            self._expire()
        order = self._order
        low: _Key = (query.start_ns, "") if query.start_ns is not None else (-1, "")
        if query.end_ns is not None:
            high = min(high, (query.end_ns, ""))

        candidates: set[str] | None = None
        for tag in query_tags(query):
            ids = self._by_tag.get(tag)
            if not ids:
                return TracePage([], None)
            candidates = ids if candidates is None else candidates & ids

        traces = self._traces
        keys: Iterable[_Key]
        if candidates is not None and len(candidates) * 8 < len(order):
            # Few matches: sorting them beats walking every trace in the range.
            keys = sorted(
                (
                    key
                    for tid in candidates
                    if low <= (key := (traces[tid].aggregate.start_ns, tid)) < high
                ),
                reverse=True,
            )
        else:
            keys = self._walk(low, high)

        want_ok = query.status == "ok"
        min_duration = query.min_duration_ns
        found: list[tuple[_Key, TraceSummary]] = []
        looked = 0
        for key in keys:
            looked += 1
            if looked % LIST_SLICE == 0:
                # Let ingest and /metrics in. Meanwhile traces may come, go or move:
                # each key is checked against the store as it is when looked at.
                await anyio.lowlevel.checkpoint()
            trace_id = key[1]
            if candidates is not None and trace_id not in candidates:
                continue
            trace = traces.get(trace_id)
            if trace is None:
                continue  # evicted while the listing yielded
            aggregate = trace.aggregate
            if aggregate.start_ns != key[0]:
                continue  # moved (an earlier span came) while the listing yielded
            if want_ok and aggregate.error_count:
                continue
            if min_duration is not None and aggregate.duration_ns < min_duration:
                continue
            found.append((key, aggregate.summary(trace_id)))
            if len(found) > query.limit:
                break
        next_cursor = None
        if len(found) > query.limit:
            del found[query.limit :]
            next_cursor = encode_cursor(*found[-1][0], query)
        return TracePage([summary for _, summary in found], next_cursor)

    def _walk(self, low: _Key, high: _Key) -> Iterable[_Key]:
        """The keys in ``[low, high)``, newest first, as the order is when each is read.

        The order may change between two keys (the listing yields to the loop): the
        walk goes on below the last key it gave, found again by bisection, so it
        never gives a key twice nor one out of order.
        """
        order = self._order
        i = bisect_left(order, high)
        while True:
            i -= 1
            if i < 0:
                return
            key = order[i]
            if key < low:
                return
            yield key
            if i >= len(order) or order[i] != key:
                i = bisect_left(order, key)

    def stats(self) -> StoreStats:
        return StoreStats(
            spans_stored=self._span_count,
            traces_stored=len(self._traces),
            extra={
                "max_spans": self._max_spans,
                "evicted_spans": self._evicted_spans,
                "evicted_traces": self._evicted_traces,
                "retention_deleted_spans": self._retention_deleted_spans,
                "retention_deleted_traces": self._retention_deleted_traces,
            },
        )

    def _apply(self, rows: list[SpanRow]) -> None:
        if time.monotonic() >= self._next_sweep:
            self._expire()
        # The rows of each trace, in order (a batch is most often one trace).
        groups: dict[str, list[SpanRow]] = {}
        for row in rows:
            trace_id = row.span.trace_id
            group = groups.get(trace_id)
            if group is None:
                groups[trace_id] = [row]
            else:
                group.append(row)

        traces = self._traces
        order = self._order
        by_tag = self._by_tag
        for trace_id, group in groups.items():
            trace = traces.get(trace_id)
            old_start: int | None = None
            if trace is None:
                trace = traces[trace_id] = _Trace()
                self._first_seen.append((trace_id, trace))
            else:
                old_start = trace.aggregate.start_ns
            aggregate = trace.aggregate
            counted = aggregate.span_count
            service = group[0].service
            spans = list(map(_get_span, group))
            # Span ids are remembered as a sorted array of their hashes, 8 bytes each
            # (a set of the strings cost 15 MB per 100,000 spans). A repeated hash is
            # a repeated span, or, very rarely, a collision: either way the trace is
            # recounted from its stored spans, which dedupe by the ids themselves.
            hashes = sorted(map(hash, map(_get_span_id, spans)))
            if trace.span_ids:
                hashes = sorted(chain(trace.span_ids, hashes))
            replaced = any(map(eq, hashes, islice(hashes, 1, None)))
            if replaced:
                hashes = sorted(set(hashes))
            trace.span_ids = array("q", hashes)
            one_service = all(map(eq, map(_get_service, group), repeat(service)))
            if one_service:
                trace.chunks.append((service, _encode(spans)))
                if not replaced:
                    aggregate.add_many(service, spans)
            else:
                _append_by_service(trace.chunks, group)
                replaced = True  # rare (one request has one service): recounted below

            if replaced:
                # A replaced span cannot be subtracted from a min/max: recount. And
                # keep only the latest copy of each span: a trace sent again and again
                # must not pile up chunks the span bound does not see.
                before = aggregate.tags()
                stored = trace.rows()
                trace.chunks = []
                _append_by_service(trace.chunks, stored)
                aggregate = trace.aggregate = TraceAggregate.from_rows(stored)
                for tag in before - aggregate.tags():
                    self._untag(tag, trace_id)
            self._span_count += aggregate.span_count - counted

            if old_start != aggregate.start_ns:
                if old_start is not None:
                    _remove(order, (old_start, trace_id))
                insort(order, (aggregate.start_ns, trace_id))
            for tag in aggregate.tags():
                ids = by_tag.get(tag)
                if ids is None:
                    by_tag[tag] = {trace_id}
                else:
                    ids.add(trace_id)

        first_seen = self._first_seen
        while self._span_count > self._max_spans:
            trace_id, trace = first_seen.popleft()
            if traces.get(trace_id) is trace:
                aggregate = self._evict(trace_id)
                _remove(order, (aggregate.start_ns, trace_id))
                self._evicted_spans += aggregate.span_count
                self._evicted_traces += 1
            else:
                self._stale -= 1

    def _evict(self, trace_id: str) -> TraceAggregate:
        """Forget a trace, but for its place in ``_order`` (the caller's to remove)."""
        trace = self._traces.pop(trace_id)
        aggregate = trace.aggregate
        for tag in aggregate.tags():
            self._untag(tag, trace_id)
        self._span_count -= aggregate.span_count
        return aggregate

    def _expire(self) -> None:
        """Delete the traces that ended before the retention cutoff."""
        assert self._retention_ns is not None
        self._next_sweep = time.monotonic() + self._sweep_interval
        cutoff = time.time_ns() - self._retention_ns
        order = self._order
        # A trace that ended before the cutoff started before it: only the start of
        # the order is looked at (traces still running past the cutoff are kept).
        head = bisect_left(order, (cutoff, ""))
        if not head:
            return
        traces = self._traces
        kept: list[_Key] = []
        deleted = 0
        for key in order[:head]:
            if traces[key[1]].aggregate.end_ns < cutoff:
                aggregate = self._evict(key[1])
                self._retention_deleted_spans += aggregate.span_count
                deleted += 1
            else:
                kept.append(key)
        if not deleted:
            return
        order[:head] = kept  # one splice, not one deletion per trace
        self._retention_deleted_traces += deleted
        self._stale += deleted
        if self._stale > len(traces):
            self._first_seen = deque(e for e in self._first_seen if traces.get(e[0]) is e[1])
            self._stale = 0

    def _untag(self, tag: Tag, trace_id: str) -> None:
        ids = self._by_tag.get(tag)
        if ids is not None:
            ids.discard(trace_id)
            if not ids:
                del self._by_tag[tag]


def _append_by_service(chunks: list[tuple[str, bytes]], group: list[SpanRow]) -> None:
    """One chunk per run of rows from the same service, keeping the write order."""
    run: list[WireSpan] = []
    service = group[0].service
    for row in group:
        if row.service != service:
            chunks.append((service, _encode(run)))
            run, service = [], row.service
        run.append(row.span)
    chunks.append((service, _encode(run)))


def _remove(order: list[_Key], key: _Key) -> None:
    i = bisect_left(order, key)
    if i < len(order) and order[i] == key:
        del order[i]
