"""``wrap(session)``: mcp.client spans, their attributes, ``_meta`` injection and outcomes.

In-process, against a real MCPServer, in both of ``Client(server)``'s forms: ``auto``
(mcp's direct dispatcher) and ``legacy`` (JSON-RPC over memory streams).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from mcp import Client, ClientSession
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PaginatedRequestParams
from opentelemetry import trace as otel_trace

import rastir
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge import mcp_endpoint
from rastir.mcp_bridge import wrap as wrap_mcp
from rastir.propagation import format_traceparent
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.mcp_bridge.tools import Probe, SpanWaiter, as_meta, build

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def waiter(rastir_spans: CapturedSpans) -> Iterator[SpanWaiter]:
    w = SpanWaiter(rastir_spans)
    PIPELINE.add_sink(w.sink)
    yield w
    PIPELINE.remove_sink(w.sink)


@pytest.fixture
async def client(probe: Probe, mode: str) -> AsyncIterator[Client]:
    async with rastir.wrap(Client(build(probe), mode=mode)) as c:
        yield c


FOREIGN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def traceparent(span: Span) -> str:
    return format_traceparent(span.tid, span.sid, 1)


# -- spans and attributes ---------------------------------------------------------------
@MODES
async def test_a_tool_call_is_an_mcp_client_span_with_the_mcp_attributes(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    # Listed first: on 2026-07-28 a tool not listed yet is re-listed and re-sent, and a
    # call that sent two requests records the first request's id.
    await client.list_tools()
    result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.content[0].text == "5"  # type: ignore[union-attr]
    span = rastir_spans.one("tools/call add", kind="mcp.client")
    server = rastir_spans.one("tools/call add", kind="mcp.server")
    assert span.attributes["mcp.method.name"] == "tools/call"
    assert span.attributes["gen_ai.tool.name"] == "add"
    assert span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert span.attributes["mcp.protocol.version"] == client.protocol_version
    # The id mcp gave the request, as the server saw it.
    assert span.attributes["jsonrpc.request.id"] == server.attributes["jsonrpc.request.id"]
    assert "network.transport" not in span.attributes  # in-process
    assert server.psid == span.sid
    assert span.status == "ok"


@MODES
async def test_reads_prompts_and_listings_are_spans_too(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    await client.list_tools()
    await client.list_prompts()
    await client.list_resources()
    await client.list_resource_templates()
    await client.read_resource("res://doc")
    prompt = await client.get_prompt("greet", {"name": "Ada"})
    assert "Hello Ada" in str(prompt.messages[0].content)
    assert [
        (s.name, s.attributes["mcp.method.name"]) for s in rastir_spans.find(kind="mcp.client")
    ] == [
        ("tools/list", "tools/list"),
        ("prompts/list", "prompts/list"),
        ("resources/list", "resources/list"),
        ("resources/templates/list", "resources/templates/list"),
        ("resources/read", "resources/read"),
        ("prompts/get greet", "prompts/get"),
    ]
    read = rastir_spans.one("resources/read")
    assert read.attributes["mcp.resource.uri"] == "res://doc"
    assert (
        rastir_spans.one("prompts/get greet", kind="mcp.client").attributes["gen_ai.prompt.name"]
        == "greet"
    )
    # The prompt function is under @mcp_endpoint: its span is the client span's child.
    server = rastir_spans.one("prompts/get greet", kind="mcp.server")
    assert server.attributes["gen_ai.prompt.name"] == "greet"
    assert server.psid == rastir_spans.one("prompts/get greet", kind="mcp.client").sid


async def test_the_session_of_a_wrapped_client_is_wrapped_too(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    async with rastir.wrap(Client(build(probe), mode="legacy")) as client:
        session = client.session
        assert session is client.session
        assert isinstance(session, ClientSession)
        await session.call_tool("add", {"a": 1, "b": 1})
        # Kept by the client's proxy, not made again on every read of client.session.
        ref = weakref.ref(client.session)
        del session
        assert ref() is client.session
    assert rastir_spans.one("tools/call add", kind="mcp.client")


# -- _meta ----------------------------------------------------------------------------------
@MODES
async def test_user_meta_is_kept_and_the_trace_keys_are_the_spans(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    user_meta: dict[str, Any] = {
        "user": "u-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        # A tracestate of another trace: it must not travel with our traceparent.
        "tracestate": "vendor=from-another-trace",
    }
    result = await client.call_tool("meta_echo", {}, meta=as_meta(user_meta))
    seen = result.structured_content
    assert seen is not None
    span = rastir_spans.one("tools/call meta_echo", kind="mcp.client")
    assert seen == {"user": "u-1", "traceparent": traceparent(span)}
    assert user_meta["traceparent"].startswith("00-0af7")  # the caller's dict is untouched
    assert user_meta["tracestate"] == "vendor=from-another-trace"


@MODES
async def test_baggage_passed_in_meta_is_merged_with_the_current_baggage(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    user_meta = as_meta({"baggage": "tenant=other,user=u%201"})
    alone = await client.call_tool("baggage", {}, meta=user_meta)
    # With no current baggage, the caller's is sent.
    assert alone.structured_content == {"tenant": "other", "user": "u 1"}
    upstream = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "baggage": "tenant=acme"}
    with rastir.continue_trace(upstream):
        merged = await client.call_tool("baggage", {}, meta=user_meta)
    # The current baggage wins on a key both have; the caller's other entries are kept.
    assert merged.structured_content == {"tenant": "acme", "user": "u 1"}


async def test_a_wrapped_session_merges_into_the_params_of_listings(probe: Probe) -> None:
    async with Client(build(probe), mode="legacy") as plain:
        session = rastir.wrap(plain.session)
        with rastir.testing.capture_spans() as spans:
            await session.list_tools(params=PaginatedRequestParams(_meta=as_meta({"k": "v"})))
            await session.list_prompts()
            await session.read_resource("res://doc", meta=as_meta({"r": 1}))
    listed = spans.one("tools/list")
    prompts = spans.one("prompts/list")
    read = spans.one("resources/read")
    assert ("tools/list", {"k": "v", "traceparent": traceparent(listed)}) in probe.metas
    assert ("prompts/list", {"traceparent": traceparent(prompts)}) in probe.metas
    assert ("resources/read", {"r": 1, "traceparent": traceparent(read)}) in probe.metas


async def test_cached_client_reads_carry_the_trace_through_mcps_own_injection(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    # No meta is passed (it would defeat the response cache): mcp's SEP-414 injection
    # from the OpenTelemetry context writes the span's traceparent.
    async with rastir.wrap(Client(build(probe), mode="legacy")) as client:
        await client.list_tools()
        await client.read_resource("res://doc")
    assert (
        "tools/list",
        {"traceparent": traceparent(rastir_spans.one("tools/list"))},
    ) in probe.metas
    read = rastir_spans.one("resources/read")
    assert ("resources/read", {"traceparent": traceparent(read)}) in probe.metas


async def test_without_a_response_cache_reads_get_the_full_context(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    upstream = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "baggage": "tenant=acme"}
    with rastir.continue_trace(upstream):
        async with rastir.wrap(Client(build(probe), mode="legacy", cache=None)) as client:
            await client.list_tools()
    span = rastir_spans.one("tools/list")
    assert (
        "tools/list",
        {"traceparent": traceparent(span), "baggage": "tenant=acme"},
    ) in probe.metas


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_baggage_set_on_the_client_arrives_on_the_server(client: Client, mode: str) -> None:
    upstream = {
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "baggage": "tenant=acme,user=al%20ice",
    }
    with rastir.continue_trace(upstream):
        result = await client.call_tool("baggage", {})
    assert result.structured_content == {"tenant": "acme", "user": "al ice"}


# -- outcomes -----------------------------------------------------------------------------
@MODES
async def test_an_is_error_result_is_a_tool_error_on_both_sides(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    result = await client.call_tool("refuse", {})
    assert result.is_error
    for kind in ("mcp.client", "mcp.server"):
        span = rastir_spans.one("tools/call refuse", kind=kind)
        assert span.status == "error"
        assert span.error is not None
        assert span.error["type"] == "tool_error"
    # Tool output may hold user data: not recorded unless content capture is on.
    assert rastir_spans.one("tools/call refuse", kind="mcp.client").error == {
        "type": "tool_error",
        "exception_type": "CallToolResult",
        "message": "the tool returned isError",
    }


async def test_the_tool_error_text_is_kept_when_content_capture_is_on(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    rastir.configure(capture_content=True)
    async with rastir.wrap(Client(build(probe))) as client:
        await client.call_tool("refuse", {})
    error = rastir_spans.one("tools/call refuse", kind="mcp.client").error
    assert error is not None
    assert error["message"] == "no such city"


@MODES
async def test_a_returned_dict_with_an_is_error_key_is_output_not_an_error(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    result = await client.call_tool("report", {"ok": False})
    # MCPServer makes the dict structured content: the result itself is no error.
    assert result.is_error is False
    assert result.structured_content == {"isError": True, "detail": "disk full"}
    for kind in ("mcp.client", "mcp.server"):
        span = rastir_spans.one("tools/call report", kind=kind)
        assert (span.status, span.error) == ("ok", None)


@MODES
async def test_what_mcpserver_checks_around_the_tool_is_outside_the_server_span(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    # The known limits in docs/mcp.md: MCPServer validates the arguments before it
    # calls the traced function and converts the result after it returned.
    await client.list_tools()
    refused = await client.call_tool("add", {"a": "not a number", "b": 1})
    assert refused.is_error
    assert rastir_spans.find("tools/call add", kind="mcp.server") == []
    error = rastir_spans.one("tools/call add", kind="mcp.client").error
    assert error is not None
    assert error["type"] == "tool_error"

    wrong = await client.call_tool("miscount", {})
    assert wrong.is_error  # "many" is not the int the tool declares
    assert rastir_spans.one("tools/call miscount", kind="mcp.server").status == "ok"
    error = rastir_spans.one("tools/call miscount", kind="mcp.client").error
    assert error is not None
    assert error["type"] == "tool_error"


@MODES
@pytest.mark.parametrize(
    ("tool", "server_error"),
    [
        ("deliberate", ("tool_error", "mcp.server.mcpserver.exceptions.ToolError", "bad input")),
        (
            "missing",
            ("tool_error", "mcp.server.mcpserver.exceptions.ResourceError", "no such document"),
        ),
        ("crash", ("validation_error", "ValueError", "boom")),
    ],
)
async def test_a_raising_tool_is_its_exception_on_the_server_and_a_tool_error_on_the_client(
    client: Client,
    rastir_spans: CapturedSpans,
    tool: str,
    server_error: tuple[str, str, str],
    mode: str,
) -> None:
    result = await client.call_tool(tool, {})
    assert result.is_error  # MCPServer answers a raising tool with isError
    server = rastir_spans.one(f"tools/call {tool}", kind="mcp.server")
    assert server.error is not None
    assert (server.error["type"], server.error["exception_type"], server.error["message"]) == (
        server_error
    )
    client_span = rastir_spans.one(f"tools/call {tool}", kind="mcp.client")
    assert client_span.error is not None
    assert client_span.error["type"] == "tool_error"


@MODES
async def test_a_json_rpc_error_is_mapped_from_its_code(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    with pytest.raises(MCPError) as info:
        await client.call_tool("protocol", {})
    assert info.value.code == INVALID_PARAMS
    for kind in ("mcp.client", "mcp.server"):
        span = rastir_spans.one("tools/call protocol", kind=kind)
        assert span.error is not None
        assert span.error["type"] == "validation_error"
        assert span.error["exception_type"] == "mcp.shared.exceptions.MCPError"
        assert span.attributes["rpc.response.status_code"] == str(INVALID_PARAMS)


@MODES
async def test_a_client_timeout_is_a_timeout_and_cancels_the_server_span(
    client: Client, rastir_spans: CapturedSpans, waiter: SpanWaiter, mode: str
) -> None:
    with pytest.raises(MCPError) as info:
        await client.call_tool("hang", {}, read_timeout_seconds=0.2)
    assert "timed out" in str(info.value).lower()
    span = rastir_spans.one("tools/call hang", kind="mcp.client")
    assert span.error is not None
    assert span.error["type"] == "timeout"
    # The server is told to stop (legacy: notifications/cancelled; direct: the scope).
    await waiter.until(lambda spans: bool(spans.find("tools/call hang", kind="mcp.server")))
    server = rastir_spans.one("tools/call hang", kind="mcp.server")
    assert server.status == "cancelled"
    assert server.psid == span.sid


@MODES
async def test_a_cancelled_call_is_cancelled_not_failed(
    client: Client, probe: Probe, rastir_spans: CapturedSpans, waiter: SpanWaiter, mode: str
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "hang", {})
        with anyio.fail_after(5):
            await probe.started.wait()
        tg.cancel_scope.cancel()
    span = rastir_spans.one("tools/call hang", kind="mcp.client")
    assert span.status == "cancelled"
    assert span.error is None
    await waiter.until(lambda spans: bool(spans.find("tools/call hang", kind="mcp.server")))
    assert rastir_spans.one("tools/call hang", kind="mcp.server").status == "cancelled"


# -- the proxy ------------------------------------------------------------------------------
async def test_wrap_gives_one_proxy_per_client_that_still_is_a_client(probe: Probe) -> None:
    plain = Client(build(probe))
    client = rastir.wrap(plain)
    assert rastir.wrap(plain) is client
    assert rastir.wrap(client) is client
    assert wrap_mcp(plain) is client
    assert isinstance(client, Client)
    async with client as entered:
        assert entered is client


def test_an_mcp_client_is_only_traced_as_mcp_client(probe: Probe) -> None:
    with pytest.raises(ValueError, match=r"mcp\.client"):
        rastir.wrap(Client(build(probe)), kind="tool")


def test_the_mcp_wrap_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        wrap_mcp(object())


async def test_include_and_exclude_apply_to_mcp_methods(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    async with wrap_mcp(Client(build(probe)), exclude={"list_tools"}) as client:
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 1})
    assert [s.name for s in rastir_spans.find(kind="mcp.client")] == ["tools/call add"]


async def test_a_bare_session_can_name_its_transport(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    async with Client(build(probe), mode="legacy") as plain:
        session = wrap_mcp(plain.session, network_transport="pipe")
        await session.call_tool("add", {"a": 1, "b": 1})
    assert (
        rastir_spans.one("tools/call add", kind="mcp.client").attributes["network.transport"]
        == "pipe"
    )


async def test_disabled_rastir_neither_records_nor_injects(
    probe: Probe, rastir_spans: CapturedSpans
) -> None:
    rastir.configure(enabled=False)
    async with rastir.wrap(Client(build(probe), mode="legacy")) as client:
        result = await client.call_tool("meta_echo", {}, meta=as_meta({"user": "u"}))
    assert result.structured_content == {"user": "u"}
    assert list(rastir_spans) == []


@MODES
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
async def test_listings_and_reads_record_the_id_of_the_request_they_sent(
    probe: Probe, rastir_spans: CapturedSpans, mode: str, cache: bool
) -> None:
    options: dict[str, Any] = {} if cache else {"cache": None}
    async with rastir.wrap(Client(build(probe), mode=mode, **options)) as client:
        await client.list_tools()
        await client.list_prompts()
        await client.list_resources()
        await client.read_resource("res://doc")
        await client.read_resource("res://doc")
    handshake = ("initialize", "server/discover")
    sent = [(m, str(i)) for m, i in probe.requests if i is not None and m not in handshake]
    recorded = [
        (s.attributes["mcp.method.name"], s.attributes.get("jsonrpc.request.id"))
        for s in rastir_spans.find(kind="mcp.client")
    ]
    # MCPServer sends no cache hints (ttlMs), so nothing is served from the cache:
    # every call sent one request and records its id. (A cache hit sends none, the
    # request counter does not move, and no id is recorded.)
    assert len(sent) == 5
    assert recorded == sent


@MODES
async def test_concurrent_calls_never_take_each_others_request_id(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    await client.list_tools()
    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(client.call_tool, "add", {"a": i, "b": 0})
    calls = rastir_spans.find("tools/call add", kind="mcp.client")
    assert len(calls) == 6
    ids = set()
    for call in calls:
        (server,) = [s for s in rastir_spans.children(call) if s.kind == "mcp.server"]
        assert call.attributes["jsonrpc.request.id"] == server.attributes["jsonrpc.request.id"]
        ids.add(call.attributes["jsonrpc.request.id"])
    assert len(ids) == 6


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_tool_that_calls_another_mcp_server_nests_the_second_hop(
    probe: Probe, rastir_spans: CapturedSpans, mode: str
) -> None:
    # No OTel SDK and no bridge: mcp's server middleware leaves the incoming context in
    # OpenTelemetry's context, which mcp's client would inject on the second hop unless
    # the nested client span is made current there too.
    backend = build(probe)
    front = MCPServer("front")

    @front.tool()
    @mcp_endpoint
    async def relay(a: int) -> str:
        async with rastir.wrap(Client(backend, mode=mode)) as inner:
            result = await inner.call_tool("add", {"a": a, "b": 1})
        return str(result.content[0].text)  # type: ignore[union-attr]

    async with rastir.wrap(Client(front, mode=mode)) as client:
        result = await client.call_tool("relay", {"a": 1})
    assert result.content[0].text == "2"  # type: ignore[union-attr]
    first = rastir_spans.one("tools/call relay", kind="mcp.client")
    front_span = rastir_spans.one("tools/call relay", kind="mcp.server")
    second = rastir_spans.one("tools/call add", kind="mcp.client")
    back_span = rastir_spans.one("tools/call add", kind="mcp.server")
    assert front_span.psid == first.sid
    assert second.psid == front_span.sid
    assert back_span.psid == second.sid
    assert len({s.tid for s in rastir_spans}) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("outer", ["wrapped", "foreign"])
async def test_a_plain_client_inside_a_tool_nests_the_second_hop_under_the_tool(
    probe: Probe, rastir_spans: CapturedSpans, mode: str, outer: str
) -> None:
    # No OTel SDK and no bridge, and a plain Client in the tool (over JSON-RPC, where
    # mcp's client injects OpenTelemetry's current context): mcp's server middleware
    # made that the context it received (the caller's span), so the second hop would
    # skip the tool unless the server span is made current there too. The caller is
    # rastir's, or a plain client sending a traceparent of its own ("foreign").
    backend = build(probe)
    front = MCPServer("front")

    @front.tool()
    @mcp_endpoint
    async def relay(a: int) -> str:
        async with Client(backend, mode="legacy") as inner:
            result = await inner.call_tool("add", {"a": a, "b": 1})
        return str(result.content[0].text)  # type: ignore[union-attr]

    meta = None if outer == "wrapped" else as_meta({"traceparent": FOREIGN})
    plain = Client(front, mode=mode)
    async with rastir.wrap(plain) if outer == "wrapped" else plain as client:
        result = await client.call_tool("relay", {"a": 1}, meta=meta)
    assert result.content[0].text == "2"  # type: ignore[union-attr]
    front_span = rastir_spans.one("tools/call relay", kind="mcp.server")
    back_span = rastir_spans.one("tools/call add", kind="mcp.server")
    assert back_span.psid == front_span.sid
    assert rastir_spans.one("tool.inner").psid == back_span.sid
    if outer == "wrapped":
        assert front_span.psid == rastir_spans.one("tools/call relay", kind="mcp.client").sid
    else:
        assert front_span.parent_span_id == FOREIGN[36:52]
    assert len({s.tid for s in rastir_spans}) == 1
    # The OpenTelemetry context is left as it was found.
    assert not otel_trace.get_current_span().get_span_context().is_valid
