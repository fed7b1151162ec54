"""The generated rules: fresh, valid for promtool, unit-tested, and a strict targets file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy import generate, rulegen
from tests._servers import require_binary
from tests.deploy import dashboards as dash

TARGETS = dash.DEPLOY / "prometheus" / "targets.yaml"


def test_committed_generated_files_equal_a_fresh_generation() -> None:
    files = generate.render_all()
    assert generate.stale(files) == []
    assert generate.orphans(files) == []
    # the same through the command users run
    r = subprocess.run(
        [sys.executable, "-m", "deploy.generate", "--check"],
        cwd=dash.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_check_names_a_stale_file(tmp_path: Path) -> None:
    text = TARGETS.read_text(encoding="utf-8").replace("objective: 0.99\n", "objective: 0.98\n", 1)
    edited = tmp_path / "targets.yaml"
    edited.write_text(text, encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "deploy.generate", "--check", "--targets", str(edited)],
        cwd=dash.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert "stale: deploy/prometheus/rules/slo.rules.yml" in r.stderr
    assert "stale: deploy/k8s/prometheusrule.yaml" in r.stderr
    assert "cost.rules.yml" not in r.stderr


@pytest.mark.parametrize("path", sorted(dash.RULES_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_promtool_check_rules_passes(path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    r = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool", "prometheus")
    files = sorted(dash.RULE_TESTS_DIR.glob("*_test.yml"))
    assert {p.name for p in files} == {
        "slo_test.yml",
        "cost_test.yml",
        "guardrail_test.yml",
        "collector_test.yml",
    }
    r = subprocess.run(
        [promtool, "test", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(files)


def test_unit_tests_cover_every_alert() -> None:
    tested: set[str] = set()
    for p in dash.RULE_TESTS_DIR.glob("*_test.yml"):
        for t in yaml.safe_load(p.read_text(encoding="utf-8"))["tests"]:
            for a in t.get("alert_rule_test", []):
                if a["exp_alerts"]:  # a firing case...
                    tested.add(a["alertname"])
    assert tested == dash.alert_names()


def test_unit_tests_see_each_burn_rate_alert_fire_and_stay_silent() -> None:
    cases: dict[str, set[bool]] = {}
    for t in yaml.safe_load((dash.RULE_TESTS_DIR / "slo_test.yml").read_text())["tests"]:
        for a in t.get("alert_rule_test", []):
            cases.setdefault(a["alertname"], set()).add(bool(a["exp_alerts"]))
    burn = {f"RastirErrorBudgetBurn{w}" for w in ("1h", "6h", "1d", "3d")}
    assert burn <= set(cases)
    # every burn alert has firing cases; the silent ones are the services left out of
    # exp_alerts (promtool fails on any alert not listed), plus explicit empty cases
    assert all(True in cases[name] for name in burn)
    assert False in cases["RastirErrorBudgetBurn1h"]


def test_default_burn_rate_thresholds_follow_the_sre_workbook() -> None:
    t = rulegen.load_targets(TARGETS)
    assert [(a.long, a.short, a.factor, a.severity) for a in t.burn_alerts] == [
        ("1h", "5m", 14.4, "page"),
        ("6h", "30m", 6.0, "page"),
        ("1d", "2h", 3.0, "ticket"),
        ("3d", "6h", 1.0, "ticket"),
    ]
    assert {"5m", "1h", "6h", "1d", "3d"} <= set(t.windows())


def test_every_slo_records_burn_rates_budget_status_and_exhaustion() -> None:
    t = rulegen.load_targets(TARGETS)
    groups = {g["name"]: g for gs in dash.rule_groups().values() for g in gs}
    for slo in t.slos:
        records = {r["record"] for r in groups[f"rastir-slo-{slo.name}"]["rules"] if "record" in r}
        for w in ("5m", "1h", "6h", "1d", "3d"):
            assert f"rastir_slo:burn_rate:rate{w}" in records
        assert {
            "rastir_slo:error_budget_remaining:ratio",
            "rastir_slo:objective_met:bool",
            "rastir_slo:days_to_exhaustion:days",
        } <= records


def _targets_with(tmp_path: Path, old: str, new: str) -> Path:
    text = TARGETS.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "targets.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "metric: rastir_agent_runs_total",
            "metric: rastir_agent_run_total",
            "'rastir_agent_run_total' is not a rastir metric",
        ),
        (
            "threshold_seconds: 60",
            "threshold_seconds: 45",
            "threshold_seconds=45 is not a bucket bound of rastir_agent_duration_seconds",
        ),
        ("by: [service, agent]", "by: [service, user]", "has no label 'user'"),
        ("objective: 0.99", "objective: 99", "objective=99.0 must be between 0"),
        (
            "    kind: availability\n",
            "    kind: uptime\n",
            "kind='uptime' must be availability or latency",
        ),
        ("slo_window: 30d", "slo_window: 30 days", "is not a duration"),
        ("{long: 1h, short: 5m,", "{long: 5m, short: 1h,", "need short < long"),
        ("budget_usd: 50", "budget_usd: -5", "budget_usd=-5.0 must be between 0"),
        (
            "by: [service, model]\n    block_actions",
            "by: [service, tool]\n    block_actions",
            "has no label 'tool'",
        ),
        ("name: agent_latency", "name: agent_availability", "is used twice"),
    ],
)
def test_an_invalid_targets_file_is_refused_with_its_reason(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(rulegen.TargetsError) as info:
        rulegen.load_targets(_targets_with(tmp_path, old, new))
    assert message in str(info.value)


def test_an_slo_can_be_restricted_with_match(tmp_path: Path) -> None:
    path = _targets_with(
        tmp_path,
        "    by: [service, tool]\n",
        "    by: [service, tool]\n    match: {service: checkout}\n",
    )
    files = rulegen.render_rule_files(rulegen.load_targets(path))
    assert (
        'rate(rastir_tool_calls_total{service="checkout", status="error"}[5m])'
        in (files["slo.rules.yml"])
    )
