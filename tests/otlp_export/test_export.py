"""OTLP export from the collector to a real OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from rastir._wire import WireSpan
from rastir.collector import CollectorSettings
from rastir.collector.otlp.export import DROP_REASONS, OtlpExporter
from tests.collector.conftest import Collector
from tests.collector.spans import span, span_id, trace_id
from tests.otlp_export.receiver import Receiver, free_port, receiving
from tests.sampling.collector import running_collector, wait_for

FAST = {"otlp_flush_interval": 0.02, "otlp_batch_size": 64}


def tree(n_traces: int, children: int = 3) -> list[dict[str, Any]]:
    """Traces of a root agent span and LLM children, the children listed first."""
    out: list[dict[str, Any]] = []
    for _ in range(n_traces):
        tid, root = trace_id(), span_id()
        out.extend(span(trace=tid, parent=root, kind="llm") for _ in range(children))
        out.append(span(trace=tid, sid=root, kind="agent", gen_ai__agent__name="planner"))
    return out


def body(spans: list[dict[str, Any]], **resource: Any) -> bytes:
    return msgspec.json.encode({"resource": resource, "spans": spans})


async def accounted(c: Collector, posted: int, queued: bool = False) -> dict[str, float]:
    """The exporter's counters once every posted span is exported or dropped (or, with
    ``queued``, still waiting in the queue: the target is down)."""
    exporter: OtlpExporter = c.app.state.otlp_exporter

    def settled() -> bool:
        waiting = exporter.depth + exporter.inflight
        if waiting and not queued:
            return False
        return exporter.exported + sum(exporter.dropped.values()) + waiting == posted

    await wait_for(settled)
    m = await c.scrape()
    out = {
        r: m.value("rastir_collector_export_dropped_spans_total", exporter="otlp", reason=r)
        for r in DROP_REASONS
    }
    out["exported"] = m.value("rastir_collector_exported_spans_total", exporter="otlp")
    out["failures"] = m.value("rastir_collector_export_failures_total", exporter="otlp")
    out["depth"] = m.value("rastir_collector_export_queue_depth", exporter="otlp")
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_every_span_reaches_the_target_with_its_ids_parents_and_resource(
    tmp_path: Path, compression: str
) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path,
            otlp_endpoint=url,  # no path: /v1/traces is added
            otlp_compression=compression,
            otlp_headers=(("authorization", "Bearer t0ken"), ("x-scope-orgid", "acme")),
            **FAST,
        ) as c:
            sent: list[dict[str, Any]] = []
            for service in ("planner", "search"):
                for _ in range(3):
                    spans = tree(25)
                    sent.extend({**s, "service": service} for s in spans)
                    payload = body(spans, **{"service.name": service, "host.name": "h1"})
                    r = await c.post_as_a_sender(payload)
                    assert r.status_code == 202, r.text
            await wait_for(lambda: receiver.count() >= len(sent))
            counts = await accounted(c, len(sent))
    got = {s.span_id: s for s in receiver.spans}
    assert len(receiver.spans) == len(got) == len(sent)
    for s in sent:
        received = got[s["span_id"]]
        assert received.trace_id == s["trace_id"]
        assert received.parent_span_id == s.get("parent_span_id", "")
        assert received.resource == {"service.name": s["service"], "host.name": "h1"}
    assert counts["exported"] == len(sent)
    assert all(counts[reason] == 0 for reason in DROP_REASONS)
    assert counts["failures"] == 0
    headers = receiver.requests[0]["headers"]
    assert headers["authorization"] == "Bearer t0ken"
    assert headers["x-scope-orgid"] == "acme"
    assert headers.get("content-encoding") == ("gzip" if compression == "gzip" else None)
    # Batches: at most otlp_batch_size spans per request.
    assert len(receiver.requests) >= len(sent) // 64


@pytest.mark.anyio
async def test_with_the_target_down_ingest_is_unaffected_and_drops_are_bounded_and_counted(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with running_collector(
        tmp_path,
        otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces",
        otlp_queue_size=300,
        otlp_retry_budget=0.2,
        # Load shedding off: a loaded machine's loop lag is not what this test is about.
        max_loop_lag=None,
        max_queue_delay=None,
        **FAST,
    ) as c:
        exporter: OtlpExporter = c.app.state.otlp_exporter
        posted = 0
        for _ in range(20):
            spans = tree(25)
            r = await c.post(body(spans, **{"service.name": "app"}))
            assert r.status_code == 202, r.text  # ingest never waits on the target
            assert r.json() == {"accepted": 100}
            posted += 100
            assert exporter.depth <= 300
        down = await accounted(c, posted, queued=True)
        assert down["exported"] == 0
        assert down["failures"] >= 1
        assert down["queue_full"] > 0
        assert down["depth"] <= 300 + 64  # the queue, and the batch being retried
        assert sum(down[r] for r in DROP_REASONS) + down["depth"] == posted
        m = await c.scrape()
        assert m.value("rastir_collector_ingested_spans_total", service="app") == posted
        assert m.value("rastir_collector_store_spans") == posted

        # The target comes back: export resumes by itself.
        receiver = Receiver()
        with receiving(receiver, port):
            # Once the queue has room again (drained to the target, or dropped while
            # it was still down), new spans are exported.
            await wait_for(lambda: exporter.depth <= 200)
            fresh = tree(25)
            r = await c.post(body(fresh, **{"service.name": "app"}))
            assert r.status_code == 202
            posted += 100
            ids = {s["span_id"] for s in fresh}
            await wait_for(lambda: ids <= {s.span_id for s in receiver.spans})
            after = await accounted(c, posted)
            assert after["exported"] == receiver.count() >= 100
            assert sum(after[r] for r in DROP_REASONS) + after["exported"] == posted


@pytest.mark.anyio
async def test_a_slow_but_healthy_target_pushes_back_with_429_and_nothing_is_dropped(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path,
            otlp_endpoint=url,
            otlp_queue_size=200,
            otlp_batch_size=100,
            otlp_flush_interval=0.02,
        ) as c:
            exporter: OtlpExporter = c.app.state.otlp_exporter
            accepted = 0
            assert (await c.post(body(tree(25), **{"service.name": "a"}))).status_code == 202
            accepted += 100
            await wait_for(lambda: exporter.exported == 100 and exporter.healthy)
            receiver.gate.clear()  # the target now holds every request
            statuses = []
            for _ in range(6):
                r = await c.post(body(tree(25), **{"service.name": "a"}))
                statuses.append(r.status_code)
                if r.status_code == 202:
                    accepted += 100
                    # Let the exporter take the batch before the next post.
                    await wait_for(lambda: exporter.depth + exporter.inflight <= 300)
                else:
                    assert r.status_code == 429
                    assert r.json()["error"] == "export_queue_full"
                    assert r.headers["retry-after"] == "1"
            assert 429 in statuses
            receiver.gate.set()
            await wait_for(lambda: exporter.exported == accepted)
            # Drained: intake is open again.
            assert (await c.post(body(tree(25), **{"service.name": "a"}))).status_code == 202
            counts = await accounted(c, accepted + 100)
            m = await c.scrape()
    assert sum(counts[r] for r in DROP_REASONS) == 0
    assert counts["exported"] == accepted + 100
    assert m.value("rastir_collector_rejected_requests_total", reason="export_queue_full") == (
        statuses.count(429)
    )


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_and_the_batch_is_delivered_once(
    tmp_path: Path, status: int
) -> None:
    receiver = Receiver(answers=[(status, {"retry-after": "1"}, b"")])
    with receiving(receiver) as url:
        async with running_collector(tmp_path, otlp_endpoint=url + "/v1/traces", **FAST) as c:
            spans = tree(10)
            assert (await c.post(body(spans, **{"service.name": "app"}))).status_code == 202
            await wait_for(lambda: receiver.count() == 40)
            counts = await accounted(c, 40)
    assert counts["exported"] == 40
    assert counts["failures"] == 1
    assert sum(counts[r] for r in DROP_REASONS) == 0
    first, second = receiver.requests[:2]
    # Retry-After is a lower bound: the retry cannot come sooner.
    assert second["at"] - first["at"] >= 1.0


@pytest.mark.anyio
async def test_a_final_error_answer_drops_the_batch_counted_and_export_goes_on(
    tmp_path: Path,
) -> None:
    receiver = Receiver(answers=[(400, {}, b"bad request")])
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path, otlp_endpoint=url, otlp_flush_interval=0.02, otlp_batch_size=1000
        ) as c:
            assert (await c.post(body(tree(10), **{"service.name": "a"}))).status_code == 202
            await wait_for(lambda: c.app.state.otlp_exporter.dropped["rejected"] == 40)
            assert (await c.post(body(tree(5), **{"service.name": "a"}))).status_code == 202
            await wait_for(lambda: receiver.count() == 20)
            counts = await accounted(c, 60)
    assert counts["rejected"] == 40
    assert counts["exported"] == 20
    assert counts["failures"] == 1
    assert len(receiver.requests) == 2  # a 400 is final: never retried


@pytest.mark.anyio
async def test_a_partial_success_counts_the_rejected_spans(tmp_path: Path) -> None:
    partial = ExportTraceServiceResponse()
    partial.partial_success.rejected_spans = 3
    partial.partial_success.error_message = "3 spans too old"
    receiver = Receiver(answers=[(200, {}, partial.SerializeToString())])
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path, otlp_endpoint=url, otlp_flush_interval=0.02, otlp_batch_size=1000
        ) as c:
            assert (await c.post(body(tree(5), **{"service.name": "a"}))).status_code == 202
            counts = await accounted(c, 20)
    assert counts["rejected"] == 3
    assert counts["exported"] == 17


@pytest.mark.anyio
async def test_only_kept_spans_are_exported_under_head_and_tail_sampling(tmp_path: Path) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path,
            otlp_endpoint=url,
            tail_sampling=True,
            tail_decision_wait=0.2,
            tail_root_grace=0.05,
            tail_ratio=0.0,
            **FAST,
        ) as c:
            error = tree(4)
            for s in error[::4]:
                s.update(status="error", error={"type": "timeout"})
            dropped_by_tail = tree(6)
            dropped_by_head = [{**s, "sampled": False} for s in tree(5)]
            spans = error + dropped_by_tail + dropped_by_head
            r = await c.post(body(spans, **{"service.name": "a"}))
            assert r.json() == {"accepted": 60}
            await wait_for(lambda: c.app.state.tail_sampler.traces == 0)
            await wait_for(lambda: receiver.count() == 16)
            counts = await accounted(c, 16)
            m = await c.scrape()
    assert {s.span_id for s in receiver.spans} == {s["span_id"] for s in error}
    assert counts["exported"] == 16
    assert m.value("rastir_collector_sampled_out_spans_total", stage="head") == 20
    assert m.value("rastir_collector_sampled_out_spans_total", stage="tail") == 24
    assert m.total("rastir_spans_total") == 60


def _wire_spans(n: int) -> list[WireSpan]:
    return msgspec.convert(tree(n // 4), list[WireSpan])


def test_the_queue_is_bounded_in_spans_and_what_does_not_fit_is_counted() -> None:
    exporter = OtlpExporter("http://127.0.0.1:9/", batch_size=10, queue_size=50)
    resource = {"service.name": "a"}
    exporter("a", resource, _wire_spans(40))
    exporter("a", resource, _wire_spans(40))  # 10 fit, 30 do not
    exporter("a", resource, _wire_spans(4))
    assert exporter.depth == 50
    assert exporter.dropped["queue_full"] == 34
    # Never started: shutdown counts what is still queued, and later spans too.
    assert exporter.shutdown(0.1)
    exporter("a", resource, _wire_spans(8))
    assert exporter.dropped["shutdown"] == 58
    assert exporter.depth == 0


def test_a_batch_without_service_name_gets_the_service_ingest_resolved() -> None:
    seen: list[dict[str, Any]] = []

    def encoder(batches: Any) -> bytes:
        seen.extend(dict(resource) for resource, _ in batches)
        return b""

    exporter = OtlpExporter("http://127.0.0.1:9", encoder=encoder, retry_budget=0.01)
    exporter("unknown_service", {"host.name": "h"}, _wire_spans(4))
    exporter.start()
    assert exporter.flush(5)
    exporter.shutdown(1)
    assert seen == [{"host.name": "h", "service.name": "unknown_service"}]
    assert exporter.dropped["retries_exhausted"] == 4  # nothing listens on port 9


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ("OTLP_ENDPOINT", "otlp_endpoint", "http://tempo:4318"),
        ("OTLP_HEADERS", "otlp_headers", (("authorization", "Basic a2V5"), ("x-a", "1=2"))),
        ("OTLP_COMPRESSION", "otlp_compression", "none"),
        ("OTLP_TIMEOUT", "otlp_timeout", 2.5),
        ("OTLP_BATCH_SIZE", "otlp_batch_size", 100),
        ("OTLP_QUEUE_SIZE", "otlp_queue_size", 1000),
        ("TAIL_SAMPLING", "tail_sampling", True),
        ("TAIL_SLOW_THRESHOLD", "tail_slow_threshold", 90.0),
        ("TAIL_RATIO", "tail_ratio", 0.05),
    ],
)
def test_settings_come_from_the_environment(env: str, field: str, value: Any) -> None:
    raw = {
        "OTLP_HEADERS": "authorization=Basic%20a2V5, x-a=1=2",
        "TAIL_SAMPLING": "true",
        "TAIL_SLOW_THRESHOLD": "1.5m",
        "OTLP_COMPRESSION": "NONE",
    }.get(env, str(value))
    settings = CollectorSettings.from_env({"RASTIR_COLLECTOR_" + env: raw})
    assert getattr(settings, field) == value


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"otlp_endpoint": "tempo:4318"}, "otlp_endpoint"),
        ({"otlp_compression": "zstd"}, "otlp_compression"),
        ({"otlp_batch_size": 0}, "otlp_batch_size"),
        ({"otlp_queue_size": 10, "otlp_batch_size": 20}, "otlp_queue_size"),
        ({"otlp_timeout": 0.0}, "otlp_timeout"),
        ({"otlp_headers": (("x", "a\r\nb"),)}, "otlp_headers"),
        ({"tail_ratio": 1.5}, "tail_ratio"),
        ({"tail_max_spans": -1}, "tail_max_spans"),
    ],
)
def test_invalid_export_and_sampling_settings_are_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CollectorSettings(**overrides)


def test_the_cli_takes_the_export_and_sampling_options() -> None:
    from rastir.collector.cli import build_parser, settings_from_args

    args = build_parser().parse_args(
        ["--otlp-endpoint", "http://127.0.0.1:4318", "--tail-sampling", "--tail-ratio", "0.2"]
    )
    settings = settings_from_args(args)
    assert settings.otlp_endpoint == "http://127.0.0.1:4318"
    assert settings.tail_sampling is True
    assert settings.tail_ratio == 0.2


@pytest.mark.anyio
async def test_the_exporter_thread_stops_with_the_app_and_drains_its_queue(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        async with running_collector(
            tmp_path, otlp_endpoint=url, otlp_flush_interval=30.0, otlp_batch_size=1000
        ) as c:
            assert (await c.post(body(tree(5), **{"service.name": "a"}))).status_code == 202
            exporter: OtlpExporter = c.app.state.otlp_exporter
            assert exporter.depth == 20  # a partial batch, waiting for its interval
        # Shutdown sent it rather than dropping it.
        assert receiver.count() == 20
        assert exporter.exported == 20
        assert exporter._thread is not None
        await anyio.to_thread.run_sync(exporter._thread.join, 5)
        assert not exporter._thread.is_alive()


@pytest.mark.anyio
async def test_with_the_target_down_shutdown_is_bounded_and_counts_what_it_could_not_send(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with running_collector(
        tmp_path,
        otlp_endpoint=f"http://127.0.0.1:{port}",
        otlp_retry_budget=60.0,  # without shutdown, the first batch would retry for a minute
        otlp_batch_size=50,
        otlp_flush_interval=0.02,
        shutdown_timeout=0.5,
    ) as c:
        exporter: OtlpExporter = c.app.state.otlp_exporter
        for _ in range(3):
            assert (await c.post(body(tree(25), **{"service.name": "a"}))).status_code == 202
        await wait_for(lambda: exporter.failed_requests >= 1)
    # The app has stopped: the thread is gone and every span is accounted for.
    assert exporter._thread is not None
    assert not exporter._thread.is_alive()
    dropped = exporter.dropped
    assert exporter.exported == 0
    assert dropped["shutdown"] == 300
    assert sum(dropped.values()) == 300
    assert exporter.depth == 0
