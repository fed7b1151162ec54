"""The MCP spans against the OpenTelemetry semantic conventions for MCP.

Real mcp SDK on both sides: streamable HTTP to a real uvicorn on 127.0.0.1 (in a thread
of its own, in this process, so one capture holds both sides), mcp's in-memory
JSON-RPC (stdio is in ``test_transports``). Each test checks what the conventions ask of a
span of that transport: its name and kind, ``mcp.method.name``, the session, the
network attributes of the client and the server, and the error attributes.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import rastir
from rastir.middleware import RastirMiddleware
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.collector.server import serving_async
from tests.mcp_bridge.test_server_requests import CALLBACKS, build_server, running
from tests.mcp_bridge.tools import Probe, build

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

# The attributes every MCP span carries whatever the transport (Required, or known on
# every call), and those only a network transport can give.
NETWORK = ("network.transport", "network.protocol.name", "server.address", "server.port")
SERVER_PEER = ("client.address", "client.port", "network.protocol.version")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _server_of(client: Span, spans: CapturedSpans) -> Span:
    """The ``mcp.server`` span whose parent is ``client``."""
    found = [s for s in spans if s.kind == "mcp.server" and s.psid == client.sid]
    assert len(found) == 1, spans.tree()
    return found[0]


def _client(url: str, how: str, http: httpx2.AsyncClient) -> Any:
    """A wrapped ``mcp.Client``: to the URL itself, or through mcp's transport factory."""
    server: Any = url if how == "url" else streamable_http_client(url, http_client=http)
    return rastir.wrap(Client(server, mode="legacy"))


@pytest.mark.parametrize("how", ["url", "factory"])
async def test_streamable_http_spans_carry_the_session_and_both_peers(
    how: str, rastir_spans: CapturedSpans
) -> None:
    async with (
        running(build(Probe()), "http") as url,
        httpx2.AsyncClient() as http,
        _client(url, how, http) as client,
    ):
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2})
        await client.get_prompt("greet", {"name": "Ada"})
    port = _port(url)
    call = rastir_spans.one("tools/call add", kind="mcp.client")
    server = _server_of(call, rastir_spans)
    session_id = server.attributes["mcp.session.id"]
    assert isinstance(session_id, str)
    assert len(session_id) >= 16
    # The client names the session the server answers in, on every request it sends.
    for name in ("tools/list", "tools/call add", "prompts/get greet"):
        span = rastir_spans.one(name, kind="mcp.client")
        assert span.attributes["mcp.session.id"] == session_id, name
        assert span.attributes["network.transport"] == "tcp"
        assert span.attributes["network.protocol.name"] == "http"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == port
    # The server side names the client's end of the connection and the HTTP version.
    attrs = server.attributes
    assert attrs["client.address"] == "127.0.0.1"
    assert isinstance(attrs["client.port"], int)
    assert attrs["client.port"] not in (0, port)
    assert attrs["network.protocol.version"] == "1.1"
    assert attrs["network.protocol.name"] == "http"
    assert attrs["network.transport"] == "tcp"
    # Both ends of one request agree on what identifies it.
    for key in ("jsonrpc.request.id", "mcp.protocol.version", "gen_ai.tool.name"):
        assert attrs[key] == call.attributes[key], key
    # Server spans name the client, not themselves (server.* is the client span's).
    assert "server.address" not in attrs
    assert "server.port" not in attrs


async def test_a_new_connection_is_a_new_session(rastir_spans: CapturedSpans) -> None:
    async with running(build(Probe()), "http") as url:
        for _ in range(2):
            async with rastir.wrap(Client(url, mode="legacy")) as client:
                await client.call_tool("add", {"a": 1, "b": 2})
    calls = rastir_spans.find("tools/call add", kind="mcp.client")
    assert len(calls) == 2
    ids = [c.attributes["mcp.session.id"] for c in calls]
    assert ids[0] != ids[1]
    for call in calls:
        assert (
            _server_of(call, rastir_spans).attributes["mcp.session.id"]
            == (call.attributes["mcp.session.id"])
        )


