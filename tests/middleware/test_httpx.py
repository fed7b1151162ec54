"""Outbound propagation through instrumented httpx and httpx2 clients, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import rastir
from rastir.middleware import (
    RastirAsyncTransport,
    RastirMiddleware,
    RastirTransport,
    instrument_httpx,
)
from tests.middleware.servers import VALID, VALID_SID, VALID_TID, SpanWaiter, asgi_server


async def headers(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.headers))


async def status(request: Request) -> Response:
    return Response(status_code=int(request.path_params["code"]))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(routes=[Route("/headers", headers), Route("/status/{code}", status)])
    with asgi_server(app) as base:
        yield base


CLIENTS = [
    pytest.param((httpx, False), id="httpx sync"),
    pytest.param((httpx, True), id="httpx async"),
    pytest.param((httpx2, False), id="httpx2 sync"),
    pytest.param((httpx2, True), id="httpx2 async"),
]


async def get(module: Any, is_async: bool, url: str, *, span: bool = True) -> Any:
    """GET ``url`` with an instrumented client of ``module``; returns the response."""
    if is_async:
        async with instrument_httpx(module.AsyncClient(), span=span) as client:
            return await client.get(url)
    with instrument_httpx(module.Client(), span=span) as client:
        return client.get(url)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_url_full_keeps_the_path_percent_encoded_as_sent(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    response = await get(module, is_async, f"{url}/no%20such/page?token=hunter2")
    assert response.status_code == 404  # no route: only the URL matters here
    port = int(url.rsplit(":", 1)[1])
    # A valid URL (RFC 3986): the space stays "%20", and the query is never recorded.
    assert spans.one("http.client").attributes["url.full"] == (
        f"http://127.0.0.1:{port}/no%20such/page"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_each_request_carries_the_client_spans_traceparent(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    with rastir.span("caller"):
        response = await get(module, is_async, f"{url}/headers?token=hunter2")
    caller = spans.one("custom")
    client = spans.one("http.client")
    port = int(url.rsplit(":", 1)[1])
    assert response.json()["traceparent"] == f"00-{client.trace_id}-{client.span_id}-01"
    assert (client.tid, client.psid) == (caller.tid, caller.sid)
    assert client.name == "GET"
    assert client.attributes == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.scheme": "http",
        "url.full": f"http://127.0.0.1:{port}/headers",  # the query is never recorded
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",  # httpcore's http_version extension
    }
    assert client.status == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_without_a_client_span_the_current_span_is_propagated(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    with rastir.span("caller") as caller:
        response = await get(module, is_async, f"{url}/headers", span=False)
    assert caller is not None
    assert response.json()["traceparent"] == f"00-{caller.trace_id}-{caller.span_id}-01"
    assert spans.of_kind("http.client") == []


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_outside_any_trace_a_bare_propagating_client_sends_nothing(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    response = await get(module, is_async, f"{url}/headers", span=False)
    assert "traceparent" not in response.json()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    ("code", "category"),
    [(404, "validation_error"), (429, "rate_limit"), (500, "provider_error"), (503, None)],
)
async def test_4xx_and_5xx_answers_are_errors_on_the_client_span(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool], code: int, category: str | None
) -> None:
    module, is_async = kind
    response = await get(module, is_async, f"{url}/status/{code}")
    assert response.status_code == code
    client = spans.one("http.client")
    assert client.status == "error"
    assert client.attributes["http.response.status_code"] == code
    assert client.attributes["error.type"] == str(code)
    assert client.error is not None
    if category is not None:
        assert client.error["type"] == category


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_transport_error_is_recorded_and_reraised(
    spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    # A port nothing listens on: bind one, then close it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(module.ConnectError):
        await get(module, is_async, f"http://127.0.0.1:{port}/")
    client = spans.one("http.client")
    assert client.status == "error"
    assert client.attributes["error.type"] == f"{module.__name__}.ConnectError"
    assert "http.response.status_code" not in client.attributes


def test_the_server_span_is_the_child_of_the_client_span(spans: SpanWaiter) -> None:
    app = Starlette(routes=[Route("/headers", headers)])
    app.add_middleware(RastirMiddleware)
    with asgi_server(app) as base, instrument_httpx(httpx.Client()) as client:
        with rastir.span("caller"):
            client.get(f"{base}/headers")
        server = spans.one("http.server")
    client_span = spans.one("http.client")
    assert (server.tid, server.psid) == (client_span.tid, client_span.sid)


def test_tracestate_and_baggage_travel_with_the_trace(url: str, spans: SpanWaiter) -> None:
    carrier = {"traceparent": VALID, "tracestate": "vendor=abc", "baggage": "user=alice"}
    with rastir.continue_trace(carrier), instrument_httpx(httpx.Client()) as client:
        seen = client.get(f"{url}/headers").json()
    client_span = spans.one("http.client")
    assert (client_span.tid, client_span.psid) == (VALID_TID, VALID_SID)
    assert seen["traceparent"] == f"00-{VALID_TID:032x}-{client_span.span_id}-01"
    assert seen["tracestate"] == "vendor=abc"
    assert seen["baggage"] == "user=alice"


def test_instrumenting_twice_does_nothing_more(url: str, spans: SpanWaiter) -> None:
    client = httpx.Client()
    assert instrument_httpx(client) is client
    assert instrument_httpx(client) is client
    with client, rastir.span("caller"):
        client.get(f"{url}/headers")
    assert len(spans.of_kind("http.client")) == 1


def test_a_transport_given_already_wrapped_is_not_wrapped_again(
    url: str, spans: SpanWaiter
) -> None:
    # Duck-typed for httpx and httpx2 alike, so not an httpx.BaseTransport subclass.
    transport = RastirTransport(httpx.HTTPTransport())
    client = httpx.Client(transport=transport)  # type: ignore[arg-type]
    with instrument_httpx(client), rastir.span("caller"):
        client.get(f"{url}/headers")
    assert len(spans.of_kind("http.client")) == 1


@pytest.mark.anyio
async def test_mounted_transports_are_instrumented_too(url: str, spans: SpanWaiter) -> None:
    mounted = httpx.AsyncHTTPTransport()
    client = httpx.AsyncClient(mounts={"http://127.0.0.1": mounted})
    async with instrument_httpx(client):
        assert isinstance(client._mounts[next(iter(client._mounts))], RastirAsyncTransport)
        with rastir.span("caller"):
            seen = (await client.get(f"{url}/headers")).json()
    assert seen["traceparent"] == f"00-{spans.one('http.client').trace_id}-" + (
        f"{spans.one('http.client').span_id}-01"
    )


def test_something_that_is_not_an_httpx_client_is_refused() -> None:
    with pytest.raises(TypeError, match="httpx or httpx2 client"):
        instrument_httpx(object())


def test_nothing_is_added_when_rastir_is_disabled(url: str, spans: SpanWaiter) -> None:
    rastir.configure(enabled=False)
    with instrument_httpx(httpx.Client()) as client:
        seen = client.get(f"{url}/headers").json()
    assert "traceparent" not in seen
    assert spans.spans == []


def test_inject_serves_any_other_client(url: str, spans: SpanWaiter) -> None:
    import urllib.request

    with rastir.span("caller") as caller:
        outgoing: dict[str, str] = {}
        rastir.inject(outgoing)
        request = urllib.request.Request(f"{url}/headers", headers=outgoing)
        with urllib.request.urlopen(request, timeout=5) as answer:
            import json

            seen = json.loads(answer.read())
    assert caller is not None
    assert seen["traceparent"] == f"00-{caller.trace_id}-{caller.span_id}-01"


class _Unreadable:
    """A request whose URL cannot be read, as a broken client library might send."""

    method = "GET"

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    @property
    def url(self) -> Any:
        raise RuntimeError("no url")


class _ReadOnlyHeaders:
    """A request whose headers refuse writes."""

    method = "GET"
    url = httpx.URL("http://127.0.0.1:1/x")

    class _Frozen(dict[str, str]):
        def __setitem__(self, key: str, value: str) -> None:
            raise TypeError("read-only")

    headers = _Frozen()


class _Echo:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def handle_request(self, request: Any) -> Any:
        self.seen.append(request)
        return httpx.Response(204)


@pytest.mark.parametrize("request_", [_Unreadable(), _ReadOnlyHeaders()])
@pytest.mark.parametrize("span", [True, False])
def test_a_request_telemetry_cannot_read_or_write_still_goes_out(
    spans: SpanWaiter, request_: Any, span: bool
) -> None:
    inner = _Echo()
    with rastir.span("caller"):
        response = RastirTransport(inner, span=span).handle_request(request_)
    assert response.status_code == 204
    assert inner.seen == [request_]
    assert spans.of_kind("http.client") == []
