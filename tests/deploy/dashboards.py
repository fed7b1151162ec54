"""The committed dashboards and rules, read the way Grafana and Prometheus read them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"

# What Grafana puts in place of its own variables in the tests: the whole selection
# ("All" is the regex .*), or one real value of the test traffic.
ALL_VALUES = {"service": ".*", "agent": ".*", "model": ".*", "slo": ".*"}
REAL_VALUES = {
    "service": "shop",
    "agent": "planner",
    "model": "gpt-4o",
    "slo": "agent_availability",
}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{Path(self.dashboard).stem}:{self.panel}:{self.ref}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, collapsed rows' panels included)."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def panel_queries() -> list[PanelQuery]:
    out = []
    for name, d in load_dashboards().items():
        for p in panels(d):
            for t in p["targets"]:
                out.append(PanelQuery(name, p["title"], t["refId"], t["expr"], t["instant"]))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variables replaced: ``$__rate_interval``, ``$__range`` and the selection."""
    text = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in text:
        raise AssertionError(f"an unknown variable is left in {text!r}")
    return text


def rule_groups() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(RULES_DIR.glob("*.yml")):
        out[p.name] = yaml.safe_load(p.read_text(encoding="utf-8"))["groups"]
    return out


def recorded_names() -> list[str]:
    names: dict[str, None] = {}
    for groups in rule_groups().values():
        for g in groups:
            for r in g["rules"]:
                if "record" in r:
                    names[r["record"]] = None
    return list(names)


def alert_names() -> set[str]:
    return {
        r["alert"]
        for groups in rule_groups().values()
        for g in groups
        for r in g["rules"]
        if "alert" in r
    }


_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)$")


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` split into its selector and label."""
    m = _LABEL_VALUES.match(query.strip())
    if m is None or m.group(1) is None:
        raise AssertionError(f"not a label_values(selector, label) query: {query!r}")
    return m.group(1), m.group(2)


_METRIC = re.compile(r"\b(rastir_[a-z0-9_:]+|ALERTS)\b")


def metric_names(expr: str) -> set[str]:
    """The metric and recorded-series names a PromQL expression reads."""
    return set(_METRIC.findall(expr))
