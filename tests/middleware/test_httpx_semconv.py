"""``http.client`` spans of instrumented httpx/httpx2 clients against the HTTP conventions:
resends (redirects, auth rounds, a request sent again), credentials in the URL,
``url.scheme``. A real uvicorn on 127.0.0.1 answers."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from rastir.middleware import instrument_httpx
from tests.middleware.servers import SpanWaiter, asgi_server
from tests.middleware.test_httpx import CLIENTS

pytestmark = pytest.mark.anyio

TOKEN = "let-me-in"


async def hop(request: Request) -> Response:
    """``/hop/3`` redirects to ``/hop/2`` ... down to ``/hop/0``, which answers."""
    left = int(request.path_params["left"])
    if left == 0:
        return JSONResponse({"done": True})
    return RedirectResponse(f"/hop/{left - 1}", status_code=307)


async def guarded(request: Request) -> Response:
    if request.headers.get("x-token") != TOKEN:
        return Response(status_code=401, headers={"x-challenge": TOKEN})
    return JSONResponse({"ok": True})


async def who(request: Request) -> JSONResponse:
    return JSONResponse({"authorization": request.headers.get("authorization")})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(
        routes=[Route("/hop/{left}", hop), Route("/guarded", guarded), Route("/who", who)]
    )
    with asgi_server(app) as base:
        yield base


def _challenge_auth(module: Any) -> Any:
    """An auth flow that answers the server's 401 challenge: httpx sends the same
    request a second time, as digest auth or a token refresh does."""

    class Challenge(module.Auth):  # type: ignore[misc]
        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            response = yield request
            if response.status_code == 401:
                request.headers["x-token"] = response.headers["x-challenge"]
                yield request

    return Challenge()


async def send(module: Any, is_async: bool, url: str, **options: Any) -> Any:
    """One GET through an instrumented client of ``module``, following redirects."""
    if is_async:
        async with instrument_httpx(module.AsyncClient(follow_redirects=True)) as client:
            return await client.get(url, **options)
    with instrument_httpx(module.Client(follow_redirects=True)) as client:
        return client.get(url, **options)


@pytest.mark.parametrize("kind", CLIENTS)
async def test_each_redirect_hop_counts_as_a_resend(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    response = await send(module, is_async, f"{url}/hop/3")
    assert response.json() == {"done": True}
    hops = sorted(spans.wait("http.client", 4), key=lambda s: s.start_time_unix_nano)
    assert [s.attributes["url.full"].rsplit("/", 1)[1] for s in hops] == ["3", "2", "1", "0"]
    assert "http.request.resend_count" not in hops[0].attributes
    assert [s.attributes.get("http.request.resend_count") for s in hops[1:]] == [1, 2, 3]
    assert [s.attributes["http.response.status_code"] for s in hops] == [307, 307, 307, 200]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_an_auth_round_is_a_resend_of_the_same_request(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    response = await send(module, is_async, f"{url}/guarded", auth=_challenge_auth(module))
    assert response.json() == {"ok": True}
    first, second = sorted(spans.wait("http.client", 2), key=lambda s: s.start_time_unix_nano)
    assert "http.request.resend_count" not in first.attributes
    assert first.attributes["http.response.status_code"] == 401
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert second.status == "ok"


async def test_separate_requests_are_not_resends(url: str, spans: SpanWaiter) -> None:
    async with instrument_httpx(httpx.AsyncClient()) as client:
        for _ in range(3):
            assert (await client.get(f"{url}/who")).status_code == 200
    for span in spans.wait("http.client", 3):
        assert "http.request.resend_count" not in span.attributes
        assert span.attributes["url.scheme"] == "http"


async def test_the_same_request_sent_again_is_a_resend(url: str, spans: SpanWaiter) -> None:
    with instrument_httpx(httpx2.Client()) as client:
        request = client.build_request("GET", f"{url}/who")
        for _ in range(3):
            assert client.send(request).status_code == 200
    sent = sorted(spans.wait("http.client", 3), key=lambda s: s.start_time_unix_nano)
    assert [s.attributes.get("http.request.resend_count") for s in sent] == [None, 1, 2]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_credentials_in_the_url_are_redacted(
    url: str, spans: SpanWaiter, kind: tuple[Any, bool]
) -> None:
    module, is_async = kind
    authority = url.split("://", 1)[1]
    response = await send(module, is_async, f"http://al:s3cret@{authority}/who")
    # httpx still sends them (as basic auth): only the span leaves them out.
    assert response.json()["authorization"].startswith("Basic ")
    span = spans.one("http.client")
    assert span.attributes["url.full"] == f"http://REDACTED:REDACTED@{authority}/who"
    assert not any("s3cret" in str(v) or "al:" in str(v) for v in span.attributes.values())
    assert span.attributes["server.address"] == "127.0.0.1"
