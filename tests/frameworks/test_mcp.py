"""A LangGraph tool that calls a real MCP server: one trace through the server's spans.

The MCP server is an in-process ``MCPServer`` whose tool carries ``@mcp_endpoint``; the
graph's tool talks to it through ``rastir.wrap(Client(server))``. Nothing but the
``@langgraph_agent`` decorator is added to the graph.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import tool
from mcp import Client
from mcp.server.mcpserver import MCPServer

import rastir
from rastir import langgraph_agent, mcp_endpoint
from rastir.testing import CapturedSpans
from tests.frameworks.react_graph import build_graph, multiply

pytestmark = pytest.mark.anyio


def numbers_server() -> MCPServer:
    server = MCPServer("numbers")

    @rastir.trace(name="numbers.lookup")
    def lookup(a: int, b: int) -> int:
        return a + b

    @server.tool()
    @mcp_endpoint
    async def add_remote(a: int, b: int) -> int:
        """Add two integers on the server."""
        return lookup(a, b)

    return server


async def test_a_graph_tool_calling_an_mcp_server_continues_the_trace(
    rastir_spans: CapturedSpans,
) -> None:
    server = numbers_server()
    seen: list[tuple[str | None, str | None]] = []

    @langgraph_agent(agent_name="react_agent")
    async def run(question: str) -> Any:
        async with rastir.wrap(Client(server)) as client:

            @tool
            async def add(a: int, b: int) -> int:
                """Add two integers."""
                seen.append((rastir.current_agent(), rastir.current_span_id()))
                result = await client.call_tool("add_remote", {"a": a, "b": b})
                return int(result.content[0].text)  # type: ignore[union-attr]

            graph = build_graph([add, multiply])
            return await graph.ainvoke({"messages": [("user", question)]})

    state = await run("add 2 and 3, then multiply by 4")
    assert state["messages"][-1].content == "The answer is 20"

    root = rastir_spans.one("react_agent", kind="agent")
    add_span = rastir_spans.one("add", kind="tool")
    client_span = rastir_spans.one("tools/call add_remote", kind="mcp.client")
    server_span = rastir_spans.one("tools/call add_remote", kind="mcp.server")
    inner = rastir_spans.one("numbers.lookup")
    # agent → node:tools → add (tool) → mcp.client → mcp.server → the server's own span
    node = next(s for s in rastir_spans.find("node:tools") if s.sid == add_span.psid)
    assert node.psid == root.sid
    assert client_span.psid == add_span.sid
    assert server_span.psid == client_span.sid
    assert inner.psid == server_span.sid
    assert rastir_spans.trace_ids() == {root.trace_id}
    # The tool ran with the agent's label and the tool span current.
    assert seen == [("react_agent", add_span.span_id)]


async def test_an_mcp_client_the_graph_holds_unwrapped_continues_the_trace_with_the_bridge(
    rastir_spans: CapturedSpans,
) -> None:
    # A plain mcp Client, as framework MCP adapters hold: mcp 2.x writes the
    # OpenTelemetry context into _meta, and with the bridge the tool span is OTel's
    # current span while the tool runs.
    rastir.configure(otel_bridge=True)
    server = numbers_server()

    @langgraph_agent(agent_name="react_agent")
    async def run(question: str) -> Any:
        async with Client(server) as client:

            @tool
            async def add(a: int, b: int) -> int:
                """Add two integers."""
                result = await client.call_tool("add_remote", {"a": a, "b": b})
                return int(result.content[0].text)  # type: ignore[union-attr]

            graph = build_graph([add, multiply])
            return await graph.ainvoke({"messages": [("user", question)]})

    state = await run("add 2 and 3, then multiply by 4")
    assert state["messages"][-1].content == "The answer is 20"
    root = rastir_spans.one("react_agent", kind="agent")
    add_span = rastir_spans.one("add", kind="tool")
    server_span = rastir_spans.one("tools/call add_remote", kind="mcp.server")
    assert server_span.psid == add_span.sid
    assert rastir_spans.trace_ids() == {root.trace_id}
    assert rastir_spans.find(kind="mcp.client") == []
