"""The background exporter: one daemon thread that batches spans and pushes them.

Guarantees to the application:

* it never blocks: the application only appends to a bounded deque;
* it never raises into the application: every failure stays on this thread;
* nothing is lost quietly: a span that cannot be queued or delivered is counted, and
  the count travels in the next batch's ``dropped`` field to the collector;
* the SDK's health events (inbound trace context refused, hooks that raised; see
  ``rastir.export._pipeline``) travel the same way, as counts in the batch's
  ``sdk_events`` field, read once per batch on this thread. A batch given up puts
  them back for the next one; a retiring exporter leaves them to the new one. Direct
  OTLP mode has no field for them: they stay in the process's counters
  (``rastir.middleware.stats``, ``rastir.mcp_bridge.stats``) and are reported if the
  process is later configured to push to a rastir collector.

Delivery: batches of ``batch_size`` spans, or whatever is queued every
``flush_interval`` seconds. To a rastir collector, connection errors, 408, 429 and
5xx are retried (decision D9); in direct OTLP mode only connection errors, 429, 502,
503 and 504 are, as the OTLP/HTTP specification allows, and a 2xx answer's
``partial_success.rejected_spans`` are counted as dropped. Retries use exponential
backoff and full jitter, honour ``Retry-After``, and last at most ``retry_budget``
seconds per batch. Other 4xx answers are final for that batch (413 first splits the
batch in two).

Losses are logged without flooding the log: the first batch given up at once, later
ones summed into one warning a minute at most. When the exporter stops (``shutdown()``,
interpreter exit, the end of a ``multiprocessing`` child, forked or spawned)
one warning gives the number of spans that were not delivered and not reported to the
collector: still queued at the deadline, in a request that did not finish, or
dropped earlier with no later batch to carry the count.

Reconfiguring: :meth:`BatchExporter.retire` takes the spans queued at that moment
off the shared queue for the retiring exporter, which sends them to its own target
within its shutdown timeout and counts the rest as dropped (the new exporter reports
the count). It never takes another span from the shared queue: spans made after
``configure()`` are the new exporter's only.
"""

from __future__ import annotations

import atexit
import codecs
import logging
import os
import random
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

import msgspec

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
# OTLP/HTTP specification, "Retryable Response Codes": only these; every other
# answer is final (a 500 will not get better by sending the same body again).
_OTLP_RETRYABLE = frozenset((429, 502, 503, 504))
# Batches given up within this many seconds of the last warning are summed into the
# next one: a collector refusing every batch must not write a line per batch.
_LOSS_LOG_INTERVAL = 60.0
_NO_EVENTS: dict[str, int] = {}  # shared, never mutated
_events_encoder = msgspec.json.Encoder()


def _with_events(body: bytes, events: dict[str, int]) -> bytes:
    """``body``, a ``WireBatch`` as JSON, with ``sdk_events`` added as its last member.

    Byte for byte what encoding the Struct with the field set gives (``sdk_events`` is
    its last field, and the Struct always has ``spans``), without passing the counts
    through the span encoder (rastir.export._encode).
    """
    return b'%s,"sdk_events":%s}' % (body[:-1], _events_encoder.encode(events))


class ExporterStats:
    """Counters kept by the exporter thread, for tests and health checks.

    ``spans_dropped`` counts the spans this exporter lost for good: batches given up
    (a final answer, retries exhausted, an encoding failure) and spans not sent when
    it stopped. In direct OTLP mode it also counts spans lost before sending (a full
    queue) and spans the target rejected (``partial_success``). Spans lost to a full
    queue are counted in ``Pipeline.overflowed`` (cumulative) and, to a rastir
    collector, reported in the next batch's ``dropped`` field.
    """

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
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    # A multiprocessing child configured after it started (a pool's initializer, a
    # target that calls configure()): the at-fork hook found no exporter to stop then.
    mp = sys.modules.get("multiprocessing")
    try:
        child = mp is not None and mp.parent_process() is not None
    except Exception:  # pragma: no cover - never break configure() over telemetry
        child = False
    if child:
        _register_finalizer(_FORK_TOKEN)


