"""``@adk_agent``: an ADK plugin gives agent, model and tool spans (real SDK or its fake)."""

from __future__ import annotations

import importlib
import logging
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
    ScriptedLlm,
    ToolFailure,
    build_runner,
    final_text,
    multiply,
    user_message,
)
from tests.frameworks.trees import leaf, shape

_agents = importlib.import_module("google.adk.agents")
_runners = importlib.import_module("google.adk.runners")
_sessions = importlib.import_module("google.adk.sessions")
# After tests.frameworks.adk_agent has put the fake in place when the SDK is absent.
provider_of = importlib.import_module("rastir.frameworks._adk").provider_of

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
        # The scripted model is a user's BaseLlm: the provider comes from its name.
        assert s.attributes["gen_ai.provider.name"] == "gcp.gemini"
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


# -- provider ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("gemini-2.5-flash", "gcp.gemini"),
        ("gemma-3-27b-it", "gcp.gemini"),
        ("projects/p/locations/l/endpoints/123", "gcp.gemini"),
        ("claude-3-5-sonnet-v2@20241022", "gcp.vertex_ai"),
        ("openai/gpt-4o", "openai"),
        ("anthropic/claude-sonnet-4", "anthropic"),
        ("my-local-model", None),
    ],
)
def test_the_provider_follows_the_model_name(name: str, provider: str | None) -> None:
    # A model given by name (LlmAgent(model="...")), or a user's own BaseLlm.
    assert provider_of(name, None) == provider
    assert provider_of(ScriptedLlm(model=name), name) == provider  # type: ignore[call-arg]


def test_the_provider_follows_adks_model_class(monkeypatch: pytest.MonkeyPatch) -> None:
    gemini = importlib.import_module("google.adk.models.google_llm").Gemini
    # Gemini's class wins over a name that says nothing.
    assert provider_of(gemini(model="tuned-endpoint"), "tuned-endpoint") == "gcp.gemini"
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    assert provider_of(gemini(model="tuned-endpoint"), "tuned-endpoint") == "gcp.vertex_ai"


@pytest.mark.parametrize(
    ("model", "provider"),
    [("openai/gpt-4o", "openai"), ("vertex_ai/gemini-2.5-pro", "gcp.vertex_ai")],
)
# The real google-adk warns that Gemini is better used natively: true, and beside the point.
@pytest.mark.filterwarnings("ignore:.*GEMINI_VIA_LITELLM:UserWarning")
def test_the_provider_of_a_litellm_model_is_its_prefix(model: str, provider: str) -> None:
    try:
        lite_llm = importlib.import_module("google.adk.models.lite_llm")
    except ImportError:  # the real SDK without its litellm extra
        pytest.skip("google-adk's LiteLlm needs litellm")
    assert provider_of(lite_llm.LiteLlm(model=model), model.partition("/")[2]) == provider


@pytest.mark.anyio
async def test_the_llm_span_names_the_provider_of_the_agents_model_object(
    rastir_spans: CapturedSpans,
) -> None:
    gemini = importlib.import_module("google.adk.models.google_llm").Gemini

    class ScriptedGemini(gemini):  # type: ignore[misc,valid-type]
        generate_content_async = ScriptedLlm.generate_content_async

    runner = build_runner()
    runner.agent.model = ScriptedGemini(model="tuned-endpoint")
    assert await ask(runner, "multiply 6 and 7") == "The answer is 42"
    llms = rastir_spans.find(kind="llm")
    assert len(llms) == 2
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == "tuned-endpoint"
        assert s.attributes["gen_ai.provider.name"] == "gcp.gemini"


# -- no runner --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_an_agent_without_a_runner_logs_one_warning_per_function(
    rastir_spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    @framework_agent(agent_name="solo")
    async def run(agent: Any, question: str) -> str:
        # As ADK's quickstarts do: the Runner is built inside, out of rastir's reach.
        runner = _runners.Runner(
            app_name="calc",
            agent=agent,
            session_service=_sessions.InMemorySessionService(),
            auto_create_session=True,
        )
        events = [
            e
            async for e in runner.run_async(
                user_id="u", session_id="s", new_message=user_message(question)
            )
        ]
        return final_text(events)

    def agent() -> Any:
        return _agents.LlmAgent(
            name="solo_agent",
            model=ScriptedLlm(model=MODEL),  # type: ignore[call-arg]
            instruction="Use the tools.",
            tools=[multiply],
        )

    with caplog.at_level(logging.WARNING, logger="rastir"):
        assert await run(agent(), "multiply 6 and 7") == "The answer is 42"
        assert await run(agent(), "multiply 2 and 7") == "The answer is 14"
    warnings = [r for r in caplog.records if "no ADK Runner" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "run" in message
    assert "LlmAgent" in message
    # The calls themselves are plain agent spans: nothing else was recorded.
    roots = rastir_spans.find("solo", kind="agent")
    assert len(roots) == 2
    assert all(r.attributes["rastir.framework"] == "adk" for r in roots)
    assert len(rastir_spans) == 2
