"""RastirWSGIMiddleware: Flask on a real WSGI server, and WSGI's body lifecycle."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, stream_with_context

import rastir
from rastir.middleware import RastirWSGIMiddleware, instrument_httpx
from rastir.middleware.wsgi import Environ, StartResponse
from tests.middleware.servers import (
    VALID,
    VALID_SID,
    VALID_TID,
    SpanWaiter,
    StatsDelta,
    wsgi_server,
)


@rastir.trace
def piece(i: int) -> str:
    return f"part {i}\n"


def flask_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    @rastir.agent(agent_name="profile")
    def user(user_id: int) -> dict[str, Any]:
        return {"user": user_id, "trace": rastir.current_trace_id()}

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for i in range(3):
                yield piece(i)

        return Response(stream_with_context(body()), mimetype="text/plain")

    @app.get("/boom")
    def boom() -> str:
        raise ValueError("flask handler broke")

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.wsgi_app = RastirWSGIMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def test_flask_joins_the_callers_trace_with_the_route_from_its_url_rule(
    spans: SpanWaiter,
) -> None:
    with wsgi_server(flask_app()) as url, instrument_httpx(httpx.Client()) as client:
        with rastir.span("caller"):
            body = client.get(f"{url}/users/7", headers={"user-agent": "probe/2"}).json()
        server = spans.one("http.server")
    caller = spans.one("custom")
    outbound = spans.one("http.client")
    agent = spans.one("agent")
    port = int(url.rsplit(":", 1)[1])
    assert body == {"user": 7, "trace": caller.trace_id}
    assert (server.tid, server.psid) == (caller.tid, outbound.sid)
    assert (agent.tid, agent.psid) == (server.tid, server.sid)
    assert server.name == "GET /users/<int:user_id>"
    assert server.attributes == {
        "http.request.method": "GET",
        "url.path": "/users/7",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "127.0.0.1",
        "server.port": port,
        "client.address": "127.0.0.1",
        "user_agent.original": "probe/2",
        "http.route": "/users/<int:user_id>",
        "http.response.status_code": 200,
    }


def test_a_streamed_flask_body_is_inside_the_span_to_its_last_chunk(
    spans: SpanWaiter,
) -> None:
    with wsgi_server(flask_app()) as url:
        text = httpx.get(f"{url}/stream", headers={"traceparent": VALID}).text
        server = spans.one("http.server")
    assert text == "part 0\npart 1\npart 2\n"
    assert (server.tid, server.psid) == (VALID_TID, VALID_SID)
    pieces = spans.of_kind("trace")
    assert len(pieces) == 3
    for child in pieces:
        assert (child.tid, child.psid) == (server.tid, server.sid)
        assert child.end_time_unix_nano <= server.end_time_unix_nano


def test_a_flask_error_page_is_a_500_error_span(spans: SpanWaiter) -> None:
    with wsgi_server(flask_app()) as url:
        assert httpx.get(f"{url}/boom").status_code == 500
        server = spans.one("http.server")
    assert server.status == "error"
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"
    assert server.attributes["http.route"] == "/boom"


@pytest.mark.parametrize(
    ("traceparent", "adopted"),
    [
        (VALID, True),
        (VALID.upper(), False),
        (f"ff{VALID[2:]}", False),
        (f"00-{'0' * 32}{VALID[35:]}", False),
        (f"cc{VALID[2:]}-future", True),
    ],
)
def test_w3c_traceparent_rules_hold_under_wsgi(
    spans: SpanWaiter, counted: StatsDelta, traceparent: str, adopted: bool
) -> None:
    with wsgi_server(flask_app()) as url:
        httpx.get(f"{url}/users/1", headers={"traceparent": traceparent})
        server = spans.one("http.server")
    assert ((server.tid, server.psid) == (VALID_TID, VALID_SID)) is adopted
    assert counted["invalid_traceparent"] == (0 if adopted else 1)


def test_two_different_traceparent_headers_are_refused_under_wsgi(
    spans: SpanWaiter, counted: StatsDelta
) -> None:
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with wsgi_server(flask_app()) as url:
        httpx.get(f"{url}/users/1", headers=[("traceparent", VALID), ("traceparent", other)])
        server = spans.one("http.server")
    assert server.psid == 0
    assert counted["invalid_traceparent"] == 1


def test_excluded_paths_hooks_and_header_capture(spans: SpanWaiter, counted: StatsDelta) -> None:
    def request_hook(span: rastir.Span, environ: Environ) -> None:
        span.set_attribute("app.remote", environ["REMOTE_ADDR"])

    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    app = flask_app(
        request_hook=request_hook,
        capture_request_headers=["x-request-id", "cookie", "content-type"],
        capture_response_headers=["content-type"],
    )
    with wsgi_server(app) as url:
        assert httpx.get(f"{url}/health").text == "ok"
        httpx.get(f"{url}/users/2", headers={"x-request-id": "r-9", "cookie": "a=b"})
        server = spans.one("http.server")
    assert server.attributes["app.remote"] == "127.0.0.1"
    assert server.attributes["http.request.header.x-request-id"] == ["r-9"]
    assert server.attributes["http.request.header.cookie"] == ["[redacted]"]
    assert server.attributes["http.response.header.content-type"] == ["application/json"]
    with wsgi_server(flask_app(request_hook=broken, response_hook=broken)) as url:
        assert httpx.get(f"{url}/users/3").json()["user"] == 3
        spans.wait("http.server", 2)
    assert counted["hook_errors"] == 2


# -- the body lifecycle, driven as a WSGI server drives it -----------------------------
def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


def environ(path: str = "/", **extra: Any) -> Environ:
    base: Environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    base.update(extra)
    return base


def test_a_lazy_body_ends_the_span_only_when_the_server_closes_it(spans: SpanWaiter) -> None:
    closed: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("content-type", "text/plain")])

        def body() -> Iterator[bytes]:
            try:
                for i in range(3):
                    yield piece(i).encode()
            finally:
                closed.append(True)

        return body()

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    assert list(body) == [b"part 0\n", b"part 1\n", b"part 2\n"]
    assert spans.of_kind("http.server") == []  # exhausted, but not closed yet
    body.close()  # type: ignore[attr-defined]
    server = spans.one("http.server")
    assert closed == [True]
    assert server.attributes["server.address"] == "localhost"
    assert server.attributes["server.port"] == 8080
    assert all(child.psid == server.sid for child in spans.of_kind("trace"))
    body.close()  # type: ignore[attr-defined]  # a second close changes nothing
    assert len(spans.of_kind("http.server")) == 1


def test_a_body_closed_early_still_ends_the_span_and_closes_the_apps_iterable(
    spans: SpanWaiter,
) -> None:
    closed: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            try:
                yield b"one"
                yield b"two"
            finally:
                closed.append(True)

        return body()

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    assert next(iter(body)) == b"one"
    body.close()  # type: ignore[attr-defined]
    assert closed == [True]
    assert spans.one("http.server").attributes["http.response.status_code"] == 200


def test_a_complete_body_keeps_its_length_for_content_length(spans: SpanWaiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("201 Created", [])
        return [b"done"]

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    assert len(body) == 1  # type: ignore[arg-type]
    assert list(body) == [b"done"]
    body.close()  # type: ignore[attr-defined]
    assert spans.one("http.server").attributes["http.response.status_code"] == 201


@pytest.mark.parametrize("empty", [[], ()], ids=["list", "tuple"])
def test_an_empty_body_ends_its_span_once_however_often_it_is_closed(
    spans: SpanWaiter, empty: list[bytes] | tuple[bytes, ...]
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("204 No Content", [])
        return empty

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    assert list(body) == []
    assert spans.of_kind("http.server") == []  # open until the server closes it
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    (span,) = spans.of_kind("http.server")
    assert span.attributes["http.response.status_code"] == 204


def test_an_exception_from_a_wsgi_app_is_a_500_span_and_is_reraised_unchanged(
    spans: SpanWaiter,
) -> None:
    error = LookupError("gone")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        raise error

    with pytest.raises(LookupError) as raised:
        RastirWSGIMiddleware(app)(environ(), start_response)
    assert raised.value is error
    span = spans.one("http.server")
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "LookupError"
    assert span.error is not None
    assert span.error["message"] == "gone"


def test_a_body_that_fails_before_its_first_chunk_is_a_500(spans: SpanWaiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])

        class Failing:
            def __iter__(self) -> Iterator[bytes]:
                return self

            def __next__(self) -> bytes:
                raise RuntimeError("lazy failure")

        return Failing()

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    with pytest.raises(RuntimeError, match="lazy failure"):
        list(body)
    body.close()  # type: ignore[attr-defined]
    span = spans.one("http.server")
    assert span.status == "error"
    assert span.attributes["http.response.status_code"] == 500
    # The exception names the error (HTTP semconv), not the status it caused.
    assert span.attributes["error.type"] == "RuntimeError"


def test_a_body_that_fails_after_its_first_chunk_names_the_error(spans: SpanWaiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            yield b"first"
            raise KeyError("mid-body")

        return body()

    body = RastirWSGIMiddleware(app)(environ(), start_response)
    chunks = iter(body)
    assert next(chunks) == b"first"
    with pytest.raises(KeyError):
        next(chunks)
    body.close()  # type: ignore[attr-defined]
    span = spans.one("http.server")
    assert span.status == "error"
    assert span.attributes["http.response.status_code"] == 200  # already sent
    assert span.attributes["error.type"] == "KeyError"


def test_a_span_name_set_by_a_hook_is_kept(spans: SpanWaiter) -> None:
    def rename(span: rastir.Span, environ: Environ) -> None:
        span.name = "checkout"

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["rastir.route"] = "/cart/<id>"
        start_response("200 OK", [])
        return [b""]

    middleware = RastirWSGIMiddleware(app, request_hook=rename)
    middleware(environ("/cart/7"), start_response).close()  # type: ignore[attr-defined]
    span = spans.one("http.server")
    assert span.name == "checkout"
    assert span.attributes["http.route"] == "/cart/<id>"


def test_a_route_set_by_the_application_is_used(spans: SpanWaiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # What a Django middleware would do with request.resolver_match.route.
        environ["rastir.route"] = "articles/<int:year>/"
        start_response("200 OK", [])
        return [b""]

    RastirWSGIMiddleware(app)(environ("/articles/2024/"), start_response).close()  # type: ignore[attr-defined]
    span = spans.one("http.server")
    assert span.name == "GET articles/<int:year>/"
    assert span.attributes["http.route"] == "articles/<int:year>/"


def test_an_environ_the_middleware_cannot_read_is_served_untraced(spans: SpanWaiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return [b"ok"]

    assert RastirWSGIMiddleware(app)({"PATH_INFO": "/"}, start_response) == [b"ok"]
    assert spans.spans == []


def test_wsgi_requests_pass_untraced_when_rastir_is_disabled(spans: SpanWaiter) -> None:
    rastir.configure(enabled=False)
    with wsgi_server(flask_app()) as url:
        assert httpx.get(f"{url}/users/1", headers={"traceparent": VALID}).status_code == 200
    assert spans.spans == []


def test_a_status_line_the_middleware_cannot_read_is_left_to_the_server(
    spans: SpanWaiter,
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response(None, [])
        return [b""]

    seen: list[Any] = []

    def recording_start_response(status: Any, headers: Any, exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    body = RastirWSGIMiddleware(app)(environ(), recording_start_response)
    body.close()  # type: ignore[attr-defined]
    assert seen == [None]  # passed on unchanged, for the server to refuse
    assert "http.response.status_code" not in spans.one("http.server").attributes
