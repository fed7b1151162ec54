"""End to end as users deploy it: an MCP server mounted inside a FastAPI app under
``RastirMiddleware``, called over real streamable HTTP (uvicorn on 127.0.0.1) by a
wrapped mcp 2.x client whose ``httpx2`` client is instrumented.

What the other suites do not cover: every mode of the streamable HTTP transport
(stateful and stateless, SSE and JSON answers) with the HTTP spans and the MCP spans
in one trace; the session's GET stream and DELETE; failures, timeouts, cancellation
and progress over HTTP; hostile ``_meta`` over HTTP, counted; 30 concurrent calls on
one session.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, REQUEST_TIMEOUT, CallToolResult, TextContent

import rastir
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge import mcp_endpoint, stats
from rastir.middleware import RastirMiddleware, instrument_httpx
from rastir.spans import Span
from tests.middleware.servers import asgi_server

pytestmark = pytest.mark.anyio

INNER = "audit.inner"
VALID_TP = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
VALID_TID = "ab" * 16
VALID_SID = "cd" * 8


class Sink:
    """Every span that ends, from any thread, with waits bounded by a deadline."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.cond = threading.Condition()

    def __call__(self, span: Span) -> None:
        with self.cond:
            self.spans.append(span)
            self.cond.notify_all()

    def kind(self, kind: str) -> list[Span]:
        with self.cond:
            return [s for s in self.spans if s.kind == kind]

    def named(self, name: str, kind: str | None = None) -> list[Span]:
        with self.cond:
            return [s for s in self.spans if s.name == name and kind in (None, s.kind)]

    def wait(self, predicate: Any, timeout: float = 15.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.spans), timeout):
                seen = ", ".join(f"{s.kind}:{s.name}" for s in self.spans)
                raise AssertionError(f"spans never matched; have {seen}")

    async def await_(self, predicate: Any, deadline: float = 15.0) -> None:
        await anyio.to_thread.run_sync(self.wait, predicate, deadline)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    PIPELINE.add_sink(s)
    try:
        yield s
    finally:
        PIPELINE.remove_sink(s)


