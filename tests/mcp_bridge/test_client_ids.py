"""``jsonrpc.request.id`` under concurrency, and ``network.transport`` over stdio.

Real mcp throughout: an in-process MCPServer through ``Client(server)``'s direct
dispatcher (``auto``) and JSON-RPC over memory streams (``legacy``), and the same
server as a stdio subprocess (this module, run as a program). The tool answers with
``ctx.request_id``: the id the server was sent, which each client span must carry.

    python tests/mcp_bridge/test_client_ids.py   # the stdio server
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

import rastir
from rastir.mcp_bridge import wrap as wrap_mcp
from rastir.spans import Span
from rastir.testing import CapturedSpans

pytestmark = pytest.mark.anyio

_CALLS = 10
HERE = os.path.abspath(__file__)


class Waiting:
    """The ids ``wait_forever`` was called with, and an event set at each call."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.arrived = anyio.Event()


def build_server(waiting: Waiting | None = None) -> MCPServer:
    server = MCPServer("ids")

    @server.tool()
    async def whoami(i: int, ctx: Context) -> dict[str, Any]:
        """The id this request came with; yields first, so concurrent calls interleave."""
        await anyio.lowlevel.checkpoint()
        return {"i": i, "request_id": ctx.request_id}

    @server.tool()
    async def wait_forever(ctx: Context) -> str:
        if waiting is not None:
            waiting.ids.append(ctx.request_id)
            waiting.arrived.set()
        await anyio.sleep_forever()
        return "never"

    @server.tool()
    async def refuse(ctx: Context) -> str:
        if waiting is not None:
            waiting.ids.append(ctx.request_id)
        raise MCPError(code=INVALID_PARAMS, message="refused")

    return server


def _stdio_params() -> StdioServerParameters:
    root = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
    return StdioServerParameters(
        command=sys.executable,
        args=[HERE],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": root},
    )


@asynccontextmanager
async def _target(how: str, waiting: Waiting | None = None) -> AsyncIterator[Any]:
    """A wrapped client or session on one connection to the server, ``how`` it is made."""
    if how in ("auto", "legacy"):
        async with rastir.wrap(Client(build_server(waiting), mode=how)) as client:
            yield client
    elif how == "session":  # a bare ClientSession, JSON-RPC over memory streams
        async with Client(build_server(waiting), mode="legacy") as plain:
            yield wrap_mcp(plain.session)
    elif how == "stdio-client":
        async with rastir.wrap(Client(_stdio_params())) as client:
            yield client
    elif how == "stdio-session":
        async with (
            stdio_client(_stdio_params()) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield wrap_mcp(session)
    else:  # pragma: no cover
        raise ValueError(how)


async def _concurrent_calls(target: Any) -> dict[int, str]:
    """``_CALLS`` concurrent ``whoami`` calls on ``target``, each under a ``call-i``
    span; the request id the server saw for each ``i``."""
    import asyncio

    async def one(i: int) -> tuple[int, str]:
        with rastir.span(f"call-{i}"):
            result = await target.call_tool("whoami", {"i": i})
        out = result.structured_content
        assert out is not None, result
        assert out["i"] == i, result
        return i, str(out["request_id"])

    return dict(await asyncio.gather(*(one(i) for i in range(_CALLS))))


def _recorded(spans: CapturedSpans) -> dict[int, str | None]:
    """The ``jsonrpc.request.id`` of each ``call-i``'s mcp.client span, by ``i``."""
    calls = {s.sid: int(s.name.split("-")[1]) for s in spans if s.name.startswith("call-")}
    out: dict[int, str | None] = {}
    for span in spans.find("tools/call whoami", kind="mcp.client"):
        i = calls[span.psid]
        assert i not in out
        out[i] = span.attributes.get("jsonrpc.request.id")
    return out


@pytest.mark.parametrize("how", ["auto", "legacy", "session", "stdio-client", "stdio-session"])
async def test_concurrent_calls_on_one_session_each_record_the_id_the_server_saw(
    how: str, rastir_spans: CapturedSpans
) -> None:
    async with _target(how) as target:
        await target.list_tools()  # a tool listed first is sent once (2026-07-28)
        seen = await _concurrent_calls(target)
    recorded = _recorded(rastir_spans)
    assert recorded == seen
    assert len(set(recorded.values())) == _CALLS  # all distinct, none missing


@pytest.mark.parametrize("how", ["auto", "legacy", "session"])
async def test_a_cancelled_call_keeps_the_id_it_was_sent_with(
    how: str, rastir_spans: CapturedSpans
) -> None:
    """Cancellation reaches mcp through the step-by-step await unchanged: the call is
    abandoned as usual, and its span still names the request it sent."""
    waiting = Waiting()
    async with _target(how, waiting) as target:
        await target.list_tools()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    with rastir.span("call-0"):
                        await target.call_tool("wait_forever", {})

                tg.start_soon(call)
                await waiting.arrived.wait()
                tg.cancel_scope.cancel()
        after = await target.call_tool("whoami", {"i": 1})  # the session still works
    assert after.structured_content is not None
    span = rastir_spans.one("tools/call wait_forever", kind="mcp.client")
    assert span.status == "cancelled"
    assert [span.attributes["jsonrpc.request.id"]] == waiting.ids


@pytest.mark.parametrize("how", ["auto", "legacy"])
async def test_an_error_answer_passes_through_unchanged_with_its_id(
    how: str, rastir_spans: CapturedSpans
) -> None:
    waiting = Waiting()
    async with _target(how, waiting) as target:
        with pytest.raises(MCPError) as raised:
            await target.call_tool("refuse", {})
    assert raised.value.error.code == INVALID_PARAMS
    span = rastir_spans.one("tools/call refuse", kind="mcp.client")
    assert span.status == "error"
    assert [span.attributes["jsonrpc.request.id"]] == waiting.ids


# -- network.transport over stdio -----------------------------------------------------
def _transport(spans: CapturedSpans) -> set[Any]:
    calls: list[Span] = spans.find(kind="mcp.client")
    assert calls
    return {s.attributes.get("network.transport") for s in calls}


@pytest.mark.parametrize("form", ["parameters", "transport"])
async def test_a_client_over_stdio_records_the_pipe_transport_by_itself(
    form: str, rastir_spans: CapturedSpans
) -> None:
    server: Any = _stdio_params() if form == "parameters" else stdio_client(_stdio_params())
    async with rastir.wrap(Client(server)) as client:
        await client.call_tool("whoami", {"i": 0})
    assert _transport(rastir_spans) == {"pipe"}


async def test_a_bare_session_over_stdio_names_its_transport_only_when_told(
    rastir_spans: CapturedSpans,
) -> None:
    """A ClientSession holds two anyio memory streams and nothing that leads back to
    the stdio process: the same streams an in-memory or HTTP transport gives it. So
    the transport is not guessed; ``network_transport="pipe"`` names it."""
    async with (
        stdio_client(_stdio_params()) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await wrap_mcp(session).call_tool("whoami", {"i": 0})
        assert _transport(rastir_spans) == {None}
        await wrap_mcp(session, network_transport="pipe").call_tool("whoami", {"i": 1})
    calls = rastir_spans.find("tools/call whoami", kind="mcp.client")
    assert [c.attributes.get("network.transport") for c in calls] == [None, "pipe"]


if __name__ == "__main__":
    anyio.run(build_server().run_stdio_async)
