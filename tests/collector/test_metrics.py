"""Metrics from spans: values per kind, the cardinality guard, docs, and registries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from rastir._wire import WireSpan
from rastir.collector import CollectorSettings, create_app
from rastir.collector.metrics import OTHER, CounterChild, Family, Group, Metrics, label_value
from rastir.collector.store import SpanRow
from tests.collector.conftest import RunCollector
from tests.collector.spans import batch, encode, llm_span, span, trace_id
from tests.collector.store_kinds import EVERY_STORE, is_sql, store_fixture  # noqa: F401 (the store fixture)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.mark.anyio
async def test_a_cardinality_bomb_stays_capped_and_is_counted(run_collector: RunCollector) -> None:
    cap = 1000
    n = 100_000
    async with run_collector(max_label_values=cap, memory_max_spans=n) as c:
        for start in range(0, n, 10_000):
            spans = [llm_span(model=f"model-{i}") for i in range(start, start + 10_000)]
            r = await c.post(encode(batch(spans)))
            assert (r.status_code, r.json()) == (202, {"accepted": 10_000})
        m = await c.scrape()
    # Labels whose values the wire schema bounds (status, error_type, ...) multiply a
    # series count by a constant; the guarded labels are what a client controls.
    bounded = {"status", "error_type", "token_type", "result", "reason", "field", "kind"}
    for name in m.families:
        guarded = {frozenset((k, v) for k, v in ls if k not in bounded) for ls in m.series(name)}
        assert len(guarded) <= cap + 1, name
    models = {dict(labels)["model"] for labels in m.series("rastir_llm_calls")}
    assert len(models) == cap + 1
    assert OTHER in models
    base = {"service": "svc", "provider": "openai", "agent": ""}
    assert m.value("rastir_llm_calls_total", **base, model=OTHER, status="ok") == n - cap
    assert m.value("rastir_label_overflow_total", metric="rastir_llm", label="model") == n - cap
    # Every span is still counted, capped series or not.
    assert m.total("rastir_llm_calls_total") == n
    assert m.total("rastir_llm_tokens_total", token_type="input") == n * 100


def test_a_group_caps_its_series_and_folds_the_rest_together() -> None:
    overflow: Family[CounterChild] = Family(
        "overflow", "counter", "", ("metric", "label"), CounterChild
    )
    made: list[tuple[str, ...]] = []

    def make(key: tuple[str, ...]) -> tuple[str, ...]:
        made.append(key)
        return key

    g = Group("g", ("a", "b"), make, overflow, max_values=100, max_series=10)
    keys = [(f"a{i}", f"b{j}") for i in range(5) for j in range(5)]
    got = [g.get(k) for k in keys]
    assert got[:10] == keys[:10]
    assert set(got[10:]) == {(OTHER, OTHER)}
    assert len(g.bundles) == 11
    assert overflow.series[("g", "__series__")].value == 15
    # Known combinations are plain dict hits: no new bundle, nothing counted.
    assert g.get(keys[3]) == keys[3]
    assert len(made) == 11


def test_label_values_are_sanitized_on_the_slow_path() -> None:
    overflow: Family[CounterChild] = Family(
        "overflow", "counter", "", ("metric", "label"), CounterChild
    )
    g = Group("g", ("a",), lambda k: k, overflow, max_values=5, max_series=100)
    assert g.get(("x" * 500,)) == ("x" * 128,)
    assert g.get((7,)) == ("7",)  # type: ignore[arg-type]
    assert [label_value(v) for v in (None, True, False, 1.5, [1], "s")] == [
        "",
        "true",
        "false",
        "1.5",
        "__invalid__",
        "s",
    ]


@pytest.mark.anyio
async def test_every_kind_of_span_feeds_its_metrics(run_collector: RunCollector) -> None:
    tid = trace_id()
    spans: list[dict[str, Any]] = [
        llm_span(
            model="gpt-4o",
            gen_ai__response__model="gpt-4o-2024",
            rastir__ttft_ms=250.0,
            rastir__guardrail__intervened=True,
            rastir__guardrail__action="blocked",
            rastir__guardrail__category="pii",
        ),
        {**llm_span(), "status": "error", "error": {"type": "rate_limit"}},
        span(kind="agent", status="error", error_type="timeout", gen_ai__agent__name="triage"),
        span(
            kind="tool", duration_ms=30, gen_ai__tool__name="search", gen_ai__agent__name="triage"
        ),
        span(kind="retrieval", gen_ai__agent__name="triage", rastir__retrieval__documents=7),
        span(kind="mcp.server", mcp__method__name="tools/call", gen_ai__tool__name="search"),
        span(
            kind="http.server",
            duration_ms=40,
            http__request__method="POST",
            http__route="/chat/{id}",
            http__response__status_code=200,
            url__path="/chat/12345",
        ),
        span(
            kind="custom",
            rastir__metric__name="rerank",
            status="error",
            error_type="internal_error",
        ),
        span(kind="custom"),  # a plain custom span, not a @metric function
        span(
            kind="evaluation",
            rastir__evaluation__name="faithfulness",
            rastir__evaluation__score=0.85,
            rastir__evaluation__passed=True,
        ),
        span(kind="trace"),
    ]
    for s in spans:
        s["trace_id"] = tid
    async with run_collector() as c:
        assert (await c.post(encode(batch(spans, service="app")))).status_code == 202
        m = await c.scrape()
    gpt = {"service": "app", "model": "gpt-4o-2024", "provider": "openai", "agent": ""}
    assert m.value("rastir_llm_ttft_seconds_count", **gpt) == 1
    assert m.value("rastir_llm_ttft_seconds_bucket", **gpt, le="0.3") == 1
    assert m.value("rastir_llm_ttft_seconds_bucket", **gpt, le="0.2") == 0
    guard = gpt  # the same labels, the agent included
    assert (
        m.value("rastir_guardrail_violations_total", **guard, action="blocked", category="pii") == 1
    )
    plain = {**gpt, "model": "gpt-4o"}
    assert m.value("rastir_llm_calls_total", **plain, status="error") == 1
    assert m.value("rastir_llm_errors_total", **plain, error_type="rate_limit") == 1
    triage = {"service": "app", "agent": "triage"}
    assert m.value("rastir_agent_runs_total", **triage, status="error") == 1
    assert m.value("rastir_agent_errors_total", **triage, error_type="timeout") == 1
    tool = {"service": "app", "tool": "search", "agent": "triage"}
    assert m.value("rastir_tool_duration_seconds_bucket", **tool, le="0.05") == 1
    assert m.value("rastir_tool_duration_seconds_bucket", **tool, le="0.025") == 0
    assert m.value("rastir_retrieval_calls_total", **triage, status="ok") == 1
    assert m.value("rastir_retrieval_documents_total", **triage) == 7
    mcp = {"service": "app", "side": "server", "method": "tools/call", "tool": "search"}
    assert m.value("rastir_mcp_requests_total", **mcp, status="ok") == 1
    http = {"service": "app", "method": "POST", "route": "/chat/{id}"}
    assert m.value("rastir_http_server_requests_total", **http, status_code="200") == 1
    assert m.value("rastir_http_server_duration_seconds_count", **http) == 1
    assert "/chat/12345" not in m.text  # never a raw path: unbounded
    fn = {"service": "app", "function": "rerank"}
    assert m.value("rastir_function_calls_total", **fn, status="error") == 1
    assert m.value("rastir_function_errors_total", **fn, error_type="internal_error") == 1
    ev = {"service": "app", "agent": "", "model": "", "evaluation": "faithfulness"}
    assert m.value("rastir_evaluations_total", **ev, result="passed") == 1
    assert m.value("rastir_evaluation_score_bucket", **ev, le="0.9") == 1
    assert m.value("rastir_evaluation_score_bucket", **ev, le="0.8") == 0
    assert m.value("rastir_spans_total", service="app", kind="custom", status="ok") == 1
    assert m.value("rastir_spans_total", service="app", kind="trace", status="ok") == 1
    assert m.total("rastir_spans_total") == len(spans)
    assert trace_id() not in m.text
    assert tid not in m.text


def _documented() -> dict[str, str]:
    """``{family name: type}`` from the tables of docs/metrics.md."""
    out: dict[str, str] = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"^\|\s*`(rastir_[a-z_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|", line)
        if m:
            assert m.group(1) not in out, f"{m.group(1)} is documented twice"
            out[m.group(1)] = m.group(2)
    return out


@pytest.mark.anyio
async def test_docs_list_every_family_the_collector_exposes(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        m = await c.scrape()
    exposed = {}
    for family in m.families.values():
        # The parser strips _total from counters; the docs name what Prometheus stores.
        name = family.name + "_total" if family.type == "counter" else family.name
        exposed[name] = family.type
    assert exposed == _documented()


def test_each_app_has_its_own_registry() -> None:
    one = create_app(CollectorSettings(store="memory"))
    two = create_app(CollectorSettings(store="memory"))
    assert one.state.registry is not two.state.registry
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("rastir")]
    mine = CollectorRegistry()
    app = create_app(CollectorSettings(store="memory"), registry=mine)
    assert app.state.registry is mine
    assert b"rastir_llm_calls_total" in generate_latest(mine)
    # Registering the same families twice in one registry is refused by name.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics().register(mine)


@pytest.mark.anyio
async def test_the_collectors_own_health_is_exposed(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        await c.post(b"garbage")
        await c.post(encode(batch([span()])))
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="invalid") == 1
    assert m.value("rastir_collector_ingest_duration_seconds_count") == 1
    assert m.value("rastir_collector_store_spans") == 1
    assert m.value("rastir_collector_up") == 1
    assert m.value("rastir_collector_export_failures_total", exporter="otlp") == 0
    (info,) = m.families["rastir_collector_build_info"].samples
    assert info.value == 1
    assert info.labels["version"]


@pytest.mark.anyio
@EVERY_STORE
async def test_spans_the_store_could_not_keep_are_counted_by_reason(
    run_collector: RunCollector, store: str
) -> None:
    # The wire refuses times beyond int64; a span made inside the collector is not
    # decoded from it, and SQLite's 64-bit integers cannot hold it: counted, not kept.
    far = msgspec.structs.replace(
        msgspec.convert(span(), WireSpan), start_time_unix_nano=2**63, end_time_unix_nano=2**64
    )
    async with run_collector(store=store) as c:
        trace_store = c.app.state.collector.store
        assert trace_store.submit([SpanRow("svc", far)])
        await trace_store.flush()
        m = await c.scrape()
    failed = "rastir_collector_store_failed_spans_total"
    assert m.value(failed, reason="invalid") == (1 if is_sql(store) else 0)
    assert m.value(failed, reason="write_error") == 0
    assert m.value(failed, reason="shutdown") == 0
    assert m.value(failed, reason="tail_queue_full") == 0
    assert m.series(failed.removesuffix("_total")) == {
        frozenset({("reason", r)})
        for r in ("write_error", "invalid", "shutdown", "tail_queue_full")
    }


@EVERY_STORE
def test_one_call_seen_by_two_nested_llm_spans_is_counted_once(tmp_path: Path, store: str) -> None:
    """The real SDK marks the outer span (rastir.llm.counted_in); the collector then
    counts the call, its tokens and its cost once, in /metrics and in the trace."""
    import httpx

    import rastir
    from rastir.testing import capture_spans
    from tests.adapters import objects
    from tests.collector.conftest import Scrape
    from tests.collector.server import RunningServer

    settings = CollectorSettings(store=store, data_dir=tmp_path, access_log=False)
    app = create_app(settings)
    server = RunningServer(app)
    server.start()
    try:

        @rastir.llm(name="provider_call")
        def provider_call() -> Any:
            return objects.openai_chat()  # 1,200 prompt tokens, 34 completion tokens

        @rastir.llm(name="framework_chat")
        def framework_chat() -> Any:
            return provider_call()

        @rastir.agent(agent_name="planner")
        def run() -> None:
            framework_chat()
            provider_call()  # a second, separate call

        rastir.configure(service="nested", push_url=server.url, otel_bridge=False)
        with capture_spans() as spans:
            run()
        assert rastir.flush(10.0)
        cost = spans.find("provider_call")[0].attributes["rastir.cost.usd"]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            scrape = Scrape(client.get("/metrics").text)
            listed = client.get("/v1/traces", params={"service": "nested"}).json()
    finally:
        server.stop()
    assert scrape.total("rastir_llm_calls_total", service="nested") == 2
    assert scrape.total("rastir_llm_tokens_total", service="nested", token_type="input") == 2 * 1200
    assert scrape.total("rastir_llm_cost_usd_total", service="nested") == pytest.approx(2 * cost)
    (summary,) = listed["traces"]
    assert summary["span_count"] == 4
    assert (summary["input_tokens"], summary["output_tokens"]) == (2 * 1200, 2 * 34)
    assert summary["cost_usd"] == pytest.approx(2 * cost)
