"""Where finished spans go: the bounded hand-off between the application and the exporter.

The application's threads only ever append to a deque and, once per batch, set an
event. Everything else (encoding, HTTP, retries) happens on the exporter's thread.

Before ``configure()`` the queue is live but nothing drains it, so spans from calls
made during start-up wait (bounded, drops counted) for the exporter that
``configure()`` starts. ``configure(push_url=None)`` turns the queue off: spans then
reach only the test captures.

After ``fork()`` the child's copy of the queue is emptied (decision D10: those spans
are the parent's to send), whether or not an exporter exists yet, so spans queued
before ``configure()`` are not exported again by every child that configures.

A process that records spans and never calls ``configure()`` (typically a
``multiprocessing`` child started with ``spawn`` or ``forkserver``: a new interpreter,
which inherits nothing of its parent's configuration) would lose them at exit without
a word. The first span queued before ``configure()`` arms an exit check, through the
wake-up the exporter uses (``on_wake``, once): at exit (``atexit``, and the
``multiprocessing`` finalizers a child runs before its ``os._exit()``), the spans
still waiting, plus those a full queue dropped, are counted in
``Pipeline.unexported`` and one WARNING on the ``rastir`` logger says how many and
how to fix it. Nothing is added per span: the check runs once, at exit.

SDK health events (``WireBatch.sdk_events``): counters kept elsewhere (the
middleware's and the MCP bridge's refusal counts) register here as event sources.
The exporter takes the increase since the last take once per batch, on its own
thread; the application's threads never touch this part. A batch given up puts its
events back, as it does its drop count, and a forked child starts from the parent's
counts without reporting them (they are the parent's to report).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rastir._otel import OTelBridge
    from rastir.spans import Span

__all__ = ["PIPELINE", "EventSource", "Pipeline", "SpanSink"]


class SpanSink(Protocol):
    """Anything that receives each finished span synchronously (test captures)."""

    def __call__(self, span: Span) -> None: ...


class EventSource(Protocol):
    """Process-wide counters of SDK health events, read by the exporter once per batch."""

    def event_counts(self) -> dict[str, int]:
        """Cumulative counts by wire name (``rastir._wire.SDK_EVENTS``); never decrease
        except when a user resets them."""
        ...

    def _reset_after_fork(self) -> None:
        """Make the source usable in a forked child (its lock may be held there)."""
        ...


class Pipeline:
    """The process-wide span hand-off. There is exactly one, ``PIPELINE``."""

    __slots__ = (
        "_drop_lock",
        "_event_sources",
        "_events_pending",
        "_events_taken",
        "_wake_pending",
        "bridge",
        "captured",
        "configured",
        "dropped",
        "enabled",
        "max_queue",
        "on_wake",
        "overflowed",
        "queue",
        "queueing",
        "sinks",
        "unexported",
        "wake_at",
    )

    def __init__(self, max_queue: int = 8192) -> None:
        self.enabled = True
        # The OpenTelemetry bridge (rastir._otel.OTelBridge) when it is on.
        self.bridge: OTelBridge | None = None
        self.queueing = True
        self.queue: deque[Span] = deque()
        self.max_queue = max_queue
        # Queue length at which ``on_wake`` is called: 1 until the exporter's thread is
        # running (the first span starts it), then the batch size.
        self.wake_at = 1 << 62
        # Spans lost (a full queue, a batch given up) since the exporter last took the
        # count to report it.
        self.dropped = 0
        # Spans lost to a full queue, ever (never reset, except in a forked child).
        self.overflowed = 0
        # Whether configure() has run in this process (or in the process it was forked
        # from): until then the spans that wait in the queue have no one to send them.
        self.configured = False
        # Whether capture_spans() ever ran here: a test process, whose spans were
        # read by the test, so the exit check has nothing to warn about.
        self.captured = False
        # Spans recorded in this process and never exported because configure() was
        # never called: counted at exit (report_unconfigured), never reset.
        self.unexported = 0
        # Re-entrant: a span can end inside a garbage collection (an abandoned
        # stream finishing in __del__) that started while this thread held the lock.
        self._drop_lock = threading.RLock()
        self.sinks: tuple[SpanSink, ...] = ()
        # Called (from the application's thread) when a full batch is waiting.
        self.on_wake: Callable[[], None] | None = None
        self._wake_pending = False
        # SDK health events: the registered sources, each source's cumulative counts
        # as last taken, and counts taken but not delivered (a batch given up).
        # Guarded by _drop_lock; bounded by the sources' closed sets of names.
        self._event_sources: tuple[EventSource, ...] = ()
        self._events_taken: dict[int, dict[str, int]] = {}
        self._events_pending: dict[str, int] = {}

    def on_end(self, span: Span) -> None:
        """Hand over one finished span. Never blocks, never raises."""
        sinks = self.sinks
        if sinks:
            for sink in sinks:
                try:
                    sink(span)
                except Exception:
                    pass  # a broken sink must not break the application
        if not self.queueing:
            return
        q = self.queue
        if len(q) < self.max_queue:
            q.append(span)
            if len(q) >= self.wake_at and not self._wake_pending:
                wake = self.on_wake
                if wake is not None:
                    self._wake_pending = True
                    wake()
        else:
            # Only the overload path takes a lock, so every drop is counted exactly
            # even when several threads drop at once.
            with self._drop_lock:
                self.dropped += 1
                self.overflowed += 1

    def take_dropped(self) -> int:
        """Read and reset the drop count (the exporter sends it in the next batch)."""
        with self._drop_lock:
            n, self.dropped = self.dropped, 0
        return n

    def add_dropped(self, n: int) -> None:
        """Count spans lost elsewhere (a batch the exporter had to give up)."""
        if n:
            with self._drop_lock:
                self.dropped += n

    def add_event_source(self, source: EventSource) -> None:
        """Report ``source``'s counters in the batches from now on (each increase once).

        What it counted before this call is reported too: the counts start at zero.
        """
        with self._drop_lock:
            if any(s is source for s in self._event_sources):
                return
            self._event_sources = (*self._event_sources, source)

    def _read_events(self) -> tuple[dict[str, int], list[dict[str, int]]]:
        """Pending events plus every source's increase since the last take, and the
        counts read (lock held). Each source is read once, so an increase counted
        while this runs is either in the result or left for the next take.

        A count found lower than at the last take was reset (by a user): all of its new
        value is new, as a Prometheus counter reset reads. Nothing negative is reported.
        """
        out = dict(self._events_pending)
        counts = []
        for source in self._event_sources:
            now = source.event_counts()
            counts.append(now)
            taken = self._events_taken.get(id(source), {})
            for name, value in now.items():
                before = taken.get(name, 0)
                delta = value - before if value >= before else value
                if delta > 0:
                    out[name] = out.get(name, 0) + delta
        return out, counts

    def has_events(self) -> bool:
        """Whether some event has not been taken yet, or was put back (cheap reads)."""
        with self._drop_lock:
            return bool(self._read_events()[0])

    def take_events(self) -> dict[str, int]:
        """Read and reset the event counts (the exporter sends them in the next batch)."""
        with self._drop_lock:
            out, counts = self._read_events()
            for source, now in zip(self._event_sources, counts, strict=True):
                self._events_taken[id(source)] = now
            self._events_pending = {}
        return out

    def add_events(self, events: dict[str, int]) -> None:
        """Put back events taken for a batch that was given up: the next one carries them."""
        if events:
            with self._drop_lock:
                pending = self._events_pending
                for name, n in events.items():
                    pending[name] = pending.get(name, 0) + n

    def discard_queued(self, why: str) -> int:
        """Empty the queue, counting its spans as dropped and logging their number once.

        For ``configure()`` turning export off and ``shutdown()``: spans still queued
        then have no exporter to send them. The count stays in ``dropped``, so an
        exporter configured later reports it.
        """
        n = self._empty_queue()
        if n:
            self.add_dropped(n)
            import logging

            logging.getLogger("rastir.export").warning(
                "rastir exporter: %d queued spans dropped: %s", n, why
            )
        return n

    def _empty_queue(self) -> int:
        """Take every queued span away (other threads may append meanwhile)."""
        n = 0
        q = self.queue
        try:
            for _ in range(len(q)):
                q.popleft()
                n += 1
        except IndexError:
            pass
        return n

    def report_unconfigured(self) -> int:
        """At exit, when ``configure()`` never ran here: count the spans that were never
        exported and say so, once, with the fix. Returns how many (0 when configured).

        The spans still queued and those a full queue dropped go into ``unexported``
        (cumulative) and one WARNING on the ``rastir`` logger. Calling it again reports
        only what was recorded since: nothing, at exit.
        """
        if self.configured or self.captured or not self.queueing or not self.enabled:
            return 0
        n = self._empty_queue()
        with self._drop_lock:
            n += self.dropped
            self.dropped = 0
            self.unexported += n
        if n:
            import logging

            env = [v for v in ("RASTIR_PUSH_URL", "RASTIR_OTLP_ENDPOINT") if os.environ.get(v)]
            hint = f" ({env[0]} is set, but only configure() reads it)" if env else ""
            logging.getLogger("rastir").warning(
                "rastir: %d spans recorded in process %d were never exported: "
                "rastir.configure() was never called here%s. A multiprocessing child "
                "started with spawn or forkserver does not inherit its parent's "
                "configuration: call rastir.configure() in it, e.g. "
                "Pool(initializer=rastir.configure) with RASTIR_PUSH_URL set; or call "
                "configure(push_url=None) to keep spans in-process on purpose",
                n,
                os.getpid(),
                hint,
            )
        return n

    def woken(self) -> None:
        """The exporter took the wake-up; the next full batch may wake it again."""
        self._wake_pending = False

    def _reset_after_fork(self) -> None:
        # Only this thread exists in the child: no lock is needed, and the drop lock
        # may have been held by a parent thread that no longer exists.
        self.queue.clear()
        self.dropped = 0
        self.overflowed = 0
        self._drop_lock = threading.RLock()
        self._wake_pending = False
        if not self.configured:
            # The child's own spans need the exit check of their own (an exporter the
            # parent had is re-armed by its own hook, which runs after this one).
            _arm_exit_check()
        # Events the parent counted are the parent's to report: the child starts from
        # the counts as they were at the fork and reports only its own increases.
        self._events_pending = {}
        for source in self._event_sources:
            try:
                source._reset_after_fork()
                self._events_taken[id(source)] = dict(source.event_counts())
            except Exception:  # pragma: no cover - never break the child over telemetry
                pass

    def add_sink(self, sink: SpanSink) -> None:
        self.sinks = (*self.sinks, sink)

    def remove_sink(self, sink: SpanSink) -> None:
        self.sinks = tuple(s for s in self.sinks if s is not sink)


PIPELINE = Pipeline()


class _ExitToken:
    """A weak-referenceable key for ``multiprocessing.util.Finalize``."""


_EXIT_TOKEN = _ExitToken()
_atexit_registered = False
_finalizer_pid = 0


def _report_at_exit() -> None:
    try:
        PIPELINE.report_unconfigured()
    except Exception:  # pragma: no cover - never break the exit over telemetry
        pass


def _first_span_before_configure() -> None:
    """Called once, by the first span queued before ``configure()``: watch the exit.

    It leaves the pipeline's wake-up marked pending, so no later span calls it again;
    the exporter that ``configure()`` starts clears the mark (``woken()``), and so does
    a fork. It changes neither ``on_wake`` nor ``wake_at``: ``configure()`` may be
    setting them on another thread.
    """
    global _atexit_registered, _finalizer_pid
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_report_at_exit)
    # A multiprocessing child ends with os._exit() when it was forked (by fork or by
    # the forkserver): atexit never runs there, its finalizers do. Registered in the
    # child, after multiprocessing cleared the ones inherited from the parent; the
    # lowest priority, after the application's own finalizers, which may end spans.
    mp = sys.modules.get("multiprocessing")
    util = sys.modules.get("multiprocessing.util")
    if mp is None or util is None or _finalizer_pid == os.getpid():
        return
    try:
        if mp.parent_process() is not None:
            _finalizer_pid = os.getpid()
            util.Finalize(_EXIT_TOKEN, _report_at_exit, exitpriority=-(1 << 30))
    except Exception:  # pragma: no cover - never break the application over telemetry
        pass


def _arm_exit_check() -> None:
    """The next span queued calls :func:`_first_span_before_configure` (no exporter yet)."""
    PIPELINE._wake_pending = False
    PIPELINE.on_wake = _first_span_before_configure
    PIPELINE.wake_at = 1


_arm_exit_check()


def _after_fork_in_child() -> None:
    PIPELINE._reset_after_fork()


# Registered here, not by the exporter: spans wait in this queue before configure()
# (D6) when there is no exporter yet. Costs one cleared deque per fork.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
