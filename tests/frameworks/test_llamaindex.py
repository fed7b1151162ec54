"""``@llamaindex_agent`` on a real LlamaIndex FunctionAgent (``MockFunctionCallingLLM``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

import rastir
from rastir import framework_agent, llamaindex_agent
from rastir.frameworks import detect_framework
from rastir.testing import CapturedSpans
from tests.frameworks.li_agent import MODEL, USAGE, MeteredMockLLM, build_agent, multiply
from tests.frameworks.trees import leaf, shape

pytestmark = [
    pytest.mark.anyio,
    # llama-index's workflows read pydantic's deprecated ``__fields__`` and instance
    # ``model_computed_fields`` when they list a workflow's steps (workflows/utils.py).
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
]

STEPS_WITH_TOOL = (
    leaf("node:init_run", "trace"),
    leaf("node:setup_agent", "trace"),
    ("node:run_agent_step", "trace", (leaf(f"chat {MODEL}", "llm"),)),
    leaf("node:parse_agent_output", "trace"),
    ("node:call_tool", "trace", (leaf("multiply", "tool"),)),
    leaf("node:aggregate_tool_results", "trace"),
    leaf("node:setup_agent", "trace"),
    ("node:run_agent_step", "trace", (leaf(f"chat {MODEL}", "llm"),)),
    leaf("node:parse_agent_output", "trace"),
)


@llamaindex_agent(agent_name="calculator")
async def ask(agent: FunctionAgent, question: str) -> str:
    return str(await agent.run(question))


async def test_a_function_agent_run_gives_steps_model_calls_and_the_tool(
    rastir_spans: CapturedSpans,
) -> None:
    assert await ask(build_agent(), "multiply 6 and 7") == "The answer is 42"
    root = rastir_spans.one("calculator", kind="agent")
    assert shape(rastir_spans, root) == ("calculator", "agent", STEPS_WITH_TOOL)
    assert root.attributes["rastir.framework"] == "llamaindex"
    llms = sorted(rastir_spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert [
        (s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in llms
    ] == list(USAGE)
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == MODEL
        # FunctionAgent streams the model's answer: time to first token is recorded.
        assert 0 < s.attributes["rastir.ttft_ms"] <= s.duration_ns / 1e6
    tool = rastir_spans.one("multiply", kind="tool")
    assert tool.attributes["gen_ai.tool.name"] == "multiply"
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    for s in rastir_spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == "calculator"
        assert s.status == "ok"


async def test_a_failing_tool_is_an_error_span_and_the_agent_goes_on(
    rastir_spans: CapturedSpans,
) -> None:
    # FunctionAgent hands the tool's exception back to the model as an error result.
    answer = await ask(build_agent(), "multiply 13 and 2")
    assert answer.startswith("The answer is")
    tool = rastir_spans.one("multiply", kind="tool")
    assert tool.status == "error"
    assert tool.error is not None
    assert tool.error["type"] == "internal_error"
    assert tool.error["message"] == "13 is unlucky"
    assert rastir_spans.one("calculator", kind="agent").status == "ok"


async def test_tool_arguments_are_recorded_with_capture_content(
    rastir_spans: CapturedSpans,
) -> None:
    rastir.configure(capture_content=True)
    await ask(build_agent(), "multiply 6 and 7")
    tool = rastir_spans.one("multiply", kind="tool")
    assert "'a': 6" in tool.attributes["gen_ai.tool.call.arguments"]


async def test_concurrent_runs_of_one_agent_stay_separate(rastir_spans: CapturedSpans) -> None:
    agent = build_agent()
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        answers[i] = await ask(agent, f"multiply {i} and 3")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert answers == {i: f"The answer is {i * 3}" for i in range(10)}
    roots = rastir_spans.find("calculator", kind="agent")
    assert len({r.trace_id for r in roots}) == 10
    for root in roots:
        assert shape(rastir_spans, root) == ("calculator", "agent", STEPS_WITH_TOOL)
    assert len(rastir_spans) == 10 * 13  # agent, 9 steps, 2 model calls, 1 tool


async def test_framework_agent_detects_a_llamaindex_agent(rastir_spans: CapturedSpans) -> None:
    @framework_agent
    async def run(agent: FunctionAgent) -> str:
        return str(await agent.run("multiply 2 and 5"))

    assert await run(build_agent()) == "The answer is 10"
    root = rastir_spans.one("run", kind="agent")
    assert root.attributes["rastir.framework"] == "llamaindex"
    assert len(rastir_spans.find(kind="llm")) == 2


async def test_outside_a_decorated_call_the_dispatcher_handlers_record_nothing(
    rastir_spans: CapturedSpans,
) -> None:
    await ask(build_agent(), "multiply 1 and 1")  # registers the handlers
    rastir_spans.clear()
    assert str(await build_agent().run("multiply 2 and 2")) == "The answer is 4"
    assert list(rastir_spans) == []


def test_sync_calls_are_traced_too(rastir_spans: CapturedSpans) -> None:
    llm = MeteredMockLLM()
    tool = FunctionTool.from_defaults(multiply)

    @llamaindex_agent
    def direct() -> int:
        llm.chat([ChatMessage(role="user", content="hello")])
        return int(tool.call(a=3, b=4).raw_output)

    assert direct() == 12
    root = rastir_spans.one("direct", kind="agent")
    assert shape(rastir_spans, root) == (
        "direct",
        "agent",
        (leaf(f"chat {MODEL}", "llm"), leaf("multiply", "tool")),
    )


# -- model calls served by another model call, failed model calls --------------------------
class LocalLLM(CustomLLM):
    """LlamaIndex's documented base for a custom model: ``chat`` and ``acomplete`` are
    built on ``complete``; the usage comes back in ``additional_kwargs``."""

    model: str = "local-7b"
    fail: bool = False

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.fail:
            raise TimeoutError("model timed out")
        usage = {"prompt_tokens": 10, "completion_tokens": 2}
        return CompletionResponse(text="ok", additional_kwargs=usage)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("method", "operation"),
    [("chat", "chat"), ("acomplete", "text_completion"), ("achat", "chat")],
)
async def test_a_call_served_by_complete_is_one_llm_span(
    rastir_spans: CapturedSpans, method: str, operation: str
) -> None:
    llm = LocalLLM()

    @llamaindex_agent(agent_name="local")
    async def run() -> str:
        if method == "acomplete":
            return str((await llm.acomplete("hi")).text)
        message = [ChatMessage(role="user", content="hi")]
        response = llm.chat(message) if method == "chat" else await llm.achat(message)
        return str(response.message.content)

    assert await run() == "ok"
    root = rastir_spans.one("local", kind="agent")
    assert shape(rastir_spans, root) == ("local", "agent", (leaf(f"{operation} local-7b", "llm"),))
    span = rastir_spans.one(kind="llm")
    # The usage complete() reported is on the one span.
    assert span.attributes["gen_ai.usage.input_tokens"] == 10
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.status == "ok"


@pytest.mark.parametrize("method", ["complete", "chat"])
def test_a_failed_model_call_fails_its_llm_span(rastir_spans: CapturedSpans, method: str) -> None:
    llm = LocalLLM(fail=True)

    @llamaindex_agent(agent_name="local")
    def run() -> Any:
        if method == "complete":
            return llm.complete("hi")
        return llm.chat([ChatMessage(role="user", content="hi")])

    with pytest.raises(TimeoutError, match="model timed out"):
        run()
    span = rastir_spans.one(kind="llm")
    assert span.status == "error"
    assert span.error == {
        "type": "timeout",
        "exception_type": "TimeoutError",
        "message": "model timed out",
    }
    assert "rastir.span.unfinished" not in span.attributes
    assert rastir_spans.one("local", kind="agent").status == "error"


# -- detection ------------------------------------------------------------------------------
class AnswerFlow(Workflow):
    """A user's workflow: its class lives in this module, its base in ``workflows``."""

    @step
    async def answer(self, ev: StartEvent) -> StopEvent:
        response = await MeteredMockLLM().achat([ChatMessage(role="user", content="hi")])
        return StopEvent(result=str(response.message.content))


