"""RastirMiddleware on real uvicorn servers: spans, attributes, errors, options, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as ws_connect

import rastir
from rastir.middleware import RastirMiddleware
from rastir.middleware._http import _split_host
from rastir.middleware.asgi import Message, Receive, Scope, Send
from tests.middleware.servers import (
    VALID,
    VALID_SID,
    VALID_TID,
    SpanWaiter,
    StatsDelta,
    asgi_server,
)


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"item": request.path_params["item_id"]})


async def params(request: Request) -> JSONResponse:
    return JSONResponse(request.path_params)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/health", health),
            Route("/metrics", health),
            Route("/ready", health),
        ]
    )
    app.add_middleware(RastirMiddleware, **options)
    return app


def test_a_request_is_an_http_server_span_with_the_semantic_convention_attributes(
    spans: SpanWaiter,
) -> None:
    with asgi_server(starlette_app()) as url:
        response = httpx.get(f"{url}/items/7?secret=1", headers={"user-agent": "probe/1.0"})
    assert response.json() == {"item": "7"}
    span = spans.one("http.server")
    port = int(url.rsplit(":", 1)[1])
    assert span.name == "GET /items/{item_id}"
    assert span.status == "ok"
    assert span.psid == 0  # no traceparent: a new trace
    assert span.attributes == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "127.0.0.1",
        "server.port": port,
        "client.address": "127.0.0.1",
        "user_agent.original": "probe/1.0",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }


def test_fastapi_routes_decorated_handlers_and_inherited_labels(spans: SpanWaiter) -> None:
    router = APIRouter(prefix="/v1")

    @rastir.tool
    def lookup(user_id: int) -> dict[str, int]:
        return {"user": user_id}

    @router.get("/users/{user_id}")
    @rastir.agent(agent_name="support")
    async def get_user(user_id: int) -> dict[str, int]:
        return lookup(user_id)

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(RastirMiddleware)
    with asgi_server(app) as url:
        response = httpx.get(f"{url}/v1/users/3", headers={"traceparent": VALID})
    assert response.json() == {"user": 3}
    server = spans.one("http.server")
    agent = spans.one("agent")
    tool = spans.one("tool")
    assert server.name == "GET /v1/users/{user_id}"
    assert server.attributes["http.route"] == "/v1/users/{user_id}"
    assert (server.tid, server.psid) == (VALID_TID, VALID_SID)
    assert (agent.tid, agent.psid) == (server.tid, server.sid)
    assert (tool.tid, tool.psid) == (server.tid, agent.sid)
    assert tool.attributes["gen_ai.agent.name"] == "support"


def test_a_mounted_route_template_carries_the_mount_prefix(spans: SpanWaiter) -> None:
    inner = [Route("/things/{thing_id}", params), Route("/items/{item_id}", params)]
    app = Starlette(
        routes=[Mount("/api", routes=inner), Mount("/users/{uid}", routes=inner)],
    )
    with asgi_server(RastirMiddleware(app)) as url:
        assert httpx.get(f"{url}/api/things/1").status_code == 200
        assert httpx.get(f"{url}/users/42/items/1").status_code == 200
        assert httpx.get(f"{url}/nowhere").status_code == 404
    first, second, missing = spans.wait("http.server", 3)
    assert first.attributes["http.route"] == "/api/things/{thing_id}"
    assert first.name == "GET /api/things/{thing_id}"
    # A parameter in the mount would put the user's id in the template: no route.
    assert "http.route" not in second.attributes
    assert second.name == "GET"
    # No route matched: the name stays the method (HTTP semconv), never the path.
    assert missing.name == "GET"
    assert missing.attributes["http.response.status_code"] == 404
    assert missing.status == "ok"  # a 4xx is not a server error


def test_routers_included_with_prefixes_carry_them_in_the_route(spans: SpanWaiter) -> None:
    # FastAPI puts the router's own route in the scope; the prefix given to
    # include_router() (here two, for one router) belongs in http.route too.
    router = APIRouter(prefix="/users")

    @router.get("/{uid}")
    async def get_user(uid: int) -> dict[str, int]:
        return {"uid": uid}

    outer = APIRouter(prefix="/admin")
    outer.include_router(router)
    app = FastAPI()
    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    app.include_router(outer, prefix="/v3")
    app.add_middleware(RastirMiddleware)
    with asgi_server(app) as url:
        for path in ("/v1/users/1", "/v2/users/2", "/v3/admin/users/3"):
            assert httpx.get(f"{url}{path}").status_code == 200
    routes = [s.attributes["http.route"] for s in spans.wait("http.server", 3)]
    assert routes == ["/v1/users/{uid}", "/v2/users/{uid}", "/v3/admin/users/{uid}"]


def test_a_mounted_app_without_routes_has_its_mount_path_as_the_route(
    spans: SpanWaiter, tmp_path: Any
) -> None:
    from starlette.staticfiles import StaticFiles

    (tmp_path / "site.css").write_text("body {}")
    starlette = Starlette(routes=[Mount("/static", app=StaticFiles(directory=tmp_path))])
    fastapi = FastAPI()
    fastapi.mount("/assets", StaticFiles(directory=tmp_path))
    fastapi.add_middleware(RastirMiddleware)
    with asgi_server(RastirMiddleware(starlette)) as url:
        assert httpx.get(f"{url}/static/site.css").text == "body {}"
    with asgi_server(fastapi) as url:
        assert httpx.get(f"{url}/assets/site.css").text == "body {}"
    first, second = spans.wait("http.server", 2)
    assert (first.name, first.attributes["http.route"]) == ("GET /static", "/static")
    assert (second.name, second.attributes["http.route"]) == ("GET /assets", "/assets")


def test_a_span_name_set_by_a_request_hook_is_kept(spans: SpanWaiter) -> None:
    def rename(span: rastir.Span, scope: Scope) -> None:
        span.name = "checkout"

    with asgi_server(starlette_app(request_hook=rename)) as url:
        assert httpx.get(f"{url}/items/7").status_code == 200
    span = spans.one("http.server")
    assert span.name == "checkout"
    assert span.attributes["http.route"] == "/items/{item_id}"


def test_spans_started_by_the_handler_are_children_of_the_server_span(
    spans: SpanWaiter,
) -> None:
    @rastir.trace
    async def work() -> str:
        return rastir.current_trace_id() or ""

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await work())

    app = RastirMiddleware(Starlette(routes=[Route("/", endpoint)]))
    with asgi_server(app) as url:
        response = httpx.get(url, headers={"traceparent": VALID})
    server = spans.one("http.server")
    child = spans.one("trace")
    assert response.text == f"{VALID_TID:032x}"
    assert (child.tid, child.psid) == (server.tid, server.sid)


def test_excluded_paths_get_no_span(spans: SpanWaiter) -> None:
    with asgi_server(starlette_app()) as url:
        for path in ("/health", "/metrics"):
            assert httpx.get(url + path).status_code == 200
    with asgi_server(starlette_app(excluded_paths=["/ready"])) as url:
        assert httpx.get(url + "/ready").status_code == 200
        assert httpx.get(url + "/health").status_code == 200
    assert [s.attributes["url.path"] for s in spans.wait("http.server")] == ["/health"]


def test_an_exception_in_the_app_is_a_500_span_with_the_error_recorded(
    spans: SpanWaiter,
) -> None:
    async def boom(request: Request) -> Response:
        raise ValueError("the handler broke")

    app = RastirMiddleware(Starlette(routes=[Route("/boom", boom)]))
    with asgi_server(app) as url:
        response = httpx.get(f"{url}/boom")
    assert response.status_code == 500
    span = spans.one("http.server")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "ValueError"
    assert span.error["message"] == "the handler broke"
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["http.route"] == "/boom"


@pytest.mark.anyio
async def test_the_apps_exception_is_reraised_unchanged(spans: SpanWaiter) -> None:
    error = KeyError("missing")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(KeyError) as raised:
        await RastirMiddleware(app)(scope, receive, send)
    assert raised.value is error
    span = spans.one("http.server")
    assert span.attributes["http.response.status_code"] == 500
    assert span.error is not None
    assert span.error["exception_type"] == "KeyError"


@pytest.mark.parametrize(("code", "status"), [(200, "ok"), (404, "ok"), (503, "error")])
def test_a_5xx_answer_makes_the_server_span_an_error_and_a_4xx_does_not(
    spans: SpanWaiter, code: int, status: str
) -> None:
    async def answer(request: Request) -> Response:
        return Response(status_code=code)

    with asgi_server(RastirMiddleware(Starlette(routes=[Route("/", answer)]))) as url:
        assert httpx.get(url).status_code == code
    span = spans.one("http.server")
    assert span.attributes["http.response.status_code"] == code
    assert span.status == status
    if code >= 500:
        assert span.attributes["error.type"] == str(code)
    else:
        assert "error.type" not in span.attributes


def test_hooks_are_called_and_hooks_that_raise_break_nothing(
    spans: SpanWaiter, counted: StatsDelta
) -> None:
    def request_hook(span: rastir.Span, scope: Scope) -> None:
        span.set_attribute("app.tenant", "acme")

    def response_hook(span: rastir.Span, message: Message) -> None:
        span.set_attribute("app.status_seen", message["status"])

    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    with asgi_server(starlette_app(request_hook=request_hook, response_hook=response_hook)) as url:
        assert httpx.get(f"{url}/items/1").status_code == 200
    with asgi_server(starlette_app(request_hook=broken, response_hook=broken)) as url:
        assert httpx.get(f"{url}/items/2").json() == {"item": "2"}
    good, bad = spans.wait("http.server", 2)
    assert good.attributes["app.tenant"] == "acme"
    assert good.attributes["app.status_seen"] == 200
    assert bad.status == "ok"
    assert bad.attributes["http.response.status_code"] == 200
    assert counted["hook_errors"] == 2


def test_named_headers_are_captured_and_sensitive_ones_redacted(spans: SpanWaiter) -> None:
    async def endpoint(request: Request) -> Response:
        response = PlainTextResponse("ok", headers={"x-served-by": "b1"})
        response.set_cookie("session", "s3cr3t")
        return response

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(
        RastirMiddleware,
        capture_request_headers=["X-Request-Id", "authorization", "x-tenant", "x-absent"],
        capture_response_headers=["x-served-by", "set-cookie"],
        sanitize_headers=["X-Tenant"],
    )
    with asgi_server(app) as url:
        httpx.get(
            url,
            headers={"x-request-id": "r-1", "authorization": "Bearer k", "x-tenant": "acme"},
        )
    attrs = spans.one("http.server").attributes
    assert attrs["http.request.header.x-request-id"] == ["r-1"]
    assert attrs["http.request.header.authorization"] == ["[redacted]"]
    assert attrs["http.request.header.x-tenant"] == ["[redacted]"]
    assert "http.request.header.x-absent" not in attrs
    assert attrs["http.response.header.x-served-by"] == ["b1"]
    assert attrs["http.response.header.set-cookie"] == ["[redacted]"]


def test_a_header_option_given_as_one_string_is_refused() -> None:
    with pytest.raises(ValueError, match="capture_request_headers"):
        RastirMiddleware(Starlette(), capture_request_headers="x-request-id")


def test_an_unknown_method_is_recorded_as_other(spans: SpanWaiter) -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.method)

    app = RastirMiddleware(Starlette(routes=[Route("/", endpoint, methods=["PURGE"])]))
    with asgi_server(app) as url:
        assert httpx.request("PURGE", url).text == "PURGE"
    span = spans.one("http.server")
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"
    assert span.name == "HTTP /"


@pytest.mark.anyio
async def test_lifespan_passes_straight_through_with_the_servers_callables(
    spans: SpanWaiter,
) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await RastirMiddleware(app)(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert seen[0][0] is scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert spans.spans == []


def test_lifespan_runs_under_a_real_server(spans: SpanWaiter) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=[Route("/items/{item_id}", item)], lifespan=lifespan)
    app.add_middleware(RastirMiddleware)
    with asgi_server(app, lifespan="on") as url:
        assert httpx.get(f"{url}/items/1").status_code == 200
    assert events == ["startup", "shutdown"]
    assert len(spans.wait("http.server")) == 1


def test_a_websocket_connection_is_one_span(spans: SpanWaiter) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())

    app = RastirMiddleware(Starlette(routes=[WebSocketRoute("/ws/{room}", echo)]))
    with asgi_server(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws/lobby"
        with ws_connect(ws_url, additional_headers={"traceparent": VALID}) as ws:
            for word in ("a", "b", "c"):
                ws.send(word)
                assert ws.recv(timeout=5) == word.upper()
        span = spans.one("http.server")
    assert span.name == "WEBSOCKET /ws/{room}"
    assert (span.tid, span.psid) == (VALID_TID, VALID_SID)
    assert span.attributes["network.protocol.name"] == "websocket"
    assert span.attributes["url.scheme"] == "ws"
    assert span.attributes["http.route"] == "/ws/{room}"
    assert span.attributes["http.response.status_code"] == 101
    assert span.attributes["rastir.websocket.close_code"] == 1000
    assert span.status == "ok"


def test_requests_pass_untraced_when_rastir_is_disabled(spans: SpanWaiter) -> None:
    rastir.configure(enabled=False)
    with asgi_server(starlette_app()) as url:
        assert httpx.get(f"{url}/items/5", headers={"traceparent": VALID}).status_code == 200
    assert spans.spans == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "scope",
    [
        {"type": "http", "method": "GET", "path": "/", "headers": None},
        {"type": "http", "method": "GET", "path": "/", "headers": [(b"user-agent", 5)]},
        {"type": "http", "method": "GET", "headers": []},
    ],
)
async def test_a_scope_the_middleware_cannot_read_is_served_untraced(
    spans: SpanWaiter, scope: Scope
) -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    await RastirMiddleware(app)(scope, receive, send)
    assert called == [scope]
    assert spans.spans == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:8080", ("example.com", 8080)),
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:80", ("10.0.0.1", 80)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", None)),
        ("[::1", ("[::1", None)),
        ("host:", ("host", None)),
        ("host:99999999999999999999", ("host", None)),
        ("host:٣", ("host", None)),  # an Arabic-Indic digit: int() would take it
        (":80", (":80", None)),
    ],
)
def test_a_host_header_of_any_shape_gives_address_and_port(
    host: str, expected: tuple[str, int | None]
) -> None:
    assert _split_host(host) == expected


def test_a_client_that_goes_away_mid_stream_does_not_leave_the_span_open(
    spans: SpanWaiter,
) -> None:
    async def endless(request: Request) -> Response:
        from starlette.responses import StreamingResponse

        async def body() -> AsyncIterator[bytes]:
            yield b"first\n"
            await anyio.sleep_forever()  # the client leaves first
            yield b"never\n"

        return StreamingResponse(body())

    app = RastirMiddleware(Starlette(routes=[Route("/", endless)]))
    with asgi_server(app) as url, httpx.stream("GET", url) as response:
        for chunk in response.iter_raw():
            assert chunk == b"first\n"
            break
    span = spans.one("http.server")
    assert span.ended
    assert span.attributes["http.response.status_code"] == 200
