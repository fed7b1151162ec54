"""SDK health events reach the collector's metrics: ``rastir_collector_client_events_total``.

End to end with real parts: the ASGI middleware on uvicorn refusing a caller's
``traceparent`` and surviving a failing hook, the MCP bridge refusing a ``_meta`` over
the MCP SDK's in-memory transport, the SDK's exporter posting to a real collector on
uvicorn, and ``/metrics`` read with prometheus_client's parser. Then the wire field
itself: bounds, the fold of unknown names, and compatibility both ways with senders
and collectors that predate it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import rastir
from rastir._wire import INT64_MAX, SDK_EVENTS, WIRE_VERSION, WireBatch, WireSpan, json_schema
from rastir.collector import CollectorSettings, create_app
from rastir.collector.metrics import OTHER
from rastir.export._pipeline import PIPELINE
from rastir.middleware import RastirMiddleware
from tests.collector.conftest import RunCollector, Scrape
from tests.collector.server import serving
from tests.collector.spans import batch, encode, span
from tests.mcp_bridge.tools import Probe, as_meta, build
from tests.middleware import conftest as middleware_fixtures
from tests.middleware.servers import VALID, SpanWaiter, asgi_server

EVENTS = "rastir_collector_client_events_total"
FAMILY = "rastir_collector_client_events"  # the parser's name for the counter family
OVERFLOW = "rastir_label_overflow_total"


# The middleware tests' ``spans`` fixture: every span that ends, with a way to wait.
spans = middleware_fixtures.spans


@pytest.fixture
def collector() -> Iterator[str]:
    """A real collector on uvicorn; the events counted before the test are forgotten."""
    PIPELINE.take_events()
    app = create_app(CollectorSettings(store="memory", access_log=False, retention=None))
    with serving(app) as url:
        yield url


def scrape(url: str) -> Scrape:
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return Scrape(r.text)


def _hello_app(request_hook: Any = None) -> Any:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    return RastirMiddleware(Starlette(routes=[Route("/hello", hello)]), request_hook=request_hook)


# -- end to end ------------------------------------------------------------------------------


def test_a_refused_traceparent_and_a_failing_hook_are_counted_under_the_service(
    collector: str, spans: SpanWaiter
) -> None:
    def broken_hook(span: Any, scope: Any) -> None:
        raise RuntimeError("the user's hook")

    rastir.configure(service="edge", push_url=collector, flush_interval=60)
    with asgi_server(_hello_app(broken_hook)) as app_url:
        bad = httpx.get(f"{app_url}/hello", headers={"traceparent": "00-not-a-trace"}, timeout=10)
        good = httpx.get(f"{app_url}/hello", headers={"traceparent": VALID}, timeout=10)
        assert bad.status_code == good.status_code == 200
        spans.wait("http.server", 2)
    assert rastir.flush(10)
    page = scrape(collector)
    assert page.value(EVENTS, service="edge", event="http.invalid_traceparent") == 1
    assert page.value(EVENTS, service="edge", event="http.hook_error") == 2  # both requests
    assert page.value(EVENTS, service="edge", event="http.invalid_tracestate") == 0
    # Only the edge service's events, and nothing for the test process's MCP counters.
    assert page.series(FAMILY) == {
        frozenset({("service", "edge"), ("event", "http.invalid_traceparent")}),
        frozenset({("service", "edge"), ("event", "http.hook_error")}),
    }
    # Reported once: another flush with nothing new leaves the counts as they were.
    rastir.flush(10)
    assert scrape(collector).value(EVENTS, service="edge", event="http.hook_error") == 2


def test_an_event_with_no_span_to_carry_it_goes_out_in_a_batch_of_its_own(
    collector: str,
) -> None:
    from rastir.middleware import stats

    rastir.configure(service="quiet", push_url=collector, flush_interval=60)
    stats.count_invalid_baggage()  # counted by the middleware, no span ended after it
    assert rastir.flush(10)
    page = scrape(collector)
    assert page.value(EVENTS, service="quiet", event="http.invalid_baggage") == 1
    assert page.value("rastir_collector_ingested_spans_total", service="quiet") == 0


@pytest.mark.anyio
async def test_a_refused_mcp_meta_is_counted_under_the_service(collector: str) -> None:
    rastir.configure(service="tools", push_url=collector, flush_interval=60)
    async with Client(build(Probe()), mode="legacy") as client:
        result = await client.call_tool(
            "add", {"a": 1, "b": 2}, meta=as_meta({"traceparent": "00-zz"})
        )
        ok = await client.call_tool(
            "add", {"a": 1, "b": 2}, meta=as_meta({"traceparent": VALID, "tracestate": "=bad="})
        )
    assert not result.is_error
    assert not ok.is_error
    assert rastir.flush(10)
    page = scrape(collector)
    assert page.value(EVENTS, service="tools", event="mcp.invalid_traceparent") == 1
    assert page.value(EVENTS, service="tools", event="mcp.invalid_tracestate") == 1
    assert page.value(EVENTS, service="tools", event="http.invalid_traceparent") == 0


# -- the wire field at the collector -----------------------------------------------------------


def _body(events: dict[str, Any], service: str = "svc", n: int = 1) -> bytes:
    return encode({**batch([span() for _ in range(n)], service), "sdk_events": events})


@pytest.mark.anyio
async def test_unknown_names_fold_into_one_value_and_the_fold_is_counted(
    run_collector: RunCollector,
) -> None:
    async with run_collector() as c:
        names = {f"future.event_{i}": 1 for i in range(40)}
        r = await c.post_as_a_sender(_body({**names, "http.invalid_baggage": 3}))
        assert r.status_code == 202, r.text
        page = await c.scrape()
    assert page.value(EVENTS, service="svc", event="http.invalid_baggage") == 3
    assert page.value(EVENTS, service="svc", event=OTHER) == 40
    assert {dict(s)["event"] for s in page.series(FAMILY)} == {"http.invalid_baggage", OTHER}
    assert page.value(OVERFLOW, metric="rastir_collector_client_events", label="event") == 40


@pytest.mark.anyio
async def test_service_labels_of_events_are_bounded_by_the_cardinality_guard(
    run_collector: RunCollector,
) -> None:
    async with run_collector(max_label_values=3) as c:
        for i in range(6):
            r = await c.post_as_a_sender(_body({"http.hook_error": 1}, service=f"svc{i}"))
            assert r.status_code == 202, r.text
        page = await c.scrape()
    services = {dict(s)["service"] for s in page.series(FAMILY)}
    assert services == {"svc0", "svc1", "svc2", OTHER}
    assert page.total(EVENTS, event="http.hook_error") == 6  # folded, never lost


@pytest.mark.parametrize(
    ("events", "where"),
    [
        ({"http.hook_error": -1}, "$.sdk_events"),
        ({"http.hook_error": INT64_MAX + 1}, "$.sdk_events"),
        ({"x" * 65: 1}, "$.sdk_events"),
        ({f"e{i}": 1 for i in range(65)}, "$.sdk_events"),
        ({"http.hook_error": "1"}, "$.sdk_events"),
    ],
    ids=["negative", "beyond-int64", "long-name", "too-many", "not-an-int"],
)
@pytest.mark.anyio
async def test_out_of_bounds_events_are_refused_with_their_path_and_count_nothing(
    run_collector: RunCollector, events: dict[str, Any], where: str
) -> None:
    async with run_collector() as c:
        r = await c.post(_body(events))
        page = await c.scrape()
    assert r.status_code == 400
    assert where in r.json()["message"]
    assert FAMILY not in page.families or not page.series(FAMILY)
    assert page.value("rastir_collector_ingested_spans_total", service="svc") == 0


@pytest.mark.anyio
async def test_a_refused_batch_counts_its_events_only_when_it_is_sent_again_and_taken(
    run_collector: RunCollector,
) -> None:
    async with run_collector(max_spans_per_batch=1) as c:
        two = _body({"mcp.invalid_baggage": 2}, n=2)
        assert (await c.post(two)).status_code == 413
        assert (await c.post_as_a_sender(_body({"mcp.invalid_baggage": 2}))).status_code == 202
        page = await c.scrape()
    assert page.value(EVENTS, service="svc", event="mcp.invalid_baggage") == 2


# -- compatibility both ways -------------------------------------------------------------------


def _wire_span() -> WireSpan:
    return msgspec.convert(span(kind="custom"), WireSpan)


class OldWireBatch(msgspec.Struct, omit_defaults=True):
    """``WireBatch`` as collectors before ``sdk_events`` decode it."""

    spans: list[WireSpan]
    resource: dict[str, str | int | float | bool] = {}
    dropped: int = 0
    version: int = WIRE_VERSION


def test_a_collector_that_predates_the_field_reads_a_new_batch() -> None:
    new = msgspec.json.encode(
        WireBatch([_wire_span()], {"service.name": "svc"}, 4, sdk_events={"http.hook_error": 2})
    )
    assert b'"sdk_events":{"http.hook_error":2}' in new
    old = msgspec.json.Decoder(OldWireBatch).decode(new)
    assert old.dropped == 4
    assert len(old.spans) == 1
    assert old.version == WIRE_VERSION


@pytest.mark.anyio
async def test_this_collector_reads_a_batch_from_a_sender_that_predates_the_field(
    run_collector: RunCollector,
) -> None:
    body = msgspec.json.encode(OldWireBatch([_wire_span()], {"service.name": "old"}, 2))
    assert b"sdk_events" not in body
    async with run_collector() as c:
        r = await c.post_as_a_sender(body)
        page = await c.scrape()
    assert r.status_code == 202, r.text
    assert page.value("rastir_collector_client_dropped_spans_total", service="old") == 2
    assert page.value("rastir_collector_ingested_spans_total", service="old") == 1
    assert FAMILY not in page.families or not page.series(FAMILY)


def test_the_published_schema_describes_the_field_and_its_bounds() -> None:
    field = json_schema()["$defs"]["WireBatch"]["properties"]["sdk_events"]
    assert field["maxProperties"] == 64
    assert field["propertyNames"] == {"maxLength": 64}
    assert field["additionalProperties"]["minimum"] == 0
    assert "sdk_events" not in json_schema()["$defs"]["WireBatch"].get("required", [])
    # Every name the SDK sends is one the collector labels as itself.
    assert len(set(SDK_EVENTS)) == len(SDK_EVENTS) == 7
    assert all(n.startswith(("http.", "mcp.")) for n in SDK_EVENTS)
