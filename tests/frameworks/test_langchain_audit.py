"""``@langgraph_agent`` under realistic LangGraph and LangChain (LCEL) usage.

Real langchain-core and langgraph, scripted chat models built on ``BaseChatModel``
(``tests/frameworks/react_graph.py`` and ``Scripted`` below): subgraphs, ``Send``
fan-out, interrupts and resume, retry policies, recursion limits, parallel tool calls,
``ToolException``, cancellation, ``astream_events``, and LCEL chains with retries,
fallbacks, batches, parallel branches, structured output and the user's callbacks.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, RetryPolicy, Send, interrupt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from rastir import langgraph_agent
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.frameworks.react_graph import build_graph
from tests.frameworks.trees import leaf, react_tree, shape

GO: Any = {"messages": [("user", "go")]}
INPUT: Any = {"messages": [("user", "add 2 and 3, then multiply by 4")]}
USAGE: Any = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}


class Scripted(BaseChatModel):
    """A chat model that fails its first ``fail`` calls, then answers "hello there"
    (streamed in two chunks), or calls its first bound tool."""

    model_name: str = "gpt-4o-mini"
    fail: int = 0
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        params["ls_model_name"] = self.model_name
        return params

    def _meta(self, reason: str) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": reason}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("provider down")
        tools = kwargs.get("tools")
        if tools:
            call = {"name": tools[0]["function"]["name"], "args": {"name": "Ada", "age": 36}}
            message = AIMessage(
                content="",
                tool_calls=[{**call, "id": "call_1"}],
                usage_metadata=USAGE,
                response_metadata=self._meta("tool_calls"),
            )
        else:
            message = AIMessage(
                content="hello there",
                usage_metadata=USAGE,
                response_metadata=self._meta("stop"),
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for text in ("hello", " there"):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            usage_metadata=USAGE,
            response_metadata=self._meta("stop"),
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Runnable[Any, AIMessage]:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


PROMPT = ChatPromptTemplate.from_messages([("user", "say {x}")])


def check_labels_and_ends(spans: CapturedSpans, agent: str) -> Span:
    """One agent span, every span in its trace and labelled with it, each span once."""
    root = spans.one(agent, kind="agent")
    assert len({s.sid for s in spans}) == len(spans)  # no span ended twice
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == agent
        assert "rastir.span.unfinished" not in s.attributes
    return root


def tokens(span: Span) -> tuple[Any, Any]:
    return (
        span.attributes.get("gen_ai.usage.input_tokens"),
        span.attributes.get("gen_ai.usage.output_tokens"),
    )


# -- LangGraph ----------------------------------------------------------------------------


def one_node_graph(
    name: str, node: Any, *, retry_policy: Any = None, checkpointer: Any = None
) -> Any:
    """START -> ``name`` -> END over the messages state, compiled."""
    builder = StateGraph(MessagesState)
    builder.add_node(name, node, retry_policy=retry_policy)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder.compile(checkpointer=checkpointer)


def test_a_compiled_subgraph_as_a_node_nests_its_nodes_under_it(
    rastir_spans: CapturedSpans,
) -> None:
    graph = one_node_graph("expert", build_graph())

    @langgraph_agent(agent_name="supervisor")
    def run() -> Any:
        return graph.invoke(INPUT)

    assert run()["messages"][-1].content == "The answer is 20"
    root = check_labels_and_ends(rastir_spans, "supervisor")
    inner = react_tree("x")[2]
    assert shape(rastir_spans, root) == ("supervisor", "agent", (("node:expert", "trace", inner),))
    assert [tokens(s) for s in rastir_spans.find(kind="llm")] == [(11, 3), (23, 4), (37, 9)]


class FanState(TypedDict):
    items: list[int]
    out: Annotated[list[int], operator.add]


@pytest.mark.anyio
async def test_send_fan_out_gives_one_span_per_branch_and_no_start_node(
    rastir_spans: CapturedSpans,
) -> None:
    model = Scripted()

    def fan(state: FanState) -> list[Send]:
        return [Send("work", {"items": [i], "out": []}) for i in state["items"]]

    async def work(state: FanState) -> dict[str, list[int]]:
        await model.ainvoke(f"say {state['items'][0]}")
        return {"out": [state["items"][0] * 2]}

    builder = StateGraph(FanState)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, fan, ["work"])
    builder.add_edge("work", END)
    graph = builder.compile()

    @langgraph_agent(agent_name="fan")
    async def run() -> Any:
        return await graph.ainvoke({"items": [1, 2, 3], "out": []})

    assert sorted((await run())["out"]) == [2, 4, 6]
    root = check_labels_and_ends(rastir_spans, "fan")
    branch = ("node:work", "trace", (leaf("chat gpt-4o-mini", "llm"),))
    # LangGraph's hidden __start__ task (it runs the routing function) is no node.
    assert shape(rastir_spans, root) == ("fan", "agent", (branch, branch, branch))
    assert {s.attributes["langgraph.step"] for s in rastir_spans.find("node:work")} == {1}


def test_interrupt_and_resume_are_two_calls_the_first_marked_interrupted(
    rastir_spans: CapturedSpans,
) -> None:
    def ask_human(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [AIMessage(content=f"approved: {answer}")]}

    graph = one_node_graph("ask_human", ask_human, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}

    @langgraph_agent(agent_name="approver")
    def run(value: Any) -> Any:
        return graph.invoke(value, config)

    assert "__interrupt__" in run(INPUT)
    assert run(Command(resume="yes"))["messages"][-1].content == "approved: yes"
    first, second = sorted(
        rastir_spans.find("approver", kind="agent"), key=lambda s: s.start_time_unix_nano
    )
    assert first.trace_id != second.trace_id
    assert first.attributes["langgraph.interrupted"] is True
    assert "langgraph.interrupted" not in second.attributes
    assert first.status == second.status == "ok"
    paused, resumed = (rastir_spans.children(a) for a in (first, second))
    assert [s.name for s in paused] == [s.name for s in resumed] == ["node:ask_human"]
    assert paused[0].attributes["langgraph.control_flow"] == "GraphInterrupt"
    assert "langgraph.control_flow" not in resumed[0].attributes
    assert paused[0].status == resumed[0].status == "ok"


def test_a_retried_node_gives_one_span_per_attempt(rastir_spans: CapturedSpans) -> None:
    attempts: list[int] = []

    def flaky(state: MessagesState) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return {}

    policy = RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False)
    graph = one_node_graph("flaky", flaky, retry_policy=policy)

    @langgraph_agent(agent_name="retry")
    def run() -> Any:
        return graph.invoke(INPUT)

    run()
    root = check_labels_and_ends(rastir_spans, "retry")
    nodes = rastir_spans.children(root)
    assert [(s.name, s.status) for s in nodes] == [
        ("node:flaky", "error"),
        ("node:flaky", "error"),
        ("node:flaky", "ok"),
    ]
    assert nodes[0].error is not None
    assert nodes[0].error["type"] == "provider_error"
    assert root.status == "ok"


def test_the_recursion_limit_fails_the_agent_span_and_ends_every_node(
    rastir_spans: CapturedSpans,
) -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("loop", lambda state: {})
    builder.add_edge(START, "loop")
    builder.add_edge("loop", "loop")
    graph = builder.compile()

    @langgraph_agent(agent_name="looper")
    def run() -> Any:
        return graph.invoke(INPUT, {"recursion_limit": 3})

    with pytest.raises(GraphRecursionError):
        run()
    root = check_labels_and_ends(rastir_spans, "looper")
    assert root.status == "error"
    assert root.error is not None
    assert root.error["exception_type"].endswith("GraphRecursionError")
    assert [s.name for s in rastir_spans.children(root)] == ["node:loop"] * 3
    assert all(s.status == "ok" for s in rastir_spans.children(root))


@tool
def echo(x: int) -> int:
    """Echo."""
    return x


@tool
def refuse(x: int) -> int:
    """Refuse."""
    raise ToolException("not allowed")


def _crash(x: int) -> int:
    """Crash."""
    raise KeyError("missing")


crash = StructuredTool.from_function(_crash, name="crash")


@tool
async def later(x: int) -> int:
    """Answer asynchronously."""
    await asyncio.sleep(0)
    return x


class ParallelCaller(Scripted):
    """Asks for every tool at once, then answers."""

    names: list[str] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if any(isinstance(m, ToolMessage) for m in messages):
            return super()._generate(messages, stop, run_manager)
        calls = [{"name": n, "args": {"x": i}, "id": f"id_{n}"} for i, n in enumerate(self.names)]
        message = AIMessage(
            content="",
            tool_calls=calls,
            usage_metadata=USAGE,
            response_metadata=self._meta("tool_calls"),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def _tools_graph(tools: list[BaseTool]) -> Any:
    model = ParallelCaller(names=[t.name for t in tools])

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder.compile()


@pytest.mark.anyio
async def test_parallel_tool_calls_each_get_a_span_and_a_tool_exception_is_a_tool_error(
    rastir_spans: CapturedSpans,
) -> None:
    graph = _tools_graph([echo, refuse, crash, later])

    @langgraph_agent(agent_name="parallel")
    async def run() -> Any:
        return await graph.ainvoke(GO)

    state = await run()
    assert state["messages"][-1].content == "hello there"
    root = check_labels_and_ends(rastir_spans, "parallel")
    assert root.status == "ok"
    tools_node = rastir_spans.one("node:tools")
    tools = {s.name: s for s in rastir_spans.children(tools_node)}
    assert set(tools) == {"echo", "refuse", "crash", "later"}
    for name, span in tools.items():
        assert span.attributes["gen_ai.tool.call.id"] == f"id_{name}"
        assert span.psid == tools_node.sid
    assert tools["echo"].status == tools["later"].status == "ok"
    # LangChain's ToolException is the tool saying it failed: tool_error ...
    assert tools["refuse"].error == {
        "type": "tool_error",
        "exception_type": "langchain_core.tools.base.ToolException",
        "message": "not allowed",
    }
    # ... any other exception is classified as usual.
    assert tools["crash"].error is not None
    assert tools["crash"].error["type"] == "internal_error"
    assert tools_node.status == "ok"  # ToolNode handed the errors to the model


@pytest.mark.anyio
async def test_a_cancelled_run_cancels_the_spans_it_cut_short(
    rastir_spans: CapturedSpans,
) -> None:
    started = asyncio.Event()

    class Hanging(Scripted):
        async def _agenerate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: AsyncCallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            started.set()
            await asyncio.Event().wait()  # until cancelled
            raise AssertionError("unreachable")

    model = Hanging()

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = one_node_graph("agent", agent)

    @langgraph_agent(agent_name="hang")
    async def run() -> Any:
        return await graph.ainvoke(INPUT)

    task = asyncio.ensure_future(run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    root = rastir_spans.one("hang", kind="agent")
    assert root.status == "cancelled"
    llm = rastir_spans.one(kind="llm")
    # LangChain reports no end for a model call cancelled inside asyncio.gather: the
    # call's end closes it, with the cancellation that cut it short, not as "ok".
    assert llm.attributes["rastir.span.unfinished"] is True
    assert llm.status == "cancelled"
    assert rastir_spans.one("node:agent").status == "cancelled"


@pytest.mark.anyio
async def test_astream_events_and_concurrent_streams_stay_separate(
    rastir_spans: CapturedSpans,
) -> None:
    graph = build_graph()

    @langgraph_agent(agent_name="events")
    async def run(i: int) -> list[str]:
        question = {"messages": [("user", f"add {i} and 1, then multiply by 2")]}
        return [e["event"] async for e in graph.astream_events(question, version="v2")]

    results = await asyncio.gather(*(run(i) for i in range(6)))
    assert all("on_chat_model_stream" in events for events in results)
    roots = rastir_spans.find("events", kind="agent")
    assert len({r.trace_id for r in roots}) == 6
    for root in roots:
        assert shape(rastir_spans, root) == react_tree("events")
        llms = [s for s in rastir_spans.find(kind="llm") if s.trace_id == root.trace_id]
        assert [tokens(s) for s in sorted(llms, key=lambda s: s.start_time_unix_nano)] == [
            (11, 3),
            (23, 4),
            (37, 9),
        ]
        assert all("rastir.ttft_ms" in s.attributes for s in llms)
    assert len(rastir_spans) == 6 * 11


# -- LangChain LCEL -------------------------------------------------------------------------
def test_a_prompt_model_parser_chain_is_one_llm_span(rastir_spans: CapturedSpans) -> None:
    chain = PROMPT | Scripted() | StrOutputParser()

    @langgraph_agent(agent_name="lcel")
    def run() -> str:
        return chain.invoke({"x": "hi"})

    assert run() == "hello there"
    root = check_labels_and_ends(rastir_spans, "lcel")
    assert shape(rastir_spans, root) == ("lcel", "agent", (leaf("chat gpt-4o-mini", "llm"),))
    llm = rastir_spans.one(kind="llm")
    assert tokens(llm) == (5, 2)
    assert llm.attributes["gen_ai.provider.name"] == "openai"
    assert llm.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert llm.attributes["rastir.cost.usd"] > 0


def test_with_retry_gives_a_failed_and_a_good_llm_span(rastir_spans: CapturedSpans) -> None:
    model = Scripted(fail=1).with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    chain = PROMPT | model | StrOutputParser()

    @langgraph_agent(agent_name="retry")
    def run() -> str:
        return chain.invoke({"x": "hi"})

    assert run() == "hello there"
    root = check_labels_and_ends(rastir_spans, "retry")
    failed, good = rastir_spans.children(root)
    assert (failed.kind, failed.status, good.kind, good.status) == ("llm", "error", "llm", "ok")
    assert failed.error is not None
    assert failed.error["type"] == "provider_error"
    assert "rastir.cost.usd" not in failed.attributes
    assert tokens(good) == (5, 2)
    assert root.status == "ok"


def test_with_fallbacks_records_both_models_and_the_cost_once(
    rastir_spans: CapturedSpans,
) -> None:
    model = Scripted(fail=99).with_fallbacks([Scripted(model_name="gpt-4o")])
    chain = PROMPT | model | StrOutputParser()

    @langgraph_agent(agent_name="fallback")
    def run() -> str:
        return chain.invoke({"x": "hi"})

    assert run() == "hello there"
    root = check_labels_and_ends(rastir_spans, "fallback")
    first, second = rastir_spans.children(root)
    assert (first.name, first.status) == ("chat gpt-4o-mini", "error")
    assert (second.name, second.status) == ("chat gpt-4o", "ok")
    priced = [s for s in rastir_spans if "rastir.cost.usd" in s.attributes]
    assert priced == [second]
    assert tokens(first) == (None, None)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["batch", "abatch"])
async def test_batch_gives_one_llm_span_per_input_under_the_agent(
    rastir_spans: CapturedSpans, mode: str
) -> None:
    chain = PROMPT | Scripted() | StrOutputParser()
    inputs = [{"x": "a"}, {"x": "b"}, {"x": "c"}]

    @langgraph_agent(agent_name="batcher")
    async def run() -> list[str]:
        if mode == "batch":
            return chain.batch(inputs)
        return await chain.abatch(inputs)

    assert await run() == ["hello there"] * 3
    root = check_labels_and_ends(rastir_spans, "batcher")
    llms = rastir_spans.find(kind="llm")
    assert len(llms) == 3
    assert all(s.psid == root.sid and tokens(s) == (5, 2) for s in llms)


@pytest.mark.anyio
async def test_runnable_parallel_and_structured_output(rastir_spans: CapturedSpans) -> None:
    class Person(BaseModel):
        name: str
        age: int

    both = RunnableParallel(
        fast=PROMPT | Scripted() | StrOutputParser(),
        big=PROMPT | Scripted(model_name="gpt-4o") | StrOutputParser(),
    )
    structured = Scripted().with_structured_output(Person)

    @langgraph_agent(agent_name="par")
    async def run() -> tuple[Any, Any]:
        return await both.ainvoke({"x": "hi"}), await structured.ainvoke("who?")

    answers, person = await run()
    assert answers == {"fast": "hello there", "big": "hello there"}
    assert person == Person(name="Ada", age=36)
    root = check_labels_and_ends(rastir_spans, "par")
    names = sorted(s.name for s in rastir_spans.children(root))
    assert names == ["chat gpt-4o", "chat gpt-4o-mini", "chat gpt-4o-mini"]
    (tool_turn,) = [
        s
        for s in rastir_spans.find(kind="llm")
        if s.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    ]
    assert tokens(tool_turn) == (5, 2)


@pytest.mark.anyio
async def test_the_users_callbacks_still_run_on_a_streamed_chain(
    rastir_spans: CapturedSpans,
) -> None:
    seen: list[str] = []

    class Mine(BaseCallbackHandler):
        def on_llm_new_token(
            self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any
        ) -> None:
            seen.append(str(token))

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            seen.append("end")

    chain = PROMPT | Scripted() | StrOutputParser()

    @langgraph_agent(agent_name="streamer")
    async def run() -> str:
        return "".join([c async for c in chain.astream({"x": "hi"}, {"callbacks": [Mine()]})])

    assert await run() == "hello there"
    # (LangChain itself also reports the empty last chunk as a token.)
    assert [t for t in seen if t] == ["hello", " there", "end"]
    check_labels_and_ends(rastir_spans, "streamer")
    llm = rastir_spans.one(kind="llm")
    assert tokens(llm) == (5, 2)
    assert 0 < llm.attributes["rastir.ttft_ms"] <= llm.duration_ns / 1e6


def test_runnables_inside_a_node_get_no_span_of_their_own(rastir_spans: CapturedSpans) -> None:
    chain = PROMPT | Scripted() | StrOutputParser() | RunnableLambda(str.upper)

    def node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=chain.invoke({"x": "hi"}))]}

    graph = one_node_graph("think", node)

    @langgraph_agent(agent_name="thinker")
    def run() -> Any:
        return graph.invoke(INPUT)

    assert run()["messages"][-1].content == "HELLO THERE"
    root = check_labels_and_ends(rastir_spans, "thinker")
    assert shape(rastir_spans, root) == (
        "thinker",
        "agent",
        (("node:think", "trace", (leaf("chat gpt-4o-mini", "llm"),)),),
    )