def _at_exit() -> None:
    for exporter in list(_live):
        exporter.shutdown(exporter.settings.shutdown_timeout, drain=True)


def _after_fork_in_child() -> None:
    for exporter in list(_live):
        exporter._reset_after_fork()
    if _live:
        _stop_at_multiprocessing_exit()


class _ForkToken:
    """A weak-referenceable key for ``multiprocessing.util``'s registries."""


_FORK_TOKEN = _ForkToken()
_finalizer_pid = 0


def _stop_at_multiprocessing_exit() -> None:
    """In a child forked by ``multiprocessing``, send what is queued when it ends.

    Such a child ends with ``os._exit()`` after running its target: ``atexit``
    handlers never run there, so its last spans would be lost without a count. It
    does run ``multiprocessing.util`` finalizers. They are cleared when the child
    starts, after this at-fork hook, and the after-fork callbacks run next: one of
    those registers the finalizer. A child forked otherwise never runs them.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return  # multiprocessing imports it before it forks
    try:
        util.register_after_fork(_FORK_TOKEN, _register_finalizer)
    except Exception:  # pragma: no cover - never break the child over telemetry
        pass


def _register_finalizer(token: _ForkToken) -> None:
    """Stop the exporters when this ``multiprocessing`` child ends (once per process).

    A forked child ends with ``os._exit()``; a spawned one runs ``atexit`` too, after
    the finalizers, and finds nothing left to stop then.
    """
    global _finalizer_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalizer_pid == os.getpid():
        return
    _finalizer_pid = os.getpid()
    # The lowest priority: after the application's own finalizers, which may end spans.
    util.Finalize(token, _at_exit, exitpriority=-(1 << 30))


def _import_what_the_thread_needs(url: str) -> None:
    """Import now, on the thread calling ``configure()``, what the exporter thread would
    import on its first request.

    An import holds its module's lock until the module has run. A ``fork()`` at that
    moment (``gunicorn --preload`` forks its workers while the master's exporter thread
    sends the span of the app's import) leaves the lock held in the child by a thread
    that does not exist there: the child's first import of that module hangs for good.
    An import on the exporter thread may also race the application's own imports and
    fail with importlib's deadlock error, and ``encodings`` remembers the failure: the
    codec stays unknown for the life of the process.
    """
    # socket.getaddrinfo() encodes a str host with the idna codec: encodings.idna,
    # which imports stringprep and unicodedata, on the first connection.
    codecs.lookup("idna")
    if url[:6].lower() == "https:":
        import ssl  # noqa: F401  (HttpTransport imports it on its first connection)


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
            from rastir.export.otlp import encode_batch_otlp

            self._encode = encode_batch_otlp
        self.transport = transport or self.transport_for(settings)
        _import_what_the_thread_needs(url)
        self.stats = ExporterStats()
        # Loss warnings: spans and batches given up since the last one, and when the
        # next may be written (the first at once).
        self._unlogged_spans = 0
        self._unlogged_batches = 0
        self._next_loss_log = -1.0
        # Direct OTLP mode: spans lost to a full queue, taken off the pipeline since
        # the last warning about them.
        self._unlogged_drops = 0
        self._next_drop_log = -1.0
        # Spans left queued when the thread stopped (set by the thread, read by shutdown).
        self._left = 0
        # Spans of the batch being delivered (written by the exporter thread only).
        self._in_flight = 0
        self._retired = False
        # The deque this exporter takes spans from: the pipeline's shared queue, or,
        # once retired, a deque of its own holding what was queued at retirement.
        self._queue: deque[Span] = pipeline.queue
        self._resource = settings.resource()
        self._init_sync()
        _live.add(self)
        _install_process_hooks()
        # A wake-up meant for an earlier exporter may still be marked pending (its
        # thread ended before taking it): without this, no batch would wake this one.
        pipeline.woken()
        pipeline.on_wake = self._on_wake
        pipeline.wake_at = 1
        if pipeline.queue:
            self._on_wake()  # spans from before configure() are waiting

    @staticmethod
    def transport_for(settings: Settings) -> HttpTransport:
        """The HTTP transport ``settings`` ask for.

        Raises:
            ValueError: the URL, a header or the token cannot be sent (checked here,
                so ``configure()`` refuses them before it changes anything).
        """
        otlp = settings.exporter == "otlp"
        url = settings.otlp_endpoint if otlp else settings.push_url
        if url is None:
            raise ValueError("BatchExporter needs settings with a push_url or an otlp_endpoint")
        content_type = "application/json"
        if otlp:
            from rastir.export.otlp import CONTENT_TYPE_PROTOBUF

            content_type = CONTENT_TYPE_PROTOBUF
        return HttpTransport(
            url,
            token=settings.token,
            headers=settings.headers,
            timeout=settings.timeout,
            gzip=settings.gzip,
            path="" if otlp else "/v1/telemetry",
            content_type=content_type,
            # OTLP: a 2xx answer may carry partial_success (rejected spans).
            read_body=otlp,
        )

    def _init_sync(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        # Rounds: a flush is done when a round that started after it has ended.
        self._flush_requested = 0
        self._flush_done = 0
        # Spans: taken off the queue so far (under _take_lock, written by the exporter
        # thread only), and how many of those are sent or given up (under _cond). A
        # flush is also done once _through reaches what was queued when it was called,
        # so it completes under steady load, where a round never ends.
        self._take_lock = threading.Lock()
        self._taken = 0
        self._through = 0
        # Once stopping, the exporter takes no span beyond this count (shutdown()).
        self._stop_after = 0
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
            if self.pipeline.on_wake == self._on_wake:
                self.pipeline.wake_at = self.settings.batch_size

    def _events_due(self) -> bool:
        """Whether SDK events wait to be reported by this exporter (not in OTLP mode, not
        once retired: the next exporter reports them)."""
        return not (self._otlp or self._retired) and self.pipeline.has_events()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every span queued before this call is sent (or given up).

        Done when the spans queued at the call have gone out, counted, so a steady
        stream of newer spans does not hold it; or when a round of the exporter that
        started after the call has ended (which also reports a pending drop count).
        """
        if self._thread is None:
            if not self._queue and not self.pipeline.dropped and not self._events_due():
                return True
            self._start()
        with self._take_lock:
            queued = len(self._queue)
            target = self._taken + queued
        if not queued and (self.pipeline.dropped or self._events_due()):
            # Nothing queued, but a loss or events to report: the next batch carries
            # them (or the round's report with no span, which also ends the wait).
            target += 1
        with self._cond:
            self._flush_requested += 1
            round_target = self._flush_requested
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._through < target and self._flush_done < round_target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._through >= target or self._flush_done >= round_target
                self._cond.wait(left)
        return True

    def retire(self, timeout: float) -> bool:
        """Hand the shared queue over to the next exporter (``configure()`` again).

        The spans queued now are taken off the shared queue and sent by this exporter,
        to its own target, within ``timeout``; those it cannot send in time are
        counted as dropped (the next exporter reports the count). After this call the
        exporter never takes a span from the shared queue again, even if its thread
        is still stuck in a request when this returns.
        """
        pipeline = self.pipeline
        self._retired = True
        if pipeline.on_wake == self._on_wake:
            pipeline.on_wake = None
        own: deque[Span] = deque()
        with self._take_lock:
            shared = self._queue
            if shared is pipeline.queue:
                # The FIFO's first len() entries are the ones queued before this call;
                # application threads may append behind them meanwhile.
                try:
                    for _ in range(len(shared)):
                        own.append(shared.popleft())
                except IndexError:
                    pass
                self._queue = own
        return self.shutdown(timeout, drain=True)

    def shutdown(self, timeout: float = 2.0, *, drain: bool = True) -> bool:
        """Stop the thread, first sending what is queued now when ``drain``.

        Bounded twice: the spans queued at this call are the last ones taken (newer
        ones from a steady stream are not waited for), and ``timeout`` cuts even
        those short. Returns False if the thread was still running at ``timeout``
        (stuck in a request): the spans it had yet to take are then counted as
        dropped, and it takes no more. Either way, spans that were neither delivered
        nor reported to the collector are logged, once, with their number.
        """
        if self.pipeline.on_wake == self._on_wake:
            self.pipeline.on_wake = None
        thread = self._thread
        self._deadline = time.monotonic() + timeout
        with self._take_lock:
            self._stop_after = self._taken + (len(self._queue) if drain else 0)
        pending = self._queue or self.pipeline.dropped or self._events_due()
        if drain and thread is None and pending:
            self._start()
            thread = self._thread
        self._stop.set()
        self._wake.set()
        ok = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ok = not thread.is_alive()
        _live.discard(self)
        in_flight = 0
        if ok:
            self.transport.close()
        else:
            # Stuck in a request past the deadline. What it had yet to take is lost:
            # taken off here (it takes nothing more) and counted, so that neither the
            # exit nor rastir.shutdown() throws it away unseen.
            with self._take_lock:
                left = max(0, min(len(self._queue), self._stop_after - self._taken))
                for _ in range(left):
                    self._queue.popleft()
                self._stop_after = self._taken
                in_flight = self._in_flight
            self._left += left
            self.stats.spans_dropped += left
            self.pipeline.add_dropped(left)
        if not self._retired:
            self._report_loss(in_flight)
        elif self._unlogged_batches:
            self._log_loss()  # the new exporter reports the spans; the log is this one's
        return ok

    def _report_loss(self, in_flight: int) -> None:
        """One warning at stop: what was neither delivered nor reported, and why."""
        unreported = self.pipeline.dropped
        if self._unlogged_batches:
            self._log_loss()
        self._log_drops()
        if not self._otlp and self.pipeline.has_events():
            # Still in rastir.middleware.stats / rastir.mcp_bridge.stats; a later
            # exporter (configure() again) reports them.
            _log.warning(
                "rastir exporter: SDK events (refused trace context, failed hooks) not "
                "reported to the collector before the exporter stopped"
            )
        if not (unreported or in_flight):
            return
        _log.warning(
            "rastir exporter: stopped with %d spans neither delivered nor reported to the "
            "collector (%d still queued at the deadline, %d in a request that had not "
            "finished, the rest dropped earlier: queue full or batches given up)%s",
            unreported + in_flight,
            self._left,
            in_flight,
            f"; last error: {self.stats.last_error}" if self.stats.last_error else "",
        )

    def _gave_up(self, n: int) -> None:
        """Count ``n`` spans given up and log it, at most once a minute."""
        self.stats.spans_dropped += n
        self._unlogged_spans += n
        self._unlogged_batches += 1
        now = time.monotonic()
        if now >= self._next_loss_log:
            self._next_loss_log = now + _LOSS_LOG_INTERVAL
            self._log_loss()

    def _log_drops(self) -> None:
        n, self._unlogged_drops = self._unlogged_drops, 0
        if n:
            _log.warning("rastir exporter: %d spans dropped before export", n)

    def _log_loss(self) -> None:
        spans, batches = self._unlogged_spans, self._unlogged_batches
        self._unlogged_spans = self._unlogged_batches = 0
        if batches == 1:
            _log.warning("rastir exporter: gave up on %d spans (%s)", spans, self.stats.last_error)
        else:
            _log.warning(
                "rastir exporter: gave up on %d spans in %d batches (last error: %s)",
                spans,
                batches,
                self.stats.last_error,
            )

    def _reset_after_fork(self) -> None:
        # The pipeline itself (queue, drop count, lock) is reset by its own at-fork
        # hook (rastir.export._pipeline). Locks here may have been held by threads
        # that no longer exist.
        if self._pid == os.getpid():
            return
        if self._queue is not self.pipeline.queue:
            self._queue.clear()  # a retired exporter's spans: the parent's to send
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
            stopped = False
            try:
                stopped = self._drain()
            except Exception:  # pragma: no cover - defensive: the thread must survive
                _log.exception("rastir exporter: unexpected error")
            with self._cond:
                self._flush_done = max(self._flush_done, target)
                self._through = max(self._through, self._taken)
                self._cond.notify_all()
            if stopping or stopped:
                self._left_at_stop()
                # Closed here too: shutdown() closes it only when the join did not
                # time out (a retired exporter stuck in a request finishes later).
                self.transport.close()
                return

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _left_at_stop(self) -> None:
        q = self._queue
        with self._take_lock:
            if q is self.pipeline.queue:
                # Only those it was to send: newer spans are the next exporter's (or
                # no one's, once rastir.shutdown() has turned the queue off).
                left = max(0, min(len(q), self._stop_after - self._taken))
                for _ in range(left):
                    q.popleft()
            else:
                left = len(q)
                q.clear()
            self._stop_after = self._taken
        if not left:
            return
        self.stats.spans_dropped += left
        self.pipeline.add_dropped(left)
        self._left += left
        if self._retired:
            # Retired by configure(): the new exporter reports the loss.
            _log.warning("rastir exporter: %d spans not sent before reconfiguring", left)

    def _drain(self) -> bool:
        """Send batches until the queue is empty; True when it stopped for shutdown."""
        size = self.settings.batch_size
        pipeline = self.pipeline
        take_lock = self._take_lock
        _clock.resync()
        reported = False
        while True:
            # Checked before every batch, not once per round: under steady load a
            # round never ends, and shutdown (or retirement) must still end it.
            n = size
            stopping = self._stop.is_set()
            if stopping:
                if self._past_deadline():
                    return True
                n = min(size, self._stop_after - self._taken)
            batch: list[Span] = []
            with take_lock:
                q = self._queue  # re-read: retire() may have swapped it
                try:
                    for _ in range(n):
                        batch.append(q.popleft())
                except IndexError:
                    pass
                start = self._taken
                self._taken = end = start + len(batch)
            if not batch:
                # Drops and events are reported even with no span to carry them, but
                # only once per round, so a collector refusing every batch cannot spin
                # this loop.
                if reported or not (pipeline.dropped or self._events_due()):
                    return stopping
                reported = True
            self._in_flight = len(batch)
            try:
                lost = self._deliver(batch)
            finally:
                self._in_flight = 0
            # A batch given up is done once the next request, which carries its loss
            # in ``dropped``, has gone out: until then a flush waiting on it waits.
            done = start if lost else end
            with self._cond:
                if done > self._through:
                    self._through = done
                    self._cond.notify_all()

    def _deliver(self, batch: list[Span]) -> bool:
        """Send one batch; True when spans were given up (counted as dropped)."""
        dropped = self.pipeline.take_dropped()
        # Not in OTLP mode (no field for them), nor once retired (the next exporter's).
        events = _NO_EVENTS if self._otlp or self._retired else self.pipeline.take_events()
        if self._otlp:
            # OTLP has no field for spans lost before sending: they are counted here
            # (ExporterStats.spans_dropped) and logged instead.
            if dropped:
                self.stats.spans_dropped += dropped  # lost to a full queue
                self._unlogged_drops += dropped
                now = time.monotonic()
                if now >= self._next_drop_log:  # at most one line a minute
                    self._next_drop_log = now + _LOSS_LOG_INTERVAL
                    self._log_drops()
                dropped = 0
            if not batch:
                return False
        try:
            body = self._encode(batch, self._resource, dropped)
            if events:
                body = _with_events(body, events)
        except Exception as e:  # a span that cannot be encoded must not stall the rest
            self.stats.last_error = f"could not encode a batch: {e}"
            self.stats.batches_failed += 1
            self._lost(dropped, len(batch), events)
            return True
        result = self._send_with_retries(body)
        if result.ok:
            rejected = 0
            if self._otlp and result.body:
                rejected, message = _partial_success(result.body, len(batch))
                if rejected:
                    # OTLP/HTTP "Partial Success": final, the sender must not retry.
                    self.stats.spans_dropped += rejected
                    _log.warning(
                        "rastir exporter: the OTLP target rejected %d of %d spans: %s",
                        rejected,
                        len(batch),
                        message,
                    )
            self.stats.batches_sent += 1
            self.stats.spans_sent += len(batch) - rejected
            return False
        if result.status == 413 and len(batch) > 1:
            self.pipeline.add_dropped(dropped)
            self.pipeline.add_events(events)
            half = len(batch) // 2
            first_lost = self._deliver(batch[:half])
            second_lost = self._deliver(batch[half:])
            return first_lost or second_lost
        self.stats.batches_failed += 1
        self.stats.last_error = f"{result.status} {result.error}".strip()
        self._lost(dropped, len(batch), events)
        return True

    def _lost(self, reported: int, n: int, events: dict[str, int]) -> None:
        """A batch of ``n`` spans given up, carrying a report of ``reported`` drops and
        of ``events``."""
        if self._otlp:
            # No field to report losses in: counted and logged here, once.
            self._gave_up(n)
            return
        # Both go back to pipeline.dropped, for the next batch to report, and the
        # events back to the pipeline's pending counts.
        self.pipeline.add_dropped(reported + n)
        self.pipeline.add_events(events)
        if n:
            self._gave_up(n)
        # else: only the report of earlier drops failed; the stop warning includes it.

    def _retryable(self, result: PushResult) -> bool:
        if self._otlp:
            return result.status == 0 or result.status in _OTLP_RETRYABLE
        return result.retryable  # D9: connection errors, 408, 429, 5xx

    def _send_with_retries(self, body: bytes) -> PushResult:
        give_up_at = time.monotonic() + self.settings.retry_budget
        attempt = 0
        while True:
            result = self.transport.send(body)
            if result.ok or not self._retryable(result):
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


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]  # IndexError when truncated
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _message_fields(buf: bytes) -> dict[int, int | bytes]:
    """The last value of each field of one protobuf message (unknown fields skipped)."""
    out: dict[int, int | bytes] = {}
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        wire_type = key & 7
        value: int | bytes
        if wire_type == 0:
            value, i = _varint(buf, i)
        elif wire_type == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire_type == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire_type == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if i > end:
            raise ValueError("truncated message")
        out[key >> 3] = value
    return out


def _partial_success(body: bytes, n: int) -> tuple[int, str]:
    """``(rejected_spans, error_message)`` of an OTLP ``ExportTraceServiceResponse``.

    opentelemetry-proto, collector/trace/v1/trace_service.proto:
    ``ExportTraceServiceResponse.partial_success = 1`` and
    ``ExportTracePartialSuccess.rejected_spans = 1`` (int64), ``error_message = 2``.
    Read by hand, like the request is written (decision OTLP-1): the core does not
    depend on protobuf. A body that is not such a message reports nothing.
    """
    try:
        partial = _message_fields(body).get(1)
        if not isinstance(partial, bytes):
            return 0, ""
        fields = _message_fields(partial)
        rejected = fields.get(1, 0)
        message = fields.get(2, b"")
        if not isinstance(rejected, int) or not isinstance(message, bytes):
            return 0, ""
        if rejected >= 1 << 63:
            rejected -= 1 << 64  # int64, two's complement
        return max(0, min(n, rejected)), message[:200].decode("utf-8", "replace")
    except (IndexError, ValueError):
        return 0, ""
