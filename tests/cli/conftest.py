"""A real collector (uvicorn on 127.0.0.1) holding known traces, for the CLI viewers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rastir.collector import CollectorSettings, create_app
from tests.collector.server import serving
from tests.collector.spans import span, span_id, trace_id

TOKEN = "s3cret-query-token"


@dataclass(frozen=True)
class Known:
    """The collector's URL and the ids of the three traces it holds."""

    url: str
    ok: str  # planner agent, gpt-4o, service checkout
    failed: str  # support agent calls an MCP tool that fails; services checkout + tools
    fast: str  # a 5 ms batch job, gpt-4o-mini


def _post(url: str, service: str, spans: list[dict[str, Any]]) -> None:
    body = json.dumps({"resource": {"service.name": service}, "spans": spans}).encode()
    request = urllib.request.Request(
        f"{url}/v1/telemetry",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def _load(url: str) -> Known:
    now = time.time_ns()
    t0 = now - 120 * 10**9  # two minutes ago
    ok, failed, fast = trace_id(), trace_id(), trace_id()

    root, llm, tool = span_id(), span_id(), span_id()
    checkout = [
        span(
            trace=ok,
            sid=root,
            kind="agent",
            name="planner",
            start=t0,
            duration_ms=1200,
            gen_ai__agent__name="planner",
        ),
        span(
            trace=ok,
            sid=llm,
            parent=root,
            kind="llm",
            name="chat gpt-4o",
            start=t0 + 10**8,
            duration_ms=800,
            gen_ai__request__model="gpt-4o",
            gen_ai__response__model="gpt-4o-2024-08-06",
            gen_ai__agent__name="planner",
            gen_ai__usage__input_tokens=100,
            gen_ai__usage__output_tokens=20,
            rastir__cost__usd=0.0045,
        ),
        span(
            trace=ok,
            sid=tool,
            parent=root,
            kind="tool",
            name="weather",
            start=t0 + 10**9,
            duration_ms=150,
            gen_ai__agent__name="planner",
        ),
    ]
    t1 = t0 + 30 * 10**9
    http, agent, client, server = span_id(), span_id(), span_id(), span_id()
    checkout += [
        span(
            trace=failed,
            sid=http,
            kind="http.server",
            name="POST /runs",
            start=t1,
            duration_ms=300,
            status="error",
            error_type="internal_error",
            http__response__status_code=502,
        ),
        span(
            trace=failed,
            sid=agent,
            parent=http,
            kind="agent",
            name="support",
            start=t1 + 10**6,
            duration_ms=290,
            status="error",
            error_type="internal_error",
            gen_ai__agent__name="support",
        ),
        span(
            trace=failed,
            sid=client,
            parent=agent,
            kind="mcp.client",
            name="tools/call lookup_order",
            start=t1 + 10**8,
            duration_ms=40,
            status="error",
            error_type="tool_error",
            gen_ai__agent__name="support",
        ),
    ]
    tools = [
        span(
            trace=failed,
            sid=server,
            parent=client,
            kind="mcp.server",
            name="tools/call lookup_order",
            start=t1 + 11 * 10**7,
            duration_ms=20,
            status="error",
            error_type="tool_error",
        ),
    ]
    t2 = t0 + 60 * 10**9
    batch = [
        span(
            trace=fast,
            kind="llm",
            name="summarise",
            start=t2,
            duration_ms=5,
            gen_ai__request__model="gpt-4o-mini",
            gen_ai__usage__input_tokens=7,
            gen_ai__usage__output_tokens=3,
        ),
    ]
    _post(url, "checkout", checkout)
    _post(url, "tools", tools)
    _post(url, "batch", batch)
    return Known(url, ok, failed, fast)


def _settings(**kw: Any) -> CollectorSettings:
    return CollectorSettings(store="memory", ack="committed", access_log=False, **kw)


@pytest.fixture(scope="module")
def known() -> Iterator[Known]:
    """An open collector with three known traces."""
    with serving(create_app(_settings())) as url:
        yield _load(url)


@pytest.fixture(scope="module")
def guarded() -> Iterator[Known]:
    """A collector whose query API wants ``TOKEN``."""
    with serving(create_app(_settings(query_token=TOKEN))) as url:
        yield _load(url)