async def test_the_stateless_protocol_has_no_session_but_still_its_peers(
    rastir_spans: CapturedSpans,
) -> None:
    async with (
        running(build(Probe()), "http") as url,
        rastir.wrap(Client(url, mode="auto")) as client,
    ):
        await client.call_tool("add", {"a": 1, "b": 2})
    call = rastir_spans.one("tools/call add", kind="mcp.client")
    server = _server_of(call, rastir_spans)
    assert "mcp.session.id" not in call.attributes
    assert "mcp.session.id" not in server.attributes
    assert call.attributes["network.protocol.name"] == "http"
    assert server.attributes["client.address"] == "127.0.0.1"
    assert server.attributes["network.protocol.version"] == "1.1"


async def test_http_with_sse_names_the_session_of_the_endpoint_url(
    rastir_spans: CapturedSpans,
) -> None:
    server = build(Probe())
    async with (
        serving_async(RastirMiddleware(server.sse_app())) as base,
        rastir.wrap(Client(sse_client(f"{base}/sse"), mode="legacy")) as client,
    ):
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2})
    call = rastir_spans.one("tools/call add", kind="mcp.client")
    attrs = _server_of(call, rastir_spans).attributes
    # The old transport has no Mcp-Session-Id header: the session is the session_id of
    # the URL the client posts to, and both sides read the same one.
    assert len(attrs["mcp.session.id"]) >= 16
    assert call.attributes["mcp.session.id"] == attrs["mcp.session.id"]
    assert call.attributes["network.protocol.name"] == attrs["network.protocol.name"] == "http"
    assert call.attributes["server.port"] == _port(base)
    assert attrs["client.address"] == "127.0.0.1"
    assert attrs["jsonrpc.request.id"] == call.attributes["jsonrpc.request.id"]


async def test_callbacks_over_http_name_the_session_of_the_call(
    rastir_spans: CapturedSpans,
) -> None:
    async with (
        running(build_server(), "http") as url,
        rastir.wrap(Client(url, mode="legacy", **CALLBACKS)) as client,
    ):
        await client.call_tool("summarize", {"token": "hi"})
    call = rastir_spans.one("tools/call summarize", kind="mcp.client")
    # The sampling request the server sent back is answered on the client: a server
    # span there, in the same MCP session, over the same HTTP connection kind.
    answer = rastir_spans.one("sampling/createMessage", kind="mcp.server")
    assert answer.attributes["mcp.session.id"] == call.attributes["mcp.session.id"]
    assert answer.attributes["network.transport"] == "tcp"
    assert answer.attributes["network.protocol.name"] == "http"
    assert answer.attributes["mcp.method.name"] == "sampling/createMessage"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_in_memory_spans_claim_no_network_and_no_session(
    mode: str, rastir_spans: CapturedSpans
) -> None:
    async with rastir.wrap(Client(build(Probe()), mode=mode)) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
    call = rastir_spans.one("tools/call add", kind="mcp.client")
    server = _server_of(call, rastir_spans)
    for span in (call, server):
        for key in (*NETWORK, *SERVER_PEER, "mcp.session.id"):
            assert key not in span.attributes, (span.kind, key)
        assert span.attributes["mcp.method.name"] == "tools/call"
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"


async def test_a_jsonrpc_error_names_its_code_on_both_sides(rastir_spans: CapturedSpans) -> None:
    async with (
        running(build(Probe()), "http") as url,
        rastir.wrap(Client(url, mode="legacy")) as client,
    ):
        with pytest.raises(MCPError) as raised:
            await client.read_resource("res://nowhere", meta={})
    span = rastir_spans.one("resources/read", kind="mcp.client")
    code = str(raised.value.code)
    assert span.attributes["rpc.response.status_code"] == code
    assert span.attributes["error.type"] == code
    assert span.attributes["mcp.resource.uri"] == "res://nowhere"
    assert span.status == "error"
    # The status description is the JSON-RPC error's message.
    assert span.error is not None
    assert span.error["message"] == raised.value.message
    assert span.attributes["mcp.session.id"]
