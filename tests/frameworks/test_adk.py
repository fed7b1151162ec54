"""``@adk_agent``: an ADK plugin gives agent, model and tool spans (real SDK or its fake)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import rastir
from rastir import adk_agent, framework_agent
from rastir.testing import CapturedSpans
from tests.frameworks.adk_agent import (
    MODEL,
    USAGE,
    ToolFailure,
    build_runner,
    final_text,
    user_message,
)
from tests.frameworks.trees import leaf, shape

_agents = importlib.import_module("google.adk.agents")

LLM = leaf(f"generate_content {MODEL}", "llm")
TREE = (
    "calculator",
    "agent",
    (("node:calculator_agent", "trace", (LLM, leaf("multiply", "tool"), LLM)),),
)


@adk_agent(agent_name="calculator")
async def ask(runner: Any, question: str, session: str = "s1", run_config: Any = None) -> str:
    events = [
        event
        async for event in runner.run_async(
            user_id="u",
            session_id=session,
            new_message=user_message(question),
            run_config=run_config,
        )
    ]
    return final_text(events)


def check(spans: CapturedSpans, *, streamed: bool = False) -> None:
    root = spans.one("calculator", kind="agent")
    assert shape(spans, root) == TREE
    assert root.attributes["rastir.framework"] == "adk"
    llms = sorted(spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert [
        (s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in llms
    ] == list(USAGE)
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == MODEL
    # Only the streamed text answer has partial responses before the final one.
    assert ["rastir.ttft_ms" in s.attributes for s in llms] == [False, streamed]
    tool = spans.one("multiply", kind="tool")
    assert tool.attributes["gen_ai.tool.call.id"] == "adk-call-1"
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == "calculator"
        assert s.status == "ok"


@pytest.mark.anyio
async def test_run_async_gives_the_agent_node_model_and_tool_spans(
    rastir_spans: CapturedSpans,
) -> None:
    assert await ask(build_runner(), "multiply 6 and 7") == "The answer is 42"
    check(rastir_spans)
    assert "gen_ai.tool.call.arguments" not in rastir_spans.one("multiply").attributes


@pytest.mark.anyio
async def test_streaming_records_time_to_first_token(rastir_spans: CapturedSpans) -> None:
    config = _agents.RunConfig(streaming_mode="sse")
    assert await ask(build_runner(), "multiply 6 and 7", run_config=config) == "The answer is 42"
    check(rastir_spans, streamed=True)


def test_the_sync_runner_runs_on_a_thread_with_the_callers_context(
    rastir_spans: CapturedSpans,
) -> None:
    @adk_agent(agent_name="calculator")
    def run(runner: Any) -> Iterator[Any]:
        # Runner.run is a generator: the agent span lasts until it is exhausted.
        yield from runner.run(user_id="u", session_id="s1", new_message=user_message("6 7"))

    assert final_text(list(run(build_runner()))) == "The answer is 42"
    check(rastir_spans)


@pytest.mark.anyio
async def test_a_failing_tool_is_an_error_span_and_the_error_reaches_the_caller(
    rastir_spans: CapturedSpans,
) -> None:
    with pytest.raises(ToolFailure, match="13 is unlucky"):
        await ask(build_runner(), "multiply 13 and 2")
    tool = rastir_spans.one("multiply", kind="tool")
    assert tool.status == "error"
    assert tool.error is not None
    assert tool.error["type"] == "internal_error"
    root = rastir_spans.one("calculator", kind="agent")
    assert root.status == "error"
    assert root.error is not None
    assert root.error["exception_type"].endswith("ToolFailure")


@pytest.mark.anyio
async def test_capture_content_records_tool_arguments(rastir_spans: CapturedSpans) -> None:
    rastir.configure(capture_content=True)
    await ask(build_runner(), "multiply 6 and 7")
    assert rastir_spans.one("multiply").attributes["gen_ai.tool.call.arguments"] == repr(
        {"a": 6, "b": 7}
    )


@pytest.mark.anyio
async def test_concurrent_runs_on_one_runner_stay_separate(rastir_spans: CapturedSpans) -> None:
    runner = build_runner()
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        answers[i] = await ask(runner, f"multiply {i} and 3", session=f"s{i}")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert answers == {i: f"The answer is {i * 3}" for i in range(10)}
    roots = rastir_spans.find("calculator", kind="agent")
    assert len({r.trace_id for r in roots}) == 10
    for root in roots:
        assert shape(rastir_spans, root) == TREE
    assert len(rastir_spans) == 10 * 5


@pytest.mark.anyio
async def test_the_plugin_is_registered_once_and_idle_outside_a_decorated_call(
    rastir_spans: CapturedSpans,
) -> None:
    runner = build_runner()
    await ask(runner, "multiply 1 and 2", session="a")
    await ask(runner, "multiply 1 and 2", session="b")
    assert len(rastir_spans.find(kind="llm")) == 4
    rastir_spans.clear()
    events = [
        e
        async for e in runner.run_async(
            user_id="u", session_id="c", new_message=user_message("multiply 2 and 2")
        )
    ]
    assert final_text(events) == "The answer is 4"
    assert list(rastir_spans) == []


@pytest.mark.anyio
async def test_framework_agent_detects_an_adk_runner(rastir_spans: CapturedSpans) -> None:
    @framework_agent(agent_name="calculator")
    async def run(runner: Any) -> str:
        return await ask.__wrapped__(runner, "multiply 6 and 7")  # type: ignore[attr-defined,no-any-return]

    assert await run(build_runner()) == "The answer is 42"
    check(rastir_spans)
