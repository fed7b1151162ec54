"""``@llamaindex_agent`` under realistic LlamaIndex usage.

Real llama-index-core: ``CustomLLM`` (LlamaIndex's documented base for a custom model,
whose streamed calls are built on ``stream_complete``), ``ReActAgent``, an
``AgentWorkflow`` with a handoff, a custom ``Workflow``, and a query engine over a
``VectorStoreIndex`` built with ``MockEmbedding``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import (
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Event, StartEvent, StopEvent, Workflow, step

import rastir
from rastir import llamaindex_agent
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.frameworks.li_agent import MeteredMockLLM, multiply
from tests.frameworks.trees import leaf, shape

pytestmark = [
    pytest.mark.anyio,
    # llama-index's workflows read pydantic's deprecated ``__fields__`` when they list
    # a workflow's steps (workflows/utils.py).
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
]

ANSWER = "Thought: I can answer without any more tools.\nAnswer: 6"


class LocalLLM(CustomLLM):
    """A completion model on ``CustomLLM``: every chat and async call is served by
    ``complete``/``stream_complete``; usage comes with the last chunk."""

    model: str = "local-7b"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        usage = {"prompt_tokens": 10, "completion_tokens": 2}
        return CompletionResponse(text=ANSWER, additional_kwargs=usage)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            parts = ANSWER.split("\n")
            for i, part in enumerate(parts):
                delta = part if i == 0 else "\n" + part
                text += delta
                last = i == len(parts) - 1
                usage = {"prompt_tokens": 10, "completion_tokens": 2} if last else {}
                yield CompletionResponse(text=text, delta=delta, additional_kwargs=usage)

        return gen()


def tokens(span: Span) -> tuple[Any, Any]:
    return (
        span.attributes.get("gen_ai.usage.input_tokens"),
        span.attributes.get("gen_ai.usage.output_tokens"),
    )


def check_labels_and_ends(spans: CapturedSpans, agent: str) -> Span:
    root = spans.one(agent, kind="agent")
    assert len({s.sid for s in spans}) == len(spans)
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == agent
        assert "rastir.span.unfinished" not in s.attributes
    return root


# -- streamed calls of a CustomLLM ------------------------------------------------------------
async def test_a_streamed_custom_llm_call_is_one_llm_span_with_its_usage_once(
    rastir_spans: CapturedSpans,
) -> None:
    llm = LocalLLM()
    question = [ChatMessage(role="user", content="hi")]

    @llamaindex_agent(agent_name="local")
    async def run() -> list[str]:
        texts = []
        # astream_chat returns a generator whose first step calls stream_chat, itself
        # over stream_complete: all one model call.
        async for chunk in await llm.astream_chat(question):
            texts.append(str(chunk.message.content))
        async for completion in await llm.astream_complete("hi"):
            texts.append(completion.text)
        # Two streams created before either is read: each is its own call.
        first, second = await llm.astream_chat(question), await llm.astream_complete("hi")
        async for chunk in first:
            texts.append(str(chunk.message.content))
        async for completion in second:
            texts.append(completion.text)
        return texts

    texts = await run()
    assert texts.count(ANSWER) == 4
    root = check_labels_and_ends(rastir_spans, "local")
    chat, completion = leaf("chat local-7b", "llm"), leaf("text_completion local-7b", "llm")
    assert shape(rastir_spans, root) == ("local", "agent", (chat, completion, chat, completion))
    for span in rastir_spans.find(kind="llm"):
        assert tokens(span) == (10, 2)
        assert span.status == "ok"
        assert 0 < span.attributes["rastir.ttft_ms"] <= span.duration_ns / 1e6
        assert "rastir.llm.counted_in" not in span.attributes


# llama-index's ReActAgent.take_step reads ctx.is_running, deprecated by workflows.
@pytest.mark.filterwarnings("ignore:is_running called from within a step:DeprecationWarning")
async def test_a_react_agent_on_a_custom_llm_has_one_llm_span_per_turn(
    rastir_spans: CapturedSpans,
) -> None:
    @llamaindex_agent(agent_name="react")
    async def run() -> str:
        agent = ReActAgent(tools=[FunctionTool.from_defaults(multiply)], llm=LocalLLM())
        return str(await agent.run("multiply 2 and 3"))

    assert await asyncio.wait_for(run(), 30) == "6"
    root = check_labels_and_ends(rastir_spans, "react")
    step = rastir_spans.one("node:run_agent_step")
    assert shape(rastir_spans, step) == (
        "node:run_agent_step",
        "trace",
        (leaf("chat local-7b", "llm"),),
    )
    assert tokens(rastir_spans.one(kind="llm")) == (10, 2)
    assert root.status == "ok"


# -- retrieval ---------------------------------------------------------------------------------
def _index() -> VectorStoreIndex:
    documents = [Document(text="Cats purr."), Document(text="Dogs bark.")]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))


@pytest.mark.parametrize("mode", ["query", "aquery"])
async def test_a_query_engine_gives_a_retrieval_span_and_the_model_call(
    rastir_spans: CapturedSpans, mode: str
) -> None:
    rastir.configure(capture_content=True)
    engine = _index().as_query_engine(similarity_top_k=2, llm=LocalLLM())

    @llamaindex_agent(agent_name="rag")
    async def run(question: str) -> str:
        if mode == "query":
            return str(engine.query(question))
        return str(await engine.aquery(question))

    assert await run("what do cats do?") == ANSWER
    root = check_labels_and_ends(rastir_spans, "rag")
    assert shape(rastir_spans, root) == (
        "rag",
        "agent",
        (leaf("VectorIndexRetriever", "retrieval"), leaf("text_completion local-7b", "llm")),
    )
    retrieval = rastir_spans.one(kind="retrieval")
    assert retrieval.attributes["rastir.retrieval.name"] == "VectorIndexRetriever"
    assert retrieval.attributes["rastir.retrieval.documents"] == 2
    assert retrieval.attributes["rastir.retrieval.query"] == "what do cats do?"
    assert retrieval.status == "ok"


def test_a_retriever_called_alone_without_capture_records_no_query(
    rastir_spans: CapturedSpans,
) -> None:
    retriever = _index().as_retriever(similarity_top_k=1)

    @llamaindex_agent(agent_name="lookup")
    def run() -> int:
        return len(retriever.retrieve("cats"))

    assert run() == 1
    check_labels_and_ends(rastir_spans, "lookup")
    retrieval = rastir_spans.one(kind="retrieval")
    assert retrieval.attributes["rastir.retrieval.documents"] == 1
    assert "rastir.retrieval.query" not in retrieval.attributes


# -- multi-agent workflows -------------------------------------------------------------------
class HandoffLLM(MeteredMockLLM):
    """triage hands off to math; math multiplies, then answers."""

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        results = [str(m.content) for m in messages if m.role == MessageRole.TOOL]
        system = str(messages[0].content)
        if "triage" in system and not results:
            call = ToolCallBlock(
                tool_call_id="h1",
                tool_name="handoff",
                tool_kwargs={"to_agent": "math", "reason": "numbers"},
            )
            message = ChatMessage(role="assistant", blocks=[call])
        elif "math" in system and "42" not in results:
            call = ToolCallBlock(
                tool_call_id="m1", tool_name="multiply", tool_kwargs={"a": 6, "b": 7}
            )
            message = ChatMessage(role="assistant", blocks=[call])
        else:
            message = ChatMessage(role="assistant", content="The answer is 42")

        async def gen() -> ChatResponseAsyncGen:
            yield ChatResponse(
                message=message,
                delta=message.content or "",
                additional_kwargs={"prompt_tokens": 3, "completion_tokens": 1},
            )

        return gen()


async def test_an_agent_workflow_handoff_labels_each_step_with_its_agent(
    rastir_spans: CapturedSpans,
) -> None:
    triage = FunctionAgent(
        name="triage",
        description="Routes questions.",
        system_prompt="You are triage.",
        llm=HandoffLLM(),
        can_handoff_to=["math"],
    )
    math = FunctionAgent(
        name="math",
        description="Does arithmetic.",
        system_prompt="You are math.",
        llm=HandoffLLM(),
        tools=[FunctionTool.from_defaults(multiply)],
    )
    workflow = AgentWorkflow(agents=[triage, math], root_agent="triage")

    @llamaindex_agent(agent_name="team")
    async def run() -> str:
        return str(await workflow.run(user_msg="multiply 6 and 7"))

    assert await asyncio.wait_for(run(), 30) == "The answer is 42"
    root = check_labels_and_ends(rastir_spans, "team")
    assert root.status == "ok"
    turns = [
        s.attributes["llamaindex.agent"]
        for s in sorted(
            rastir_spans.find("node:run_agent_step"), key=lambda s: s.start_time_unix_nano
        )
    ]
    assert turns == ["triage", "math", "math"]
    tools = sorted(rastir_spans.find(kind="tool"), key=lambda s: s.start_time_unix_nano)
    assert [t.name for t in tools] == ["handoff", "multiply"]
    assert all(rastir_spans.one(kind="agent").sid != t.psid for t in tools)  # under steps
    assert [tokens(s) for s in rastir_spans.find(kind="llm")] == [(3, 1)] * 3


# -- a custom workflow -------------------------------------------------------------------------
class Planned(Event):
    n: int


class PlanFlow(Workflow):
    @step
    async def plan(self, ev: StartEvent) -> Planned:
        return Planned(n=ev.n)

    @step
    async def answer(self, ev: Planned) -> StopEvent:
        if ev.n == 13:
            raise LookupError("no plan for 13")
        response = await LocalLLM().achat([ChatMessage(role="user", content=str(ev.n))])
        return StopEvent(result=str(response.message.content))


async def test_a_failing_workflow_step_fails_its_node_and_the_agent(
    rastir_spans: CapturedSpans,
) -> None:
    @llamaindex_agent(agent_name="planner")
    async def run(n: int) -> str:
        return str(await PlanFlow(timeout=10).run(n=n))

    assert await run(2) == ANSWER
    with pytest.raises(LookupError, match="no plan for 13"):
        await run(13)
    good, bad = sorted(
        rastir_spans.find("planner", kind="agent"), key=lambda s: s.start_time_unix_nano
    )
    assert shape(rastir_spans, good) == (
        "planner",
        "agent",
        (leaf("node:plan", "trace"), ("node:answer", "trace", (leaf("chat local-7b", "llm"),))),
    )
    assert shape(rastir_spans, bad) == (
        "planner",
        "agent",
        (leaf("node:plan", "trace"), leaf("node:answer", "trace")),
    )
    failed = next(s for s in rastir_spans.children(bad) if s.name == "node:answer")
    assert failed.status == bad.status == "error"
    assert failed.error is not None
    assert failed.error["exception_type"] == "LookupError"
    assert all("rastir.span.unfinished" not in s.attributes for s in rastir_spans)


class CutStreamLLM(LocalLLM):
    """A stream that fails after its first chunk."""

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text="Thought", delta="Thought")
            raise ConnectionError("stream cut")

        return gen()


async def test_a_stream_that_fails_while_read_fails_its_llm_span(
    rastir_spans: CapturedSpans,
) -> None:
    llm = CutStreamLLM()

    @llamaindex_agent(agent_name="reader")
    async def run() -> list[str]:
        caught = []
        for method in ("astream_chat", "stream_complete"):
            try:
                if method == "astream_chat":
                    stream = await llm.astream_chat([ChatMessage(role="user", content="hi")])
                    async for _ in stream:
                        pass
                else:
                    for _ in llm.stream_complete("hi"):
                        pass
            except ConnectionError as exc:
                caught.append(str(exc))
        return caught

    assert await run() == ["stream cut", "stream cut"]
    root = rastir_spans.one("reader", kind="agent")
    assert root.status == "ok"  # the function caught the errors
    llms = rastir_spans.find(kind="llm")
    assert sorted(s.name for s in llms) == ["chat local-7b", "text_completion local-7b"]
    for span in llms:
        assert span.psid == root.sid
        assert span.error == {
            "type": "provider_error",
            "exception_type": "ConnectionError",
            "message": "stream cut",
        }
        assert "rastir.span.unfinished" not in span.attributes
