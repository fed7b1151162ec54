"""An in-process MCP server with one tool per behaviour the bridge must record."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, RequestParamsMeta, TextContent

import rastir
from rastir.context import current_baggage
from rastir.mcp_bridge import mcp_endpoint
from rastir.spans import Span
from rastir.testing import CapturedSpans


class Probe:
    """What the tools saw, for the test to read."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.metas: list[tuple[str, dict[str, Any]]] = []
        # (method, JSON-RPC request id) of every request the server was sent.
        self.requests: list[tuple[str, Any]] = []


def as_meta(entries: dict[str, Any]) -> RequestParamsMeta:
    """Any keys as a ``_meta`` (an open map on the wire; a TypedDict to type checkers)."""
    return cast(RequestParamsMeta, entries)


def user_keys(meta: Any) -> dict[str, Any]:
    """``_meta`` without the reserved ``io.modelcontextprotocol/*`` keys mcp adds."""
    return {
        k: v for k, v in dict(meta or {}).items() if not k.startswith("io.modelcontextprotocol/")
    }


def build(probe: Probe) -> MCPServer:
    server = MCPServer("bridge-tests")

    @rastir.trace(name="tool.inner")
    def inner(value: int) -> int:
        return value

    @server.tool()
    @mcp_endpoint
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return inner(a + b)

    @server.tool()
    @mcp_endpoint
    def mul(a: int, b: int) -> int:
        return inner(a * b)

    @server.tool()
    @mcp_endpoint
    async def meta_echo(ctx: Context) -> dict[str, Any]:
        return user_keys(ctx.request_context.meta)

    @server.tool()
    @mcp_endpoint
    async def baggage() -> dict[str, str]:
        return current_baggage()

    @server.tool()
    @mcp_endpoint
    async def refuse() -> CallToolResult:
        return CallToolResult(
            content=[TextContent(type="text", text="no such city")], is_error=True
        )

    @server.tool()
    @mcp_endpoint
    async def deliberate() -> str:
        raise ToolError("bad input")

    @server.tool()
    @mcp_endpoint
    async def missing() -> str:
        raise ResourceError("no such document")

    @server.tool()
    @mcp_endpoint
    async def report(ok: bool) -> dict[str, Any]:
        # "isError" is a field of the tool's own output here, not the result's flag.
        return {"isError": not ok, "detail": "disk full"}

    @server.tool()
    @mcp_endpoint
    async def miscount() -> int:
        return "many"  # type: ignore[return-value]  # fails MCPServer's output check

    @server.tool()
    @mcp_endpoint
    async def crash() -> str:
        raise ValueError("boom")

    @server.tool()
    @mcp_endpoint
    async def protocol() -> str:
        raise MCPError(INVALID_PARAMS, "wrong arguments")

    @server.tool()
    @mcp_endpoint
    async def hang() -> str:
        probe.started.set()
        await anyio.sleep_forever()
        return "never"  # pragma: no cover

    @server.prompt()
    @mcp_endpoint
    def greet(name: str) -> str:
        return f"Hello {name}"

    @server.resource("res://doc")
    def doc() -> str:
        return "the doc"

    class Recorder:
        async def __call__(self, ctx: Any, call_next: Any) -> Any:
            probe.metas.append((ctx.method, user_keys(ctx.meta)))
            probe.requests.append((ctx.method, ctx.request_id))
            return await call_next(ctx)

    server._lowlevel_server.middleware.append(Recorder())
    return server


class SpanWaiter:
    """Wait, without sleeping, until a captured span matches."""

    def __init__(self, spans: CapturedSpans) -> None:
        self.spans = spans
        self.cond = threading.Condition()

    def sink(self, span: Span) -> None:
        with self.cond:
            self.cond.notify_all()

    async def until(self, predicate: Callable[[CapturedSpans], bool], within: float = 5) -> None:
        def wait() -> bool:
            with self.cond:
                return self.cond.wait_for(lambda: predicate(self.spans), timeout=within)

        if not predicate(self.spans) and not await anyio.to_thread.run_sync(wait):
            raise AssertionError(f"no matching span; captured: {self.spans.tree()}")
