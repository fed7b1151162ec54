"""The seven dashboards, statically: structure, units, variables and the names they read."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from rastir.collector import CollectorSettings, create_app
from tests.deploy import dashboards as dash

DASHBOARDS = dash.load_dashboards()
TITLES = {
    "LLM Performance",
    "Agent & Tool",
    "Cost & TTFT",
    "Evaluation",
    "Guardrails",
    "SRE Budgets",
    "System Health",
}
# Grafana's unit ids used by the dashboards (a typo would show raw numbers).
UNITS = {
    "reqps",
    "ops",
    "s",
    "d",
    "percentunit",
    "short",
    "none",
    "bytes",
    "currencyUSD",
    "bool_yes_no",
}
# Families per span kind and per service (the collector's health ones are global).


def _exposed_names() -> set[str]:
    """Every sample name a started collector's /metrics can show."""
    with TestClient(create_app(CollectorSettings(store="memory", access_log=False))) as c:
        text = c.get("/metrics").text
    names: set[str] = set()
    for f in text_string_to_metric_families(text):
        if f.type == "counter":
            names.add(f.name + "_total")
        elif f.type == "histogram":
            names.update(f.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(f.name)
    return names


def test_there_are_the_seven_dashboards() -> None:
    assert len(DASHBOARDS) == 7
    assert {d["title"].removeprefix("rastir / ") for d in DASHBOARDS.values()} == TITLES
    assert len({d["uid"] for d in DASHBOARDS.values()}) == 7


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_a_title_a_unit_a_description_and_queries(name: str) -> None:
    ps = dash.panels(DASHBOARDS[name])
    assert len(ps) >= 8
    titles = [p["title"] for p in ps]
    assert len(set(titles)) == len(titles), "panel titles repeat"
    assert len({p["id"] for p in DASHBOARDS[name]["panels"]}) == len(DASHBOARDS[name]["panels"])
    for p in ps:
        assert p["title"].strip()
        assert len(p["description"]) > 20, p["title"]
        assert p["fieldConfig"]["defaults"]["unit"] in UNITS, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip()
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_has_the_service_agent_and_model_variables(name: str) -> None:
    variables: dict[str, Any] = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert {"datasource", "service", "agent", "model"} <= set(variables)
    assert variables["datasource"]["query"] == "prometheus"
    for v in ("service", "agent", "model"):
        assert variables[v]["includeAll"]
        assert variables[v]["allValue"] == ".*"
        dash.label_values_query(variables[v]["query"]["query"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for p in DASHBOARDS[name]["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0
        assert g["x"] + g["w"] <= 24
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, p["title"]
        taken |= cells


def test_every_name_a_query_reads_is_a_collector_metric_or_a_recorded_series() -> None:
    known = _exposed_names() | set(dash.recorded_names()) | {"ALERTS"}
    for q in dash.panel_queries():
        unknown = dash.metric_names(q.expr) - known
        assert not unknown, (q.id, unknown)
    for groups in dash.rule_groups().values():
        for g in groups:
            for r in g["rules"]:
                unknown = dash.metric_names(r["expr"]) - known
                assert not unknown, (r.get("record") or r.get("alert"), unknown)


def test_queries_on_per_service_metrics_follow_the_service_variable() -> None:
    with_service = {
        n
        for n in _exposed_names()
        if n.startswith(("rastir_llm", "rastir_agent", "rastir_tool", "rastir_mcp"))
    } | {"rastir_spans_total", "rastir_evaluations_total", "rastir_guardrail_violations_total"}
    checked = 0
    for q in dash.panel_queries():
        if dash.metric_names(q.expr) & with_service:
            assert "$service" in q.expr, q.id
            checked += 1
    assert checked > 50
