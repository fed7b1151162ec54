"""LangGraph: one decorator on the function that runs the graph.

    python examples/frameworks/langgraph_calculator.py   # needs langchain-openai and a key

Every node, model call and tool call of the run becomes a span under ``calculator``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import rastir


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_graph(model: BaseChatModel) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A ReAct loop: the model asks for tools until it can answer."""
    llm = model.bind_tools([add, multiply])

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([add, multiply]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


@rastir.langgraph_agent(agent_name="calculator")
def ask(graph: CompiledStateGraph[Any, Any, Any, Any], question: str) -> str:
    state = graph.invoke({"messages": [("user", question)]})
    return str(state["messages"][-1].content)


@rastir.langgraph_agent(agent_name="calculator")
async def ask_streaming(
    graph: CompiledStateGraph[Any, Any, Any, Any], question: str
) -> AsyncIterator[str]:
    # The agent span lasts until the stream ends; model spans get rastir.ttft_ms.
    async for chunk, _meta in graph.astream(
        {"messages": [("user", question)]}, stream_mode="messages"
    ):
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            yield chunk.content


if __name__ == "__main__":
    from langchain_openai import ChatOpenAI

    rastir.configure(service="calculator", push_url="http://127.0.0.1:8080")
    print(ask(build_graph(ChatOpenAI(model="gpt-4o-mini")), "add 2 and 3, then multiply by 4"))
    rastir.shutdown()
