"""The seven Grafana dashboards, described compactly and rendered to Grafana JSON.

Each :class:`Panel` names its title, unit, description and PromQL queries; the
renderer lays panels out on Grafana's 24-column grid and adds the template variables
(``datasource``, ``service``, ``agent``, ``model``; the SRE dashboard adds ``slo``).
Every query uses only metrics the collector exposes (docs/metrics.md) or series the
generated rules record (docs/operations.md); ``tests/deploy`` runs each of them
against a real Prometheus scraping a real collector.

Queries use Grafana's ``$__rate_interval`` and ``$__range`` and the variables as
regular expressions (``service=~"$service"``): "All" is ``.*``, which also matches
a series without the label (a recorded SLO tracked per service only, say).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from deploy.rulegen import Targets

__all__ = ["DASHBOARDS", "Dashboard", "Panel", "Query", "Row", "dashboards", "render_dashboards"]

RI: Final = "$__rate_interval"
RANGE: Final = "$__range"
S: Final = 'service=~"$service"'
A: Final = 'agent=~"$agent"'
M: Final = 'model=~"$model"'
BLOCK: Final = 'action=~"(?i)block(ed)?"'
OUTPUT: Final = 'token_type="output"'
LE_1S: Final = 'le="1.0"'
PASSED: Final = 'result="passed"'
FAILED: Final = 'result="failed"'
VERDICT: Final = 'result=~"passed|failed"'
SLO: Final = 'slo=~"$slo"'
DS: Final = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries, stat, gauge, bargauge, table
    width: int = 12
    height: int = 8
    #: False for panels that stay empty until something rare happens (an alert, a
    #: cardinality fold); the real-data test requires every other panel to return data.
    expect_data: bool = True
    #: Axis bounds; a percentunit panel starts at 0 unless ``min`` says otherwise.
    min: float | None = None
    max: float | None = None
    thresholds: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    file: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    extra_variables: tuple[dict[str, Any], ...] = field(default=())

    def panels(self) -> list[Panel]:
        return [p for p in self.items if isinstance(p, Panel)]


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def sel(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}"


def rate(metric: str, *matchers: str, by: str = "", window: str = RI) -> str:
    group = f"sum by ({by}) " if by else "sum "
    return f"{group}(rate({metric}{sel(*matchers)}[{window}]))"


def quantile(phi: float, histogram: str, *matchers: str, by: str = "", window: str = RI) -> str:
    labels = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({phi}, sum by ({labels}) "
        f"(rate({histogram}_bucket{sel(*matchers)}[{window}])))"
    )


def error_ratio(metric: str, bad: str, *matchers: str, by: str = "") -> str:
    """Bad over all; ``or vector(0)`` keeps a 0 when nothing failed (ungrouped only)."""
    num = rate(metric, *matchers, bad, by=by)
    if not by:
        num = f"({num} or vector(0))"
    return f"{num} / {rate(metric, *matchers, by=by)}"


def percentiles(histogram: str, *matchers: str) -> tuple[Query, ...]:
    return tuple(
        q(quantile(p, histogram, *matchers), f"p{round(p * 100)}") for p in (0.5, 0.95, 0.99)
    )


def ts(title: str, unit: str, description: str, *queries: Query, **kw: Any) -> Panel:
    return Panel(title, unit, description, queries, **kw)


def stat(title: str, unit: str, description: str, *queries: Query, **kw: Any) -> Panel:
    kw.setdefault("width", 6)
    kw.setdefault("height", 4)
    return Panel(title, unit, description, queries, kind="stat", **kw)


def table(title: str, unit: str, description: str, *queries: Query, **kw: Any) -> Panel:
    return Panel(title, unit, description, queries, kind="table", **kw)


def bars(title: str, unit: str, description: str, *queries: Query, **kw: Any) -> Panel:
    return Panel(title, unit, description, queries, kind="bargauge", **kw)


# --- the dashboards ---------------------------------------------------------------------

LLM_SEL: Final = (S, A, M)


def _llm_performance() -> Dashboard:
    calls = "rastir_llm_calls_total"
    dur = "rastir_llm_duration_seconds"
    tokens = "rastir_llm_tokens_total"
    return Dashboard(
        "rastir-llm-performance",
        "llm-performance.json",
        "rastir / LLM Performance",
        "LLM calls seen by the rastir collector: throughput, errors, latency and tokens.",
        (
            Row("Overview"),
            stat(
                "LLM calls per second",
                "reqps",
                "LLM calls of the selection, all outcomes.",
                q(rate(calls, *LLM_SEL)),
            ),
            stat(
                "LLM error ratio",
                "percentunit",
                "Share of LLM calls that ended in an error (cancelled calls are not errors).",
                q(error_ratio(calls, 'status="error"', *LLM_SEL)),
                thresholds=((0, "green"), (0.01, "orange"), (0.05, "red")),
            ),
            stat(
                "p95 LLM latency",
                "s",
                "95th percentile of LLM call duration.",
                q(quantile(0.95, dur, *LLM_SEL)),
            ),
            stat(
                "Tokens per second",
                "short",
                "Input and output tokens used per second.",
                q(rate(tokens, *LLM_SEL)),
            ),
            Row("Throughput and errors"),
            ts(
                "Calls by model",
                "reqps",
                "LLM calls per second, by model.",
                q(rate(calls, *LLM_SEL, by="model"), "{{model}}"),
            ),
            ts(
                "Calls by status",
                "reqps",
                "LLM calls per second by outcome: ok, error, cancelled.",
                q(rate(calls, *LLM_SEL, by="status"), "{{status}}"),
            ),
            ts(
                "Error ratio by model",
                "percentunit",
                "Share of each model's calls that failed; a model without errors shows no line.",
                q(error_ratio(calls, 'status="error"', *LLM_SEL, by="model"), "{{model}}"),
            ),
            ts(
                "Errors by category",
                "ops",
                "Failed LLM calls per second by error category (timeout, rate_limit, ...).",
                q(rate("rastir_llm_errors_total", *LLM_SEL, by="error_type"), "{{error_type}}"),
            ),
            Row("Latency"),
            ts(
                "LLM latency percentiles",
                "s",
                "Median, 95th and 99th percentile LLM call duration.",
                *percentiles(dur, *LLM_SEL),
            ),
            ts(
                "p95 latency by model",
                "s",
                "95th percentile LLM call duration, by model.",
                q(quantile(0.95, dur, *LLM_SEL, by="model"), "{{model}}"),
            ),
            ts(
                "Mean latency by provider",
                "s",
                "Average LLM call duration, by provider.",
                q(
                    f"{rate(dur + '_sum', *LLM_SEL, by='provider')} / "
                    f"{rate(dur + '_count', *LLM_SEL, by='provider')}",
                    "{{provider}}",
                ),
            ),
            ts(
                "Calls by provider",
                "reqps",
                "LLM calls per second, by provider.",
                q(rate(calls, *LLM_SEL, by="provider"), "{{provider}}"),
            ),
            Row("Tokens"),
            ts(
                "Tokens per second by type",
                "short",
                "Input and output tokens per second.",
                q(rate(tokens, *LLM_SEL, by="token_type"), "{{token_type}}"),
            ),
            ts(
                "Tokens per second by model",
                "short",
                "All tokens per second, by model.",
                q(rate(tokens, *LLM_SEL, by="model"), "{{model}}"),
            ),
            ts(
                "Output tokens per call by model",
                "short",
                "Average output tokens per LLM call, by model: long answers cost time and money.",
                q(
                    f"{rate(tokens, *LLM_SEL, OUTPUT, by='model')} / "
                    f"{rate(calls, *LLM_SEL, by='model')}",
                    "{{model}}",
                ),
            ),
            table(
                "Calls by model and provider over the range",
                "short",
                "LLM calls in the dashboard's time range, by model and provider.",
                q(f"sum by (model, provider) (increase({calls}{sel(*LLM_SEL)}[{RANGE}]))"),
            ),
        ),
    )


def _agents_tools() -> Dashboard:
    runs = "rastir_agent_runs_total"
    adur = "rastir_agent_duration_seconds"
    tools = "rastir_tool_calls_total"
    tdur = "rastir_tool_duration_seconds"
    err = 'status="error"'
    return Dashboard(
        "rastir-agent-tool",
        "agent-tool.json",
        "rastir / Agent & Tool",
        "Agent runs, tool calls, retrieval, MCP operations, HTTP services and @metric functions.",
        (
            Row("Overview"),
            stat(
                "Agent runs per second",
                "reqps",
                "Agent runs of the selection, all outcomes.",
                q(rate(runs, S, A)),
            ),
            stat(
                "Agent error ratio",
                "percentunit",
                "Share of agent runs that failed.",
                q(error_ratio(runs, err, S, A)),
                thresholds=((0, "green"), (0.01, "orange"), (0.05, "red")),
            ),
            stat(
                "p95 agent duration",
                "s",
                "95th percentile duration of agent runs.",
                q(quantile(0.95, adur, S, A)),
            ),
            stat(
                "Tool calls per second",
                "reqps",
                "Tool calls of the selection, all outcomes.",
                q(rate(tools, S, A)),
            ),
            Row("Agents"),
            ts(
                "Agent runs by agent",
                "reqps",
                "Agent runs per second, by agent.",
                q(rate(runs, S, A, by="agent"), "{{agent}}"),
            ),
            ts(
                "Agent error ratio by agent",
                "percentunit",
                "Share of each agent's runs that failed; an agent without errors shows no line.",
                q(error_ratio(runs, err, S, A, by="agent"), "{{agent}}"),
            ),
            ts(
                "p95 agent duration by agent",
                "s",
                "95th percentile run duration, by agent.",
                q(quantile(0.95, adur, S, A, by="agent"), "{{agent}}"),
            ),
            ts(
                "Agent errors by category",
                "ops",
                "Failed agent runs per second, by category.",
                q(
                    rate("rastir_agent_errors_total", S, A, by="agent, error_type"),
                    "{{agent}} {{error_type}}",
                ),
            ),
            Row("Tools"),
            ts(
                "Tool calls by tool",
                "reqps",
                "Tool calls per second, by tool.",
                q(rate(tools, S, A, by="tool"), "{{tool}}"),
            ),
            ts(
                "Tool error ratio by tool",
                "percentunit",
                "Share of each tool's calls that failed; a tool without errors shows no line.",
                q(error_ratio(tools, err, S, A, by="tool"), "{{tool}}"),
            ),
            ts(
                "p95 tool duration by tool",
                "s",
                "95th percentile tool call duration, by tool.",
                q(quantile(0.95, tdur, S, A, by="tool"), "{{tool}}"),
            ),
            ts(
                "Tool errors by category",
                "ops",
                "Failed tool calls per second, by category.",
                q(
                    rate("rastir_tool_errors_total", S, A, by="tool, error_type"),
                    "{{tool}} {{error_type}}",
                ),
            ),
            Row("Retrieval"),
            ts(
                "Retrieval calls by status",
                "reqps",
                "Retrieval calls per second, by outcome.",
                q(rate("rastir_retrieval_calls_total", S, A, by="status"), "{{status}}"),
            ),
            ts(
                "Retrieval latency percentiles",
                "s",
                "Median, 95th and 99th percentile duration.",
                *percentiles("rastir_retrieval_duration_seconds", S, A),
            ),
            ts(
                "Documents per retrieval",
                "short",
                "Average documents returned per retrieval call.",
                q(
                    f"{rate('rastir_retrieval_documents_total', S, A, by='agent')} / "
                    f"{rate('rastir_retrieval_calls_total', S, A, by='agent')}",
                    "{{agent}}",
                ),
            ),
            Row("MCP"),
            ts(
                "MCP operations by side, method and tool",
                "reqps",
                "MCP operations per second; a call between two instrumented services counts "
                "once as client and once as server.",
                q(
                    rate("rastir_mcp_requests_total", S, by="side, method, tool"),
                    "{{side}} {{method}} {{tool}}",
                ),
            ),
            ts(
                "MCP error ratio by side",
                "percentunit",
                "Share of MCP operations that failed.",
                q(error_ratio("rastir_mcp_requests_total", err, S, by="side"), "{{side}}"),
            ),
            ts(
                "p95 MCP duration by side and method",
                "s",
                "95th percentile duration of MCP operations.",
                q(
                    quantile(0.95, "rastir_mcp_duration_seconds", S, by="side, method"),
                    "{{side}} {{method}}",
                ),
            ),
            Row("HTTP services"),
            ts(
                "HTTP requests by route and status code",
                "reqps",
                "Requests served by instrumented apps (route templates, never raw paths).",
                q(
                    rate("rastir_http_server_requests_total", S, by="service, route, status_code"),
                    "{{service}} {{route}} {{status_code}}",
                ),
            ),
            ts(
                "HTTP 5xx ratio by service",
                "percentunit",
                "Share of requests answered with 5xx.",
                q(
                    error_ratio(
                        "rastir_http_server_requests_total", 'status_code=~"5.."', S, by="service"
                    ),
                    "{{service}}",
                ),
            ),
            ts(
                "p95 HTTP duration by route",
                "s",
                "95th percentile request duration, by route.",
                q(
                    quantile(0.95, "rastir_http_server_duration_seconds", S, by="route"),
                    "{{route}}",
                ),
            ),
            Row("@metric functions"),
            ts(
                "Function calls by function and status",
                "reqps",
                "Calls of @metric functions per second, by outcome.",
                q(
                    rate("rastir_function_calls_total", S, by="function, status"),
                    "{{function}} {{status}}",
                ),
            ),
            ts(
                "p95 function duration",
                "s",
                "95th percentile duration of @metric functions.",
                q(
                    quantile(0.95, "rastir_function_duration_seconds", S, by="function"),
                    "{{function}}",
                ),
            ),
        ),
    )


def _cost_ttft() -> Dashboard:
    cost = "rastir_llm_cost_usd_total"
    ttft = "rastir_llm_ttft_seconds"
    return Dashboard(
        "rastir-cost-ttft",
        "cost-ttft.json",
        "rastir / Cost & TTFT",
        "Estimated LLM spend (rastir.cost.usd) and time to first token of streaming calls.",
        (
            Row("Overview"),
            stat(
                "Spend over the range",
                "currencyUSD",
                "Estimated US dollars spent on LLM calls in the dashboard's time range.",
                q(f"sum(increase({cost}{sel(*LLM_SEL)}[{RANGE}]))"),
            ),
            stat(
                "Spend per hour",
                "currencyUSD",
                "Current spending pace, in dollars per hour.",
                q(f"{rate(cost, *LLM_SEL)} * 3600"),
            ),
            stat(
                "Cost per call",
                "currencyUSD",
                "Average estimated cost of one LLM call.",
                q(f"{rate(cost, *LLM_SEL)} / {rate('rastir_llm_calls_total', *LLM_SEL)}"),
            ),
            stat(
                "p95 TTFT",
                "s",
                "95th percentile time to first token of streaming calls.",
                q(quantile(0.95, ttft, *LLM_SEL)),
            ),
            Row("Cost"),
            ts(
                "Spend per hour by model",
                "currencyUSD",
                "Dollars per hour, by model.",
                q(f"{rate(cost, *LLM_SEL, by='model')} * 3600", "{{model}}"),
            ),
            ts(
                "Spend per hour by agent",
                "currencyUSD",
                "Dollars per hour, by the agent the calls ran under (empty: outside any agent).",
                q(f"{rate(cost, *LLM_SEL, by='agent')} * 3600", "{{agent}}"),
            ),
            ts(
                "Spend per hour by service",
                "currencyUSD",
                "Dollars per hour, by service.",
                q(f"{rate(cost, *LLM_SEL, by='service')} * 3600", "{{service}}"),
            ),
            ts(
                "Cost per 1k tokens by model",
                "currencyUSD",
                "Dollars per thousand tokens (input and output together), by model.",
                q(
                    f"{rate(cost, *LLM_SEL, by='model')} * 1000 / "
                    f"{rate('rastir_llm_tokens_total', *LLM_SEL, by='model')}",
                    "{{model}}",
                ),
            ),
            table(
                "Spend by service, agent and model over the range",
                "currencyUSD",
                "Dollars spent in the dashboard's time range.",
                q(f"sum by (service, agent, model) (increase({cost}{sel(*LLM_SEL)}[{RANGE}]))"),
            ),
            bars(
                "Cost budget used",
                "percentunit",
                "Share of each cost budget spent over its window (deploy/prometheus/targets.yaml).",
                q(
                    f"rastir_cost:budget_used:ratio{sel(*LLM_SEL)}",
                    "{{budget}} {{service}} {{agent}} {{model}}",
                ),
                max=1,
                thresholds=((0, "green"), (0.8, "orange"), (1, "red")),
            ),
            Row("Time to first token"),
            ts(
                "TTFT percentiles",
                "s",
                "Median, 95th and 99th percentile time to first token.",
                *percentiles(ttft, *LLM_SEL),
            ),
            ts(
                "p95 TTFT by model",
                "s",
                "95th percentile time to first token, by model.",
                q(quantile(0.95, ttft, *LLM_SEL, by="model"), "{{model}}"),
            ),
            ts(
                "Share of streaming calls with a first token within 1 s",
                "percentunit",
                "Streaming calls whose first token came within one second, by model.",
                q(
                    f"{rate(ttft + '_bucket', *LLM_SEL, LE_1S, by='model')} / "
                    f"{rate(ttft + '_count', *LLM_SEL, by='model')}",
                    "{{model}}",
                ),
                max=1,
            ),
            ts(
                "Streaming calls by model",
                "reqps",
                "Calls that reported a time to first token, per second, by model.",
                q(rate(ttft + "_count", *LLM_SEL, by="model"), "{{model}}"),
            ),
        ),
    )


def _evaluation() -> Dashboard:
    ev = "rastir_evaluations_total"
    score = "rastir_evaluation_score"
    return Dashboard(
        "rastir-evaluation",
        "evaluation.json",
        "rastir / Evaluation",
        "Evaluations of LLM output (evaluation spans): verdicts, pass rates and scores.",
        (
            Row("Overview"),
            stat(
                "Evaluations per second",
                "ops",
                "Evaluations run, all results.",
                q(rate(ev, S, A, M)),
            ),
            stat(
                "Pass rate",
                "percentunit",
                "Passed over passed and failed evaluations.",
                q(f"({rate(ev, S, A, M, PASSED)} or vector(0)) / {rate(ev, S, A, M, VERDICT)}"),
                thresholds=((0, "red"), (0.8, "orange"), (0.95, "green")),
            ),
            stat(
                "Mean score",
                "none",
                "Average evaluation score (usually between 0 and 1).",
                q(f"{rate(score + '_sum', S, A, M)} / {rate(score + '_count', S, A, M)}"),
            ),
            stat(
                "Failed evaluations over the range",
                "short",
                "Evaluations with a failing verdict in the dashboard's time range.",
                q(f"sum(increase({ev}{sel(S, A, M, FAILED)}[{RANGE}])) or vector(0)"),
            ),
            Row("Results"),
            ts(
                "Evaluations by name and result",
                "ops",
                "Evaluations per second: passed, failed, none (no verdict) or error.",
                q(rate(ev, S, A, M, by="evaluation, result"), "{{evaluation}} {{result}}"),
            ),
            ts(
                "Pass rate by evaluation",
                "percentunit",
                "Passed over passed and failed, by evaluation.",
                q(
                    f"{rate(ev, S, A, M, PASSED, by='evaluation')} / "
                    f"{rate(ev, S, A, M, VERDICT, by='evaluation')}",
                    "{{evaluation}}",
                ),
                max=1,
            ),
            ts(
                "Mean score by evaluation",
                "none",
                "Average score, by evaluation.",
                q(
                    f"{rate(score + '_sum', S, A, M, by='evaluation')} / "
                    f"{rate(score + '_count', S, A, M, by='evaluation')}",
                    "{{evaluation}}",
                ),
            ),
            ts(
                "10th percentile score by evaluation",
                "none",
                "The score 90% of evaluations beat: the tail of bad answers.",
                q(quantile(0.1, score, S, A, M, by="evaluation"), "{{evaluation}}"),
            ),
            bars(
                "Score distribution over the range",
                "short",
                "Scores in the dashboard's time range, by bucket upper bound (le).",
                q(f"sum by (le) (increase({score}_bucket{sel(S, A, M)}[{RANGE}]))", "{{le}}"),
            ),
            ts(
                "Evaluations without a verdict",
                "ops",
                "Evaluations that gave no verdict (none) or whose evaluator failed (error).",
                q(
                    rate(ev, S, A, M, 'result=~"none|error"', by="evaluation, result"),
                    "{{evaluation}} {{result}}",
                ),
            ),
            Row("Evaluations run by the collector"),
            ts(
                "Collector evaluation run time (p95)",
                "s",
                "95th percentile time the collector took per evaluation, judge retries included.",
                q(
                    f"histogram_quantile(0.95, sum by (le, evaluation) "
                    f"(rate(rastir_evaluation_duration_seconds_bucket[{RI}])))",
                    "{{evaluation}}",
                ),
                expect_data=False,
            ),
            ts(
                "Collector evaluation failures, skips and drops",
                "ops",
                "Evaluations the collector could not run, by reason.",
                q(
                    f"sum by (evaluation, reason) (rate(rastir_evaluation_failures_total[{RI}]))",
                    "failed {{evaluation}} {{reason}}",
                ),
                q(
                    f"sum by (evaluation, reason) (rate(rastir_evaluation_skipped_total[{RI}]))",
                    "skipped {{evaluation}} {{reason}}",
                ),
                q(
                    f"sum by (reason) (rate(rastir_evaluation_dropped_total[{RI}]))",
                    "dropped {{reason}}",
                ),
                expect_data=False,
            ),
            ts(
                "Collector evaluation queue",
                "short",
                "Evaluations waiting for a worker, running now, and the queue's bound.",
                q("sum(rastir_evaluation_queue_depth)", "waiting"),
                q("sum(rastir_evaluation_in_progress)", "running"),
                q("sum(rastir_evaluation_queue_capacity)", "capacity"),
            ),
        ),
    )


def _guardrails(t: Targets) -> Dashboard:
    guard = "rastir_guardrail_violations_total"
    window = t.guardrails[0].window if t.guardrails else "1h"
    return Dashboard(
        "rastir-guardrails",
        "guardrails.json",
        "rastir / Guardrails",
        "LLM calls where a guardrail intervened (rastir.guardrail.*), and the block rate.",
        (
            Row("Overview"),
            stat(
                "Interventions per second",
                "ops",
                "Guardrail interventions, all actions.",
                q(rate(guard, S, A, M)),
            ),
            stat(
                "Block ratio",
                "percentunit",
                "Blocked calls (action matching block or blocked) over all LLM calls.",
                q(
                    f"({rate(guard, S, A, M, BLOCK)} or vector(0)) / "
                    f"{rate('rastir_llm_calls_total', S, A, M)}"
                ),
            ),
            stat(
                "Interventions over the range",
                "short",
                "Guardrail interventions in the dashboard's time range.",
                q(f"sum(increase({guard}{sel(S, A, M)}[{RANGE}]))"),
            ),
            stat(
                "Calls with an intervention",
                "percentunit",
                "Share of LLM calls where any guardrail intervened.",
                q(
                    f"({rate(guard, S, A, M)} or vector(0)) / "
                    f"{rate('rastir_llm_calls_total', S, A, M)}"
                ),
            ),
            Row("Interventions"),
            ts(
                "Interventions by action",
                "ops",
                "Interventions per second, by action.",
                q(rate(guard, S, A, M, by="action"), "{{action}}"),
            ),
            ts(
                "Interventions by category",
                "ops",
                "Interventions per second, by category.",
                q(rate(guard, S, A, M, by="category"), "{{category}}"),
            ),
            ts(
                "Interventions by model",
                "ops",
                "Interventions per second, by model.",
                q(rate(guard, S, A, M, by="model"), "{{model}}"),
            ),
            ts(
                f"Block ratio over {window} vs objective",
                "percentunit",
                "The recorded block ratio per objective and its maximum (targets.yaml).",
                q(
                    f"rastir_guardrail:block_ratio:rate{window}{sel(S, A, M)}",
                    "{{guardrail}} {{service}} {{model}}",
                ),
                q("rastir_guardrail:max_block_ratio", "objective {{guardrail}}"),
            ),
            table(
                "Interventions by category and action over the range",
                "short",
                "Interventions in the dashboard's time range.",
                q(f"sum by (category, action) (increase({guard}{sel(S, A, M)}[{RANGE}]))"),
                width=24,
            ),
        ),
    )


def _sre(t: Targets) -> Dashboard:
    rec = (S, A, M, SLO)
    rc = (S, A, M)
    sw = t.slo_window
    short = [w for w in t.windows() if w != sw]
    fast = [w for w in short if w in ("5m", "1h", "6h")] or short[:1]
    slow = [w for w in short if w not in fast]
    by_slo = "{{slo}} {{service}} {{agent}} {{model}} {{tool}}"
    thresholds = ", ".join(f"{a.factor:g} ({a.long} and {a.short})" for a in t.burn_alerts)
    burn_desc = (
        "Error budget burn rate: 1 spends the budget exactly over the SLO window. The "
        f"alerts fire when both windows of a pair are above: {thresholds}."
    )
    slo_var = {
        "name": "slo",
        "label": "SLO",
        "type": "query",
        "datasource": DS,
        "query": {"query": "label_values(rastir_slo:objective:ratio, slo)", "refId": "slo"},
        "definition": "label_values(rastir_slo:objective:ratio, slo)",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }
    return Dashboard(
        "rastir-sre-budgets",
        "sre-budgets.json",
        "rastir / SRE Budgets",
        "Error budgets, burn rates, days to exhaustion and cost budgets, from the rules "
        "generated out of deploy/prometheus/targets.yaml.",
        (
            Row("Service level objectives"),
            table(
                "SLO status",
                "bool_yes_no",
                f"1 (yes) while the error ratio over {sw} is within the objective's budget.",
                q(f"rastir_slo:objective_met:bool{sel(*rec)}"),
            ),
            bars(
                "Error budget remaining",
                "percentunit",
                f"Share of the {sw} error budget left; below 0 the objective is missed.",
                q(f"rastir_slo:error_budget_remaining:ratio{sel(*rec)}", by_slo),
                min=-1,
                max=1,
                thresholds=((-1e9, "red"), (0.25, "orange"), (0.5, "green")),
            ),
            table(
                "Days to exhaustion",
                "d",
                f"Days until the {sw} error budget is spent at the {t.exhaustion_window} burn "
                "rate; absent while nothing burns.",
                q(f"rastir_slo:days_to_exhaustion:days{sel(*rec)}"),
            ),
            ts(
                f"Error ratio over {sw} vs budget",
                "percentunit",
                "Bad events over all events across the SLO window, and the allowed ratio.",
                q(f"rastir_slo:error_ratio:rate{sw}{sel(*rec)}", by_slo),
                q(f"rastir_slo:error_budget:ratio{sel(SLO)}", "budget {{slo}}"),
            ),
            ts(
                "Burn rate, short windows",
                "none",
                burn_desc,
                *(q(f"rastir_slo:burn_rate:rate{w}{sel(*rec)}", f"{w} {by_slo}") for w in fast),
                thresholds=((0, "green"), (1, "orange"), (14.4, "red")),
            ),
            ts(
                "Burn rate, long windows",
                "none",
                burn_desc,
                *(q(f"rastir_slo:burn_rate:rate{w}{sel(*rec)}", f"{w} {by_slo}") for w in slow),
                thresholds=((0, "green"), (1, "orange"), (3, "red")),
            ),
            ts(
                "Good-event ratio over 1h (SLI)",
                "percentunit",
                "Share of good events over the last hour, per SLO.",
                q(f"1 - rastir_slo:error_ratio:rate1h{sel(*rec)}", by_slo),
                max=1,
            ),
            table(
                "Firing and pending rastir alerts",
                "none",
                "Alerts from the generated rules; empty while all is well.",
                q('ALERTS{alertname=~"Rastir.*"}'),
                expect_data=False,
            ),
            Row("Cost budgets"),
            bars(
                "Cost budget used",
                "percentunit",
                "Share of each cost budget spent over its window.",
                q(
                    f"rastir_cost:budget_used:ratio{sel(*rc)}",
                    "{{budget}} {{service}} {{agent}} {{model}}",
                ),
                max=1,
                thresholds=((0, "green"), (0.8, "orange"), (1, "red")),
            ),
            table(
                "Cost budget remaining",
                "currencyUSD",
                "Dollars left in each cost budget.",
                q(f"rastir_cost:budget_remaining:usd{sel(*rc)}"),
            ),
            table(
                "Days until a cost budget is spent",
                "d",
                "At the last hour's spending pace; absent while nothing is spent.",
                q(f"rastir_cost:days_to_exhaustion:days{sel(*rc)}"),
            ),
            ts(
                "Cost burn rate",
                "none",
                "The last hour's pace as multiples of the budget over its window (1 = on budget).",
                q(
                    f"rastir_cost:burn_rate:rate1h{sel(*rc)}",
                    "{{budget}} {{service}} {{agent}} {{model}}",
                ),
            ),
            Row("Guardrail objective"),
            ts(
                "Guardrail block ratio vs objective",
                "percentunit",
                "Blocked LLM calls over all calls, and the objective's maximum.",
                q(
                    f"rastir_guardrail:block_ratio:rate1h{sel(S, M)}",
                    "{{guardrail}} {{service}} {{model}}",
                ),
                q("rastir_guardrail:max_block_ratio", "objective {{guardrail}}"),
                width=24,
            ),
        ),
        extra_variables=(slo_var,),
    )


def _system() -> Dashboard:
    c = "rastir_collector_"
    return Dashboard(
        "rastir-system-health",
        "system-health.json",
        "rastir / System Health",
        "The collector's own health: intake, refusals, drops, queue, store, export.",
        (
            Row("Overview"),
            stat(
                "Collector up",
                "bool_yes_no",
                "1 while the store is open and intake runs (min over collectors).",
                q(f"min({c}up)"),
            ),
            stat(
                "Spans ingested per second",
                "ops",
                "Spans accepted (202) per second.",
                q(rate(c + "ingested_spans_total", S)),
            ),
            stat(
                "Write queue fill",
                "percentunit",
                "Queued spans over queue capacity (429 above the high-water mark).",
                q(f"max({c}queue_depth / clamp_min({c}queue_capacity, 1))"),
                max=1,
            ),
            stat(
                "Store size",
                "bytes",
                "Size of the SQLite store (0 for the memory store).",
                q(f"max({c}store_size_bytes)"),
            ),
            Row("Intake"),
            ts(
                "Spans ingested by service",
                "ops",
                "Spans accepted per second, by service.",
                q(rate(c + "ingested_spans_total", S, by="service"), "{{service}}"),
            ),
            ts(
                "Spans by kind and status",
                "ops",
                "Spans received per second, by kind and status.",
                q(rate("rastir_spans_total", S, by="kind, status"), "{{kind}} {{status}}"),
            ),
            ts(
                "Batches ingested by service",
                "reqps",
                "Batches accepted per second.",
                q(rate(c + "ingested_batches_total", S, by="service"), "{{service}}"),
            ),
            ts(
                "Rejected ingest requests by reason",
                "reqps",
                "Ingest requests refused (401, 403, 413, 400, 415, 429, 503), by reason.",
                q(rate(c + "rejected_requests_total", by="reason"), "{{reason}}"),
            ),
            ts(
                "Dropped spans",
                "ops",
                "Spans senders dropped before sending, and spans the store refused (queue full).",
                q(rate(c + "client_dropped_spans_total", S, by="service"), "client {{service}}"),
                q(rate(c + "store_dropped_spans_total"), "store"),
            ),
            ts(
                "SDK events by service",
                "ops",
                "Health events senders report (their batches' sdk_events): inbound trace "
                "context their HTTP middleware or MCP bridge refused (a caller or proxy "
                "sending malformed traceparent, tracestate or baggage; the request started "
                "a new trace) and middleware hooks that raised. Not sent in direct OTLP mode.",
                q(
                    rate(c + "client_events_total", S, by="service, event"),
                    "{{service}} {{event}}",
                ),
            ),
            ts(
                "Ingest latency percentiles",
                "s",
                "Time to handle an accepted ingest request.",
                *(
                    q(quantile(p, c + "ingest_duration_seconds"), f"p{round(p * 100)}")
                    for p in (0.5, 0.95, 0.99)
                ),
            ),
            ts(
                "In-flight ingest requests",
                "short",
                "Ingest requests being handled.",
                q(f"sum({c}inflight_requests)", "in flight"),
            ),
            ts(
                "Event loop lag",
                "s",
                "How late the collector's event loop wakes up.",
                q(f"max({c}event_loop_lag_seconds)", "lag"),
            ),
            Row("Store"),
            ts(
                "Store write queue",
                "short",
                "Spans waiting to be written, and the capacity.",
                q(f"sum({c}queue_depth)", "depth"),
                q(f"sum({c}queue_capacity)", "capacity"),
            ),
            ts(
                "Store lag",
                "s",
                "Age of the oldest span queued but not yet written.",
                q(f"max({c}store_lag_seconds)", "lag"),
            ),
            ts(
                "Store write errors and lost spans",
                "ops",
                "Failed store transactions (retried with the spans kept queued: a locked "
                "database, a full or read-only disk), and spans lost after their 202.",
                q(rate(c + "store_write_errors_total"), "write errors"),
                q(rate(c + "store_failed_spans_total", by="reason"), "lost {{reason}}"),
            ),
            ts(
                "Stored spans and traces",
                "short",
                "Spans and traces the store holds.",
                q(f"sum({c}store_spans)", "spans"),
                q(f"sum({c}store_traces)", "traces"),
            ),
            ts(
                "Store size over time",
                "bytes",
                "Size of the store's database file.",
                q(f"sum({c}store_size_bytes)", "size"),
            ),
            Row("Limits and export"),
            ts(
                "OTLP export",
                "ops",
                "Spans the export target accepted, spans dropped for good (by reason), and "
                "failed export requests (each retry counts), per second.",
                q(rate(c + "exported_spans_total", by="exporter"), "exported {{exporter}}"),
                q(
                    rate(c + "export_dropped_spans_total", by="exporter, reason"),
                    "dropped {{exporter}} {{reason}}",
                ),
                q(rate(c + "export_failures_total", by="exporter"), "failed {{exporter}}"),
            ),
            ts(
                "OTLP export queue",
                "short",
                "Spans waiting for export, and the queue's bound (0 while export is off).",
                q(f"sum by (exporter) ({c}export_queue_depth)", "depth {{exporter}}"),
                q(f"sum by (exporter) ({c}export_queue_capacity)", "capacity {{exporter}}"),
            ),
            ts(
                "Sampled-out spans",
                "ops",
                "Spans counted in the metrics but neither stored nor exported, by sampling "
                "stage (head: the SDK's decision; tail: the collector's tail sampler).",
                q(rate(c + "sampled_out_spans_total", by="stage"), "{{stage}}"),
            ),
            ts(
                "Tail-sampling decisions",
                "ops",
                "Traces the tail sampler kept or dropped per second, by the rule that decided.",
                q(
                    rate(c + "tail_sampling_traces_total", by="decision, reason"),
                    "{{decision}} {{reason}}",
                ),
            ),
            ts(
                "Truncated values by field",
                "ops",
                "Values cut to the collector's limits.",
                q(rate(c + "truncated_total", by="field"), "{{field}}"),
            ),
            ts(
                "Cardinality guard folds",
                "ops",
                "Label values folded into __other__; any line here means a label is unbounded.",
                q(rate("rastir_label_overflow_total", by="metric, label"), "{{metric}} {{label}}"),
                expect_data=False,
            ),
            table(
                "Collector build",
                "none",
                "Version and Python of each collector.",
                q(f"{c}build_info"),
            ),
        ),
    )


def dashboards(t: Targets) -> list[Dashboard]:
    """The seven dashboards; ``t`` supplies the windows the rules record."""
    return [
        _llm_performance(),
        _agents_tools(),
        _cost_ttft(),
        _evaluation(),
        _guardrails(t),
        _sre(t),
        _system(),
    ]


DASHBOARDS: Final = (
    "LLM Performance",
    "Agent & Tool",
    "Cost & TTFT",
    "Evaluation",
    "Guardrails",
    "SRE Budgets",
    "System Health",
)


# --- rendering --------------------------------------------------------------------------


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


VARIABLES: Final = (
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
    },
    _variable("service", "Service", "label_values(rastir_spans_total, service)"),
    _variable(
        "agent", "Agent", 'label_values(rastir_agent_runs_total{service=~"$service"}, agent)'
    ),
    _variable("model", "Model", 'label_values(rastir_llm_calls_total{service=~"$service"}, model)'),
)


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"color": color, "value": None if i == 0 else value}
        for i, (value, color) in enumerate(p.thresholds or ((0, "green"),))
    ]
    defaults: dict[str, Any] = {
        "unit": p.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if p.kind in ("stat", "bargauge") else "palette-classic"},
    }
    if p.max is not None:
        defaults["max"] = p.max
    if p.min is not None:
        defaults["min"] = p.min
    elif p.unit == "percentunit":
        defaults["min"] = 0
    targets = []
    for i, qu in enumerate(p.queries):
        instant = p.kind in ("table", "bargauge", "stat")
        target: dict[str, Any] = {
            "refId": chr(ord("A") + i),
            "datasource": DS,
            "expr": qu.expr,
            "legendFormat": qu.legend or "__auto",
            "range": not instant,
            "instant": instant,
        }
        if p.kind == "table":
            target["format"] = "table"
        targets.append(target)
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": targets,
    }
    if p.kind == "timeseries":
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif p.kind == "stat":
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    elif p.kind == "bargauge":
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
        }
    elif p.kind == "table":
        out["options"] = {"showHeader": True, "cellHeight": "sm"}
        out["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}}
        ]
    return out


def render(d: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of one dashboard."""
    panels: list[dict[str, Any]] = []
    x = y = row_h = 0
    pid = 0
    for item in d.items:
        pid += 1
        if isinstance(item, Row):
            if x:
                y += row_h
            x = row_h = 0
            panels.append(
                {
                    "id": pid,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            y += 1
            continue
        if x + item.width > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel_json(item, pid, x, y))
        x += item.width
        row_h = max(row_h, item.height)
    variables = [*VARIABLES, *d.extra_variables]
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["rastir"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "links": [
            {
                "title": "rastir dashboards",
                "type": "dashboards",
                "tags": ["rastir"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables},
        "panels": panels,
    }


def render_dashboards(t: Targets) -> dict[str, str]:
    """Every dashboard's JSON text, by file name."""
    return {
        d.file: json.dumps(render(d), indent=2, ensure_ascii=False) + "\n" for d in dashboards(t)
    }
