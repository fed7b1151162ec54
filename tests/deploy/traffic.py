"""Realistic wire traffic for the operations tests: every span kind the collector counts.

One *wave* is a handful of batches from three services: an agent service ("shop")
whose agents call LLMs, tools, retrieval and an MCP server, the MCP server itself
("tools-mcp"), and a support service ("support") behind HTTP. Attribute names follow
docs/metrics.md. Each wave also carries one thing for each of the collector's own
health counters: a batch reporting client drops, an over-long attribute (truncated)
and a malformed request (rejected). :func:`sdk_wave` adds agent runs made with the
real SDK (decorators, exporter thread, HTTP push) from the service "sdk-app".
"""

from __future__ import annotations

import time
from typing import Any

import rastir
from tests.collector.spans import batch, span, span_id, trace_id

SERVICES = ("shop", "support", "tools-mcp")
MODELS = ("gpt-4o", "claude-3-5-sonnet")


def _llm(
    tid: str,
    parent: str,
    start: int,
    *,
    model: str,
    provider: str,
    agent: str,
    ms: float,
    ttft_ms: float | None = None,
    status: str = "ok",
    error_type: str | None = None,
    cost: float = 0.0042,
    **extra: Any,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai__operation__name": "chat",
        "gen_ai__request__model": model,
        "gen_ai__provider__name": provider,
        "gen_ai__agent__name": agent,
    }
    if status == "ok":
        attrs.update(
            gen_ai__response__model=model,
            gen_ai__usage__input_tokens=812,
            gen_ai__usage__output_tokens=143,
            gen_ai__response__finish_reasons=["stop"],
            rastir__cost__usd=cost,
        )
    if ttft_ms is not None:
        attrs["rastir__ttft_ms"] = ttft_ms
    attrs.update(extra)
    return span(
        trace=tid,
        parent=parent,
        kind="llm",
        name=f"chat {model}",
        start=start,
        duration_ms=ms,
        status=status,
        error_type=error_type,
        **attrs,
    )


def _shop_trace(start: int, wave: int) -> list[dict[str, Any]]:
    """One planner run: retrieval, two LLM calls (one streaming), a tool, an MCP call."""
    tid = trace_id()
    root = span(
        trace=tid,
        kind="agent",
        name="planner",
        start=start,
        duration_ms=4200,
        gen_ai__agent__name="planner",
    )
    rid = root["span_id"]
    out = [root]
    out.append(
        span(
            trace=tid,
            parent=rid,
            kind="retrieval",
            name="vector_search",
            start=start + 1_000_000,
            duration_ms=85,
            gen_ai__agent__name="planner",
            rastir__retrieval__documents=5,
        )
    )
    out.append(
        _llm(
            tid,
            rid,
            start + 90_000_000,
            model="gpt-4o",
            provider="openai",
            agent="planner",
            ms=1800,
            ttft_ms=420,
        )
    )
    out.append(
        _llm(
            tid,
            rid,
            start + 1_900_000_000,
            model="claude-3-5-sonnet",
            provider="anthropic",
            agent="planner",
            ms=2300,
            ttft_ms=1350,
            cost=0.0118,
        )
    )
    out.append(
        span(
            trace=tid,
            parent=rid,
            kind="tool",
            name="weather",
            start=start + 3_000_000_000,
            duration_ms=35,
            gen_ai__tool__name="weather",
            gen_ai__agent__name="planner",
        )
    )
    client = span(
        trace=tid,
        parent=rid,
        kind="mcp.client",
        name="tools/call search",
        start=start + 3_100_000_000,
        duration_ms=120,
        mcp__method__name="tools/call",
        gen_ai__tool__name="search",
        mcp__session__id="s-1",
        jsonrpc__request__id=str(wave),
    )
    out.append(client)
    # a failing tool call: the agent retries without it
    out.append(
        span(
            trace=tid,
            parent=rid,
            kind="tool",
            name="calculator",
            start=start + 3_300_000_000,
            duration_ms=4,
            status="error",
            error_type="tool_error",
            gen_ai__tool__name="calculator",
            gen_ai__agent__name="planner",
        )
    )
    # an evaluation of the answer, and a @metric function
    out.append(
        span(
            trace=tid,
            parent=rid,
            kind="evaluation",
            name="faithfulness",
            start=start + 4_000_000_000,
            duration_ms=600,
            rastir__evaluation__name="faithfulness",
            rastir__evaluation__passed=True,
            rastir__evaluation__score=0.92,
        )
    )
    out.append(
        span(
            trace=tid,
            parent=rid,
            kind="custom",
            name="rerank",
            start=start + 80_000_000,
            duration_ms=3,
            rastir__metric__name="rerank",
        )
    )
    return out


