"""Tail sampling: decide whole traces once they are complete, then store and export them.

Turned on with ``--tail-sampling``. Ingest still counts every span in the metrics
first (so counts, durations and costs stay true), then hands the spans here instead
of to the store. The sampler buffers each trace until it looks complete:

* ``tail_decision_wait`` seconds after the last span of the trace arrived, or
* ``tail_root_grace`` seconds after the last span once the root (a span without a
  parent) has arrived: the root usually ends last, so what is missing by then is
  only what other services have not flushed yet.

Then one rule decides, in order: a trace with an error span is kept; a trace lasting
``tail_slow_threshold`` seconds or more (first start to last end) is kept; of the
rest, ``tail_ratio`` is kept, decided from the trace id with the same function as
head sampling (:mod:`rastir.sampling`), so the choice is the same in every collector
replica and after a restart. Kept traces go to the store and to the span sinks (the
OTLP exporter); dropped ones are counted in
``rastir_collector_sampled_out_spans_total{stage="tail"}``.

The default root grace (6 s) outlasts the OpenTelemetry SDKs' default batch delay
(``BatchSpanProcessor``, 5 s), so an OTel service's spans usually arrive before the
trace is decided. When one with an error arrives after its trace was dropped all the
same, the decision turns to kept from then on (counted in
``rastir_collector_tail_sampling_late_error_traces_total``): the trace's earlier spans
are gone, but the error and whatever follows it are stored.

Bounds: at most ``tail_max_traces`` traces and ``tail_max_spans`` spans are held.
Beyond either, the traces that have waited longest since their last span are
decided early with what has arrived (counted as early decisions), so memory stays
bounded and an error already seen still keeps its trace. Decisions are remembered
(bounded, oldest forgotten first) so that spans arriving after their trace was
decided follow it: straight to the store when it was kept, counted when it was
dropped (unless one has an error, above).

Everything here runs on the event loop thread: the ingest calls :meth:`offer`
(through ``__call__``), and :meth:`run` ticks the deadlines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from time import monotonic
from typing import Any, Final

import anyio
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from rastir._wire import WireSpan
from rastir.collector.metrics import Metrics
from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState
from rastir.collector.store.base import SpanRow
from rastir.sampling import RANDOM_BITS, rejection_threshold

__all__ = ["TailSampler", "sampling_metrics", "store_and_sink"]

logger = logging.getLogger("rastir.collector")

_MASK: Final = (1 << RANDOM_BITS) - 1
_RULES: Final = (("kept", "error"), ("kept", "slow"), ("kept", "ratio"), ("dropped", "ratio"))

#: Where decided spans go: ``(service, resource, spans)``, on the loop thread.
Deliver = Callable[[str, Mapping[str, Any], list[WireSpan]], None]
Chunk = tuple[str, Mapping[str, Any], list[WireSpan]]


class _Trace:
    """What the sampler knows of one undecided trace."""

    __slots__ = ("chunks", "end", "error", "last", "spans", "start")

    def __init__(self, now: float) -> None:
        self.chunks: list[Chunk] = []
        self.spans = 0
        self.error = False
        self.start = 1 << 63
        self.end = 0
        self.last = now


class TailSampler:
    """The tail sampler of one collector. Call it like a span sink.

    Args:
        settings: ``tail_*`` settings are read.
        metrics: where spans dropped by a decision are counted.
        deliver: receives kept spans (the store, then the sinks).
        clock: monotonic seconds; tests pass their own.
    """

    def __init__(
        self,
        settings: CollectorSettings,
        metrics: Metrics,
        deliver: Deliver,
        *,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.deliver = deliver
        self.clock = clock
        self.wait = settings.tail_decision_wait
        self.grace = settings.tail_root_grace
        slow = settings.tail_slow_threshold
        self.slow_ns = None if slow is None else int(slow * 1e9)
        self.threshold = rejection_threshold(settings.tail_ratio)
        self.max_traces = settings.tail_max_traces
        self.max_spans = settings.tail_max_spans
        # Two queues ordered by last arrival, so each one's first entry is its next
        # deadline: traces still waiting for their root, and traces that have it.
        self._open: dict[str, _Trace] = {}
        self._rooted: dict[str, _Trace] = {}
        self.spans = 0
        # trace id -> kept? for spans that arrive after the decision
        self._decided: dict[str, bool] = {}
        self._max_decided = max(10_000, 4 * self.max_traces)
        self._dropped = metrics.sampled_out.child(("tail",))
        self.decisions: dict[tuple[str, str], int] = dict.fromkeys(_RULES, 0)
        self.early: dict[str, int] = {"buffer_full": 0, "shutdown": 0}
        self.late: dict[str, int] = {"kept": 0, "dropped": 0}
        #: Dropped traces kept after all because a late span had an error.
        self.late_errors = 0

    @property
    def traces(self) -> int:
        """Traces buffered, not yet decided."""
        return len(self._open) + len(self._rooted)

    def find(self, trace_id: str) -> tuple[bool | None, list[SpanRow]]:
        """What the sampler knows of ``trace_id``: ``(decision, buffered spans)``.

        The decision is ``None`` while the trace waits (its spans are returned),
        else whether it was kept (and no spans: they went on, or were dropped). A
        trace it never saw, or whose decision it has forgotten, gives ``(None, [])``.
        For ``POST /v1/scores``, which must tell "not decided yet" from "dropped".
        """
        tr = self._open.get(trace_id) or self._rooted.get(trace_id)
        if tr is not None:
            return None, [SpanRow(svc, s) for svc, _, spans in tr.chunks for s in spans]
        return self._decided.get(trace_id), []

    # -- intake -----------------------------------------------------------------------
    def __call__(self, service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        self.offer(service, resource, spans)

    def offer(self, service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        """Buffer accepted spans by trace. Never blocks, never raises for bad spans."""
        now = self.clock()
        groups: dict[str, list[WireSpan]] = {}
        for s in spans:
            g = groups.get(s.trace_id)
            if g is None:
                groups[s.trace_id] = [s]
            else:
                g.append(s)
        late: list[WireSpan] = []
        opened, rooted, decided = self._open, self._rooted, self._decided
        for tid, group in groups.items():
            kept = decided.get(tid)
            if kept is not None:
                if not kept:
                    for s in group:
                        if s.status == "error" and s.kind != "evaluation":
                            # An error arriving after the trace was dropped (a service
                            # whose SDK flushes later than the grace) still keeps it:
                            # what was dropped is gone, but from here on it is kept.
                            kept = decided[tid] = True
                            self.late_errors += 1
                            break
                if kept:
                    late.extend(group)
                    self.late["kept"] += len(group)
                else:
                    self.late["dropped"] += len(group)
                    self._dropped.inc(len(group))
                continue
            tr = opened.pop(tid, None)
            has_root = tr is None and tid in rooted
            if has_root:
                tr = rooted.pop(tid)
            if tr is None:
                tr = _Trace(now)
            tr.last = now
            tr.chunks.append((service, resource, group))
            tr.spans += len(group)
            self.spans += len(group)
            start, end = tr.start, tr.end
            for s in group:
                if s.kind == "evaluation":
                    # An evaluation judges the trace: its failure (a judge's 500) or
                    # its duration (a slow judge) must not keep the trace as an error
                    # or a slow one, as the store's aggregate leaves them out too.
                    continue
                if s.status == "error":
                    tr.error = True
                if s.parent_span_id is None:
                    has_root = True
                if s.start_time_unix_nano < start:
                    start = s.start_time_unix_nano
                if s.end_time_unix_nano > end:
                    end = s.end_time_unix_nano
            tr.start, tr.end = start, end
            # Re-inserted at the end: each queue stays ordered by last arrival.
            (rooted if has_root else opened)[tid] = tr
        if late:
            self.deliver(service, resource, late)
        if self.spans > self.max_spans or self.traces > self.max_traces:
            self._make_room()

    def _make_room(self) -> None:
        """Decide the traces idle longest until the buffer is within both bounds."""
        out: list[Chunk] = []
        opened, rooted = self._open, self._rooted
        while (self.spans > self.max_spans or self.traces > self.max_traces) and (opened or rooted):
            a = next(iter(opened.items()), None)
            b = next(iter(rooted.items()), None)
            if a is None or (b is not None and b[1].last < a[1].last):
                assert b is not None
                tid, tr = b
                del rooted[tid]
            else:
                tid, tr = a
                del opened[tid]
            self.early["buffer_full"] += 1
            self._decide(tid, tr, out)
        self._deliver_all(out)

    # -- decisions --------------------------------------------------------------------
    def tick(self, now: float | None = None) -> int:
        """Decide every trace whose deadline has passed; returns how many were decided."""
        if now is None:
            now = self.clock()
        out: list[Chunk] = []
        n = 0
        for queue, delay in ((self._open, self.wait), (self._rooted, self.grace)):
            cutoff = now - delay
            while queue:
                tid, tr = next(iter(queue.items()))
                if tr.last > cutoff:
                    break
                del queue[tid]
                self._decide(tid, tr, out)
                n += 1
        self._deliver_all(out)
        return n

    def flush(self) -> int:
        """Decide every buffered trace now (at shutdown); returns how many."""
        out: list[Chunk] = []
        n = 0
        for queue in (self._open, self._rooted):
            while queue:
                tid, tr = next(iter(queue.items()))
                del queue[tid]
                self.early["shutdown"] += 1
                self._decide(tid, tr, out)
                n += 1
        self._deliver_all(out)
        return n

    def keep(self, trace_id: str, error: bool, duration_ns: int) -> tuple[bool, str]:
        """The rule: ``(kept, reason)`` for a trace with these properties."""
        if error:
            return True, "error"
        if self.slow_ns is not None and duration_ns >= self.slow_ns:
            return True, "slow"
        try:
            r = int(trace_id[-14:], 16)  # the low 56 bits, as rastir.sampling reads them
        except ValueError:
            r = 0
        return (r & _MASK) >= self.threshold, "ratio"

    def _decide(self, tid: str, tr: _Trace, out: list[Chunk]) -> None:
        self.spans -= tr.spans
        kept, reason = self.keep(tid, tr.error, tr.end - tr.start if tr.end else 0)
        self.decisions["kept" if kept else "dropped", reason] += 1
        decided = self._decided
        decided[tid] = kept
        if len(decided) > self._max_decided:
            del decided[next(iter(decided))]
        if kept:
            out.extend(tr.chunks)
        else:
            self._dropped.inc(tr.spans)

    def _deliver_all(self, chunks: list[Chunk]) -> None:
        """Hand kept spans on, merged per batch resource (one call per sender batch)."""
        if not chunks:
            return
        merged: dict[int, Chunk] = {}
        for service, resource, spans in chunks:
            key = id(resource)
            m = merged.get(key)
            if m is None:
                merged[key] = (service, resource, list(spans))
            else:
                m[2].extend(spans)
        for service, resource, spans in merged.values():
            try:
                self.deliver(service, resource, spans)
            except Exception:
                logger.exception("delivering sampled spans failed")

    async def run(self) -> None:
        """Tick the deadlines until cancelled (a task of the app's lifespan)."""
        interval = max(0.01, min(0.5, min(self.wait, self.grace) / 4))
        while True:
            await anyio.sleep(interval)
            try:
                self.tick()
            except Exception:  # pragma: no cover - a bug here must not stop the ticks
                logger.exception("tail sampling tick failed")


def store_and_sink(state: CollectorState) -> Deliver:
    """What the sampler does with a kept trace: what ingest does without sampling.

    The store takes the spans without blocking, then every span sink gets them. Their
    sender was answered 202 when they arrived, so spans a full store queue refuses
    now are lost: counted in ``rastir_collector_store_failed_spans_total`` with
    ``reason="tail_queue_full"`` (the store counts them as dropped too).
    """

    def deliver(service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        store = state.store
        if store is not None and not store.submit([SpanRow(service, s) for s in spans]):
            state.tail_store_lost += len(spans)
        for sink in state.sinks:
            try:
                sink(service, resource, spans)
            except Exception:
                logger.exception("span sink %r failed", sink)

    return deliver


def sampling_metrics(sampler: TailSampler | None) -> Iterable[Metric]:
    """The tail sampler's families, at zero while it is off (so they always exist)."""
    decisions = CounterMetricFamily(
        "rastir_collector_tail_sampling_traces",
        "Traces decided by tail sampling; reason is the rule that decided (error, slow, ratio).",
        labels=["decision", "reason"],
    )
    for key in _RULES:
        decisions.add_metric(list(key), 0 if sampler is None else sampler.decisions[key])
    yield decisions
    early = CounterMetricFamily(
        "rastir_collector_tail_sampling_early_decisions",
        "Traces decided before their completion window ended: buffer_full (a tail_max_* "
        "bound was reached) or shutdown.",
        labels=["reason"],
    )
    for reason in ("buffer_full", "shutdown"):
        early.add_metric([reason], 0 if sampler is None else sampler.early[reason])
    yield early
    late = CounterMetricFamily(
        "rastir_collector_tail_sampling_late_spans",
        "Spans that arrived after their trace was decided, by that decision.",
        labels=["decision"],
    )
    for decision in ("kept", "dropped"):
        late.add_metric([decision], 0 if sampler is None else sampler.late[decision])
    yield late
    yield CounterMetricFamily(
        "rastir_collector_tail_sampling_late_error_traces",
        "Traces dropped, then kept after all because a span with an error arrived after "
        "the decision; their spans dropped before it are lost (raise the root grace).",
        value=0 if sampler is None else sampler.late_errors,
    )
    yield GaugeMetricFamily(
        "rastir_collector_tail_sampling_buffered_traces",
        "Traces waiting for a tail-sampling decision.",
        value=0 if sampler is None else sampler.traces,
    )
    yield GaugeMetricFamily(
        "rastir_collector_tail_sampling_buffered_spans",
        "Spans waiting for a tail-sampling decision.",
        value=0 if sampler is None else sampler.spans,
    )
