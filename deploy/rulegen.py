"""Prometheus recording and alerting rules from ``deploy/prometheus/targets.yaml``.

The targets file says what to aim for (objectives, thresholds, budgets); this module
turns it into rule groups. Every metric, label and latency threshold named in the
targets is checked against the collector's own metric definitions
(:class:`rastir.collector.metrics.Metrics`), so a typo or a renamed metric fails the
generation instead of producing rules that silently match nothing.

Naming of the recorded series (``level:metric:operation``, as Prometheus advises):

- ``rastir_slo:*`` carry the label ``slo`` and the SLO's ``by`` labels;
- ``rastir_cost:*`` carry ``budget`` and the budget's ``by`` labels;
- ``rastir_guardrail:*`` carry ``guardrail`` and its ``by`` labels.

docs/operations.md documents each series and alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from prometheus_client.utils import floatToGoString

from rastir.collector.metrics import Metrics

__all__ = [
    "Targets",
    "TargetsError",
    "load_targets",
    "parse_duration",
    "render_rule_files",
]


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: How prometheus_client writes a bucket bound in ``le`` ("60.0", "0.5"): a latency
#: SLO must match that text exactly.
le_text: Callable[[float], str] = floatToGoString


class TargetsError(ValueError):
    """The targets file is invalid; the message names the entry and the field."""


def parse_duration(text: str, where: str) -> float:
    """Seconds of a Prometheus duration with one unit (``5m``, ``1h``, ``30d``).

    Raises:
        TargetsError: ``text`` is not such a duration.
    """
    m = _DURATION.match(str(text))
    if m is None or int(m.group(1)) == 0:
        raise TargetsError(f"{where}: {text!r} is not a duration such as 5m, 1h, 1d or 30d")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]


def _families() -> dict[str, _Family]:
    return {
        f.name: _Family(f.name, f.kind, tuple(f.labelnames), tuple(f.buckets))
        for f in Metrics().families
    }


@dataclass(frozen=True)
class BurnAlert:
    long: str
    short: str
    budget_percent: float
    severity: str
    factor: float


@dataclass(frozen=True)
class SLO:
    name: str
    description: str
    kind: str
    metric: str
    objective: float
    by: tuple[str, ...]
    match: tuple[str, ...]
    bad: str
    threshold: float | None


@dataclass(frozen=True)
class CostBudget:
    name: str
    description: str
    by: tuple[str, ...]
    match: tuple[str, ...]
    window: str
    budget_usd: float
    warn_ratio: float
    max_burn_rate: float


@dataclass(frozen=True)
class Guardrail:
    name: str
    description: str
    by: tuple[str, ...]
    match: tuple[str, ...]
    block_actions: str
    window: str
    max_block_ratio: float
    for_: str
    severity: str


@dataclass(frozen=True)
class CollectorAlerts:
    down_for: str
    max_refused_ratio: float
    refused_for: str
    lost_for: str
    folded_for: str
    store_errors_for: str


@dataclass(frozen=True)
class Targets:
    slo_window: str
    burn_alerts: tuple[BurnAlert, ...]
    burn_windows: tuple[str, ...]
    exhaustion_window: str
    runbook_url: str
    slos: tuple[SLO, ...]
    costs: tuple[CostBudget, ...]
    guardrails: tuple[Guardrail, ...]
    collector: CollectorAlerts | None
    families: dict[str, _Family] = field(repr=False, compare=False)

    def windows(self) -> list[str]:
        """Every window an SLO's error ratio is recorded over, shortest first."""
        names = {self.slo_window, self.exhaustion_window, *self.burn_windows}
        for a in self.burn_alerts:
            names.update((a.long, a.short))
        return sorted(names, key=lambda w: parse_duration(w, "window"))


# --- reading and checking the targets file ------------------------------------------


