"""Properties of the tail sampler under arbitrary arrival orders, clocks and bounds."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rastir.collector import CollectorSettings
from rastir.collector.metrics import Metrics
from rastir.collector.sampling import TailSampler
from tests.collector.spans import span, span_id, trace_id
from tests.sampling.test_tail import Clock, Delivered, wire

# One step: offer spans of some traces (by index), or let time pass and tick.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("offer"),
            st.lists(st.tuples(st.integers(0, 11), st.booleans(), st.booleans()), max_size=6),
        ),
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 6), st.integers(1, 12), st.floats(0.0, 1.0))
def test_every_span_is_delivered_dropped_or_buffered_and_the_bounds_hold(
    plan: list[Any], max_traces: int, max_spans: int, ratio: float
) -> None:
    clock, out, metrics = Clock(), Delivered(), Metrics()
    sampler = TailSampler(
        CollectorSettings(
            tail_sampling=True,
            tail_decision_wait=3.0,
            tail_root_grace=1.0,
            tail_ratio=ratio,
            tail_max_traces=max_traces,
            tail_max_spans=max_spans,
        ),
        metrics,
        out,
        clock=clock,
    )
    ids = [trace_id() for _ in range(12)]
    must_keep: set[str] = set()  # traces that got an error span before their decision
    offered = 0
    for step in plan:
        if step[0] == "tick":
            clock.now += step[1]
            sampler.tick()
        else:
            spans = []
            for index, is_root, failed in step[1]:
                tid = ids[index]
                if failed and tid not in sampler._decided:
                    must_keep.add(tid)
                spans.append(
                    span(
                        trace=tid,
                        parent=None if is_root else span_id(),
                        kind="tool",
                        status="error" if failed else "ok",
                        error_type="timeout" if failed else None,
                    )
                )
            offered += len(spans)
            sampler("svc", {"service.name": "svc"}, wire(*spans))
        assert sampler.traces <= max_traces
        assert sampler.spans <= max_spans
        dropped = metrics.sampled_out.child(("tail",)).value
        assert out.span_count + dropped + sampler.spans == offered
    sampler.flush()
    assert sampler.traces == sampler.spans == 0
    assert out.span_count + metrics.sampled_out.child(("tail",)).value == offered
    # Early or not, a trace whose error arrived before its decision is kept.
    for tid in must_keep:
        assert sampler._decided[tid] is True
        assert tid in out.trace_ids
