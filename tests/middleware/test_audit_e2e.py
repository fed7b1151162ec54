"""Outbound HTTP as users run it: ``instrument_httpx`` on httpx and httpx2 clients,
sync and async, calling a real service under ``RastirMiddleware`` (uvicorn on
127.0.0.1): redirects, transport retries, lazily read streams, refused connections,
a ``traceparent`` the caller put on the request, and statuses given as
``http.HTTPStatus`` (as mcp's streamable HTTP transport gives them).
"""

from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import rastir
from rastir.middleware import RastirMiddleware, instrument_httpx
from tests.middleware.servers import VALID, VALID_SID, VALID_TID, SpanWaiter, asgi_server

MODULES = pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])


class Release:
    """Lets the streaming endpoint send its last chunk once the test says so."""

    def __init__(self) -> None:
        self.event = threading.Event()


def build_app(release: Release) -> Any:
    async def echo(request: Request) -> Response:
        return JSONResponse(
            {name: request.headers.get(name) for name in ("traceparent", "tracestate", "baggage")}
        )

    async def moved(request: Request) -> Response:
        return RedirectResponse("/echo", status_code=307)

    async def stream(request: Request) -> Response:
        async def body() -> Any:
            yield b"first\n"
            # A worker thread waits for the test (bounded); the body stays cancellable.
            await anyio.to_thread.run_sync(release.event.wait, 15, abandon_on_cancel=True)
            yield b"last\n"

        return StreamingResponse(body())

    app = Starlette(
        routes=[
            Route("/echo", echo),
            Route("/moved", moved),
            Route("/stream", stream),
        ]
    )
    return RastirMiddleware(app)


def refused_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/nothing"


# -- redirects ------------------------------------------------------------------------
@MODULES
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_each_redirect_hop_is_a_client_span_with_its_own_server_span(
    mod: Any, flavour: str, spans: SpanWaiter
) -> None:
    # HTTP semconv: every request sent, redirects included, is a client span of its
    # own; httpx follows redirects above the transport, so each hop is traced apart.
    with asgi_server(build_app(Release())) as base:

        @rastir.agent(agent_name="redirects")
        def sync_call() -> int:
            with instrument_httpx(mod.Client(follow_redirects=True)) as client:
                return int(client.get(base + "/moved").status_code)

        @rastir.agent(agent_name="redirects")
        async def async_call() -> int:
            async with instrument_httpx(mod.AsyncClient(follow_redirects=True)) as client:
                return int((await client.get(base + "/moved")).status_code)

        status = sync_call() if flavour == "sync" else anyio.run(async_call)
        assert status == 200
        servers = spans.wait("http.server", 2)
    agent = spans.one("agent")
    clients = spans.of_kind("http.client")
    assert [c.attributes["http.response.status_code"] for c in clients] == [307, 200]
    assert [c.attributes["url.full"] for c in clients] == [base + "/moved", base + "/echo"]
    for client in clients:
        assert client.parent_span_id == agent.span_id
        assert client.status == "ok"  # a 3xx is no error
    assert sorted(s.parent_span_id or "" for s in servers) == sorted(c.span_id for c in clients)
    assert {s.trace_id for s in [*servers, *clients]} == {agent.trace_id}
    assert sorted(s.name for s in servers) == ["GET /echo", "GET /moved"]


