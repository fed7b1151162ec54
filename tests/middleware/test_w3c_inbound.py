"""W3C Trace Context and Baggage, inbound, through RastirMiddleware on a real server.

Each case sends headers to a uvicorn server and checks whether the server span adopted
the caller as its parent, what it kept of ``tracestate`` and ``baggage``, and that every
refusal was counted in ``rastir.middleware.stats``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.context import _current_baggage
from rastir.middleware import RastirMiddleware
from tests.middleware.servers import VALID_SID, VALID_TID, SpanWaiter, StatsDelta, asgi_server

TID = f"{VALID_TID:032x}"
SID = f"{VALID_SID:016x}"
VALID = f"00-{TID}-{SID}-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def echo(request: Request) -> JSONResponse:
    outbound: dict[str, str] = {}
    rastir.inject(outbound)
    return JSONResponse({"baggage": list(_current_baggage.get()), "outbound": outbound})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(routes=[Route("/", echo)])
    app.add_middleware(RastirMiddleware)
    with asgi_server(app) as base:
        yield base


def call(url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    response = httpx.get(url, headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("headers", "adopted"),
    [
        pytest.param([("traceparent", VALID)], True, id="valid"),
        pytest.param([("traceparent", f"00-{TID}-{SID}-00")], True, id="valid, not sampled"),
        pytest.param([("TraceParent", VALID)], True, id="header name in any case"),
        pytest.param([("traceparent", VALID.upper())], False, id="uppercase hex"),
        pytest.param([("traceparent", f"00-{TID}-{SID.upper()}-01")], False, id="uppercase id"),
        pytest.param([("traceparent", f"00-{TID[:-1]}g-{SID}-01")], False, id="invalid hex"),
        pytest.param([("traceparent", f"00-{TID}-{SID}-0x")], False, id="invalid flags"),
        pytest.param([("traceparent", f"00-{'0' * 32}-{SID}-01")], False, id="zero trace id"),
        pytest.param([("traceparent", f"00-{TID}-{'0' * 16}-01")], False, id="zero parent id"),
        pytest.param([("traceparent", f"ff-{TID}-{SID}-01")], False, id="version ff"),
        pytest.param([("traceparent", f"cc-{TID}-{SID}-01")], True, id="future version"),
        pytest.param(
            [("traceparent", f"cc-{TID}-{SID}-01-what-the-future-will-be-like")],
            True,
            id="future version with extra fields",
        ),
        pytest.param(
            [("traceparent", f"cc-{TID}-{SID}-01.what-the-future")],
            False,
            id="future version, extra data without a dash",
        ),
        pytest.param(
            [("traceparent", f"00-{TID}-{SID}-01-extra")], False, id="version 00 with extra"
        ),
        pytest.param([("traceparent", f"00-{TID}-{SID}-1")], False, id="too short"),
        pytest.param([("traceparent", f"00_{TID}_{SID}_01")], False, id="wrong delimiter"),
        pytest.param([("traceparent", "x" * 4096)], False, id="oversized"),
        pytest.param([("traceparent", VALID), ("traceparent", OTHER)], False, id="two different"),
        pytest.param([("traceparent", VALID), ("traceparent", VALID)], True, id="same twice"),
    ],
)
def test_traceparent_is_adopted_only_when_valid_and_refusals_are_counted(
    url: str,
    spans: SpanWaiter,
    counted: StatsDelta,
    headers: list[tuple[str, str]],
    adopted: bool,
) -> None:
    body = call(url, headers)
    span = spans.one("http.server")
    if adopted:
        assert (span.tid, span.psid) == (VALID_TID, VALID_SID)
        assert counted["invalid_traceparent"] == 0
        sent_flags = headers[0][1][53:55]
        # The flags travel on unchanged (TC §3.2.2.5), and so does the trace.
        assert body["outbound"]["traceparent"] == f"00-{TID}-{span.sid:016x}-{sent_flags}"
    else:
        assert span.tid != VALID_TID
        assert span.psid == 0
        assert counted["invalid_traceparent"] == 1
        assert body["outbound"]["traceparent"].startswith(f"00-{span.tid:032x}-")


def members(n: int) -> str:
    return ",".join(f"k{i}=v{i}" for i in range(n))


@pytest.mark.parametrize(
    ("headers", "kept", "invalid"),
    [
        pytest.param([("tracestate", "congo=t61rcWkgMzE")], "congo=t61rcWkgMzE", 0, id="valid"),
        pytest.param(
            [("tracestate", "a=1"), ("tracestate", "b=2")], "a=1,b=2", 0, id="two header lines"
        ),
        pytest.param([("tracestate", members(32))], members(32), 0, id="32 members"),
        pytest.param([("tracestate", members(33))], None, 1, id="33 members"),
        pytest.param([("tracestate", "a=1,a=2")], None, 1, id="duplicate key"),
        pytest.param([("tracestate", "UPPER=1")], None, 1, id="invalid key"),
        pytest.param([("tracestate", "k=" + "v" * 600)], None, 1, id="longer than 512"),
    ],
)
def test_tracestate_is_kept_dropped_whole_or_counted_with_the_parent_kept(
    url: str,
    spans: SpanWaiter,
    counted: StatsDelta,
    headers: list[tuple[str, str]],
    kept: str | None,
    invalid: int,
) -> None:
    body = call(url, [("traceparent", VALID), *headers])
    span = spans.one("http.server")
    assert (span.tid, span.psid) == (VALID_TID, VALID_SID)
    assert span.tracestate == kept
    assert body["outbound"].get("tracestate") == kept
    assert counted["invalid_tracestate"] == invalid


def test_tracestate_without_a_valid_traceparent_is_not_even_read(
    url: str, spans: SpanWaiter, counted: StatsDelta
) -> None:
    call(url, [("traceparent", "00-bad"), ("tracestate", members(40))])
    span = spans.one("http.server")
    assert span.tracestate is None
    assert counted["invalid_traceparent"] == 1
    assert counted["invalid_tracestate"] == 0


def test_baggage_is_current_in_the_handler_and_forwarded(url: str, spans: SpanWaiter) -> None:
    body = call(url, [("traceparent", VALID), ("baggage", "user=alice, tier=gold%20plus;p=1")])
    assert body["baggage"] == [["user", "alice"], ["tier", "gold plus"]]
    assert body["outbound"]["baggage"] == "user=alice,tier=gold%20plus"


def test_baggage_with_more_than_180_members_keeps_the_first_180_and_is_counted(
    url: str, spans: SpanWaiter, counted: StatsDelta
) -> None:
    body = call(url, [("traceparent", VALID), ("baggage", members(200))])
    span = spans.one("http.server")
    assert (span.tid, span.psid) == (VALID_TID, VALID_SID)
    assert [k for k, _ in body["baggage"]] == [f"k{i}" for i in range(180)]
    assert counted["invalid_baggage"] == 1


def test_baggage_with_exactly_180_members_is_kept_whole_and_not_counted(
    url: str, spans: SpanWaiter, counted: StatsDelta
) -> None:
    body = call(url, [("traceparent", VALID), ("baggage", members(180))])
    spans.one("http.server")
    assert len(body["baggage"]) == 180
    assert counted["invalid_baggage"] == 0


def test_oversized_baggage_keeps_what_fits_in_8192_bytes_and_is_counted(
    url: str, spans: SpanWaiter, counted: StatsDelta
) -> None:
    big = ",".join(f"k{i}={'v' * 3000}" for i in range(4))  # about 12 kB
    body = call(url, [("traceparent", VALID), ("baggage", big)])
    span = spans.one("http.server")
    assert (span.tid, span.psid) == (VALID_TID, VALID_SID)
    assert [k for k, _ in body["baggage"]] == ["k0", "k1"]
    assert len(body["outbound"]["baggage"]) <= 8192
    assert counted["invalid_baggage"] == 1
    assert counted["invalid_traceparent"] == 0


def test_baggage_without_a_valid_traceparent_is_ignored(url: str, spans: SpanWaiter) -> None:
    body = call(url, [("traceparent", "00-bad"), ("baggage", "user=alice")])
    assert body["baggage"] == []