def _get(entry: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in entry:
        raise TargetsError(f"{where}: missing {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TargetsError(f"{where}: {key}={value!r} has the wrong type")
    return value


def _number(
    entry: Mapping[str, Any], key: str, where: str, lo: float, hi: float, default: Any = None
) -> float:
    if key not in entry and default is not None:
        return float(default)
    value = float(_get(entry, key, where, (int, float)))
    if not lo < value < hi:
        raise TargetsError(f"{where}: {key}={value} must be between {lo} and {hi} (exclusive)")
    return value


def _name(entry: Mapping[str, Any], where: str, seen: set[str]) -> str:
    name = _get(entry, "name", where, str)
    if not _NAME.match(name):
        raise TargetsError(f"{where}: name {name!r} must be lower_snake_case")
    if name in seen:
        raise TargetsError(f"{where}: name {name!r} is used twice")
    seen.add(name)
    return str(name)


def _labels(
    entry: Mapping[str, Any], where: str, allowed: Sequence[str], metric: str
) -> tuple[str, ...]:
    by = _get(entry, "by", where, list)
    if not by:
        raise TargetsError(f"{where}: by must name at least one label")
    for label in by:
        if label not in allowed:
            raise TargetsError(
                f"{where}: {metric} has no label {label!r} (labels: {', '.join(allowed)})"
            )
    if len(set(by)) != len(by):
        raise TargetsError(f"{where}: by repeats a label")
    return tuple(by)


def _match(
    entry: Mapping[str, Any], where: str, allowed: Sequence[str], metric: str
) -> tuple[str, ...]:
    match = entry.get("match") or {}
    if not isinstance(match, dict):
        raise TargetsError(f"{where}: match must be a mapping of label to value")
    out = []
    for label, value in sorted(match.items()):
        if label not in allowed:
            raise TargetsError(f"{where}: match: {metric} has no label {label!r}")
        out.append(f"{label}={_quote(str(value))}")
    return tuple(out)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _slo(raw: Any, where: str, families: Mapping[str, _Family], seen: set[str]) -> SLO:
    if not isinstance(raw, dict):
        raise TargetsError(f"{where}: an SLO is a mapping")
    name = _name(raw, where, seen)
    where = f"slos.{name}"
    kind = _get(raw, "kind", where, str)
    metric = _get(raw, "metric", where, str)
    family = families.get(metric)
    if family is None:
        raise TargetsError(f"{where}: {metric!r} is not a rastir metric (see docs/metrics.md)")
    threshold: float | None = None
    bad = ""
    if kind == "availability":
        if family.kind != "counter" or not metric.endswith("_total"):
            raise TargetsError(f"{where}: availability needs a counter, {metric} is not")
        bad = str(raw.get("bad", 'status="error"'))
        m = _MATCHER.match(bad)
        if m is None:
            raise TargetsError(f'{where}: bad={bad!r} is not one matcher like status="error"')
        if m.group(1) not in family.labels:
            raise TargetsError(f"{where}: bad: {metric} has no label {m.group(1)!r}")
        bad = f"{m.group(1)}{m.group(2)}{_quote(m.group(3))}"
    elif kind == "latency":
        if family.kind != "histogram":
            raise TargetsError(f"{where}: latency needs a histogram, {metric} is not")
        threshold = float(_get(raw, "threshold_seconds", where, (int, float)))
        if threshold not in family.buckets:
            bounds = ", ".join(le_text(b) for b in family.buckets)
            raise TargetsError(
                f"{where}: threshold_seconds={threshold:g} is not a bucket bound of {metric} "
                f"({bounds})"
            )
    else:
        raise TargetsError(f"{where}: kind={kind!r} must be availability or latency")
    labels = [x for x in family.labels if x not in ("status", "le")]
    return SLO(
        name=name,
        description=str(raw.get("description", "")),
        kind=kind,
        metric=metric,
        objective=_number(raw, "objective", where, 0.0, 1.0),
        by=_labels(raw, where, labels, metric),
        match=_match(raw, where, family.labels, metric),
        bad=bad,
        threshold=threshold,
    )


def _cost(raw: Any, where: str, families: Mapping[str, _Family], seen: set[str]) -> CostBudget:
    if not isinstance(raw, dict):
        raise TargetsError(f"{where}: a cost budget is a mapping")
    name = _name(raw, where, seen)
    where = f"cost_budgets.{name}"
    family = families["rastir_llm_cost_usd_total"]
    window = str(_get(raw, "window", where, str))
    parse_duration(window, f"{where}: window")
    return CostBudget(
        name=name,
        description=str(raw.get("description", "")),
        by=_labels(raw, where, family.labels, family.name),
        match=_match(raw, where, family.labels, family.name),
        window=window,
        budget_usd=_number(raw, "budget_usd", where, 0.0, float("inf")),
        warn_ratio=_number(raw, "warn_ratio", where, 0.0, 1.0, default=0.8),
        max_burn_rate=_number(raw, "max_burn_rate", where, 0.0, float("inf"), default=2),
    )


def _guardrail(raw: Any, where: str, families: Mapping[str, _Family], seen: set[str]) -> Guardrail:
    if not isinstance(raw, dict):
        raise TargetsError(f"{where}: a guardrail objective is a mapping")
    name = _name(raw, where, seen)
    where = f"guardrails.{name}"
    guard = families["rastir_guardrail_violations_total"]
    calls = families["rastir_llm_calls_total"]
    shared = [x for x in guard.labels if x in calls.labels]
    window = str(_get(raw, "window", where, str))
    parse_duration(window, f"{where}: window")
    for_ = str(raw.get("for", "5m"))
    parse_duration(for_, f"{where}: for")
    actions = str(_get(raw, "block_actions", where, str))
    try:
        re.compile(actions)
    except re.error as e:
        raise TargetsError(f"{where}: block_actions={actions!r} is not a regular expression: {e}")
    return Guardrail(
        name=name,
        description=str(raw.get("description", "")),
        by=_labels(raw, where, shared, "rastir_guardrail_violations_total"),
        match=_match(raw, where, shared, "rastir_guardrail_violations_total"),
        block_actions=actions,
        window=window,
        max_block_ratio=_number(raw, "max_block_ratio", where, 0.0, 1.0),
        for_=for_,
        severity=str(raw.get("severity", "ticket")),
    )


def load_targets(path: Path) -> Targets:
    """Read and check a targets file.

    Raises:
        TargetsError: the file is invalid; the message names the entry and the field.
    """
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise TargetsError(f"{path}: the targets file is a YAML mapping")
    known = {
        "slo_window",
        "burn_rate_alerts",
        "burn_rate_windows",
        "exhaustion_window",
        "runbook_url",
        "slos",
        "cost_budgets",
        "guardrails",
        "collector_alerts",
    }
    unknown = set(raw) - known
    if unknown:
        raise TargetsError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    families = _families()
    slo_window = str(_get(raw, "slo_window", "slo_window", str))
    window_s = parse_duration(slo_window, "slo_window")
    alerts = []
    for i, a in enumerate(raw.get("burn_rate_alerts") or []):
        where = f"burn_rate_alerts[{i}]"
        long_s = parse_duration(_get(a, "long", where, str), f"{where}.long")
        short_s = parse_duration(_get(a, "short", where, str), f"{where}.short")
        if not short_s < long_s <= window_s:
            raise TargetsError(f"{where}: need short < long <= slo_window")
        percent = _number(a, "budget_percent", where, 0.0, 100.0)
        severity = _get(a, "severity", where, str)
        factor = round(percent / 100.0 * window_s / long_s, 6)
        alerts.append(BurnAlert(a["long"], a["short"], percent, severity, factor))
    if len({a.long for a in alerts}) != len(alerts):
        raise TargetsError("burn_rate_alerts: two alerts share a long window")
    windows = tuple(str(w) for w in raw.get("burn_rate_windows") or [])
    for w in windows:
        parse_duration(w, "burn_rate_windows")
    exhaustion = str(raw.get("exhaustion_window", "1d"))
    parse_duration(exhaustion, "exhaustion_window")
    seen: set[str] = set()
    slos = tuple(_slo(s, f"slos[{i}]", families, seen) for i, s in enumerate(raw.get("slos") or []))
    seen = set()
    costs = tuple(
        _cost(c, f"cost_budgets[{i}]", families, seen)
        for i, c in enumerate(raw.get("cost_budgets") or [])
    )
    seen = set()
    guards = tuple(
        _guardrail(g, f"guardrails[{i}]", families, seen)
        for i, g in enumerate(raw.get("guardrails") or [])
    )
    runbook = str(raw.get("runbook_url", "docs/operations.md"))
    return Targets(
        slo_window,
        tuple(alerts),
        windows,
        exhaustion,
        runbook,
        slos,
        costs,
        guards,
        _collector_alerts(raw.get("collector_alerts")),
        families,
    )


def _collector_alerts(raw: Any) -> CollectorAlerts | None:
    if raw is None or raw is False:
        return None
    where = "collector_alerts"
    if not isinstance(raw, dict):
        raise TargetsError(f"{where}: a mapping, or false for none")
    durations = {}
    for key, default in (
        ("down_for", "5m"),
        ("refused_for", "10m"),
        ("lost_for", "10m"),
        ("folded_for", "15m"),
        ("store_errors_for", "5m"),
    ):
        durations[key] = str(raw.get(key, default))
        parse_duration(durations[key], f"{where}.{key}")
    unknown = set(raw) - {*durations, "max_refused_ratio"}
    if unknown:
        raise TargetsError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return CollectorAlerts(
        max_refused_ratio=_number(raw, "max_refused_ratio", where, 0.0, 1.0, default=0.01),
        **durations,
    )


# --- rules ----------------------------------------------------------------------------


def _sel(metric: str, *matchers: str) -> str:
    ms = [m for m in matchers if m]
    return f"{metric}{{{', '.join(ms)}}}" if ms else metric


def _num(x: float) -> str:
    """A float as PromQL reads it, without noise (0.01, not 0.010000000000000009)."""
    return f"{round(x, 9):g}" if abs(x) >= 1e-4 else repr(x)


def _days(window: str) -> str:
    return _num(parse_duration(window, "window") / 86400)


def _times(x: str) -> str:
    return "" if x == "1" else f" * {x}"


def _record(name: str, expr: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"record": name, "expr": expr, "labels": dict(labels)}


def _slo_error_ratio(slo: SLO, w: str) -> str:
    by = ", ".join(slo.by)
    if slo.kind == "availability":
        total = f"sum by ({by}) (rate({_sel(slo.metric, *slo.match)}[{w}]))"
        bad = f"sum by ({by}) (rate({_sel(slo.metric, *slo.match, slo.bad)}[{w}]))"
        # `or 0 * total`: a group that never failed has no error series at all; it
        # must still get a ratio of 0, not vanish from the SLO.
        return f"({bad} or 0 * {total}) / {total}"
    assert slo.threshold is not None
    le = f"le={_quote(le_text(slo.threshold))}"
    good = f"sum by ({by}) (rate({_sel(slo.metric + '_bucket', *slo.match, le)}[{w}]))"
    total = f"sum by ({by}) (rate({_sel(slo.metric + '_count', *slo.match)}[{w}]))"
    return f"1 - {good} / {total}"


def _slo_group(t: Targets, slo: SLO) -> dict[str, Any]:
    label = {"slo": slo.name}
    me = f'slo="{slo.name}"'
    budget = _num(1 - slo.objective)
    rules: list[dict[str, Any]] = [
        _record("rastir_slo:objective:ratio", f"vector({_num(slo.objective)})", label),
        _record("rastir_slo:error_budget:ratio", f"vector({budget})", label),
    ]
    windows = t.windows()
    for w in windows:
        rules.append(_record(f"rastir_slo:error_ratio:rate{w}", _slo_error_ratio(slo, w), label))
    for w in windows:
        if w == t.slo_window:
            continue
        expr = f"rastir_slo:error_ratio:rate{w}{{{me}}} / {budget}"
        rules.append(_record(f"rastir_slo:burn_rate:rate{w}", expr, label))
    sw = t.slo_window
    rules += [
        _record(
            "rastir_slo:error_budget_remaining:ratio",
            f"1 - rastir_slo:error_ratio:rate{sw}{{{me}}} / {budget}",
            label,
        ),
        _record(
            "rastir_slo:objective_met:bool",
            f"rastir_slo:error_ratio:rate{sw}{{{me}}} <= bool {budget}",
            label,
        ),
        _record(
            "rastir_slo:days_to_exhaustion:days",
            f"clamp_min(rastir_slo:error_budget_remaining:ratio{{{me}}}, 0) * {_days(sw)}"
            f" / (rastir_slo:burn_rate:rate{t.exhaustion_window}{{{me}}} > 0)",
            label,
        ),
    ]
    where = " ".join(f"{x}={{{{ $labels.{x} }}}}" for x in slo.by)
    for a in t.burn_alerts:
        f = _num(a.factor)
        expr = (
            f"rastir_slo:burn_rate:rate{a.long}{{{me}}} > {f}"
            f" and rastir_slo:burn_rate:rate{a.short}{{{me}}} > {f}"
        )
        rules.append(
            {
                "alert": f"RastirErrorBudgetBurn{a.long}",
                "expr": expr,
                "labels": {
                    "slo": slo.name,
                    "severity": a.severity,
                    "long_window": a.long,
                    "short_window": a.short,
                },
                "annotations": {
                    "summary": f"SLO {slo.name} is burning its error budget {f}x too fast",
                    "description": (
                        f'{where}: burn rate {{{{ $value | printf "%.1f" }}}} over {a.long} '
                        f"(and over {a.short}); above {f}, {_num(a.budget_percent)}% of the "
                        f"{sw} error budget goes every {a.long}."
                    ),
                    "runbook_url": f"{t.runbook_url}#rastirerrorbudgetburn",
                },
            }
        )
    return {"name": f"rastir-slo-{slo.name}", "rules": rules}


def _cost_group(t: Targets, c: CostBudget) -> dict[str, Any]:
    label = {"budget": c.name}
    me = f'budget="{c.name}"'
    by = ", ".join(c.by)
    metric = _sel("rastir_llm_cost_usd_total", *c.match)
    b = _num(c.budget_usd)
    where = " ".join(f"{x}={{{{ $labels.{x} }}}}" for x in c.by)
    runbook = f"{t.runbook_url}#cost-budgets"
    rules: list[dict[str, Any]] = [
        _record("rastir_cost:budget_usd", f"vector({b})", label),
        _record(
            "rastir_cost:spend_usd:window",
            f"sum by ({by}) (increase({metric}[{c.window}]))",
            label,
        ),
        _record(
            "rastir_cost:budget_used:ratio", f"rastir_cost:spend_usd:window{{{me}}} / {b}", label
        ),
        _record(
            "rastir_cost:budget_remaining:usd", f"{b} - rastir_cost:spend_usd:window{{{me}}}", label
        ),
        _record(
            "rastir_cost:spend_usd_per_day:rate1h",
            f"sum by ({by}) (rate({metric}[1h])) * 86400",
            label,
        ),
        _record(
            "rastir_cost:burn_rate:rate1h",
            f"rastir_cost:spend_usd_per_day:rate1h{{{me}}}{_times(_days(c.window))} / {b}",
            label,
        ),
        _record(
            "rastir_cost:days_to_exhaustion:days",
            f"clamp_min(rastir_cost:budget_remaining:usd{{{me}}}, 0)"
            f" / (rastir_cost:spend_usd_per_day:rate1h{{{me}}} > 0)",
            label,
        ),
        {
            "alert": "RastirCostBudgetWarning",
            "expr": f"rastir_cost:budget_used:ratio{{{me}}} >= {_num(c.warn_ratio)} < 1",
            "labels": {"budget": c.name, "severity": "ticket"},
            "annotations": {
                "summary": f"Cost budget {c.name} is {_num(c.warn_ratio * 100)}% spent",
                "description": (
                    f"{where} spent {{{{ $value | humanizePercentage }}}} of its "
                    f"${b} budget over the last {c.window}."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCostBudgetExhausted",
            "expr": f"rastir_cost:budget_used:ratio{{{me}}} >= 1",
            "labels": {"budget": c.name, "severity": "page"},
            "annotations": {
                "summary": f"Cost budget {c.name} is spent",
                "description": (
                    f"{where} spent {{{{ $value | humanizePercentage }}}} of its "
                    f"${b} budget over the last {c.window}."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCostBurnRateHigh",
            "expr": f"rastir_cost:burn_rate:rate1h{{{me}}} > {_num(c.max_burn_rate)}",
            "for": "15m",
            "labels": {"budget": c.name, "severity": "page"},
            "annotations": {
                "summary": f"Spending fast against cost budget {c.name}",
                "description": (
                    f"{where}: at the last hour's pace the {c.window} spend would be "
                    f'{{{{ $value | printf "%.1f" }}}}x the ${b} budget.'
                ),
                "runbook_url": runbook,
            },
        },
    ]
    return {"name": f"rastir-cost-{c.name}", "rules": rules}


def _guardrail_group(t: Targets, g: Guardrail) -> dict[str, Any]:
    label = {"guardrail": g.name}
    me = f'guardrail="{g.name}"'
    by = ", ".join(g.by)
    blocked = _sel(
        "rastir_guardrail_violations_total", *g.match, f"action=~{_quote(g.block_actions)}"
    )
    calls = f"sum by ({by}) (rate({_sel('rastir_llm_calls_total', *g.match)}[{{w}}]))"
    rules: list[dict[str, Any]] = [
        _record("rastir_guardrail:max_block_ratio", f"vector({_num(g.max_block_ratio)})", label)
    ]
    windows = sorted({"5m", "1h", g.window}, key=lambda w: parse_duration(w, "window"))
    for w in windows:
        total = calls.format(w=w)
        expr = f"(sum by ({by}) (rate({blocked}[{w}])) or 0 * {total}) / {total}"
        rules.append(_record(f"rastir_guardrail:block_ratio:rate{w}", expr, label))
    where = " ".join(f"{x}={{{{ $labels.{x} }}}}" for x in g.by)
    rules.append(
        {
            "alert": "RastirGuardrailBlockRateHigh",
            "expr": (
                f"rastir_guardrail:block_ratio:rate{g.window}{{{me}}} > {_num(g.max_block_ratio)}"
            ),
            "for": g.for_,
            "labels": {"guardrail": g.name, "severity": g.severity},
            "annotations": {
                "summary": f"Guardrail objective {g.name}: too many LLM calls blocked",
                "description": (
                    f"{where}: {{{{ $value | humanizePercentage }}}} of LLM calls were blocked "
                    f"by a guardrail over {g.window} (objective: at most "
                    f"{_num(g.max_block_ratio * 100)}%)."
                ),
                "runbook_url": f"{t.runbook_url}#rastirguardrailblockratehigh",
            },
        }
    )
    return {"name": f"rastir-guardrail-{g.name}", "rules": rules}


# Reasons of rastir_collector_rejected_requests_total that mean the collector could not
# take the load (docs/metrics.md), as opposed to a sender's mistake (401, 413, 400...).
SHEDDING_REASONS: Final = "|".join(
    (
        "inflight_limit",
        "queue_delay",
        "loop_lag",
        "queue_full",
        "export_queue_full",
        "not_ready",
        "shutting_down",
        "store_error",
        "internal_error",
    )
)


def _collector_group(t: Targets, c: CollectorAlerts) -> dict[str, Any]:
    runbook = f"{t.runbook_url}#collector-health"
    rejected = "rastir_collector_rejected_requests_total"
    shed = f'sum(rate({rejected}{{reason=~"{SHEDDING_REASONS}"}}[10m]))'
    offered = (
        f"(sum(rate(rastir_collector_ingested_batches_total[10m])) + sum(rate({rejected}[10m])))"
    )
    lost = " + ".join(
        f"(sum(rate({m}[10m])) or vector(0))"
        for m in (
            "rastir_collector_client_dropped_spans_total",
            "rastir_collector_export_dropped_spans_total",
            "rastir_collector_store_failed_spans_total",
        )
    )
    rules: list[dict[str, Any]] = [
        {
            "alert": "RastirCollectorDown",
            "expr": "rastir_collector_up == 0 or absent(rastir_collector_up)",
            "for": c.down_for,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "The rastir collector is down or not scraped",
                "description": (
                    f"For {c.down_for} no collector reported rastir_collector_up=1: spans are "
                    "refused (the senders queue, then drop) and no metrics are fresh."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCollectorSheddingLoad",
            "expr": f"{shed} / {offered} > {_num(c.max_refused_ratio)}",
            "for": c.refused_for,
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "The rastir collector refuses ingest for lack of capacity",
                "description": (
                    "{{ $value | humanizePercentage }} of ingest requests were refused with "
                    "429 or 503 (in-flight limit, event-loop lag, full write queue, OTLP "
                    "export behind, store errors) over 10m."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCollectorLosingSpans",
            "expr": f"{lost} > 0",
            "for": c.lost_for,
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Spans are being lost for good",
                "description": (
                    '{{ $value | printf "%.2f" }} spans per second were dropped by senders '
                    "(their queue or retries ran out), by the OTLP export, or by the store "
                    "after their 202."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCollectorStoreFailing",
            "expr": "sum(increase(rastir_collector_store_write_errors_total[10m])) > 0",
            "for": c.store_errors_for,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "The rastir collector cannot write its trace store",
                "description": (
                    "{{ $value | humanize }} store transactions failed over 10m (locked by "
                    "another process, disk full or read-only, I/O errors). Acknowledged "
                    "spans wait in the write queue and are retried; once it is full, "
                    "ingest answers 429 and senders start to drop. The log says why."
                ),
                "runbook_url": runbook,
            },
        },
        {
            "alert": "RastirCardinalityGuardFolding",
            "expr": "sum by (metric, label) (rate(rastir_label_overflow_total[15m])) > 0",
            "for": c.folded_for,
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Label {{ $labels.label }} of {{ $labels.metric }} is unbounded",
                "description": (
                    "New values of {{ $labels.label }} in {{ $labels.metric }}_* are folded "
                    "into __other__ by the cardinality guard: some sender puts ids or free "
                    "text in a name."
                ),
                "runbook_url": runbook,
            },
        },
    ]
    return {"name": "rastir-collector", "rules": rules}


HEADER: Final = (
    "# GENERATED by `python -m deploy.generate` from deploy/prometheus/targets.yaml.\n"
    "# Do not edit: change the targets file and regenerate (docs/operations.md).\n"
)


def rule_groups(t: Targets) -> dict[str, list[dict[str, Any]]]:
    """Rule groups by file name (``slo.rules.yml``, ``cost.rules.yml``, ...)."""
    return {
        "slo.rules.yml": [_slo_group(t, s) for s in t.slos],
        "cost.rules.yml": [_cost_group(t, c) for c in t.costs],
        "guardrail.rules.yml": [_guardrail_group(t, g) for g in t.guardrails],
        "collector.rules.yml": [_collector_group(t, t.collector)] if t.collector else [],
    }


def dump_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, width=1000, allow_unicode=True)


def render_rule_files(t: Targets) -> dict[str, str]:
    """The text of every rules file, by file name."""
    return {name: HEADER + dump_yaml({"groups": groups}) for name, groups in rule_groups(t).items()}
