"""The background exporter: one daemon thread that batches spans and pushes them.

Guarantees to the application:

* it never blocks: the application only appends to a bounded deque;
* it never raises into the application: every failure stays on this thread;
* nothing is lost quietly: a span that cannot be queued or delivered is counted, and
  the count travels in the next batch's ``dropped`` field to the collector.

Delivery: batches of ``batch_size`` spans, or whatever is queued every
``flush_interval`` seconds. Connection errors, 408, 429 and 5xx are retried with
exponential backoff and full jitter, honouring ``Retry-After``, for at most
``retry_budget`` seconds per batch. Other 4xx answers are final for that batch
(413 first splits the batch in two).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING

from rastir.export._encode import encode_batch
from rastir.export.http import HttpTransport, PushResult
from rastir.spans import _clock

if TYPE_CHECKING:
    from rastir._config import Settings
    from rastir.export._pipeline import Pipeline
    from rastir.spans import Span

__all__ = ["BatchExporter", "ExporterStats"]

_log = logging.getLogger("rastir.export")
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_RETRY_AFTER_CAP = 60.0


class ExporterStats:
    """Counters kept by the exporter thread, for tests and health checks."""

    __slots__ = (
        "batches_failed",
        "batches_sent",
        "last_error",
        "retries",
        "spans_dropped",
        "spans_sent",
    )

    def __init__(self) -> None:
        self.batches_sent = 0
        self.spans_sent = 0
        # Spans lost before sending, in direct OTLP mode (otherwise the count travels
        # to the collector in each batch's dropped field).
        self.spans_dropped = 0
        self.batches_failed = 0
        self.retries = 0
        self.last_error = ""


_live: weakref.WeakSet[BatchExporter] = weakref.WeakSet()
_hooks_installed = False


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    for exporter in list(_live):
        exporter.shutdown(exporter.settings.shutdown_timeout, drain=True)


def _after_fork_in_child() -> None:
    for exporter in list(_live):
        exporter._reset_after_fork()


class BatchExporter:
    """Drains a :class:`~rastir.export._pipeline.Pipeline` to the collector."""

    def __init__(
        self, pipeline: Pipeline, settings: Settings, transport: HttpTransport | None = None
    ) -> None:
        # exporter="otlp" (direct mode): OTLP protobuf straight to an OpenTelemetry
        # collector's endpoint, same thread, batching and retries.
        self._otlp = settings.exporter == "otlp"
        url = settings.otlp_endpoint if self._otlp else settings.push_url
        if url is None:
            raise ValueError("BatchExporter needs settings with a push_url or an otlp_endpoint")
        self.pipeline = pipeline
        self.settings = settings
        self._encode = encode_batch
        if self._otlp:
            from rastir.export.otlp import CONTENT_TYPE_PROTOBUF, encode_batch_otlp

            self._encode = encode_batch_otlp
        self.transport = transport or HttpTransport(
            url,
            token=settings.token,
            headers=settings.headers,
            timeout=settings.timeout,
            gzip=settings.gzip,
            path="" if self._otlp else "/v1/telemetry",
            content_type=CONTENT_TYPE_PROTOBUF if self._otlp else "application/json",
        )
        self.stats = ExporterStats()
        self._resource = settings.resource()
        self._init_sync()
        _live.add(self)
        _install_process_hooks()
        pipeline.on_wake = self._on_wake
        pipeline.wake_at = 1
        if pipeline.queue:
            self._on_wake()  # spans from before configure() are waiting

    def _init_sync(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._flush_requested = 0
        self._flush_done = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._deadline: float | None = None
        self._pid = os.getpid()

    # -- application side -------------------------------------------------------
    def _on_wake(self) -> None:
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="rastir-exporter", daemon=True)
            self._thread.start()
            self.pipeline.wake_at = self.settings.batch_size

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every span queued before this call is sent (or given up)."""
        if self._thread is None:
            if not self.pipeline.queue and not self.pipeline.dropped:
                return True
            self._start()
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._flush_done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._flush_done >= target
                self._cond.wait(left)
        return True

    def shutdown(self, timeout: float = 2.0, *, drain: bool = True) -> bool:
        """Stop the thread, first sending what is queued when ``drain`` (bounded)."""
        if self.pipeline.on_wake == self._on_wake:
            self.pipeline.on_wake = None
        thread = self._thread
        self._deadline = time.monotonic() + timeout
        if drain and thread is None and (self.pipeline.queue or self.pipeline.dropped):
            self._start()
            thread = self._thread
        self._stop.set()
        self._wake.set()
        ok = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ok = not thread.is_alive()
        _live.discard(self)
        if ok:
            self.transport.close()
        return ok

    def _reset_after_fork(self) -> None:
        # The child has a copy of the parent's queue: those spans are the parent's
        # to send. Locks may have been held by threads that no longer exist.
        if self._pid == os.getpid():
            return
        self.pipeline.queue.clear()
        self.pipeline.dropped = 0
        self.pipeline._drop_lock = threading.RLock()
        self.pipeline.woken()
        self.transport.abandon()  # the parent's socket; never write to it here
        self._resource = self.settings.resource()  # a new process.pid
        stopped = self._stop.is_set()
        self._init_sync()
        if stopped:
            self._stop.set()
        else:
            self.pipeline.on_wake = self._on_wake
            self.pipeline.wake_at = 1

    # -- exporter thread -----------------------------------------------------------
    def _run(self) -> None:
        interval = self.settings.flush_interval
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            self.pipeline.woken()
            stopping = self._stop.is_set()
            with self._cond:
                target = self._flush_requested
            try:
                self._drain(stopping)
            except Exception:  # pragma: no cover - defensive: the thread must survive
                _log.exception("rastir exporter: unexpected error")
            with self._cond:
                self._flush_done = max(self._flush_done, target)
                self._cond.notify_all()
            if stopping:
                left = len(self.pipeline.queue)
                if left:
                    _log.warning("rastir exporter: %d spans not sent at shutdown", left)
                return

    def _drain(self, stopping: bool) -> None:
        q = self.pipeline.queue
        size = self.settings.batch_size
        _clock.resync()
        reported = False
        # Drops are reported even with no span to carry them, but only once per
        # round, so a collector refusing every batch cannot keep this loop spinning.
        while q or (self.pipeline.dropped and not reported):
            if stopping and self._deadline is not None and time.monotonic() > self._deadline:
                return
            batch: list[Span] = []
            try:
                for _ in range(size):
                    batch.append(q.popleft())
            except IndexError:
                pass
            reported = reported or not batch
            self._deliver(batch)

    def _deliver(self, batch: list[Span]) -> None:
        dropped = self.pipeline.take_dropped()
        if self._otlp:
            # OTLP has no field for spans lost before sending: they are counted here
            # (ExporterStats.spans_dropped) and logged instead.
            if dropped:
                self.stats.spans_dropped += dropped
                _log.warning("rastir exporter: %d spans dropped before export", dropped)
                dropped = 0
            if not batch:
                return
        try:
            body = self._encode(batch, self._resource, dropped)
        except Exception as e:  # a span that cannot be encoded must not stall the rest
            _log.warning("rastir exporter: could not encode a batch: %s", e)
            self.pipeline.add_dropped(dropped + len(batch))
            self.stats.batches_failed += 1
            return
        result = self._send_with_retries(body)
        if result.ok:
            self.stats.batches_sent += 1
            self.stats.spans_sent += len(batch)
            return
        if result.status == 413 and len(batch) > 1:
            self.pipeline.add_dropped(dropped)
            half = len(batch) // 2
            self._deliver(batch[:half])
            self._deliver(batch[half:])
            return
        self.stats.batches_failed += 1
        self.stats.last_error = f"{result.status} {result.error}".strip()
        _log.warning("rastir exporter: gave up on %d spans (%s)", len(batch), self.stats.last_error)
        self.pipeline.add_dropped(dropped + len(batch))

    def _send_with_retries(self, body: bytes) -> PushResult:
        give_up_at = time.monotonic() + self.settings.retry_budget
        attempt = 0
        while True:
            result = self.transport.send(body)
            if result.ok or not result.retryable:
                return result
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2**attempt)))
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, _RETRY_AFTER_CAP))
            now = time.monotonic()
            limit = give_up_at
            if self._stop.is_set() and self._deadline is not None:
                limit = min(limit, self._deadline)
            if now + delay > limit:
                return result
            attempt += 1
            self.stats.retries += 1
            self.stats.last_error = f"{result.status} {result.error}".strip()
            if self._stop.is_set():
                time.sleep(delay)  # within the shutdown deadline, checked above
            else:
                # A shutdown cuts the wait short; the next round re-checks the deadline.
                self._stop.wait(delay)