def _shop_failures(start: int) -> list[dict[str, Any]]:
    """A run that fails on a rate limit, a slow researcher run, a blocked prompt."""
    tid = trace_id()
    root = span(
        trace=tid,
        kind="agent",
        name="planner",
        start=start,
        duration_ms=900,
        status="error",
        error_type="rate_limit",
        gen_ai__agent__name="planner",
    )
    out = [
        root,
        _llm(
            tid,
            root["span_id"],
            start + 1_000_000,
            model="gpt-4o",
            provider="openai",
            agent="planner",
            ms=350,
            status="error",
            error_type="rate_limit",
        ),
    ]
    tid2 = trace_id()
    slow = span(
        trace=tid2,
        kind="agent",
        name="researcher",
        start=start,
        duration_ms=75_000,  # above the 60 s latency objective
        gen_ai__agent__name="researcher",
    )
    out += [
        slow,
        _llm(
            tid2,
            slow["span_id"],
            start + 5_000_000,
            model="gpt-4o",
            provider="openai",
            agent="researcher",
            ms=41_000,
            ttft_ms=2600,
            cost=0.0631,
        ),
        _llm(
            tid2,
            slow["span_id"],
            start + 50_000_000_000,
            model="gpt-4o",
            provider="openai",
            agent="researcher",
            ms=900,
            rastir__guardrail__intervened=True,
            rastir__guardrail__action="BLOCKED",
            rastir__guardrail__category="pii",
        ),
        _llm(
            tid2,
            slow["span_id"],
            start + 52_000_000_000,
            model="claude-3-5-sonnet",
            provider="anthropic",
            agent="researcher",
            ms=1200,
            rastir__guardrail__intervened=True,
            rastir__guardrail__action="ANONYMIZED",
            rastir__guardrail__category="pii",
        ),
        span(
            trace=tid2,
            parent=slow["span_id"],
            kind="evaluation",
            name="relevance",
            start=start + 60_000_000_000,
            duration_ms=500,
            rastir__evaluation__name="relevance",
            rastir__evaluation__passed=False,
            rastir__evaluation__score=0.35,
        ),
        span(
            trace=tid2,
            parent=slow["span_id"],
            kind="evaluation",
            name="tone",
            start=start + 61_000_000_000,
            duration_ms=200,
            rastir__evaluation__name="tone",
            rastir__evaluation__score=0.7,  # a score without a verdict
        ),
        span(trace=tid2, kind="trace", name="housekeeping", start=start, duration_ms=2),
    ]
    return out


def _mcp_server(start: int) -> list[dict[str, Any]]:
    tid = trace_id()
    http = span(
        trace=tid,
        kind="http.server",
        name="POST /mcp",
        start=start,
        duration_ms=118,
        http__request__method="POST",
        http__route="/mcp",
        http__response__status_code=200,
        url__path="/mcp",
    )
    server = span(
        trace=tid,
        parent=http["span_id"],
        kind="mcp.server",
        name="tools/call search",
        start=start + 1_000_000,
        duration_ms=110,
        mcp__method__name="tools/call",
        gen_ai__tool__name="search",
    )
    failed = span(
        trace=tid,
        parent=http["span_id"],
        kind="mcp.server",
        name="resources/read",
        start=start + 2_000_000,
        duration_ms=7,
        status="error",
        error_type="tool_error",
        mcp__method__name="resources/read",
    )
    return [http, server, failed]


def _support(start: int) -> list[dict[str, Any]]:
    out = []
    for status_code, ms in ((200, 240), (200, 310), (404, 12), (500, 1500)):
        tid = trace_id()
        out.append(
            span(
                trace=tid,
                sid=span_id(),
                kind="http.server",
                name="POST /chat/{id}",
                start=start,
                duration_ms=ms,
                status="error" if status_code >= 500 else "ok",
                error_type="internal_error" if status_code >= 500 else None,
                http__request__method="POST",
                http__route="/chat/{id}",
                http__response__status_code=status_code,
                url__path="/chat/42",
            )
        )
    tid = trace_id()
    root = span(
        trace=tid,
        kind="agent",
        name="triage",
        start=start,
        duration_ms=1300,
        gen_ai__agent__name="triage",
    )
    out += [
        root,
        _llm(
            tid,
            root["span_id"],
            start + 2_000_000,
            model="gpt-4o",
            provider="openai",
            agent="triage",
            ms=1100,
            ttft_ms=260,
            cost=0.0019,
        ),
        span(
            trace=tid,
            parent=root["span_id"],
            kind="agent",
            name="cancelled-run",
            start=start,
            duration_ms=50,
            status="cancelled",
            gen_ai__agent__name="triage",
        ),
    ]
    return out


def wave(wave_number: int) -> list[dict[str, Any]]:
    """The batches of one wave, timestamped now."""
    now = time.time_ns() - 90_000_000_000  # spans that ended within the last minute or so
    long_value = "x" * 5000  # above the default max_attr_value_len (4096): truncated
    shop = _shop_trace(now, wave_number) + _shop_trace(now + 5_000_000, wave_number)
    shop += _shop_failures(now)
    shop[0]["attributes"]["app.note"] = long_value
    return [
        # sdk_events: what the shop's middleware refused (rastir_collector_client_events_total)
        {**batch(shop, service="shop", dropped=2), "sdk_events": {"http.invalid_traceparent": 1}},
        batch(_mcp_server(now), service="tools-mcp"),
        batch(_support(now), service="support"),
    ]


# --- the same kinds of spans through the real SDK (decorators, exporter, HTTP push) ------

SDK_SERVICE = "sdk-app"


@rastir.tool(tool_name="lookup")
def _lookup(city: str) -> str:
    return f"sunny in {city}"


@rastir.retrieval
def _search_docs(query: str) -> list[str]:
    return [query, query.upper()]


@rastir.llm(model="gpt-4o-mini", provider="openai")
def _chat(prompt: str) -> str:
    return f"answer to {prompt}"


@rastir.metric
def _score(text: str) -> int:
    return len(text)


@rastir.agent(agent_name="concierge")
def _concierge(city: str) -> int:
    docs = _search_docs(city)
    answer = _chat(f"{_lookup(city)} {docs[0]}")
    return _score(answer)


def sdk_wave(runs: int = 3) -> None:
    """Agent runs through the SDK; the caller flushes (``rastir.flush``)."""
    for i in range(runs):
        _concierge(f"city-{i}")