# -- the deployed server ----------------------------------------------------------
class Gate:
    """A tool that waits until the test lets it go: set from the test's thread, polled
    by the tool on the server's loop (bounded), so it can be cancelled at any time."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()


def build_app(*, stateless: bool, json_response: bool, gate: Gate) -> FastAPI:
    server = MCPServer("audit")

    @server.tool()
    @mcp_endpoint
    async def add(a: int, b: int) -> int:
        with rastir.span(INNER, attributes={"audit.a": a}):
            return a + b

    @server.tool()
    @mcp_endpoint
    async def boom(x: int) -> int:
        raise ValueError(f"bad x {x}")

    @server.tool()
    @mcp_endpoint
    async def refuse() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="no")], is_error=True)

    @server.tool()
    @mcp_endpoint
    async def wait() -> str:
        gate.started.set()
        # A worker thread waits (bounded); the tool itself stays cancellable.
        released = await anyio.to_thread.run_sync(gate.release.wait, 30, abandon_on_cancel=True)
        return "released" if released else "never released"

    @server.tool()
    @mcp_endpoint
    async def steps(ctx: Context) -> str:
        for i in range(3):
            await ctx.report_progress(i + 1, 3, f"step {i + 1}")
        return "done"

    @server.resource("res://item/{name}")
    @mcp_endpoint
    def item(name: str) -> str:
        return f"item {name}"

    @server.prompt()
    @mcp_endpoint
    def greet(who: str) -> str:
        return f"hello {who}"

    mcp_app = server.streamable_http_app(
        streamable_http_path="/", stateless_http=stateless, json_response=json_response
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/mcp", mcp_app)
    app.add_middleware(RastirMiddleware)
    return app


@contextlib.contextmanager
def deployed(*, stateless: bool = False, json_response: bool = False) -> Iterator[tuple[str, Gate]]:
    gate = Gate()
    app = build_app(stateless=stateless, json_response=json_response, gate=gate)
    try:
        with asgi_server(app, lifespan="on") as base:
            yield base + "/mcp/", gate
    finally:
        gate.release.set()


@contextlib.asynccontextmanager
async def wrapped_client(url: str) -> AsyncIterator[Any]:
    async with httpx2.AsyncClient() as http:
        transport = streamable_http_client(url, http_client=instrument_httpx(http))
        async with rastir.wrap(Client(transport, mode="legacy")) as client:
            await client.list_tools()  # so that a first call sends one request
            yield client


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def every_request_ended(sink: Sink, clients: list[Span]) -> None:
    """Each HTTP request the client made has its ``http.server`` span, ended."""
    ids = {c.span_id for c in clients}
    sink.wait(
        lambda spans: (
            ids <= {s.parent_span_id for s in spans if s.kind == "http.server" and s.parent_span_id}
        )
    )


MODES = pytest.mark.parametrize(
    ("stateless", "json_response"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["stateful-sse", "stateful-json", "stateless-sse", "stateless-json"],
)


# -- one trace through HTTP and MCP --------------------------------------------------
@MODES
async def test_a_tool_call_through_fastapi_is_one_trace_from_agent_to_the_tools_inner_span(
    stateless: bool, json_response: bool, sink: Sink
) -> None:
    @rastir.agent(agent_name="audit-agent")
    async def agent(url: str) -> Any:
        async with wrapped_client(url) as client:
            return await client.call_tool("add", {"a": 2, "b": 3})

    with deployed(stateless=stateless, json_response=json_response) as (url, _):
        result = await agent(url)
        assert result.structured_content == {"result": 5}
        clients = sink.kind("http.client")
        await anyio.to_thread.run_sync(every_request_ended, sink, clients)

    spans = list(sink.spans)
    ids = by_id(spans)
    root = next(s for s in spans if s.kind == "agent")
    # One trace, and the agent is its root: nothing the server did started another.
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert root.parent_span_id is None

    call = next(s for s in spans if s.kind == "mcp.client" and s.name == "tools/call add")
    server = next(s for s in spans if s.kind == "mcp.server")
    inner = next(s for s in spans if s.name == INNER)
    assert call.parent_span_id == root.span_id
    # MCP semconv: the client span is the server span's parent whatever the transport;
    # the HTTP request that carried the call is a link.
    assert server.parent_span_id == call.span_id
    assert inner.parent_span_id == server.span_id
    links = server.links or []
    assert len(links) == 1
    http_server = ids[links[0].context.span_id]
    assert http_server.kind == "http.server"
    http_client = ids[http_server.parent_span_id or ""]
    assert http_client.kind == "http.client"
    assert http_client.parent_span_id == call.span_id

    # Every HTTP request is exactly one client span and one server span: keep-alive
    # pings, progress and SSE events are not spans.
    http_servers = [s for s in spans if s.kind == "http.server"]
    assert sorted(s.parent_span_id or "" for s in http_servers) == sorted(
        c.span_id for c in clients
    )
    for s in http_servers:
        assert s.attributes["http.route"] == "/mcp/"
        assert s.name == f"{s.attributes['http.request.method']} /mcp/"
        code = s.attributes["http.response.status_code"]
        # mcp answers with http.HTTPStatus members: recorded as plain ints.
        assert type(code) is int, (s.name, code)
        assert code < 400, (s.name, code)
        assert s.status == "ok"
    methods = sorted(s.attributes["http.request.method"] for s in http_servers)
    attrs = server.attributes
    assert attrs["gen_ai.tool.name"] == "add"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["network.transport"] == "tcp"
    assert attrs["jsonrpc.request.id"] == call.attributes["jsonrpc.request.id"]
    assert attrs["mcp.protocol.version"] == call.attributes["mcp.protocol.version"]
    if stateless:
        # No session: no GET stream, no DELETE, no session id.
        assert set(methods) == {"POST"}
        assert "mcp.session.id" not in attrs
    else:
        # The session's GET stream and its DELETE, each one span, all ended.
        assert methods.count("GET") == 1
        assert methods.count("DELETE") == 1
        assert len(attrs["mcp.session.id"]) >= 16


async def test_the_get_stream_span_ends_when_the_client_leaves_without_delete(
    sink: Sink,
) -> None:
    # A client that does not terminate its session (terminate_on_close=False) just
    # drops its GET stream: the server notices the disconnect and the span ends then.
    with deployed() as (url, _):
        async with httpx2.AsyncClient() as http:
            transport = streamable_http_client(
                url, http_client=instrument_httpx(http), terminate_on_close=False
            )
            async with rastir.wrap(Client(transport, mode="legacy")) as client:
                await client.list_tools()
                await sink.await_(
                    lambda spans: any(s.kind == "http.client" and s.name == "GET" for s in spans)
                )
        get_client = next(s for s in sink.kind("http.client") if s.name == "GET")
        await sink.await_(
            lambda spans: any(
                s.kind == "http.server" and s.parent_span_id == get_client.span_id for s in spans
            )
        )
    get_server = next(s for s in sink.kind("http.server") if s.parent_span_id == get_client.span_id)
    assert get_server.name == "GET /mcp/"
    assert get_server.attributes["http.response.status_code"] == 200
    assert get_server.status in ("ok", "cancelled")
    assert not [s for s in sink.kind("http.server") if s.name.startswith("DELETE")]


async def test_an_open_get_stream_span_ends_when_the_server_shuts_down(sink: Sink) -> None:
    # The session is still open (the client is inside ``async with``) when uvicorn
    # stops: the stream's span is ended, not lost.
    stopped = False
    with deployed() as (url, _):
        client_cm = wrapped_client(url)
        await client_cm.__aenter__()
        try:
            await sink.await_(
                lambda spans: any(s.kind == "http.client" and s.name == "GET" for s in spans)
            )
            get_client = next(s for s in sink.kind("http.client") if s.name == "GET")
        except BaseException:
            await client_cm.__aexit__(None, None, None)
            raise
        # Leaving ``deployed`` stops the server with the stream open.
        stopped = True
    assert stopped
    try:
        await sink.await_(
            lambda spans: any(
                s.kind == "http.server" and s.parent_span_id == get_client.span_id for s in spans
            )
        )
    finally:
        with contextlib.suppress(Exception):
            with anyio.fail_after(10):
                await client_cm.__aexit__(None, None, None)
    get_server = next(s for s in sink.kind("http.server") if s.parent_span_id == get_client.span_id)
    assert get_server.name == "GET /mcp/"


# -- outcomes over HTTP ---------------------------------------------------------------
async def test_failures_timeouts_cancellation_and_progress_over_http(sink: Sink) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    with deployed() as (url, gate):
        async with wrapped_client(url) as client:
            raised = await client.call_tool("boom", {"x": 7})
            refused = await client.call_tool("refuse", {})
            stepped = await client.call_tool("steps", {}, progress_callback=on_progress)
            read = await client.read_resource("res://item/x")
            prompt = await client.get_prompt("greet", {"who": "ann"})
            with pytest.raises(MCPError) as timed_out:
                await client.call_tool("wait", {}, read_timeout_seconds=3)
            gate.started.clear()
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def cancel_when_started() -> None:
                        await anyio.to_thread.run_sync(gate.started.wait, 15)
                        scope.cancel()

                    tg.start_soon(cancel_when_started)
                    await client.call_tool("wait", {})
            assert scope.cancelled_caught
            with pytest.raises(MCPError) as bad_prompt:
                await client.get_prompt("no-such-prompt", {})
            # Both server spans of "wait" end cancelled (the client sent
            # notifications/cancelled), before the session goes.
            await sink.await_(
                lambda spans: (
                    len(
                        [s for s in spans if s.kind == "mcp.server" and s.name == "tools/call wait"]
                    )
                    == 2
                )
            )

    assert raised.is_error
    assert refused.is_error
    assert stepped.structured_content == {"result": "done"}
    assert progress == [(1.0, "step 1"), (2.0, "step 2"), (3.0, "step 3")]
    assert getattr(read.contents[0], "text", None) == "item x"
    assert prompt.messages
    assert timed_out.value.code == REQUEST_TIMEOUT
    # mcp 2.3 answers an unknown prompt with code 0 (its code for unmapped errors).
    unknown_prompt_code = bad_prompt.value.code

    def client_span(name: str) -> Span:
        return next(s for s in sink.kind("mcp.client") if s.name == name)

    def server_spans(name: str) -> list[Span]:
        return [s for s in sink.kind("mcp.server") if s.name == name]

    # A tool that raised: its exception on the server, an isError result on the client.
    (boom,) = server_spans("tools/call boom")
    assert boom.status == "error"
    assert boom.error is not None
    assert boom.error["type"] == "validation_error"  # ValueError
    assert boom.error["exception_type"] == "ValueError"
    # What the client got is an isError result: MCP semconv's error.type for it.
    assert boom.attributes["error.type"] == "tool_error"
    assert client_span("tools/call boom").error == {
        "type": "tool_error",
        "exception_type": "CallToolResult",
        "message": "the tool returned isError",
    }
    # isError returned: tool_error on both sides (MCP semconv's error.type value).
    (refuse,) = server_spans("tools/call refuse")
    assert refuse.error is not None
    assert refuse.error["type"] == "tool_error"
    assert client_span("tools/call refuse").error is not None
    # Progress notifications are not spans; the call is one span each side.
    (steps,) = server_spans("tools/call steps")
    assert steps.status == "ok"
    assert client_span("tools/call steps").status == "ok"
    assert steps.parent_span_id == client_span("tools/call steps").span_id
    # Resources and prompts over HTTP.
    (res,) = server_spans("resources/read")
    assert res.attributes["mcp.resource.uri"] == "res://item/x"
    assert res.parent_span_id == client_span("resources/read").span_id
    (greet,) = server_spans("prompts/get greet")
    assert greet.parent_span_id == client_span("prompts/get greet").span_id

    # A read timeout: the client span is a timeout; MCP semconv wants error.type and
    # rpc.response.status_code to be the JSON-RPC code.
    waits = [s for s in sink.kind("mcp.client") if s.name == "tools/call wait"]
    timeout_span = next(s for s in waits if s.status == "error")
    assert timeout_span.error is not None
    assert timeout_span.error["type"] == "timeout"
    assert timeout_span.attributes["error.type"] == str(REQUEST_TIMEOUT)
    assert timeout_span.attributes["rpc.response.status_code"] == str(REQUEST_TIMEOUT)
    cancelled = next(s for s in waits if s.status != "error")
    assert cancelled.status == "cancelled"
    assert cancelled.error is None
    # The server stopped both: cancelled, not failed, each under its own client span.
    for span in server_spans("tools/call wait"):
        assert span.status == "cancelled", span
    assert sorted(s.parent_span_id or "" for s in server_spans("tools/call wait")) == sorted(
        s.span_id for s in waits
    )
    # A JSON-RPC error from the server: its code is error.type, the category rastir's.
    bad = client_span("prompts/get no-such-prompt")
    assert bad.error is not None
    assert bad.error["type"] == (
        "validation_error" if unknown_prompt_code == INVALID_PARAMS else "provider_error"
    )
    assert bad.attributes["error.type"] == str(unknown_prompt_code)
    assert bad.attributes["rpc.response.status_code"] == str(unknown_prompt_code)
    # The notifications/cancelled the client sent is an HTTP request in the trace of
    # the call it cancels.
    http_clients = by_id(sink.kind("http.client"))
    wait_ids = {s.span_id for s in waits}
    assert len([c for c in http_clients.values() if c.parent_span_id in wait_ids]) >= 4


# -- hostile or absent _meta ----------------------------------------------------------
HOSTILE: list[tuple[str, dict[str, Any] | None, str]] = [
    ("absent", None, "ambient"),
    ("malformed traceparent", {"traceparent": "00-zz-yy-01"}, "restart"),
    ("uppercase traceparent", {"traceparent": VALID_TP.upper()}, "restart"),
    ("all-zero trace id", {"traceparent": "00-" + "0" * 32 + "-" + "cd" * 8 + "-01"}, "restart"),
    ("oversized traceparent", {"traceparent": "00-" + "a" * 100_000}, "restart"),
    ("traceparent not a string", {"traceparent": 12345}, "restart"),
    ("bad tracestate", {"traceparent": VALID_TP, "tracestate": "=,=" * 400}, "tracestate"),
    (
        "oversized baggage",
        {"traceparent": VALID_TP, "baggage": ",".join(f"k{i}={'v' * 60}" for i in range(400))},
        "baggage",
    ),
    ("baggage without entries", {"traceparent": VALID_TP, "baggage": ";;;,,,=="}, "baggage"),
]


@pytest.mark.parametrize(("case", "meta", "outcome"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_or_absent_meta_over_http_is_answered_ignored_and_counted(
    case: str, meta: dict[str, Any] | None, outcome: str, sink: Sink
) -> None:
    before = stats.as_dict()
    with deployed() as (url, _):
        # A plain client: nothing of rastir's rewrites the meta it sends.
        async with Client(url, mode="legacy") as client:
            result = await client.call_tool("add", {"a": 1, "b": 1}, meta=cast(Any, meta))
        await sink.await_(lambda spans: any(s.kind == "mcp.server" for s in spans))
    assert result.structured_content == {"result": 2}
    after = stats.as_dict()
    delta = {k: after[k] - before[k] for k in after}
    server = next(s for s in sink.kind("mcp.server"))
    carrier = (
        next(s for s in sink.kind("http.server") if s.span_id == server.links[0].context.span_id)
        if server.links
        else None
    )
    if outcome == "ambient":
        # No _meta: the HTTP request's span is the parent.
        assert delta == {"invalid_traceparent": 0, "invalid_tracestate": 0, "invalid_baggage": 0}
        http_post = next(s for s in sink.kind("http.server") if s.span_id == server.parent_span_id)
        assert http_post.name == "POST /mcp/"
        assert "rastir.mcp.invalid_trace_context" not in server.attributes
    elif outcome == "restart":
        # W3C: an invalid traceparent restarts the trace; never the HTTP one by accident.
        assert delta["invalid_traceparent"] == 1
        assert server.parent_span_id is None
        assert server.attributes["rastir.mcp.invalid_trace_context"] is True
        assert carrier is not None
        assert server.trace_id != carrier.trace_id
    else:
        # The parent is kept; only the bad part is dropped, and counted.
        assert server.trace_id == VALID_TID
        assert server.parent_span_id == VALID_SID
        assert delta["invalid_traceparent"] == 0
        assert delta[f"invalid_{outcome}"] == 1
        assert server.tracestate is None


# -- one session, many tasks ---------------------------------------------------------
@pytest.mark.parametrize("api", ["client", "session"])
async def test_thirty_concurrent_calls_on_one_http_session_each_keep_their_own_chain(
    api: str, sink: Sink
) -> None:
    n = 30

    async def one(target: Any, i: int) -> None:
        with rastir.span("audit.task", attributes={"audit.a": i}):
            result = await target.call_tool("add", {"a": i, "b": 0})
            assert result.structured_content == {"result": i}

    with deployed() as (url, _):
        async with httpx2.AsyncClient() as http:
            transport = streamable_http_client(url, http_client=instrument_httpx(http))
            if api == "client":
                async with rastir.wrap(Client(transport, mode="legacy")) as target:
                    await target.list_tools()
                    async with anyio.create_task_group() as tg:
                        for i in range(n):
                            tg.start_soon(one, target, i)
            else:
                async with transport as (read, write):
                    session = rastir.wrap(ClientSession(read, write))
                    async with session:
                        await session.initialize()
                        await session.list_tools()
                        async with anyio.create_task_group() as tg:
                            for i in range(n):
                                tg.start_soon(one, session, i)
        await sink.await_(lambda spans: len([s for s in spans if s.name == INNER]) == n)

    ids = by_id(list(sink.spans))
    inners = [s for s in sink.spans if s.name == INNER]
    seen_requests: set[str] = set()
    for inner in inners:
        server = ids[inner.parent_span_id or ""]
        assert server.kind == "mcp.server"
        call = ids[server.parent_span_id or ""]
        assert call.kind == "mcp.client"
        assert call.name == "tools/call add"
        task = ids[call.parent_span_id or ""]
        # The chain never crosses to another task's call.
        assert task.name == "audit.task"
        assert task.attributes["audit.a"] == inner.attributes["audit.a"]
        assert server.trace_id == task.trace_id
        request_id = server.attributes["jsonrpc.request.id"]
        assert request_id not in seen_requests
        seen_requests.add(request_id)
    assert sorted(s.attributes["audit.a"] for s in inners) == list(range(n))