# -- a traceparent the caller set -----------------------------------------------------
@MODULES
def test_outside_a_trace_a_traceparent_on_the_request_is_continued(
    mod: Any, spans: SpanWaiter
) -> None:
    # Forwarding a context by hand, outside any rastir span: the client span joins
    # that trace instead of replacing it with a new one.
    headers = {"traceparent": VALID, "tracestate": "vendor=kept", "baggage": "tenant=acme"}
    with asgi_server(build_app(Release())) as base:
        with instrument_httpx(mod.Client()) as client:
            seen = client.get(base + "/echo", headers=headers).json()
        server = spans.one("http.server")
    span = spans.one("http.client")
    assert span.trace_id == f"{VALID_TID:032x}"
    assert span.parent_span_id == f"{VALID_SID:016x}"
    assert server.parent_span_id == span.span_id
    assert seen["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    # Its tracestate and baggage belong to that trace: they travel on.
    assert seen["tracestate"] == "vendor=kept"
    assert seen["baggage"] == "tenant=acme"


@MODULES
@pytest.mark.parametrize("with_span", [True, False], ids=["span", "propagate-only"])
def test_inside_a_trace_the_current_span_wins_and_a_stale_tracestate_is_dropped(
    mod: Any, with_span: bool, spans: SpanWaiter
) -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    headers = {"traceparent": other, "tracestate": "stale=1"}
    with asgi_server(build_app(Release())) as base:

        @rastir.agent(agent_name="forwarder")
        def call() -> Any:
            with instrument_httpx(mod.Client(), span=with_span) as client:
                return client.get(base + "/echo", headers=headers).json()

        seen = call()
        server = spans.one("http.server")
    agent = spans.one("agent")
    expected_parent = spans.one("http.client") if with_span else agent
    assert seen["traceparent"] == f"00-{agent.trace_id}-{expected_parent.span_id}-01"
    assert server.parent_span_id == expected_parent.span_id
    # W3C Trace Context §3.3: a tracestate goes with its own traceparent; the one that
    # came with the replaced traceparent is not sent with ours.
    assert seen["tracestate"] is None


# -- streams ----------------------------------------------------------------------------
@MODULES
def test_a_lazily_read_stream_ends_the_client_span_at_the_headers_and_the_server_span_at_the_end(
    mod: Any, spans: SpanWaiter
) -> None:
    release = Release()
    with asgi_server(build_app(release)) as base:

        @rastir.agent(agent_name="reader")
        def read() -> list[str]:
            with (
                instrument_httpx(mod.Client()) as client,
                client.stream("GET", base + "/stream") as response,
            ):
                lines = response.iter_lines()
                first = next(lines)
                # The client span ended with the headers; the server is still
                # sending, so its span is still open.
                ended_client = spans.of_kind("http.client")
                open_server = spans.of_kind("http.server")
                release.event.set()
                rest = list(lines)
            assert len(ended_client) == 1
            assert ended_client[0].status == "ok"
            assert open_server == []
            return [first, *rest]

        assert read() == ["first", "last"]
        server = spans.one("http.server")
    client_span = spans.one("http.client")
    assert server.parent_span_id == client_span.span_id
    assert server.attributes["http.response.status_code"] == 200
    assert server.status == "ok"


# -- failures -----------------------------------------------------------------------
@MODULES
def test_a_refused_connection_with_transport_retries_is_one_error_span(
    mod: Any, spans: SpanWaiter
) -> None:
    # The transport's own retries (connection failures) happen below the wrapper: the
    # request is one span, and its error is the exception the caller gets.
    url = refused_url()

    async def call() -> BaseException:
        transport = mod.AsyncHTTPTransport(retries=2)
        async with instrument_httpx(mod.AsyncClient(transport=transport)) as client:
            with rastir.span("caller"):
                try:
                    await client.get(url)
                except mod.ConnectError as exc:
                    failure: BaseException = exc
                    return failure
        raise AssertionError("the connection was not refused")

    exc = anyio.run(call)
    span = spans.one("http.client")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == f"{mod.__name__}.ConnectError"
    assert span.error["type"] == "provider_error"
    assert span.attributes["error.type"] == f"{mod.__name__}.ConnectError"
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["url.full"] == url
    assert isinstance(exc, mod.ConnectError)


# -- statuses given as HTTPStatus -----------------------------------------------------
@pytest.mark.parametrize("status", [HTTPStatus.ACCEPTED, HTTPStatus.SERVICE_UNAVAILABLE])
def test_a_status_given_as_an_http_status_member_is_recorded_as_an_int(
    status: HTTPStatus, spans: SpanWaiter
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with asgi_server(RastirMiddleware(app)) as base:
        assert httpx.get(base + "/x").status_code == int(status)
        span = spans.one("http.server")
    code = span.attributes["http.response.status_code"]
    assert type(code) is int
    assert code == int(status)
    if status >= 500:
        assert span.status == "error"
        assert span.attributes["error.type"] == str(int(status))
    else:
        assert span.status == "ok"
        assert "error.type" not in span.attributes
