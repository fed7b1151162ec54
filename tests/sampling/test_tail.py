"""Tail sampling in the collector: the rules, the completion window and the bounds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rastir._wire import WireSpan
from rastir.collector import CollectorSettings
from rastir.collector.metrics import Metrics
from rastir.collector.sampling import TailSampler, store_and_sink
from rastir.collector.state import CollectorState
from rastir.collector.store.sqlite import SQLiteStore
from rastir.sampling import trace_id_sampled
from tests.collector.spans import T0, span, span_id, trace_id
from tests.sampling.collector import running_collector, stored_trace_ids, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Delivered:
    """The sampler's ``deliver``: what it hands on, per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Mapping[str, Any], list[WireSpan]]] = []

    def __call__(self, service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        self.calls.append((service, resource, spans))

    @property
    def trace_ids(self) -> set[str]:
        return {s.trace_id for _, _, spans in self.calls for s in spans}

    @property
    def span_count(self) -> int:
        return sum(len(spans) for _, _, spans in self.calls)


def wire(*dicts: dict[str, Any]) -> list[WireSpan]:
    return msgspec.convert(list(dicts), list[WireSpan])


def trace(
    *, error: bool = False, duration_ms: float = 100.0, children: int = 2
) -> tuple[str, list[WireSpan]]:
    """A root and its children, the root ending last."""
    tid = trace_id()
    root = span_id()
    kids = [
        span(
            trace=tid,
            parent=root,
            kind="tool",
            duration_ms=duration_ms / 2,
            status="error" if error and i == 0 else "ok",
            error_type="tool_error" if error and i == 0 else None,
        )
        for i in range(children)
    ]
    return tid, wire(*kids, span(trace=tid, sid=root, kind="agent", duration_ms=duration_ms))


def sampler(**settings: Any) -> tuple[TailSampler, Delivered, Clock, Metrics]:
    options: dict[str, Any] = {
        "tail_sampling": True,
        "tail_decision_wait": 10.0,
        "tail_root_grace": 2.0,
        "tail_slow_threshold": 5.0,
        "tail_ratio": 0.0,
    }
    options.update(settings)
    out, clock, metrics = Delivered(), Clock(), Metrics()
    return TailSampler(CollectorSettings(**options), metrics, out, clock=clock), out, clock, metrics


RESOURCE = {"service.name": "app"}


def test_every_error_trace_and_every_slow_trace_is_kept_and_the_rest_by_ratio() -> None:
    s, out, clock, metrics = sampler(tail_ratio=0.3)
    errors = [trace(error=True) for _ in range(50)]
    slow = [trace(duration_ms=6000) for _ in range(50)]
    rest = [trace() for _ in range(300)]
    for _, spans in errors + slow + rest:
        s("app", RESOURCE, spans)
    clock.now += 2.5
    assert s.tick() == 400
    expected_rest = {tid for tid, _ in rest if trace_id_sampled(tid, 0.3)}
    assert 0 < len(expected_rest) < 300
    assert out.trace_ids == {tid for tid, _ in errors} | {tid for tid, _ in slow} | expected_rest
    # Kept traces are handed on whole; dropped ones counted span by span.
    assert out.span_count == 3 * (100 + len(expected_rest))
    assert metrics.sampled_out.child(("tail",)).value == 3 * (300 - len(expected_rest))
    assert s.decisions == {
        ("kept", "error"): 50,
        ("kept", "slow"): 50,
        ("kept", "ratio"): len(expected_rest),
        ("dropped", "ratio"): 300 - len(expected_rest),
    }
    assert s.traces == 0
    assert s.spans == 0


def test_an_error_arriving_in_a_later_batch_still_keeps_the_trace() -> None:
    s, out, clock, _ = sampler()
    tid, spans = trace(error=True)
    s("a", RESOURCE, [spans[0]])  # the failed child, in an early batch of its service
    clock.now += 1
    s("b", RESOURCE, spans[1:])
    clock.now += 3
    s.tick()
    assert out.trace_ids == {tid}
    assert out.span_count == 3


def test_with_a_threshold_of_none_slow_traces_are_not_kept_for_their_duration() -> None:
    s, out, clock, _ = sampler(tail_slow_threshold=None)
    _, spans = trace(duration_ms=600_000)
    s("app", RESOURCE, spans)
    clock.now += 3
    s.tick()
    assert out.calls == []


def test_a_trace_waits_for_its_root_plus_grace_or_for_the_decision_wait() -> None:
    s, out, clock, _ = sampler(tail_ratio=1.0)
    tid_rooted, rooted = trace()
    tid_open, opened = trace()
    s("app", RESOURCE, rooted)
    s("app", RESOURCE, opened[:-1])  # its root never comes
    clock.now += 1.9
    assert s.tick() == 0
    clock.now += 0.2  # 2.1 s: past the root grace
    assert s.tick() == 1
    assert out.trace_ids == {tid_rooted}
    clock.now += 5.0
    assert s.tick() == 0  # 7.1 s since its last span: still inside the 10 s wait
    s("app", RESOURCE, wire(span(trace=tid_open, parent=span_id(), kind="tool")))
    clock.now += 9.9
    assert s.tick() == 0  # a new span restarted its window
    clock.now += 0.2
    assert s.tick() == 1
    assert out.trace_ids == {tid_rooted, tid_open}
    assert out.span_count == 3 + 2 + 1


def test_spans_after_the_decision_follow_it() -> None:
    s, out, clock, metrics = sampler()
    kept_id, kept = trace(error=True)
    dropped_id, dropped = trace()
    s("app", RESOURCE, kept + dropped)
    clock.now += 3
    s.tick()
    assert out.trace_ids == {kept_id}
    before = metrics.sampled_out.child(("tail",)).value
    late = wire(
        span(trace=kept_id, parent=span_id(), kind="tool"),
        span(trace=dropped_id, parent=span_id(), kind="tool"),
    )
    s("late", RESOURCE, late)
    # The kept trace's late span goes on at once; the dropped one's is counted.
    assert out.calls[-1][0] == "late"
    assert [x.trace_id for x in out.calls[-1][2]] == [kept_id]
    assert metrics.sampled_out.child(("tail",)).value == before + 1
    assert s.late == {"kept": 1, "dropped": 1}
    assert s.traces == 0


@pytest.mark.parametrize(("max_traces", "max_spans"), [(10, 10_000), (1000, 31)])
def test_a_full_buffer_decides_the_longest_idle_traces_early(
    max_traces: int, max_spans: int
) -> None:
    s, out, clock, metrics = sampler(tail_max_traces=max_traces, tail_max_spans=max_spans)
    ids = []
    for i in range(100):
        tid, spans = trace(error=i % 2 == 0)
        ids.append(tid)
        clock.now += 0.01
        s("app", RESOURCE, spans)
        assert s.traces <= max_traces
        assert s.spans <= max_spans
    early = s.early["buffer_full"]
    assert early == 100 - s.traces
    assert early >= 100 - 10
    # The oldest went first, and the rules still applied to them: errors kept.
    decided = ids[:early]
    assert out.trace_ids == {tid for i, tid in enumerate(ids[:early]) if i % 2 == 0}
    assert metrics.sampled_out.child(("tail",)).value == 3 * len(decided) // 2
    assert s.flush() == 100 - early
    assert s.early["shutdown"] == 100 - early
    assert s.traces == 0
    assert len(out.trace_ids) == 50


def test_kept_spans_are_handed_on_per_sender_batch_with_its_resource() -> None:
    s, out, clock, _ = sampler(tail_ratio=1.0)
    res_a = {"service.name": "a", "service.version": "1"}
    res_b = {"service.name": "b"}
    _, spans1 = trace()
    _, spans2 = trace()
    s("a", res_a, spans1[:2] + spans2[:2])
    s("b", res_b, [spans1[2], spans2[2]])
    clock.now += 3
    s.tick()
    by_service = {service: (resource, len(spans)) for service, resource, spans in out.calls}
    assert by_service == {"a": (res_a, 4), "b": (res_b, 2)}


def test_committed_acks_cannot_be_combined_with_tail_sampling() -> None:
    with pytest.raises(ValueError, match="tail_sampling cannot be combined with ack=committed"):
        CollectorSettings(tail_sampling=True, ack="committed")


@pytest.mark.anyio
async def test_a_kept_trace_the_store_has_no_room_for_is_counted_as_lost(tmp_path: Path) -> None:
    """Its spans were answered 202 when they arrived: a full store queue at the decision
    loses them, which the store-failure metric (and so the losing-spans alert) shows."""
    store = SQLiteStore(tmp_path / "t.db", queue_max_spans=4)
    await store.start()
    try:
        state = CollectorState(CollectorSettings(store="memory"), store)
        deliver = store_and_sink(state)
        tid = trace_id()
        deliver("svc", {}, wire(*(span(trace=tid, sid=span_id()) for _ in range(3))))
        assert state.tail_store_lost == 0  # room for three
        deliver("svc", {}, wire(*(span(trace=tid, sid=span_id()) for _ in range(5))))
        assert state.tail_store_lost == 5  # more than the whole queue: refused, counted
        await store.flush()
        detail = await store.get_trace(tid)
        assert detail is not None
        assert len(detail.spans) == 3
    finally:
        await store.close()


@pytest.mark.anyio
async def test_the_collector_stores_only_error_slow_and_ratio_traces(tmp_path: Path) -> None:
    async with running_collector(
        tmp_path,
        tail_sampling=True,
        tail_decision_wait=0.3,
        tail_root_grace=0.05,
        tail_slow_threshold=5.0,
        tail_ratio=0.25,
    ) as c:
        traces: dict[str, str] = {}
        body: list[dict[str, Any]] = []
        for i in range(90):
            tid = trace_id()
            root = span_id()
            kind = ("error", "slow", "fast")[i % 3]
            traces[tid] = kind
            body.append(
                span(
                    trace=tid,
                    parent=root,
                    kind="tool",
                    status="error" if kind == "error" else "ok",
                    error_type="timeout" if kind == "error" else None,
                )
            )
            body.append(
                span(
                    trace=tid,
                    sid=root,
                    kind="agent",
                    start=T0,
                    duration_ms=9000 if kind == "slow" else 200,
                )
            )
        payload = msgspec.json.encode({"resource": RESOURCE, "spans": body})
        r = await c.post(payload)
        assert r.status_code == 202
        assert r.json() == {"accepted": 180}
        sampler_ = c.app.state.tail_sampler
        await wait_for(lambda: sampler_.traces == 0)
        stored = await stored_trace_ids(c)
        expected = {
            tid for tid, kind in traces.items() if kind != "fast" or trace_id_sampled(tid, 0.25)
        }
        assert stored == expected
        m = await c.scrape()
        kept_fast = len(expected) - 60
        assert (
            m.value("rastir_collector_tail_sampling_traces_total", decision="kept", reason="error")
            == 30
        )
        assert (
            m.value("rastir_collector_tail_sampling_traces_total", decision="kept", reason="slow")
            == 30
        )
        assert (
            m.value(
                "rastir_collector_tail_sampling_traces_total", decision="dropped", reason="ratio"
            )
            == 30 - kept_fast
        )
        assert m.value("rastir_collector_sampled_out_spans_total", stage="tail") == 2 * (
            30 - kept_fast
        )
        assert m.value("rastir_collector_store_spans") == 2 * len(expected)
        # The metrics counted every span, dropped traces included.
        assert (
            m.value("rastir_tool_calls_total", service="app", tool="tool", agent="", status="ok")
            == 60
        )
        assert m.total("rastir_spans_total") == 180


def test_with_default_windows_a_span_flushed_5s_after_the_root_finds_its_trace_open() -> None:
    # The OpenTelemetry SDKs' BatchSpanProcessor sends every 5 s by default: a failed
    # span of an OTel service may arrive that long after the root of its trace.
    out, clock, metrics = Delivered(), Clock(), Metrics()
    settings = CollectorSettings(tail_sampling=True, tail_ratio=0.0)
    s = TailSampler(settings, metrics, out, clock=clock)
    tid, spans = trace(error=True)
    failed, rest = spans[:1], spans[1:]
    s("agent", RESOURCE, rest)  # the root and its other child: no error
    clock.now += 5.5
    assert s.tick() == 0
    s("otel-tools", RESOURCE, failed)
    clock.now += settings.tail_root_grace + 0.1
    assert s.tick() == 1
    assert out.trace_ids == {tid}
    assert out.span_count == 3
    assert s.decisions["kept", "error"] == 1


def test_an_error_arriving_after_its_trace_was_dropped_keeps_it_from_then_on() -> None:
    s, out, clock, metrics = sampler()
    tid, spans = trace(error=True)
    failed, rest = spans[:1], spans[1:]
    s("agent", RESOURCE, rest)
    clock.now += 3
    assert s.tick() == 1
    assert out.calls == []
    assert s.decisions["dropped", "ratio"] == 1
    dropped_before = metrics.sampled_out.child(("tail",)).value
    assert dropped_before == 2
    # The failed span arrives late, with an ordinary one of the same batch...
    sibling = wire(span(trace=tid, parent=spans[-1].span_id, kind="tool"))
    s("otel-tools", RESOURCE, failed + sibling)
    assert [x.span_id for x in out.calls[-1][2]] == [failed[0].span_id, sibling[0].span_id]
    # ...and what comes after it is kept too; what was dropped before stays counted.
    after = wire(span(trace=tid, parent=spans[-1].span_id, kind="tool"))
    s("agent", RESOURCE, after)
    assert out.span_count == 3
    assert s.late_errors == 1
    assert s.late == {"kept": 3, "dropped": 0}
    assert metrics.sampled_out.child(("tail",)).value == dropped_before
    # An ordinary late span of another dropped trace is still dropped.
    other, other_spans = trace()
    s("agent", RESOURCE, other_spans)
    clock.now += 3
    s.tick()
    s("agent", RESOURCE, wire(span(trace=other, parent=other_spans[-1].span_id, kind="tool")))
    assert s.late == {"kept": 3, "dropped": 1}
    assert s.late_errors == 1


@pytest.mark.anyio
async def test_an_otel_sdk_error_span_after_the_decision_is_stored_and_counted(
    tmp_path: Path,
) -> None:
    async with running_collector(
        tmp_path, tail_sampling=True, tail_root_grace=0.05, tail_ratio=0.0
    ) as c:
        tid = trace_id()
        root = span(trace=tid, kind="agent", name="agent")
        r = await c.post(
            msgspec.json.encode({"resource": {"service.name": "agent"}, "spans": [root]})
        )
        assert r.status_code == 202
        sampler_ = c.app.state.tail_sampler
        await wait_for(lambda: sampler_.decisions["dropped", "ratio"] == 1)

        def otel_service() -> SpanExportResult:
            # A downstream OTel service that failed, its span sent after the decision.
            exporter = OTLPSpanExporter(endpoint=f"{c.url}/v1/traces", timeout=10)
            provider = TracerProvider(resource=Resource.create({"service.name": "otel-tools"}))
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            parent = TraceContextTextMapPropagator().extract(
                {"traceparent": f"00-{tid}-{root['span_id']}-01"}
            )
            tracer = provider.get_tracer("tools")
            with tracer.start_as_current_span(
                "POST /tool",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.response.status_code": 500},
            ) as s:
                s.set_status(Status(StatusCode.ERROR, "tool crashed"))
            provider.shutdown()
            try:
                return exporter.export(memory.get_finished_spans())
            finally:
                exporter.shutdown()  # type: ignore[no-untyped-call]

        assert await anyio.to_thread.run_sync(otel_service) is SpanExportResult.SUCCESS
        detail = await c.client.get(f"/v1/traces/{tid}")
        assert detail.status_code == 200
        spans = detail.json()["spans"]
        assert [(n["name"], n["status"], n.get("orphan")) for n in spans] == [
            ("POST /tool", "error", True)  # its root was dropped before the error came
        ]
        m = await c.scrape()
    assert m.value("rastir_collector_tail_sampling_late_error_traces_total") == 1
    assert m.value("rastir_collector_tail_sampling_late_spans_total", decision="kept") == 1
    assert m.value("rastir_collector_sampled_out_spans_total", stage="tail") == 1
