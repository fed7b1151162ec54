"""``@strands_agent`` around Strands' multi-agent orchestrators (``Graph``, ``Swarm``).

Each node an orchestrator runs inside the decorated call is an ``agent`` span under the
call's span (or under its orchestrator's node, when orchestrators nest), with the model
and tool spans of the node's agent under it. The fake Strands SDK has no multi-agent
package, so this module needs the real one: ``scripts/test-real-frameworks`` (run by
``.ci/run``) installs it and runs this file; the main run, with the fake, skips it.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rastir import strands_agent
from rastir.testing import CapturedSpans
from tests.frameworks.fakes import is_fake
from tests.frameworks.strands_agent import MODEL, ModelFailure, ScriptedModel, build_agent
from tests.frameworks.trees import leaf, shape

if is_fake("strands"):
    pytest.skip(
        "needs the real strands-agents SDK (scripts/test-real-frameworks runs it)",
        allow_module_level=True,
    )

_multiagent = importlib.import_module("strands.multiagent")
GraphBuilder: Any = _multiagent.GraphBuilder
Swarm: Any = _multiagent.Swarm

LLM = leaf(f"chat {MODEL}", "llm")
MULTIPLY = (LLM, leaf("multiply", "tool"), LLM)


@strands_agent(agent_name="team")
def run(team: Any, task: str) -> Any:
    return team(task)


@strands_agent(agent_name="team")
async def run_async(team: Any, task: str) -> Any:
    return await team.invoke_async(task)


def graph(*names: str, parallel: bool = False, nodes: dict[str, Any] | None = None) -> Any:
    """A graph of agents: a chain ``names[0] -> names[1] -> ...``, or with ``parallel``
    every node an entry point. ``nodes`` adds executors by node id (orchestrators)."""
    builder = GraphBuilder()
    executors = {name: build_agent(name) for name in names} | (nodes or {})
    for node_id, executor in executors.items():
        builder.add_node(executor, node_id)
    ids = list(executors)
    if parallel:
        for node_id in ids:
            builder.set_entry_point(node_id)
    else:
        for a, b in itertools.pairwise(ids):
            builder.add_edge(a, b)
        builder.set_entry_point(ids[0])
    builder.set_max_node_executions(10)
    return builder.build()


class HandoffModel(ScriptedModel):
    """First hands the task to the swarm's agent ``to``, then confirms it did."""

    def __init__(self, to: str) -> None:
        super().__init__()
        self.to = to

    async def stream(
        self, messages: Any, tool_specs: Any = None, system_prompt: Any = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        handed = any("toolResult" in block for message in messages for block in message["content"])
        yield {"messageStart": {"role": "assistant"}}
        if handed:
            yield {"contentBlockDelta": {"delta": {"text": "handed off"}}}
            yield {"contentBlockStop": {}}
            stop = "end_turn"
        else:
            use = {"toolUseId": "handoff_1", "name": "handoff_to_agent"}
            args = json.dumps({"agent_name": self.to, "message": "please multiply"})
            yield {"contentBlockStart": {"start": {"toolUse": use}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": args}}}}
            yield {"contentBlockStop": {}}
            stop = "tool_use"
        yield {"messageStop": {"stopReason": stop}}
        usage = {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 1}}}


def check_node(spans: CapturedSpans, name: str, parent: Any) -> Any:
    """The node's agent span: under ``parent``, with its agent's spans, all labelled."""
    node = spans.one(name, kind="agent")
    assert node.parent_span_id == parent.span_id
    assert node.trace_id == parent.trace_id
    assert node.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert node.attributes["rastir.framework"] == "strands"
    for child in spans.children(node):
        if child.kind != "agent":  # a nested orchestrator's node is named after itself
            assert child.attributes["gen_ai.agent.name"] == name, (child.name, child.kind)
    return node


def test_each_node_of_a_graph_is_an_agent_span_under_the_call(
    rastir_spans: CapturedSpans,
) -> None:
    result = run(graph("alpha", "beta"), "multiply 6 and 7")
    assert result.status.name == "COMPLETED"
    root = rastir_spans.one("team", kind="agent")
    assert shape(rastir_spans, root) == (
        "team",
        "agent",
        (("alpha", "agent", MULTIPLY), ("beta", "agent", MULTIPLY)),
    )
    for name in ("alpha", "beta"):
        node = check_node(rastir_spans, name, root)
        assert node.attributes["rastir.strands.node_id"] == name
        assert node.status == "ok"
    # The nodes ran one after the other: beta's span starts after alpha's ends.
    alpha, beta = rastir_spans.one("alpha"), rastir_spans.one("beta")
    assert beta.start_time_unix_nano >= alpha.start_time_unix_nano + alpha.duration_ns


@pytest.mark.anyio
async def test_parallel_nodes_of_an_async_graph_stay_separate(
    rastir_spans: CapturedSpans,
) -> None:
    result = await run_async(graph("n1", "n2", "n3", parallel=True), "multiply 2 and 3")
    assert result.status.name == "COMPLETED"
    root = rastir_spans.one("team", kind="agent")
    assert sorted(shape(rastir_spans, root)[2]) == [
        (name, "agent", MULTIPLY) for name in ("n1", "n2", "n3")
    ]
    for name in ("n1", "n2", "n3"):
        check_node(rastir_spans, name, root)
    assert len(rastir_spans) == 1 + 3 * 4


def test_a_swarm_handoff_gives_one_span_per_agent_turn(rastir_spans: CapturedSpans) -> None:
    first = build_agent("triage", model=HandoffModel("math"), tools=[])
    second = build_agent("math")
    result = run(Swarm([first, second], max_handoffs=3), "multiply 4 and 5")
    assert result.status.name == "COMPLETED"
    root = rastir_spans.one("team", kind="agent")
    assert shape(rastir_spans, root) == (
        "team",
        "agent",
        (
            ("triage", "agent", (LLM, leaf("handoff_to_agent", "tool"), LLM)),
            ("math", "agent", MULTIPLY),
        ),
    )
    check_node(rastir_spans, "triage", root)
    check_node(rastir_spans, "math", root)


def test_a_swarm_inside_a_graph_nests_under_its_node(rastir_spans: CapturedSpans) -> None:
    inner = Swarm([build_agent("solver")])
    result = run(graph("plan", nodes={"crew": inner}, parallel=True), "multiply 3 and 3")
    assert result.status.name == "COMPLETED"
    root = rastir_spans.one("team", kind="agent")
    assert sorted(shape(rastir_spans, root)[2]) == [
        ("crew", "agent", (("solver", "agent", MULTIPLY),)),
        ("plan", "agent", MULTIPLY),
    ]
    crew = check_node(rastir_spans, "crew", root)
    assert crew.attributes["rastir.strands.node_id"] == "crew"
    check_node(rastir_spans, "solver", crew)


def test_a_failing_node_is_an_error_span(rastir_spans: CapturedSpans) -> None:
    failing = build_agent("broken", model=ScriptedModel(fail=True))
    builder = GraphBuilder()
    builder.add_node(failing, "broken")
    builder.set_entry_point("broken")
    builder.set_max_node_executions(10)
    with pytest.raises(ModelFailure):
        run(builder.build(), "multiply 6 and 7")
    node = rastir_spans.one("broken", kind="agent")
    assert node.status == "error"
    assert node.error is not None
    assert node.error["exception_type"].endswith("ModelFailure")
    assert node.error["message"] == "model unavailable"
    root = rastir_spans.one("team", kind="agent")
    assert node.parent_span_id == root.span_id
    assert root.status == "error"


def test_a_graph_run_outside_a_decorated_call_records_nothing(
    rastir_spans: CapturedSpans,
) -> None:
    team = graph("alpha")
    run(team, "multiply 2 and 2")  # hooks added
    before = len(rastir_spans)
    assert team("multiply 2 and 2").status.name == "COMPLETED"
    assert len(rastir_spans) == before


def test_a_graph_the_call_did_not_receive_records_nothing(rastir_spans: CapturedSpans) -> None:
    other = graph("alpha")
    run(other, "multiply 2 and 2")  # hooked by an earlier call

    @strands_agent(agent_name="team")
    def unrelated(team: Any) -> Any:
        return other("multiply 2 and 2")

    start = len(rastir_spans)
    unrelated(graph("beta"))
    assert [(s.name, s.kind) for s in list(rastir_spans)[start:]] == [("team", "agent")]
