"""Every dashboard query and every rule, run by a real Prometheus on real collector data.

One module-scoped stack: a collector (``create_app`` under uvicorn on 127.0.0.1,
memory store) ingests waves of realistic traffic covering every span kind, and a
Prometheus (Debian's package) scrapes its ``/metrics`` every second with the
generated rules loaded. Then every PromQL expression of every panel of the seven
dashboards is sent to Prometheus's HTTP API with the template variables substituted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import rastir
from deploy.dashgen import dashboards
from deploy.rulegen import load_targets
from rastir.collector import CollectorSettings, create_app
from tests._servers import require_binary
from tests.collector.server import serving
from tests.collector.spans import encode
from tests.deploy import dashboards as dash
from tests.deploy.prometheus import Prometheus, has_data, running_prometheus, wait_for
from tests.deploy.traffic import SDK_SERVICE, sdk_wave, wave

pytestmark = pytest.mark.slow

WAVES = 4
QUERIES = dash.panel_queries()
RECORDED = dash.recorded_names()


def _expect_data() -> dict[tuple[str, str], bool]:
    """Whether a panel must return data on the test traffic, from the generator."""
    targets = load_targets(dash.DEPLOY / "prometheus" / "targets.yaml")
    return {(d.file, p.title): p.expect_data for d in dashboards(targets) for p in d.panels()}


EXPECT_DATA = _expect_data()


@dataclass
class Stack:
    prometheus: Prometheus
    collector_url: str
    metrics_text: str


def _send_wave(client: httpx.Client, number: int) -> int:
    batches = wave(number)
    for b in batches:
        r = client.post(
            "/v1/telemetry", content=encode(b), headers={"content-type": "application/json"}
        )
        assert r.status_code == 202, r.text
    # a malformed request: counted in rastir_collector_rejected_requests_total
    r = client.post("/v1/telemetry", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    return len(batches)


def _scraped(prom: Prometheus, expr: str, at_least: float) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        return True if prom.scalar(expr) >= at_least else None

    return probe


def _evaluated_after(prom: Prometheus, name: str, t: float) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        return True if prom.scalar(f"min(timestamp({name}))") > t else None

    return probe


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus", "prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    settings = CollectorSettings(store="memory", access_log=False, data_dir=workdir / "rastir")
    rules = sorted(dash.RULES_DIR.glob("*.yml"))
    with (
        serving(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
        running_prometheus(binary, workdir, url.removeprefix("http://"), rules) as prom,
    ):
        rastir.configure(service=SDK_SERVICE, push_url=url, flush_interval=0.2)
        sent = 0
        for n in range(WAVES):
            sdk_wave()
            assert rastir.flush(10)
            sent += _send_wave(client, n)
            # Each wave must land in its own scrape, so every counter has increases for
            # rate() to see: wait until Prometheus has scraped this wave.
            wait_for(
                f"wave {n} to be scraped",
                _scraped(
                    prom,
                    f'sum(rastir_collector_ingested_batches_total{{service!="{SDK_SERVICE}"}})',
                    sent,
                ),
                timeout=15,
            )
        rastir.shutdown(10)
        scraped_at = time.time()
        # Every rule group must evaluate again on the complete data. A group evaluates
        # all its rules at one timestamp, and each group records one constant series.
        for constant in (
            "rastir_slo:error_budget:ratio",
            "rastir_cost:budget_usd",
            "rastir_guardrail:max_block_ratio",
        ):
            wait_for(
                f"{constant} to be evaluated on the last wave",
                _evaluated_after(prom, constant, scraped_at),
                timeout=15,
            )
        text = client.get("/metrics").text
        yield Stack(prom, url, text)


def test_prometheus_scrapes_the_collector(stack: Stack) -> None:
    (target,) = stack.prometheus.targets()
    assert target["health"] == "up", target.get("lastError")
    assert target["labels"]["job"] == "rastir-collector"


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    groups = stack.prometheus.rules()
    expected = {g["name"] for gs in dash.rule_groups().values() for g in gs}
    assert {g["name"] for g in groups} == expected
    bad = [
        (g["name"], r["name"], r.get("lastError"))
        for g in groups
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert not bad


@pytest.mark.parametrize("name", RECORDED)
def test_recording_rule_records_a_series(stack: Stack, name: str) -> None:
    result = stack.prometheus.query(name)
    assert has_data(result), f"{name} recorded nothing"


def test_fast_burn_alert_fires_exactly_where_the_traffic_burns(stack: Stack) -> None:
    # Above 14.4x on 1h and 5m, from the traffic's fixed mix (tests/deploy/traffic.py):
    # a planner run in three fails (33x), every researcher run takes 75 s (20x), one
    # gpt-4o call in five fails in shop (20x), every claude first token is late (20x),
    # every calculator call fails (100x), one support request in four is a 500 (50x).
    # Below it: gpt-4o's first tokens (one late in three: 6.7x), everything else.
    result = stack.prometheus.query(
        'ALERTS{alertname="RastirErrorBudgetBurn1h", alertstate="firing"}'
    )
    firing = {
        (
            a["metric"]["slo"],
            a["metric"]["service"],
            a["metric"].get("agent") or a["metric"].get("model") or a["metric"].get("tool"),
        )
        for a in result
    }
    assert firing == {
        ("agent_availability", "shop", "planner"),
        ("agent_latency", "shop", "researcher"),
        ("llm_availability", "shop", "gpt-4o"),
        ("llm_ttft", "shop", "claude-3-5-sonnet"),
        ("tool_availability", "shop", "calculator"),
        ("http_availability", "support", None),
    }
    burn = stack.prometheus.scalar(
        'rastir_slo:burn_rate:rate5m{slo="agent_availability", service="shop", agent="planner"}'
    )
    assert 30 < burn < 35


def test_guardrail_block_ratio_counts_only_blocks(stack: Stack) -> None:
    # gpt-4o in shop per wave: 2 ok + 1 failed + 2 researcher calls, one BLOCKED
    ratio = stack.prometheus.scalar(
        'rastir_guardrail:block_ratio:rate5m{service="shop", model="gpt-4o"}'
    )
    assert ratio == pytest.approx(1 / 5, rel=0.01)
    # claude's intervention was ANONYMIZED, not a block
    ratio = stack.prometheus.scalar(
        'rastir_guardrail:block_ratio:rate5m{service="shop", model="claude-3-5-sonnet"}'
    )
    assert ratio == 0


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_dashboard_query_runs_on_real_data(stack: Stack, query: dash.PanelQuery) -> None:
    expr = dash.substitute(query.expr, dash.ALL_VALUES)
    prom = stack.prometheus
    result = prom.query(expr) if query.instant else prom.query_range(expr, seconds=20)
    if EXPECT_DATA[(query.dashboard, query.panel)]:
        assert has_data(result), f"no data for {expr}"


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_dashboard_query_runs_with_one_value_selected(stack: Stack, query: dash.PanelQuery) -> None:
    # Parses and runs; a panel may be empty for one value (a per-service SLO has no agent).
    stack.prometheus.query(dash.substitute(query.expr, dash.REAL_VALUES))


def test_sdk_traffic_reaches_the_dashboards(stack: Stack) -> None:
    # spans made by the decorators, pushed by the exporter thread, counted by the
    # collector, scraped by Prometheus: the same queries see them
    prom = stack.prometheus
    runs = prom.query(
        f'sum by (agent, status) (rastir_agent_runs_total{{service="{SDK_SERVICE}"}})'
    )
    assert {(r["metric"]["agent"], r["metric"]["status"]) for r in runs} == {("concierge", "ok")}
    assert float(runs[0]["value"][1]) == 3 * WAVES
    kinds = prom.query(f'sum by (kind) (rastir_spans_total{{service="{SDK_SERVICE}"}})')
    assert {r["metric"]["kind"] for r in kinds} == {"agent", "tool", "retrieval", "llm", "custom"}
    llm = prom.query(f'rastir_llm_calls_total{{service="{SDK_SERVICE}"}}')
    assert {(r["metric"]["model"], r["metric"]["provider"], r["metric"]["agent"]) for r in llm} == {
        ("gpt-4o-mini", "openai", "concierge")
    }


def test_template_variables_list_the_traffic_values(stack: Stack) -> None:
    expected = {
        "service": {"shop", "support", "tools-mcp"},
        "agent": {"planner", "researcher", "triage"},
        "model": {"gpt-4o", "claude-3-5-sonnet"},
        "slo": {s.name for s in load_targets(dash.DEPLOY / "prometheus" / "targets.yaml").slos},
    }
    for name, d in dash.load_dashboards().items():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            selector, label = dash.label_values_query(v["query"]["query"])
            series = stack.prometheus.series(dash.substitute(selector, dash.ALL_VALUES))
            values = {s[label] for s in series if label in s}
            assert expected[v["name"]] <= values, (name, v["name"])


def test_collector_metrics_pass_promtool_check_metrics(stack: Stack, tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    assert "rastir_llm_calls_total{" in stack.metrics_text
    r = subprocess.run(
        [promtool, "check", "metrics"],
        input=stack.metrics_text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert r.stdout.decode().strip() == ""
    assert r.stderr.decode().strip() == ""
