"""``@crew_kickoff``: CrewAI event-bus handlers give crew, task, agent, model and tool spans.

Against the faithful fake of the event bus where ``crewai`` is not installed (it pins
``mcp<2``; docs/decisions.md FW-3), and unchanged against the real SDK where it is
(checked with 1.15.30, AUD-25). The bus runs handlers on a thread pool, so these tests
also cover handlers running out of order.
"""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

import rastir
from rastir import crew_kickoff, framework_agent
from rastir.testing import CapturedSpans
from tests.frameworks.crew_agent import MODEL, USAGE, build_crew
from tests.frameworks.trees import leaf, shape

# The real SDK (1.15.30) reads its own deprecated fields while building an agent and a
# crew (``function_calling_llm``; ``allow_code_execution`` and others declared
# ``deprecated=True``, whose pydantic message is just "deprecated"). The fake does not.
pytestmark = [
    pytest.mark.filterwarnings("ignore:function_calling_llm is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:deprecated$:DeprecationWarning"),
]

LLM = leaf(f"chat {MODEL}", "llm")
TREE = (
    "calculator_crew",
    "agent",
    (
        (
            "crew math",
            "trace",
            (
                (
                    "task compute",
                    "trace",
                    (
                        (
                            "node:calculator",
                            "trace",
                            (
                                (
                                    "flow AgentExecutor",
                                    "trace",
                                    (LLM, leaf("multiply", "tool"), LLM),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    ),
)


@crew_kickoff(agent_name="calculator_crew")
def kickoff(crew: Any, question: str) -> str:
    return str(crew.kickoff(inputs={"question": question}))


def check(spans: CapturedSpans, *, streamed: bool = False) -> None:
    root = spans.one("calculator_crew", kind="agent")
    assert shape(spans, root) == TREE
    assert root.attributes["rastir.framework"] == "crewai"
    llms = sorted(spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert [
        (s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in llms
    ] == list(USAGE)
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == MODEL
        assert ("rastir.ttft_ms" in s.attributes) is streamed
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == "calculator_crew"
        assert "rastir.span.unfinished" not in s.attributes
        # Children start within their parents (times come from the events).
        parent = next((p for p in spans if p.sid == s.psid), None)
        if parent is not None:
            assert parent.start_time_unix_nano <= s.start_time_unix_nano
            assert s.end_time_unix_nano <= parent.end_time_unix_nano


def test_kickoff_gives_crew_task_agent_model_and_tool_spans(rastir_spans: CapturedSpans) -> None:
    assert kickoff(build_crew(), "multiply 6 and 7") == "The answer is 42"
    check(rastir_spans)
    assert all(s.status == "ok" for s in rastir_spans)
    assert "gen_ai.tool.call.arguments" not in rastir_spans.one("multiply").attributes


def test_a_streaming_llm_records_time_to_first_token(rastir_spans: CapturedSpans) -> None:
    assert kickoff(build_crew(stream=True), "multiply 6 and 7") == "The answer is 42"
    check(rastir_spans, streamed=True)


@pytest.mark.anyio
async def test_kickoff_async_on_a_worker_thread(rastir_spans: CapturedSpans) -> None:
    @crew_kickoff(agent_name="calculator_crew")
    async def run(crew: Any) -> str:
        return str(await crew.kickoff_async(inputs={"question": "multiply 6 and 7"}))

    assert await run(build_crew()) == "The answer is 42"
    check(rastir_spans)


def test_a_failing_tool_is_an_error_span_and_the_crew_goes_on(
    rastir_spans: CapturedSpans,
) -> None:
    # CrewAI runs a raising tool three times, then hands its error text to the model.
    assert kickoff(build_crew(), "multiply 13 and 2") == (
        "The answer is I encountered an error while trying to use the tool."
        " This was the error: 13 is unlucky."
    )
    tools = rastir_spans.find("multiply", kind="tool")
    assert len(tools) == 3
    for tool in tools:
        assert tool.status == "error"
        assert tool.error is not None
        assert tool.error["type"] == "internal_error"
        assert tool.error["message"] == "13 is unlucky"
    flow = rastir_spans.one("flow AgentExecutor")
    assert {t.psid for t in tools} == {flow.sid}
    assert rastir_spans.one("calculator_crew", kind="agent").status == "ok"
    assert all("rastir.span.unfinished" not in s.attributes for s in rastir_spans)


def test_a_crew_stopped_by_a_passthrough_error_ends_every_scope_as_an_error(
    rastir_spans: CapturedSpans,
) -> None:
    # Five identical failing calls stop the run with ToolExecutionFailedError, which
    # CrewAI passes through without an AgentExecutionErrorEvent: its task's failure
    # event closes the agent's scope and the crew's failure event the task's, and the
    # crew's scope stays open in the caller's context. Run in a context of its own, so
    # that stale scope does not outlive the test.
    contextvars.copy_context().run(_stopped_crew_then_a_good_one, rastir_spans)


def _stopped_crew_then_a_good_one(spans: CapturedSpans) -> None:
    with pytest.raises(Exception, match="not making progress"):
        kickoff(build_crew(), "keep trying: multiply 13 and 2")
    for name in ("flow AgentExecutor", "node:calculator", "task compute", "crew math"):
        span = spans.one(name)
        assert span.status == "error", name
        assert span.error is not None
        assert "not making progress" in span.error["message"]
    assert spans.one("calculator_crew", kind="agent").status == "error"
    for s in spans:
        assert "rastir.span.unfinished" not in s.attributes, s.name
        assert "rastir.crewai.unobserved_scope" not in s.attributes, s.name
    spans.clear()
    # The next kickoff in this context names the stale crew scope as its parent: its
    # crew span is still the top of its own trace.
    assert kickoff(build_crew(), "multiply 6 and 7") == "The answer is 42"
    check(spans)


def test_capture_content_records_tool_arguments(rastir_spans: CapturedSpans) -> None:
    rastir.configure(capture_content=True)
    kickoff(build_crew(), "multiply 6 and 7")
    assert rastir_spans.one("multiply").attributes["gen_ai.tool.call.arguments"] == repr(
        {"a": 6, "b": 7}
    )


@pytest.mark.anyio
async def test_concurrent_kickoffs_of_one_crew_stay_separate(rastir_spans: CapturedSpans) -> None:
    # One crew object runs one kickoff at a time (its agents' executors refuse a second
    # concurrent run); concurrent runs use copies, as ``kickoff_for_each_async`` does.
    crew = build_crew()

    @crew_kickoff(agent_name="calculator_crew")
    async def run(i: int) -> str:
        return str(await crew.copy().kickoff_async(inputs={"question": f"multiply {i} and 3"}))

    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        answers[i] = await run(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert answers == {i: f"The answer is {i * 3}" for i in range(10)}
    roots = rastir_spans.find("calculator_crew", kind="agent")
    assert len({r.trace_id for r in roots}) == 10
    for root in roots:
        assert shape(rastir_spans, root) == TREE
    assert len(rastir_spans) == 10 * 8


def test_the_handlers_are_idle_outside_a_decorated_call(rastir_spans: CapturedSpans) -> None:
    crew = build_crew()
    kickoff(crew, "multiply 1 and 2")  # registers the handlers
    rastir_spans.clear()
    assert str(crew.kickoff(inputs={"question": "multiply 2 and 2"})) == "The answer is 4"
    assert list(rastir_spans) == []


def test_a_scope_that_starts_after_the_call_ended_is_counted_as_dropped(
    rastir_spans: CapturedSpans,
) -> None:
    from types import SimpleNamespace

    from rastir.export._pipeline import PIPELINE
    from rastir.frameworks import _crewai

    contexts: list[contextvars.Context] = []

    @crew_kickoff(agent_name="calculator_crew")
    def run(crew: Any, question: str) -> str:
        contexts.append(contextvars.copy_context())  # what the bus copies at emit time
        return str(crew.kickoff(inputs={"question": question}))

    assert "42" in run(build_crew(), "multiply 6 and 7")
    sent = len(rastir_spans)
    # A handler the bus runs after the call's flush gave up (a slow pool), in the
    # context of the emit: its span can no longer be sent, so it is counted.
    late = SimpleNamespace(event_id="late-task", parent_event_id=None, task_name="late")
    PIPELINE.take_dropped()
    contexts[0].run(_crewai._task_started, None, late)
    ended = SimpleNamespace(started_event_id="late-task", parent_event_id=None, type="x")
    contexts[0].run(_crewai._task_ended, None, ended)
    assert PIPELINE.take_dropped() == 1
    assert len(rastir_spans) == sent


def test_framework_agent_detects_a_crew(rastir_spans: CapturedSpans) -> None:
    @framework_agent(agent_name="calculator_crew")
    def run(crew: Any) -> str:
        return str(crew.kickoff(inputs={"question": "multiply 6 and 7"}))

    assert run(build_crew()) == "The answer is 42"
    check(rastir_spans)
