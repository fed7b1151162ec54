"""The write queue and writer thread the SQL stores share.

:class:`QueuedWriter` holds what is the same in the SQLite and the PostgreSQL
store: a queue bounded in spans, fed by :meth:`~QueuedWriter.submit` (queued
mode), :meth:`~QueuedWriter.write` (committed mode) and
:meth:`~QueuedWriter.flush`; one writer thread that drains it, many batches per
transaction; the handling of a failed transaction; retention passes every
``maintenance_interval``; and the drain on close. A store supplies the database
side: :meth:`~QueuedWriter._write_rows` (one transaction), ``_transient`` (whether
an error may pass), :meth:`~QueuedWriter._maintain` and
:meth:`~QueuedWriter._close_writer`.

A failed transaction is either transient (the database's surroundings failed:
a later attempt may succeed with the same spans) or the spans' own. After a
transient failure, acknowledged spans (queued mode) go back to the head of the
queue and the writer backs off from 50 ms to 2 s, retrying for as long as the
store runs; a committed-mode ``write`` fails at once, its sender retrying on the
503. After any other failure, each batch of the transaction is tried alone and
those that fail again are dropped and counted (``failed_spans``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

import anyio
import anyio.to_thread

from rastir.collector.store._cursor import decode_cursor
from rastir.collector.store._readers import ReaderPool
from rastir.collector.store.base import SpanRow, StoreStats, TraceDetail, TracePage, TraceQuery
from rastir.collector.store.errors import StoreClosedError, StoreError, StoreFullError

__all__ = ["RETRY_FIRST", "RETRY_MAX", "Item", "QueuedWriter", "Waiter"]

_log = logging.getLogger("rastir.collector.store")

RETRY_FIRST: Final = 0.05
RETRY_MAX: Final = 2.0


class Waiter:
    """Wakes a task awaiting a commit, from the writer thread, without blocking it.

    On asyncio (what the collector runs on, under anyio) an asyncio future is
    resolved with ``call_soon_threadsafe``. On any other event loop the task waits
    for a threading event in a worker thread.
    """

    __slots__ = ("_error", "_event", "_future", "_loop")

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._future = self._loop.create_future() if self._loop is not None else None
        self._event = threading.Event() if self._loop is None else None

    def resolve(self, error: BaseException | None) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._settle, error)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more
        else:
            assert self._event is not None
            self._error = error
            self._event.set()

    def _settle(self, error: BaseException | None) -> None:
        future = self._future
        if future is None or future.done():  # the waiting task was cancelled
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    async def wait(self) -> None:
        if self._future is not None:
            await self._future
            return
        assert self._event is not None
        await anyio.to_thread.run_sync(self._event.wait, abandon_on_cancel=True)
        if self._error is not None:
            raise self._error


class Item:
    """One batch on the queue: its spans, and who waits for its commit."""

    __slots__ = ("durable", "queued_at", "rows", "waiter")

    def __init__(
        self, rows: list[SpanRow], waiter: Waiter | None, durable: bool, queued_at: float
    ) -> None:
        self.rows = rows
        self.waiter = waiter
        self.durable = durable
        self.queued_at = queued_at


class QueuedWriter:
    """The queue, the writer thread and its failure handling (see the module doc).

    Args:
        queue_max_spans: spans that may wait for the writer (queued or being written).
        batch_max_spans: the most spans the writer puts in one transaction (a single
            larger batch still goes in whole).
        maintenance_interval: seconds between retention passes. With 0, a pass follows
            every transaction (for tests).
        maintains: whether the store has retention passes to run at all.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        *,
        queue_max_spans: int,
        batch_max_spans: int,
        maintenance_interval: float,
        maintains: bool,
    ) -> None:
        if queue_max_spans < 1:
            raise ValueError(f"queue_max_spans must be at least 1, not {queue_max_spans}")
        if batch_max_spans < 1:
            raise ValueError(f"batch_max_spans must be at least 1, not {batch_max_spans}")
        if not maintenance_interval >= 0:
            raise ValueError(f"maintenance_interval must be >= 0, not {maintenance_interval}")
        self._capacity = queue_max_spans
        self._batch_max = batch_max_spans
        self._maintenance_interval = maintenance_interval
        self._maintains = maintains

        # Shared between the event loop and the writer: guarded by _lock.
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[Item] = deque()
        self._pending = 0  # spans queued or in the transaction being written
        self._inflight_since: float | None = None
        self._writer_waiting = False
        self._accepting = False
        self._stopping = False
        self._drain_deadline = math.inf

        # Written by one thread, read anywhere (an int store is atomic).
        self._dropped = 0
        self._counts: dict[str, int] = {
            "transactions": 0,
            "write_errors": 0,
            "failed_spans": 0,
            "invalid_spans": 0,
            "lost_spans": 0,
            "retention_deleted_spans": 0,
            "retention_deleted_traces": 0,
            "size_deleted_spans": 0,
            "size_deleted_traces": 0,
        }

        # Written by the writer thread, read anywhere (an int store is atomic).
        self._spans_stored = 0
        self._traces_stored = 0
        self._size_bytes = 0
        self._used_bytes = 0

        self._thread: threading.Thread | None = None
        self._next_maintenance = math.inf
        self._retry_delay = RETRY_FIRST  # after a transient failure; reset on success
        self._pool: ReaderPool[Any] | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._started = False
        self._closed = False

    # -- what a store supplies -----------------------------------------------------

    def _write_rows(self, rows: list[SpanRow], durable: bool) -> None:
        """Write ``rows`` in one transaction (fsynced when ``durable``), or raise."""
        raise NotImplementedError

    def _transient(self, error: BaseException) -> bool:
        """Whether a failed transaction may succeed later with the same spans."""
        raise NotImplementedError

    def _maintain(self) -> None:
        """One retention pass (sets the time of the next)."""
        self._next_maintenance = time.monotonic() + self._maintenance_interval

    def _measure(self) -> None:
        """Sample the database's size (``_size_bytes``, ``_used_bytes``)."""
        raise NotImplementedError

    def _oldest(self, limit: int) -> Iterator[tuple[Any, int]]:
        """The first-started traces (up to ``limit``), each with its span count."""
        raise NotImplementedError

    def _delete_oldest(self, traces: list[Any]) -> None:
        """Delete traces :meth:`_oldest` gave, counted as deleted for size."""
        raise NotImplementedError

    def _close_writer(self) -> None:
        """Release the writer's connection; the writer thread's last act."""

    def _describe(self, error: BaseException) -> str:
        """``error`` as it may be logged and shown (no secrets in it)."""
        return repr(error)

    def _read_trace(self, trace_id: str) -> TraceDetail | None:
        """:meth:`get_trace`, in a worker thread."""
        raise NotImplementedError

    def _read_traces(self, query: TraceQuery, cursor: tuple[int, int] | None) -> TracePage:
        """:meth:`list_traces`, in a worker thread."""
        raise NotImplementedError

    def _shrink(self, max_bytes: int) -> None:
        """Delete the first-started traces while the database uses over ``max_bytes``."""
        self._measure()
        if self._used_bytes <= max_bytes:
            return
        # Delete down to 90% of the limit, so that the next pass is not due at once.
        # Deleting frees fewer pages than the span count suggests (index pages
        # thin out rather than empty), hence a few rounds.
        target = int(max_bytes * 0.9)
        for _ in range(20):
            if self._used_bytes <= target or not self._spans_stored:
                return
            per_span = self._used_bytes / self._spans_stored
            to_free = math.ceil((self._used_bytes - target) / per_span)
            chosen: list[Any] = []
            spans = 0
            for trace, count in self._oldest(min(10_000, to_free)):
                chosen.append(trace)
                spans += count
                if spans >= to_free:
                    break
            if not chosen:
                return
            self._delete_oldest(chosen)
            self._measure()

    # -- lifecycle -----------------------------------------------------------------

    def _start_writer(self, pool: ReaderPool[Any], readers: int) -> None:
        """Start the writer thread and take spans (the store is open).

        ``pool`` holds the read connections, of which ``readers`` are used at once.
        """
        self._pool = pool
        self._limiter = anyio.CapacityLimiter(readers)
        self._started = True
        if self._maintains:
            self._next_maintenance = time.monotonic() + self._maintenance_interval
        self._thread = threading.Thread(target=self._run, name="rastir-store-writer", daemon=True)
        with self._lock:
            self._accepting = True
        self._thread.start()

    # The protocol's signature: the timeout bounds the drain, not an awaited call.
    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Write what is queued and stop, all within ``timeout`` seconds.

        Spans still queued when time runs out are counted in ``extra["lost_spans"]``
        and their ``write`` calls fail with :class:`StoreClosedError`.
        """
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._accepting = False
            self._stopping = True
            # Keep a fifth of the time for the last transaction and the checkpoint.
            self._drain_deadline = time.monotonic() + 0.8 * timeout
            self._wakeup.notify()
        thread = self._thread
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join, timeout)
            if thread.is_alive():
                with self._lock:
                    pending = self._pending
                # Still in a transaction (a lock held elsewhere, a slow disk): what it
                # holds and what is queued are lost when the process exits.
                _log.warning(
                    "trace store writer did not stop within %.1f s; %d spans unwritten",
                    timeout,
                    pending,
                )
        if self._pool is not None:
            self._pool.close()

    # -- writing -------------------------------------------------------------------

    def submit(self, rows: list[SpanRow]) -> bool:
        """Queue spans for the writer. False (spans counted as dropped) when full."""
        count = len(rows)
        if not count:
            return True
        with self._lock:
            if not self._accepting or self._pending + count > self._capacity:
                self._dropped += count
                return False
            self._pending += count
            self._queue.append(Item(rows, None, False, time.monotonic()))
            if self._writer_waiting:
                self._wakeup.notify()
        return True

    async def write(self, rows: list[SpanRow]) -> None:
        """Write spans and return once they are committed durably.

        Spans whose times do not fit 64-bit integers are left out and counted in
        ``stats().extra["invalid_spans"]``.

        Raises:
            StoreFullError: the queue has no room; nothing was written.
            StoreClosedError: the store is not running, or closed before the write.
            StoreError: the transaction failed.
        """
        await self._enqueue_and_wait(rows, durable=True)

    async def flush(self) -> None:
        """Return once every span submitted before the call is committed.

        Raises:
            StoreClosedError: the store is not running.
        """
        await self._enqueue_and_wait([], durable=False)

    async def _enqueue_and_wait(self, rows: list[SpanRow], *, durable: bool) -> None:
        waiter = Waiter()
        count = len(rows)
        with self._lock:
            if not self._accepting:
                raise StoreClosedError("the trace store is not running")
            if count and self._pending + count > self._capacity:
                self._dropped += count
                raise StoreFullError(count, self._capacity)
            self._pending += count
            self._queue.append(Item(rows, waiter, durable, time.monotonic()))
            if self._writer_waiting:
                self._wakeup.notify()
        await waiter.wait()

    # -- reading -------------------------------------------------------------------

    async def get_trace(self, trace_id: str) -> TraceDetail | None:
        """Every span of one trace, or None when the trace is unknown.

        Raises:
            StoreClosedError: the store is not running.
            StoreError: the database could not be read.
        """
        return await anyio.to_thread.run_sync(self._read_trace, trace_id, limiter=self._limit())

    async def list_traces(self, query: TraceQuery) -> TracePage:
        """Trace summaries matching ``query``, newest first.

        Raises:
            ValueError: ``query.limit`` is below 1, or ``query.cursor`` is invalid.
            StoreClosedError: the store is not running.
            StoreError: the database could not be read.
        """
        if query.limit < 1:
            raise ValueError(f"limit must be at least 1, not {query.limit}")
        cursor = decode_cursor(query.cursor, int, query) if query.cursor else None
        return await anyio.to_thread.run_sync(
            self._read_traces, query, cursor, limiter=self._limit()
        )

    def stats(self) -> StoreStats:
        with self._lock:
            depth = self._pending
            oldest = self._inflight_since
            if oldest is None and self._queue:
                oldest = self._queue[0].queued_at
        return StoreStats(
            spans_stored=self._spans_stored,
            traces_stored=self._traces_stored,
            queue_depth=depth,
            queue_capacity=self._capacity,
            dropped_spans=self._dropped,
            lag_seconds=0.0 if oldest is None else max(0.0, time.monotonic() - oldest),
            size_bytes=self._size_bytes,
            extra={"used_bytes": self._used_bytes, **self._counts},
        )

    def _limit(self) -> anyio.CapacityLimiter:
        if self._limiter is None or self._closed:
            raise StoreClosedError("the trace store is not running")
        return self._limiter

    # -- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                items = self._take()
                if items is None:
                    break
                if items:
                    self._commit(items)
                if time.monotonic() >= self._next_maintenance:
                    self._maintain()
        except BaseException:  # a bug: never die silently, and still release waiters
            _log.exception("trace store writer failed")
        finally:
            self._finish()

    def _take(self) -> list[Item] | None:
        """The next items to write, [] when maintenance is due, None to stop."""
        with self._wakeup:
            while not self._queue:
                if self._stopping:
                    return None
                timeout = None
                if self._maintains and self._maintenance_interval > 0:
                    # Idle: wake up for the next retention pass. (With an interval
                    # of 0, passes follow transactions only.)
                    timeout = self._next_maintenance - time.monotonic()
                    if timeout <= 0:
                        return []
                self._writer_waiting = True
                self._wakeup.wait(timeout)
                self._writer_waiting = False
            if self._stopping and time.monotonic() >= self._drain_deadline:
                return None
            queue = self._queue
            items = [queue.popleft()]
            count = len(items[0].rows)
            while queue and count + len(queue[0].rows) <= self._batch_max:
                item = queue.popleft()
                items.append(item)
                count += len(item.rows)
            self._inflight_since = items[0].queued_at
            return items

    def _commit(self, items: list[Item]) -> None:
        errors: dict[int, BaseException] = {}
        error = self._transaction(items)
        if error is not None and self._transient(error):
            self._retry_later(items, error)
            return
        if error is None:
            if self._retry_delay != RETRY_FIRST:
                self._retry_delay = RETRY_FIRST
                _log.info("trace store writes again")
        else:
            if len(items) == 1:
                errors[0] = error
            else:
                # One bad batch must not sink the others: retry each on its own.
                for index, item in enumerate(items):
                    error = self._transaction([item])
                    if error is not None:
                        errors[index] = error
        count = 0
        for item in items:
            count += len(item.rows)
        for index in errors:
            item = items[index]
            # Spans lost after their 202; a committed-mode write is answered 503 instead
            # and its sender keeps the spans, so it is not a loss.
            if not (item.durable and item.waiter is not None):
                self._counts["failed_spans"] += len(item.rows)
        with self._lock:
            self._pending -= count
            self._inflight_since = None
        for index, item in enumerate(items):
            if item.waiter is not None:
                error = errors.get(index)
                item.waiter.resolve(None if error is None else self._write_error(error))

    def _write_error(self, error: BaseException) -> StoreError:
        return StoreError(f"could not write spans: {self._describe(error)}")

    def _retry_later(self, items: list[Item], error: BaseException) -> None:
        """After a transient failure: fail the waiting writes, requeue the rest, back off."""
        retry: list[Item] = []
        failed = 0
        for item in items:
            if item.durable and item.waiter is not None and item.rows:
                # Committed mode: the sender is waiting and retries on the 503.
                failed += len(item.rows)
                item.waiter.resolve(self._write_error(error))
            else:
                retry.append(item)  # acknowledged spans, or a flush() waiting behind them
        delay = self._retry_delay
        self._retry_delay = min(RETRY_MAX, delay * 2)
        with self._wakeup:
            self._pending -= failed
            self._inflight_since = None
            # Back at the head, in order: they keep their place, and _pending (the
            # queue's bound) still counts them.
            self._queue.extendleft(reversed(retry))
            if self._stopping:
                # Draining for close(): keep trying until its deadline, not in a spin.
                delay = min(delay, max(0.0, self._drain_deadline - time.monotonic()))
            # close() notifies, ending the wait early.
            self._wakeup.wait(delay)

    def _transaction(self, items: list[Item]) -> BaseException | None:
        """Write the items' spans in one transaction; the error if it failed."""
        rows = [row for item in items for row in item.rows]
        if not rows:
            return None
        try:
            self._write_rows(rows, any(item.durable for item in items))
        except Exception as e:
            self._counts["write_errors"] += 1
            if not self._transient(e):
                _log.error("trace store could not write %d spans: %s", len(rows), self._describe(e))
            elif self._retry_delay == RETRY_FIRST:  # the first failure of a run
                _log.error(
                    "trace store could not write %d spans: %s; retrying until it can "
                    "(ingest answers 429 once the write queue is full)",
                    len(rows),
                    self._describe(e),
                )
            return e
        return None

    def _finish(self) -> None:
        with self._lock:
            self._accepting = False
            left = list(self._queue)
            self._queue.clear()
            lost = sum(len(item.rows) for item in left)
            self._pending -= lost
        if lost:
            self._counts["lost_spans"] += lost
            _log.warning("trace store closed with %d spans unwritten", lost)
        for item in left:
            if item.waiter is not None:
                item.waiter.resolve(StoreClosedError("the trace store closed before the write"))
        self._close_writer()
