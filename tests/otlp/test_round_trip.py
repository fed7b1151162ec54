"""Real rastir spans, stored by collector A, sent as OTLP to collector B: the same trees."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest

import rastir
from rastir._wire import WireSpan
from rastir.export.otlp import encode_request, encode_request_json
from tests.collector.conftest import RunCollector

pytestmark = pytest.mark.anyio


class Overloaded(Exception):
    status_code = 529


@rastir.llm(model="claude-sonnet-4", provider="anthropic")
def ask(q: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "model": "claude-sonnet-4-20250514",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 7},
    }


@rastir.llm(model="claude-sonnet-4", provider="anthropic")
def ask_overloaded(q: str) -> str:
    raise Overloaded("overloaded")


@rastir.tool(tool_name="lookup")
def lookup(q: str) -> str:
    return q


@rastir.retrieval
def fetch(q: str) -> list[str]:
    return [q]


@rastir.metric
def score(q: str) -> int:
    return len(q)


@rastir.agent(agent_name="planner")
async def plan(q: str) -> str:
    ask(q)
    try:
        ask_overloaded(q)
    except Overloaded:
        pass
    fetch(q)
    score(q)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await cancelled_tool(q)
    return lookup(q)


@rastir.tool(tool_name="slow")
async def cancelled_tool(q: str) -> None:
    await anyio.sleep(10)


_EXTRAS = ("children", "service", "orphan", "duration_ns")


def flatten(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack = list(tree["spans"])
    while stack:
        node = stack.pop()
        stack.extend(node["children"])
        out[node["span_id"]] = {k: v for k, v in node.items() if k != "children"}
    return out


def wire_spans(tree: dict[str, Any]) -> list[WireSpan]:
    return [
        msgspec.convert({k: v for k, v in node.items() if k not in _EXTRAS}, WireSpan)
        for node in flatten(tree).values()
    ]


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_trees_sent_as_otlp_to_another_collector_come_back_equal(
    run_collector: RunCollector, encoding: str
) -> None:
    async with run_collector() as a, run_collector() as b:
        rastir.configure(service="planner-svc", version="2.0", push_url=a.url, otel_bridge=False)
        await plan("where")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        [summary] = (await a.client.get("/v1/traces")).json()["traces"]
        tid = summary["trace_id"]
        tree_a = (await a.client.get(f"/v1/traces/{tid}")).json()
        spans = wire_spans(tree_a)
        kinds = {s.kind for s in spans}
        assert kinds == {"agent", "llm", "tool", "retrieval", "custom"}
        assert {s.status for s in spans} == {"ok", "error", "cancelled"}

        resource = {"service.name": "planner-svc", "service.version": "2.0"}
        if encoding == "protobuf":
            body, ctype = encode_request([(resource, spans)]), "application/x-protobuf"
        else:
            body, ctype = encode_request_json([(resource, spans)]), "application/json"
        r = await b.client.post("/v1/traces", content=body, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        tree_b = (await b.client.get(f"/v1/traces/{tid}")).json()

        # Ids, parents, kinds, names, attributes, events, links, status, errors and
        # timestamps: every node equal, and the same shape.
        assert flatten(tree_b) == flatten(tree_a)
        assert tree_b["summary"] == tree_a["summary"]

        ma, mb = await a.scrape(), await b.scrape()
        for family in (
            "rastir_llm_tokens_total",
            "rastir_llm_errors_total",
            "rastir_tool_calls_total",
            "rastir_agent_runs_total",
            "rastir_function_calls_total",
        ):
            assert ma.total(family) == mb.total(family) > 0, family
