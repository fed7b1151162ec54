"""``@strands_agent``: Strands hooks give model and tool spans (real SDK or its fake)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import rastir
from rastir import framework_agent, strands_agent
from rastir.testing import CapturedSpans
from tests.frameworks.strands_agent import MODEL, USAGE, build_agent, build_orchestrator
from tests.frameworks.trees import leaf, shape

TREE = (
    "calculator",
    "agent",
    (leaf(f"chat {MODEL}", "llm"), leaf("multiply", "tool"), leaf(f"chat {MODEL}", "llm")),
)


@strands_agent(agent_name="calculator")
def ask(agent: Any, question: str) -> str:
    return str(agent(question)).strip()


@strands_agent(agent_name="calculator")
async def ask_async(agent: Any, question: str) -> str:
    return str(await agent.invoke_async(question)).strip()


def check(spans: CapturedSpans) -> None:
    root = spans.one("calculator", kind="agent")
    assert shape(spans, root) == TREE
    assert root.attributes["rastir.framework"] == "strands"
    llms = sorted(spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert [
        (s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in llms
    ] == list(USAGE)
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in llms] == [
        ("tool_use",),
        ("end_turn",),
    ]
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == MODEL
    tool = spans.one("multiply", kind="tool")
    assert tool.attributes["gen_ai.tool.call.id"] == "tooluse_1"
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == "calculator"


def test_a_sync_call_runs_on_strands_worker_thread_and_is_traced(
    rastir_spans: CapturedSpans,
) -> None:
    assert ask(build_agent(), "multiply 6 and 7") == "The answer is 42"
    check(rastir_spans)
    assert all(s.status == "ok" for s in rastir_spans)


@pytest.mark.anyio
async def test_an_async_call_is_traced(rastir_spans: CapturedSpans) -> None:
    assert await ask_async(build_agent(), "multiply 6 and 7") == "The answer is 42"
    check(rastir_spans)


def test_a_failing_tool_is_an_error_span_and_the_agent_goes_on(
    rastir_spans: CapturedSpans,
) -> None:
    assert ask(build_agent(), "multiply 13 and 2").startswith("The answer is Error")
    tool = rastir_spans.one("multiply", kind="tool")
    assert tool.status == "error"
    assert tool.error is not None
    assert tool.error["type"] == "internal_error"
    assert tool.error["message"] == "13 is unlucky"
    assert rastir_spans.one("calculator", kind="agent").status == "ok"


def test_tool_arguments_only_with_capture_content(rastir_spans: CapturedSpans) -> None:
    agent = build_agent()
    ask(agent, "multiply 6 and 7")
    assert "gen_ai.tool.call.arguments" not in rastir_spans.one("multiply").attributes
    rastir_spans.clear()
    rastir.configure(capture_content=True)
    ask(agent, "multiply 6 and 7")
    assert rastir_spans.one("multiply").attributes["gen_ai.tool.call.arguments"] == repr(
        {"a": 6, "b": 7}
    )


@pytest.mark.anyio
async def test_concurrent_calls_stay_separate(rastir_spans: CapturedSpans) -> None:
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        answers[i] = await ask_async(build_agent(), f"multiply {i} and 3")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert answers == {i: f"The answer is {i * 3}" for i in range(10)}
    roots = rastir_spans.find("calculator", kind="agent")
    assert len({r.trace_id for r in roots}) == 10
    for root in roots:
        assert shape(rastir_spans, root) == TREE
    assert len(rastir_spans) == 10 * 4


def test_the_hooks_are_added_once_and_idle_outside_a_decorated_call(
    rastir_spans: CapturedSpans,
) -> None:
    agent = build_agent()
    ask(agent, "multiply 1 and 2")
    ask(agent, "multiply 1 and 2")
    assert len(rastir_spans.find(kind="llm")) == 4  # not doubled by a second provider
    rastir_spans.clear()
    assert str(agent("multiply 2 and 2")).strip() == "The answer is 4"
    assert list(rastir_spans) == []


def test_framework_agent_detects_a_strands_agent(rastir_spans: CapturedSpans) -> None:
    @framework_agent(agent_name="calculator")
    def run(agent: Any) -> str:
        return str(agent("multiply 6 and 7")).strip()

    assert run(build_agent()) == "The answer is 42"
    check(rastir_spans)


@pytest.mark.parametrize("as_tool", [False, True], ids=["agent_in_tools", "as_tool"])
def test_an_agent_used_as_a_tool_is_traced_under_its_tool_call(
    rastir_spans: CapturedSpans, as_tool: bool
) -> None:
    # Strands' agents-as-tools: only the orchestrator is passed to the decorated
    # function; the specialist is hooked when the orchestrator is about to call it.
    specialist = build_agent(name="specialist")
    orchestrator = build_orchestrator(specialist.as_tool() if as_tool else specialist)

    assert ask(orchestrator, "multiply 6 and 7") == "The answer is 42"
    root = rastir_spans.one("calculator", kind="agent")
    llm = leaf(f"chat {MODEL}", "llm")
    assert shape(rastir_spans, root) == (
        "calculator",
        "agent",
        (llm, ("specialist", "tool", (llm, leaf("multiply", "tool"), llm)), llm),
    )
    llms = sorted(rastir_spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    # orchestrator turn 1, specialist turns 1 and 2, orchestrator turn 2
    assert [s.attributes["gen_ai.usage.input_tokens"] for s in llms] == [15, 15, 40, 40]
    for s in rastir_spans:
        assert s.trace_id == root.trace_id
        assert s.status == "ok"
    # The specialist's hooks, added during the first call, stay idle outside one.
    rastir_spans.clear()
    assert str(specialist("multiply 2 and 2")).strip() == "The answer is 4"
    assert list(rastir_spans) == []
