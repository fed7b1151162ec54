"""What the spans say about the transport, and baggage across processes (stdio, HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import rastir
from rastir.testing import CapturedSpans
from tests.mcp_bridge import matrix
from tests.mcp_bridge.conftest import ServerProcess, read_records

pytestmark = pytest.mark.anyio

UPSTREAM = {
    "traceparent": "00-" + "c" * 32 + "-" + "d" * 16 + "-01",
    "baggage": "tenant=acme,user=al%20ice",
}


async def test_stdio_spans_say_pipe_and_carry_baggage(
    tmp_path: Path, rastir_spans: CapturedSpans
) -> None:
    spans_file = tmp_path / "server.jsonl"
    params = matrix.stdio_params("endpoint", otel_sdk=False, bridge="auto", spans=str(spans_file))
    with rastir.continue_trace(UPSTREAM):
        result = await matrix.call_tool("rastir", "stdio", "baggage", {}, stdio=params)
    assert result.structured_content == {"tenant": "acme", "user": "al ice"}
    client = rastir_spans.one("tools/call baggage", kind="mcp.client")
    assert client.attributes["network.transport"] == "pipe"
    # A pipe has no HTTP, no server address and no MCP session id.
    for key in ("network.protocol.name", "server.address", "server.port", "mcp.session.id"):
        assert key not in client.attributes, key
    server = next(r for r in read_records(spans_file) if r["kind"] == "mcp.server")
    assert server["parent_span_id"] == client.span_id
    # stdio and in-memory JSON-RPC look alike to a tool: the transport is not guessed.
    for key in ("network.transport", "client.address", "client.port", "mcp.session.id"):
        assert key not in server["attributes"], key


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_http_spans_name_the_peer_and_the_session(
    mode: str,
    http_server: Callable[[str, bool, str], ServerProcess],
    rastir_spans: CapturedSpans,
) -> None:
    server_proc = http_server("endpoint", False, "auto")
    with rastir.continue_trace(UPSTREAM):
        # Listed first: the first call of an unlisted tool also sends tools/list (to
        # validate the result), and a call that sent two requests records no id.
        result = await matrix.call_tool(
            "rastir", "http", "baggage", {}, url=server_proc.url, mode=mode, list_first=True
        )
    assert result.structured_content == {"tenant": "acme", "user": "al ice"}
    client = rastir_spans.one("tools/call baggage", kind="mcp.client")
    assert client.attributes["network.transport"] == "tcp"
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == server_proc.port
    records = server_proc.wait_for(
        lambda rs: any(
            r["parent_span_id"] == client.span_id and r["kind"] == "mcp.server" for r in rs
        )
    )
    server = next(
        r for r in records if r["parent_span_id"] == client.span_id and r["kind"] == "mcp.server"
    )
    attrs = server["attributes"]
    assert attrs["network.transport"] == "tcp"
    assert attrs["network.protocol.name"] == "http"
    assert client.attributes["network.protocol.name"] == "http"
    # The server names the client's end of the connection (this process, on loopback).
    assert attrs["client.address"] == "127.0.0.1"
    assert isinstance(attrs["client.port"], int)
    assert attrs["client.port"] != server_proc.port
    assert attrs["network.protocol.version"] == "1.1"
    assert attrs["mcp.protocol.version"] == client.attributes["mcp.protocol.version"]
    if mode == "legacy":
        # A stateful streamable-HTTP session; the 2026-07-28 protocol has none. Both
        # processes name it alike: the server from the header, the client from mcp's
        # transport, which keeps what the server gave it.
        assert len(attrs["mcp.session.id"]) >= 16
        assert client.attributes["mcp.session.id"] == attrs["mcp.session.id"]
        assert attrs["jsonrpc.request.id"] == client.attributes["jsonrpc.request.id"]
    else:
        assert "mcp.session.id" not in attrs
        assert "mcp.session.id" not in client.attributes
