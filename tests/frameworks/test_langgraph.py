"""``@langgraph_agent`` and ``@framework_agent`` on a real compiled LangGraph graph."""

from __future__ import annotations

import ast
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from langchain_core.callbacks import BaseCallbackHandler

import rastir
from rastir import framework_agent, langgraph_agent
from rastir.testing import CapturedSpans
from tests.frameworks.react_graph import MODEL, USAGE, ToolFailure, build_graph
from tests.frameworks.trees import react_tree, shape

GRAPH = build_graph()
QUESTION = "add 2 and 3, then multiply by 4"
INPUT = {"messages": [("user", QUESTION)]}


def answer(state: dict[str, Any]) -> str:
    return str(state["messages"][-1].content)


def check_run(spans: CapturedSpans, agent: str = "react_agent", *, streamed: bool = False) -> None:
    """The exact tree, models, tokens, tool names and labels of one run."""
    root = spans.one(agent, kind="agent")
    assert shape(spans, root) == react_tree(agent)
    assert root.attributes["gen_ai.agent.name"] == agent
    assert root.attributes["rastir.framework"] == "langgraph"
    assert root.status == "ok"
    llms = sorted(spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert [
        (s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in llms
    ] == list(USAGE)
    for s in llms:
        assert s.attributes["gen_ai.request.model"] == MODEL
        assert s.attributes["gen_ai.provider.name"] == "openai"
        assert s.attributes["gen_ai.operation.name"] == "chat"
        assert s.attributes["langgraph.node"] == "agent"
        assert ("rastir.ttft_ms" in s.attributes) is streamed
    tools = sorted(spans.find(kind="tool"), key=lambda s: s.start_time_unix_nano)
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["add", "multiply"]
    assert [s.attributes["gen_ai.tool.call.id"] for s in tools] == ["call_add", "call_mul"]
    for s in spans:
        assert s.trace_id == root.trace_id
        assert s.attributes["gen_ai.agent.name"] == agent
        assert s.status == "ok"
        # Without capture_content, no tool arguments are recorded.
        assert "gen_ai.tool.call.arguments" not in s.attributes


# -- sync, async, streaming ---------------------------------------------------------------
def test_invoke_gives_the_react_tree_with_models_tokens_and_tools(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="react_agent")
    def run(question: str) -> dict[str, Any]:
        return GRAPH.invoke({"messages": [("user", question)]})

    assert answer(run(QUESTION)) == "The answer is 20"
    check_run(rastir_spans)


@pytest.mark.anyio
async def test_ainvoke_gives_the_same_tree(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="react_agent")
    async def run(question: str) -> dict[str, Any]:
        return await GRAPH.ainvoke({"messages": [("user", question)]})

    assert answer(await run(QUESTION)) == "The answer is 20"
    check_run(rastir_spans)


def test_a_returned_stream_keeps_the_agent_span_open_until_it_ends(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="react_agent")
    def run() -> Iterator[Any]:
        return GRAPH.stream(INPUT, stream_mode="messages")

    stream = run()
    assert rastir_spans.find(kind="agent") == []  # nothing ran yet
    first = next(stream)
    assert rastir_spans.find(kind="agent") == []  # still streaming
    chunks = [first, *stream]
    assert "".join(str(m.content) for m, _ in chunks).endswith("The answer is 20")
    check_run(rastir_spans, streamed=True)
    assert rastir_spans.one("react_agent").attributes["rastir.generator.items"] == len(chunks)


def test_a_returned_stream_dropped_unread_still_ends_the_agent_span(
    rastir_spans: CapturedSpans,
) -> None:
    """A generator never started never runs its finally: the span ends when the
    stream is collected, marked as closed early with no items."""

    @langgraph_agent(agent_name="react_agent")
    def run() -> Iterator[Any]:
        return GRAPH.stream(INPUT, stream_mode="messages")

    stream = run()
    assert rastir_spans.find(kind="agent") == []
    del stream
    gc.collect()
    agent = rastir_spans.one("react_agent")
    assert agent.status == "ok"
    assert agent.attributes["rastir.generator.closed_early"] is True
    assert agent.attributes["rastir.generator.items"] == 0
    assert rastir_spans.find(kind="llm") == []
    # Read, it is ended once, by the drive.
    stream = run()
    assert len(list(stream)) > 0
    del stream
    gc.collect()
    assert len(rastir_spans.find("react_agent")) == 2


def test_a_generator_entry_point_streams_updates(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="react_agent")
    def run() -> Iterator[dict[str, Any]]:
        yield from GRAPH.stream(INPUT, stream_mode="updates")

    updates = list(run())
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent", "tools", "agent"]
    check_run(rastir_spans)


@pytest.mark.anyio
async def test_astream_messages_records_time_to_first_token(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="react_agent")
    async def run() -> AsyncIterator[tuple[Any, Any]]:
        async for message, meta in GRAPH.astream(INPUT, stream_mode="messages"):
            yield message, meta

    text = "".join([str(m.content) async for m, _ in run()])
    assert text.endswith("The answer is 20")
    check_run(rastir_spans, streamed=True)
    final = max(rastir_spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert final.events is not None
    assert [e.name for e in final.events] == ["rastir.first_token"]
    assert 0 < final.attributes["rastir.ttft_ms"] <= final.duration_ns / 1e6


@pytest.mark.anyio
async def test_an_async_function_returning_astream(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="react_agent")
    async def run() -> Any:
        return GRAPH.astream(INPUT, stream_mode="messages")

    stream = await run()
    assert rastir_spans.find(kind="agent") == []
    assert len([c async for c in stream]) > 3
    check_run(rastir_spans, streamed=True)


# -- concurrency --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_twenty_concurrent_runs_of_one_graph_stay_separate(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="react_agent")
    async def run(i: int) -> str:
        state = await GRAPH.ainvoke({"messages": [("user", f"add {i} and 100, times 2")]})
        return answer(state)

    rastir.configure(capture_content=True)
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        results[i] = await run(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)

    assert results == {i: f"The answer is {(i + 100) * 2}" for i in range(20)}
    roots = rastir_spans.find("react_agent", kind="agent")
    assert len(roots) == 20
    assert len({r.trace_id for r in roots}) == 20
    # 1 agent + 5 nodes + 3 llm + 2 tools per run, each in its own run's trace.
    assert len(rastir_spans) == 20 * 11
    for root in roots:
        in_trace = [s for s in rastir_spans if s.trace_id == root.trace_id]
        assert len(in_trace) == 11
        assert shape(rastir_spans, root) == react_tree("react_agent")
    # Each trace holds its own run's tool calls: multiply got that run's sum.
    seen = []
    for root in roots:
        in_trace = [s for s in rastir_spans if s.trace_id == root.trace_id]
        (add_span,) = [s for s in in_trace if s.name == "add"]
        (mul_span,) = [s for s in in_trace if s.name == "multiply"]
        add_args = ast.literal_eval(add_span.attributes["gen_ai.tool.call.arguments"])
        mul_args = ast.literal_eval(mul_span.attributes["gen_ai.tool.call.arguments"])
        assert mul_args == {"a": add_args["a"] + 100, "b": 2}
        seen.append(add_args["a"])
    assert sorted(seen) == list(range(20))


# -- errors -------------------------------------------------------------------------------
def test_a_failing_tool_marks_its_span_and_the_agent_and_the_error_propagates(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="react_agent")
    def run() -> Any:
        # 13 + 0 = 13: multiply(13, 0) raises
        return GRAPH.invoke({"messages": [("user", "add 13 and 0")]})

    with pytest.raises(ToolFailure, match="13 is unlucky") as info:
        run()
    assert type(info.value) is ToolFailure
    tool = rastir_spans.one("multiply", kind="tool")
    assert tool.status == "error"
    assert tool.error == {
        "type": "internal_error",
        "exception_type": "tests.frameworks.react_graph.ToolFailure",
        "message": "13 is unlucky",
    }
    nodes = [s for s in rastir_spans.find("node:tools") if s.sid == tool.psid]
    assert len(nodes) == 1
    assert nodes[0].status == "error"
    root = rastir_spans.one("react_agent", kind="agent")
    assert root.status == "error"
    assert root.error is not None
    assert root.error["exception_type"].endswith("ToolFailure")
    # The successful first tool call is still there, ok.
    assert rastir_spans.one("add", kind="tool").status == "ok"


# -- capture, user callbacks, detection ------------------------------------------------------
def test_tool_arguments_are_recorded_only_with_capture_content(
    rastir_spans: CapturedSpans,
) -> None:
    rastir.configure(capture_content=True)

    @langgraph_agent
    def run() -> Any:
        return GRAPH.invoke(INPUT)

    run()
    add_span = rastir_spans.one("add", kind="tool")
    assert add_span.attributes["gen_ai.tool.call.arguments"] == repr({"a": 2, "b": 3})


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tools: list[str] = []

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kw: Any) -> None:
        self.tools.append(serialized["name"])


def test_the_users_callbacks_in_config_still_run_and_the_graph_is_untouched(
    rastir_spans: CapturedSpans,
) -> None:
    before = dict(vars(GRAPH))
    recorder = Recorder()

    @langgraph_agent(agent_name="react_agent")
    def run() -> Any:
        return GRAPH.invoke(INPUT, {"callbacks": [recorder], "tags": ["mine"]})

    run()
    assert recorder.tools == ["add", "multiply"]
    check_run(rastir_spans)
    assert vars(GRAPH) == before
    # Outside a decorated call the graph runs with no rastir span at all.
    rastir_spans.clear()
    GRAPH.invoke(INPUT)
    assert list(rastir_spans) == []


def test_framework_agent_detects_the_graph_among_the_arguments(
    rastir_spans: CapturedSpans,
) -> None:
    @framework_agent(agent_name="react_agent")
    def run(graph: Any, question: str) -> Any:
        return graph.invoke({"messages": [("user", question)]})

    run(GRAPH, QUESTION)
    check_run(rastir_spans)


def test_framework_agent_without_a_framework_object_is_a_plain_agent_span(
    rastir_spans: CapturedSpans,
) -> None:
    @framework_agent
    def helper(question: str) -> str:
        GRAPH.invoke(INPUT)  # not an argument: not detected
        return question

    assert helper("hi") == "hi"
    root = rastir_spans.one("helper", kind="agent")
    assert "rastir.framework" not in root.attributes
    assert rastir_spans.find(kind="llm") == []
    assert len(rastir_spans) == 1


def test_spans_the_user_opens_inside_a_node_nest_under_the_node(
    rastir_spans: CapturedSpans,
) -> None:
    @rastir.tool(tool_name="lookup")
    def lookup(a: int, b: int) -> int:
        return a + b

    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return lookup(a, b)

    from tests.frameworks.react_graph import multiply

    graph = build_graph([add, multiply])

    @langgraph_agent(agent_name="react_agent")
    def run() -> Any:
        return graph.invoke(INPUT)

    run()
    inner = rastir_spans.one("lookup", kind="tool")
    outer = rastir_spans.one("add", kind="tool")
    assert inner.psid == outer.sid
    assert inner.attributes["gen_ai.agent.name"] == "react_agent"


def test_disabled_rastir_records_nothing_and_returns_the_result(
    rastir_spans: CapturedSpans,
) -> None:
    rastir.configure(enabled=False)

    @langgraph_agent
    def run() -> Any:
        return GRAPH.invoke(INPUT)

    assert answer(run()) == "The answer is 20"
    assert list(rastir_spans) == []


def test_a_retriever_run_is_a_retrieval_span(rastir_spans: CapturedSpans) -> None:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Shelf(BaseRetriever):
        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [Document(page_content=query), Document(page_content="more")]

    @langgraph_agent(agent_name="librarian")
    def look(query: str) -> int:
        return len(Shelf().invoke(query))

    assert look("books") == 2
    span = rastir_spans.one("Shelf", kind="retrieval")
    assert span.attributes["rastir.retrieval.documents"] == 2
    assert span.psid == rastir_spans.one("librarian", kind="agent").sid


def test_an_interrupt_ends_the_node_without_an_error(rastir_spans: CapturedSpans) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.types import interrupt

    def ask_human(state: MessagesState) -> dict[str, Any]:
        interrupt("approve?")
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("ask_human", ask_human)
    builder.add_edge(START, "ask_human")
    builder.add_edge("ask_human", END)
    graph: Any = builder.compile(checkpointer=InMemorySaver())

    @langgraph_agent(agent_name="approver")
    def run() -> Any:
        return graph.invoke(INPUT, {"configurable": {"thread_id": "t1"}})

    state = run()
    assert "__interrupt__" in state
    node = rastir_spans.one("node:ask_human", kind="trace")
    assert node.status == "ok"
    assert node.attributes["langgraph.control_flow"] == "GraphInterrupt"
    assert rastir_spans.one("approver", kind="agent").status == "ok"


# -- nesting ------------------------------------------------------------------------------
def test_a_decorated_sub_agent_called_from_a_tool_records_each_span_once(
    rastir_spans: CapturedSpans,
) -> None:
    from langchain_core.tools import StructuredTool

    from tests.frameworks.react_graph import multiply

    inner_graph = build_graph()

    @langgraph_agent(agent_name="math_expert")
    def ask_expert(question: str) -> str:
        return answer(inner_graph.invoke({"messages": [("user", question)]}))

    def add_via_expert(a: int, b: int) -> int:
        assert ask_expert(f"add {a} and {b}, times 2") == f"The answer is {(a + b) * 2}"
        return a + b

    # The supervisor's "add" tool asks the math expert, itself a decorated graph run:
    # the supervisor's handler reaches the expert's runs through the tool's callbacks.
    add = StructuredTool.from_function(add_via_expert, name="add", description="Add.")
    outer_graph = build_graph([add, multiply])

    @langgraph_agent(agent_name="supervisor")
    def supervise() -> Any:
        return outer_graph.invoke(INPUT)

    assert answer(supervise()) == "The answer is 20"
    root = rastir_spans.one("supervisor", kind="agent")
    expert = rastir_spans.one("math_expert", kind="agent")
    tree = react_tree("supervisor")
    add_node = ("node:tools", "trace", (("add", "tool", (react_tree("math_expert"),)),))
    assert shape(rastir_spans, root) == (tree[0], tree[1], (tree[2][0], add_node, *tree[2][2:]))
    assert len(rastir_spans.find(kind="llm")) == 6
    assert len(rastir_spans.find(kind="tool")) == 4
    # Each span is labelled with the agent whose run it is, and is there once.
    inner = [s for s in rastir_spans if s.attributes["gen_ai.agent.name"] == "math_expert"]
    assert len(inner) == 11  # the expert's agent span, 5 nodes, 3 model calls, 2 tools
    assert all(s.trace_id == root.trace_id for s in rastir_spans)
    (outer_add,) = [
        s for s in rastir_spans.find("add") if s.attributes["gen_ai.agent.name"] == "supervisor"
    ]
    assert expert.psid == outer_add.sid


# -- a user's @llm inside a chat model ------------------------------------------------------
def _provider_llm() -> Any:
    """A chat model whose ``_generate`` calls the provider through a function the user
    decorated with ``@rastir.llm`` (as ChatOpenAI over a client the user instruments)."""
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatResult
    from openai.types.chat import ChatCompletion

    from tests.frameworks.react_graph import ScriptedChatModel

    @rastir.llm
    def provider_call(**kwargs: Any) -> ChatCompletion:
        return ChatCompletion.model_validate(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "hi"},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )

    class ProviderModel(ScriptedChatModel):
        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            provider_call(model=MODEL, messages=[{"role": "user", "content": "x"}])
            return super()._generate(messages, stop, run_manager, **kwargs)

        async def _agenerate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: AsyncCallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            return self._generate(messages, stop, None, **kwargs)

    return ProviderModel()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_users_llm_span_inside_a_chat_model_nests_under_the_models_span(
    rastir_spans: CapturedSpans, mode: str
) -> None:
    model = _provider_llm()

    @langgraph_agent(agent_name="a")
    async def run() -> Any:
        if mode == "invoke":
            return model.invoke("add 1 and 2")
        return await model.ainvoke("add 1 and 2")

    await run()
    outer = rastir_spans.one(f"chat {MODEL}", kind="llm")
    inner = rastir_spans.one("provider_call", kind="llm")
    assert inner.psid == outer.sid
    assert outer.psid == rastir_spans.one("a", kind="agent").sid


@pytest.mark.anyio
async def test_a_streamed_model_call_is_not_current_in_the_callers_loop(
    rastir_spans: CapturedSpans,
) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from tests.frameworks.react_graph import ScriptedChatModel

    model = ScriptedChatModel()
    # The last turn: the model streams its text answer word by word.
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_add"}
    history = [
        HumanMessage("add 1 and 2"),
        AIMessage(content="", tool_calls=[call]),
        ToolMessage("3", tool_call_id="call_add"),
        AIMessage(content="", tool_calls=[{**call, "name": "multiply", "id": "call_mul"}]),
        ToolMessage("6", tool_call_id="call_mul"),
    ]

    @rastir.trace
    def handle(chunk: Any) -> None:
        pass

    @langgraph_agent(agent_name="a")
    async def run() -> None:
        for chunk in model.stream(history):
            handle(chunk)
        async for chunk in model.astream(history):
            handle(chunk)

    await run()
    root = rastir_spans.one("a", kind="agent")
    handled = rastir_spans.find("handle")
    assert len(handled) > 2
    # The model's span is not current between the chunks it yields: the caller's
    # spans stay under the caller's own span.
    assert {s.psid for s in handled} == {root.sid}
    assert len(rastir_spans.find(kind="llm")) == 2