async def test_framework_agent_detects_a_user_defined_workflow(
    rastir_spans: CapturedSpans,
) -> None:
    assert type(AnswerFlow()).__module__ == __name__
    assert detect_framework((AnswerFlow(),), {}) == "llamaindex"

    @framework_agent(agent_name="flow")
    async def run(flow: Workflow) -> str:
        return str(await flow.run())

    await run(AnswerFlow(timeout=5))
    root = rastir_spans.one("flow", kind="agent")
    assert root.attributes["rastir.framework"] == "llamaindex"
    assert shape(rastir_spans, root) == (
        "flow",
        "agent",
        (("node:answer", "trace", (leaf(f"chat {MODEL}", "llm"),)),),
    )


async def test_llamaindex_spans_belong_only_to_llamaindex_calls_whatever_ran_before(
    rastir_spans: CapturedSpans,
) -> None:
    llm = MeteredMockLLM()
    message = [ChatMessage(role="user", content="hi")]

    @framework_agent(agent_name="plain")
    async def plain(question: str) -> str:  # no LlamaIndex object among the arguments
        return str((await llm.achat(message)).message.content)

    @llamaindex_agent(agent_name="outer")
    async def outer() -> str:
        return await plain("hi")

    # A call that finds no framework records its agent span only, before and after a
    # LlamaIndex call has registered the process-wide dispatcher handlers ...
    await plain("hi")
    assert [s.name for s in rastir_spans] == ["plain"]
    await outer()
    rastir_spans.clear()
    await plain("hi")
    assert [s.name for s in rastir_spans] == ["plain"]
    rastir_spans.clear()
    # ... and inside a LlamaIndex call, the model call belongs to that call.
    await outer()
    root = rastir_spans.one("outer", kind="agent")
    assert shape(rastir_spans, root) == (
        "outer",
        "agent",
        (("plain", "agent", (leaf(f"chat {MODEL}", "llm"),)),),
    )
    assert rastir_spans.one(kind="llm").attributes["gen_ai.agent.name"] == "outer"
