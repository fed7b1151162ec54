"""A LangGraph agent traced with rastir's decorators: model node, tool node, a loop.

    python examples/langgraph_agent/agent.py
    python examples/langgraph_agent/agent.py "What is the population of Lisbon?"

The graph is LangGraph's usual tool loop over ``MessagesState``: the model node asks
for a tool, the tool node runs it, the model answers. The model is langchain-core's
``FakeMessagesListChatModel`` playing back scripted ``AIMessage`` objects (with tool
calls and ``usage_metadata``), so it runs offline. ``@rastir.agent`` wraps the whole
run, ``@rastir.llm`` each model call and ``@rastir.tool`` each tool; LangGraph copies
the context into the threads it runs nodes in, so the spans nest under the agent.

Without ``RASTIR_PUSH_URL`` the trace is printed here; with it, the spans go to the
collector (``rastir trace latest`` shows them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph import START, MessagesState, StateGraph

import rastir
from rastir.testing import capture_spans

MODEL = "gpt-4o-mini"

_POPULATIONS = {"lisbon": 545_000, "oslo": 717_000}


def scripted_model() -> FakeMessagesListChatModel:
    """Two turns: ask for the ``population`` tool, then answer with its result."""
    usage = {"input_tokens": 42, "output_tokens": 11, "total_tokens": 53}
    return FakeMessagesListChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[{"name": "population", "args": {"city": "Lisbon"}, "id": "call_1"}],
                usage_metadata=usage,
                response_metadata={"model_name": MODEL},
            ),
            AIMessage(
                content="About 545,000 people live in Lisbon.",
                usage_metadata={"input_tokens": 61, "output_tokens": 9, "total_tokens": 70},
                response_metadata={"model_name": MODEL},
            ),
        ]
    )


model = scripted_model()


@rastir.tool(tool_name="population")
def population(city: str) -> int:
    try:
        return _POPULATIONS[city.lower()]
    except KeyError:
        raise LookupError(f"no census data for {city}") from None


@rastir.llm(provider="openai", model=MODEL)
def call_model(messages: Sequence[BaseMessage]) -> AIMessage:
    reply = model.invoke(messages)
    assert isinstance(reply, AIMessage)
    return reply


def model_node(state: MessagesState) -> dict[str, Any]:
    return {"messages": [call_model(state["messages"])]}


def tool_node(state: MessagesState) -> dict[str, Any]:
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    results = []
    for call in last.tool_calls:
        try:
            content = str(population(**call["args"]))
        except LookupError as e:
            content = f"error: {e}"
        results.append(ToolMessage(content=content, tool_call_id=call["id"] or ""))
    return {"messages": results}


def next_step(state: MessagesState) -> Literal["tools", "__end__"]:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "__end__"


builder = StateGraph(MessagesState)
builder.add_node("model", model_node)
builder.add_node("tools", tool_node)
builder.add_edge(START, "model")
builder.add_conditional_edges("model", next_step)
builder.add_edge("tools", "model")
graph = builder.compile()


@rastir.agent(agent_name="census")
def ask(question: str) -> tuple[str, str | None]:
    state = graph.invoke({"messages": [HumanMessage(content=question)]})
    return str(state["messages"][-1].content), rastir.current_trace_id()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    question = " ".join(args) or "What is the population of Lisbon?"
    rastir.configure(service="census-agent")
    with capture_spans() as spans:
        answer, trace_id = ask(question)
    print(answer)
    if not os.environ.get("RASTIR_PUSH_URL"):
        print()
        print(spans.tree())
    rastir.shutdown()  # delivers what is still queued
    print(f"trace {trace_id}")


if __name__ == "__main__":
    main()
