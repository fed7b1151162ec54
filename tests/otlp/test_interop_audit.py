"""OTLP interop audit: what real OpenTelemetry senders send, and what rastir makes of it.

Every test runs a real collector on uvicorn (127.0.0.1) and sends what the real
OpenTelemetry SDK (1.45) or a hand-written OTLP/JSON request per the spec sends.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import rastir
from rastir import _config
from rastir._wire import WireSpan
from rastir.export.otlp import encode_request
from tests._python import run_python
from tests.collector.conftest import Collector, RunCollector
from tests.collector.server import serving_async

pytestmark = pytest.mark.anyio

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
TID = "4bf92f3577b34da6a3ce929d0e0e4736"


def record(build: Any, services: tuple[str, ...] = ("otel-svc",)) -> list[ReadableSpan]:
    """Spans as the real SDK records them: ``build(tracer)`` once per service."""
    spans: list[ReadableSpan] = []
    for service in services:
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        build(provider)
        spans.extend(memory.get_finished_spans())
        provider.shutdown()
    return spans


async def post(c: Collector, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await c.client.post("/v1/traces", content=body, headers=headers)


async def trace(c: Collector, tid: str) -> dict[str, dict[str, Any]]:
    """The trace's spans by name, from the query API, once the store has them."""
    with anyio.fail_after(20):
        while True:
            r = await c.client.get(f"/v1/traces/{tid}")
            if r.status_code == 200:
                break
            assert r.status_code == 404, r.text
            await anyio.sleep(0.02)
    out: dict[str, dict[str, Any]] = {}
    stack = list(r.json()["spans"])
    while stack:
        node = stack.pop()
        stack.extend(node["children"])
        out[node["name"]] = node
    return out


def attr(key: str, value: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": key, "value": value}


def jspan(span_id: str, **fields: Any) -> dict[str, Any]:
    out = {
        "traceId": TID,
        "spanId": span_id,
        "name": span_id,
        "kind": 1,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000500000000",
    }
    out.update(fields)
    return out


def jrequest(*spans: dict[str, Any], service: str = "json-svc") -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [attr("service.name", {"stringValue": service})]},
                    "scopeSpans": [{"scope": {"name": "hand"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


# -- receive -------------------------------------------------------------------------------


async def test_several_resources_and_scopes_every_kind_status_link_in_one_request(
    run_collector: RunCollector,
) -> None:
    def build(provider: TracerProvider) -> None:
        for scope in ("scope.one", "scope.two"):
            tracer = provider.get_tracer(scope, "1.0")
            service = str(provider.resource.attributes["service.name"])
            with tracer.start_as_current_span(f"{service} {scope}", kind=SpanKind.SERVER) as root:
                for kind in SpanKind:
                    status = {
                        SpanKind.PRODUCER: Status(StatusCode.OK),
                        SpanKind.CONSUMER: Status(StatusCode.ERROR, "queue gone"),
                    }.get(kind, Status(StatusCode.UNSET))
                    with tracer.start_as_current_span(
                        f"{service} {scope} {kind.name}",
                        kind=kind,
                        links=[Link(root.get_span_context(), {"link.n": 1})],
                    ) as s:
                        s.add_event("tick", {"values": [1, 2, 3]})
                        s.set_status(status)

    spans = record(build, ("svc-a", "svc-b"))
    request = encode_spans(spans)
    assert len(request.resource_spans) == 2
    assert all(len(rs.scope_spans) == 2 for rs in request.resource_spans)
    async with run_collector() as c:
        body = gzip.compress(request.SerializeToString())
        r = await post(c, body, {**PROTOBUF, "content-encoding": "gzip"})
        assert r.status_code == 200, r.text
        assert ExportTraceServiceResponse.FromString(r.content) == ExportTraceServiceResponse()
        for root in (s for s in spans if s.parent is None):
            service, scope = root.name.split()
            nodes = await trace(c, f"{root.context.trace_id:032x}")
            assert len(nodes) == 6
            assert {n["service"] for n in nodes.values()} == {service}
            for kind in SpanKind:
                node = nodes[f"{service} {scope} {kind.name}"]
                assert node["parent_span_id"] == f"{root.context.span_id:016x}"
                assert node["kind"] == "trace"
                assert node["attributes"]["rastir.otel.kind"] == kind.name.lower()
                assert node["links"] == [
                    {
                        "trace_id": f"{root.context.trace_id:032x}",
                        "span_id": f"{root.context.span_id:016x}",
                        "attributes": {"link.n": 1},
                    }
                ]
                assert [(e["name"], e["attributes"]) for e in node["events"]] == [
                    ("tick", {"values": [1, 2, 3]})
                ]
                if kind is SpanKind.PRODUCER:
                    assert node["status"] == "ok"
                    assert node["attributes"]["rastir.otel.status"] == "ok"
                elif kind is SpanKind.CONSUMER:
                    assert node["status"] == "error"
                    assert node["error"]["message"] == "queue gone"
                else:
                    assert node["status"] == "ok"
                    assert "rastir.otel.status" not in node["attributes"]
        m = await c.scrape()
        assert m.value("rastir_spans_total", service="svc-a", kind="trace", status="ok") == 10
        assert m.value("rastir_spans_total", service="svc-b", kind="trace", status="error") == 2


async def test_older_instrumentations_without_operation_name_feed_the_llm_metrics(
    run_collector: RunCollector,
) -> None:
    # OpenLLMetry (traceloop) spans: no gen_ai.operation.name, but llm.request.type,
    # and the deprecated gen_ai.system and prompt/completion token names.
    def build(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("opentelemetry.instrumentation.openai")
        with tracer.start_as_current_span("workflow"):
            with tracer.start_as_current_span(
                "openai.chat",
                kind=SpanKind.CLIENT,
                attributes={
                    "llm.request.type": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.usage.prompt_tokens": 11,
                    "gen_ai.usage.completion_tokens": 4,
                    "llm.usage.total_tokens": 15,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "openai.embeddings",
                kind=SpanKind.CLIENT,
                attributes={
                    "llm.request.type": "embedding",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "text-embedding-3-small",
                    "gen_ai.usage.prompt_tokens": 8,
                },
            ):
                pass
            # The current conventions, for comparison: chat gpt-4o, kind CLIENT.
            with tracer.start_as_current_span(
                "chat gpt-4o",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 5,
                    "gen_ai.usage.output_tokens": 2,
                },
            ):
                pass
            # Not an LLM call: an unknown request type stays a plain span.
            with tracer.start_as_current_span("rerank", attributes={"llm.request.type": "rerank"}):
                pass

    spans = record(build, ("openllmetry-svc",))
    async with run_collector() as c:
        r = await post(c, encode_spans(spans).SerializeToString(), PROTOBUF)
        assert r.status_code == 200, r.text
        nodes = await trace(c, f"{spans[0].context.trace_id:032x}")
        assert {name: n["kind"] for name, n in nodes.items()} == {
            "workflow": "trace",
            "openai.chat": "llm",
            "openai.embeddings": "llm",
            "chat gpt-4o": "llm",
            "rerank": "trace",
        }
        m = await c.scrape()
        svc = {"service": "openllmetry-svc", "provider": "openai", "agent": ""}
        model = "gpt-4o-mini-2024-07-18"
        assert m.value("rastir_llm_tokens_total", model=model, token_type="input", **svc) == 11
        assert m.value("rastir_llm_tokens_total", model=model, token_type="output", **svc) == 4
        embed = "text-embedding-3-small"
        assert m.value("rastir_llm_tokens_total", model=embed, token_type="input", **svc) == 8
        assert m.value("rastir_llm_tokens_total", model="gpt-4o", token_type="input", **svc) == 5
        assert m.total("rastir_llm_calls_total", service="openllmetry-svc") == 3


async def test_llm_spans_from_other_sdks_are_priced_like_rastirs_own(
    run_collector: RunCollector,
) -> None:
    """They carry tokens but no cost: the collector prices them with rastir.pricing, as
    the SDK prices its own calls; an unknown model is flagged, never priced at $0."""

    def build(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
        common = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}
        with tracer.start_as_current_span("agent run"):
            for name, model, extra in (
                ("chat gpt-4o", "gpt-4o", {"gen_ai.usage.cache_read.input_tokens": 600}),
                ("chat no-such-model", "no-such-model-9", {}),
            ):
                with tracer.start_as_current_span(
                    name,
                    kind=SpanKind.CLIENT,
                    attributes={
                        **common,
                        "gen_ai.request.model": model,
                        "gen_ai.usage.input_tokens": 1000,
                        "gen_ai.usage.output_tokens": 200,
                        **extra,
                    },
                ):
                    pass

    spans = record(build, ("otel-priced",))
    expected = rastir.get_pricing().price(
        "openai",
        "gpt-4o",
        rastir.TokenUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=600),
    )
    assert expected is not None
    assert expected > 0
    async with run_collector() as c:
        r = await post(c, encode_spans(spans).SerializeToString(), PROTOBUF)
        assert r.status_code == 200, r.text
        nodes = await trace(c, f"{spans[0].context.trace_id:032x}")
        priced = nodes["chat gpt-4o"]["attributes"]
        assert priced["rastir.cost.usd"] == pytest.approx(expected)
        unknown = nodes["chat no-such-model"]["attributes"]
        assert unknown["rastir.cost.unknown"] is True
        assert "rastir.cost.usd" not in unknown
        m = await c.scrape()
        cost = m.total("rastir_llm_cost_usd_total", service="otel-priced", model="gpt-4o")
        assert cost == pytest.approx(expected)


def test_without_price_data_received_llm_spans_are_unknown_never_free() -> None:
    """A collector installed without the pricing extra still looks received LLM spans
    up, in the overrides alone: the rest are flagged unknown, not left at $0."""
    code = """
        import sys
        sys.modules["genai_prices"] = None  # what import sees when it is not installed
        import rastir
        from rastir.collector.otlp import receive
        assert receive.enable_foreign_pricing()
        rastir.set_model_price("my-model", input=1.0, output=2.0)
        for model in ("gpt-4o", "my-model"):
            attrs = {"gen_ai.request.model": model, "gen_ai.provider.name": "openai",
                     "gen_ai.usage.input_tokens": 1_000_000,
                     "gen_ai.usage.output_tokens": 1_000_000}
            receive._price_foreign(attrs)
            print(model, attrs.get("rastir.cost.unknown"), attrs.get("rastir.cost.usd"))
    """
    out = run_python(code)
    assert out.stdout.split("\n")[:2] == ["gpt-4o True None", "my-model None 3.0"]
    assert "install rastir[pricing]" in out.stderr


async def test_a_string_that_is_not_utf8_does_not_cost_the_request(
    run_collector: RunCollector,
) -> None:
    # proto3 parsers refuse invalid UTF-8 in a string field; SDKs that do not check
    # (C++, Rust) send it, and an OpenTelemetry Collector takes it.
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bytes-svc"
    spans = rs.scope_spans.add().spans
    for i, name in enumerate(("@@@@@@@@", "good")):
        s = spans.add()
        s.trace_id = bytes.fromhex(TID)
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name = name
        s.start_time_unix_nano, s.end_time_unix_nano = (
            1_700_000_000_000_000_000,
            1_700_000_000_100_000_000,
        )
        a = s.attributes.add()
        a.key, a.value.string_value = "text", "%%%%"
        s.status.code = s.status.STATUS_CODE_ERROR
        s.status.message = "failed"
    body = request.SerializeToString()
    body = body.replace(b"@@@@@@@@", b"bad \xff\xfe !").replace(b"%%%%", b"\xc3(\xc3(")
    async with run_collector() as c:
        r = await post(c, body, PROTOBUF)
        assert r.status_code == 200, r.text
        nodes = await trace(c, TID)
        assert set(nodes) == {"bad \ufffd\ufffd !", "good"}
        assert nodes["good"]["attributes"]["text"] == "\ufffd(\ufffd("
        assert nodes["good"]["error"]["message"] == "failed"
        assert nodes["good"]["service"] == "bytes-svc"
        # A body that is not protobuf at all is still a 400.
        r = await post(c, b"\x0a\xff\xff\xff", PROTOBUF)
        assert r.status_code == 400


async def test_times_beyond_int64_are_refused_alone_and_the_trace_stays_readable(
    run_collector: RunCollector,
) -> None:
    # fixed64 reaches 2**64; rastir's times (and its stores) stop at int64. Such a span
    # was accepted and then made the whole trace unreadable from the SQLite store.
    beyond = str((1 << 63) + 5)
    body = jrequest(
        jspan("00000000000000a1", name="good"),
        jspan(
            "00000000000000a2", name="event-beyond", events=[{"name": "e", "timeUnixNano": beyond}]
        ),
        jspan("00000000000000a3", name="end-beyond", endTimeUnixNano=beyond),
    )
    request = ExportTraceServiceRequest()
    s = request.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = bytes.fromhex(TID), b"\x00" * 7 + b"\xa4", "pb-beyond"
    s.start_time_unix_nano = s.end_time_unix_nano = (1 << 64) - 1
    async with run_collector(store="sqlite") as c:
        r = await post(c, body, JSON)
        assert r.status_code == 200, r.text
        partial = r.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "2"
        assert "2262" in partial["errorMessage"]
        r = await post(c, request.SerializeToString(), PROTOBUF)
        answer = ExportTraceServiceResponse.FromString(r.content)
        assert answer.partial_success.rejected_spans == 1
        assert set(await trace(c, TID)) == {"good"}
        m = await c.scrape()
        assert m.value("rastir_collector_otlp_rejected_spans_total") == 3


async def test_otlp_json_by_hand_values_names_nulls_and_ids(run_collector: RunCollector) -> None:
    body = jrequest(
        jspan(
            "00000000000000B1",  # hex ids are case-insensitive
            name="values",
            kind="SPAN_KIND_CLIENT",
            startTimeUnixNano=1700000000000000000,  # a number as well as a string
            attributes=[
                attr("s", {"stringValue": "x" * 100}),
                attr("i", {"intValue": "-9223372036854775808"}),
                attr("f", {"doubleValue": 1}),
                attr("nan", {"doubleValue": "NaN"}),
                attr("inf", {"doubleValue": "-Infinity"}),
                attr("b", {"boolValue": False}),
                attr("mixed", {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}}),
                attr("nested", {"arrayValue": {"values": [{"arrayValue": {}}]}}),
                attr("map", {"kvlistValue": {"values": [attr("k", {"intValue": "2"})]}}),
                attr("bytes", {"bytesValue": "AAEC"}),
                attr("empty", {}),
                attr("null", None),
            ],
            status={"code": "STATUS_CODE_ERROR", "message": "upstream"},
        ),
        # proto3 JSON: null is the field's default, for every field.
        jspan(
            "00000000000000b2",
            name=None,
            parentSpanId=None,
            attributes=None,
            events=[{"name": None, "timeUnixNano": None, "attributes": None}],
            links=None,
            status=None,
            kind=None,
        ),
        # json_format's base64 ids: refused alone, with a reason that says why.
        jspan("AAAAAAAAALM=", name="base64"),
    )
    async with run_collector() as c:
        r = await post(c, gzip.compress(body), {**JSON, "content-encoding": "gzip"})
        assert r.status_code == 200, r.text
        partial = r.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert "hex" in partial["errorMessage"]
        assert "base64" in partial["errorMessage"]
        nodes = await trace(c, TID)
        assert set(nodes) == {"values", ""}
        values = nodes["values"]
        assert values["span_id"] == "00000000000000b1"
        a = values["attributes"]
        assert a["rastir.otel.kind"] == "client"
        assert (a["i"], a["f"], a["nan"], a["inf"], a["b"]) == (
            -(1 << 63),
            1.0,
            "nan",
            "-inf",
            False,
        )
        assert a["mixed"] == [1, "a"]
        assert json.loads(a["nested"]) == [[]]
        assert json.loads(a["map"]) == {"k": 2}
        assert a["bytes"] == "AAEC"
        assert "empty" not in a
        assert "null" not in a
        assert values["status"] == "error"
        assert values["error"]["message"] == "upstream"
        empty = nodes[""]
        assert empty["parent_span_id"] is None
        assert empty["attributes"] == {"rastir.otel.kind": "unspecified"}
        assert [e["name"] for e in empty["events"]] == [""]


async def test_an_old_http_server_span_feeds_the_http_metrics_split_as_the_conventions_say(
    run_collector: RunCollector,
) -> None:
    # Pre-1.20 HTTP names, as the OTel WSGI/ASGI instrumentations still write them by
    # default: http.target is the path *and* the query, split into url.path/url.query.
    def build(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("opentelemetry.instrumentation.wsgi")
        with tracer.start_as_current_span(
            "GET /items/{id}",
            kind=SpanKind.SERVER,
            attributes={
                "http.method": "GET",
                "http.target": "/items/7?expand=true",
                "http.route": "/items/{id}",
                "http.status_code": 404,
                "net.host.port": 8000,
            },
        ):
            pass

    spans = record(build, ("old-http",))
    async with run_collector() as c:
        r = await post(c, encode_spans(spans).SerializeToString(), PROTOBUF)
        assert r.status_code == 200, r.text
        [node] = (await trace(c, f"{spans[0].context.trace_id:032x}")).values()
        assert node["kind"] == "http.server"
        a = node["attributes"]
        assert (a["url.path"], a["url.query"]) == ("/items/7", "expand=true")
        assert (a["http.request.method"], a["http.response.status_code"]) == ("GET", 404)
        assert a["server.port"] == 8000
        assert not {"http.method", "http.target", "http.status_code"} & set(a)
        m = await c.scrape()
        assert (
            m.value(
                "rastir_http_server_requests_total",
                service="old-http",
                method="GET",
                route="/items/{id}",
                status_code="404",
            )
            == 1
        )


async def test_the_span_limit_applies_to_otlp_requests_too(run_collector: RunCollector) -> None:
    body = jrequest(*(jspan(f"{i + 1:016x}") for i in range(6)))
    async with run_collector(max_spans_per_batch=5) as c:
        r = await post(c, body, JSON)
        assert r.status_code == 413
        assert "limit is 5" in r.json()["message"]
        r = await post(c, jrequest(*(jspan(f"{i + 1:016x}") for i in range(5))), JSON)
        assert r.status_code == 200, r.text
        m = await c.scrape()
        assert m.value("rastir_collector_rejected_requests_total", reason="too_many_spans") == 1
        assert m.value("rastir_collector_ingested_spans_total", service="json-svc") == 5


def test_a_deprecated_http_target_is_exported_as_path_and_query() -> None:
    span = WireSpan(
        trace_id=TID,
        span_id="00000000000000c1",
        name="handler",
        kind="http.server",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes={"http.method": "POST", "http.target": "/pay?amount=3"},
    )
    request = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    [pb] = request.resource_spans[0].scope_spans[0].spans
    a = {kv.key: kv.value.string_value for kv in pb.attributes}
    assert (a["url.path"], a["url.query"], a["http.request.method"]) == ("/pay", "amount=3", "POST")
    assert "http.target" not in a
    assert pb.name == "POST"


# -- direct mode ---------------------------------------------------------------------------


@dataclass
class Backend:
    """An OTLP/HTTP backend that decodes with opentelemetry-proto and answers a script."""

    url: str = ""
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@asynccontextmanager
async def backend() -> AsyncIterator[Backend]:
    b = Backend()

    async def traces(request: Request) -> Response:
        b.seen.append((dict(request.headers), await request.body()))
        status, headers, body = b.answers.pop(0) if b.answers else (200, {}, b"")
        return Response(body, status, headers, media_type="application/x-protobuf")

    async with serving_async(
        Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    ) as url:
        b.url = url
        yield b


@rastir.tool(tool_name="lookup")
def lookup(q: str) -> str:
    return q


async def test_direct_mode_honours_retry_after_then_reads_the_partial_success() -> None:
    partial = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=1, error_message="too old")
    ).SerializeToString()
    async with backend() as b:
        b.answers = [(503, {"retry-after": "1"}, b""), (200, {}, partial)]
        rastir.configure(
            service="direct-svc",
            exporter="otlp",
            otlp_endpoint=f"{b.url}/v1/traces",
            headers={"x-tenant": "t1"},
            gzip=True,
            otel_bridge=False,
        )
        for i in range(20):  # over 1 KiB: smaller bodies are not worth compressing
            lookup(f"q{i}")
        assert await anyio.to_thread.run_sync(rastir.flush, 20.0)
        assert len(b.seen) == 2
        (h1, body1), (h2, body2) = b.seen
        assert body1 == body2  # the same batch, sent again after Retry-After
        for headers in (h1, h2):
            assert headers["content-encoding"] == "gzip"
            assert headers["content-type"] == "application/x-protobuf"
            assert headers["x-tenant"] == "t1"
        request = ExportTraceServiceRequest.FromString(gzip.decompress(body2))
        [rs] = request.resource_spans
        resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        assert resource["service.name"] == "direct-svc"
        assert resource["telemetry.sdk.name"] == "rastir"
        [ss] = rs.scope_spans
        assert ss.scope.name == "rastir"
        assert ss.scope.version == rastir.__version__
        assert [s.name for s in ss.spans] == ["execute_tool lookup"] * 20
        stats = _config._exporter_or_none().stats
        assert (stats.retries, stats.spans_sent, stats.spans_dropped) == (1, 19, 1)


# -- a mixed trace --------------------------------------------------------------------------


@rastir.agent(agent_name="backend-agent")
async def backend_agent(q: str) -> str:
    return q[::-1]


async def test_otel_asgi_and_httpx_instrumentations_and_rastir_make_one_trace(
    run_collector: RunCollector,
) -> None:
    # Service A: an OTel ASGI server whose handler calls service B with an
    # OTel-instrumented httpx client. Service B: rastir's middleware and an agent.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from starlette.responses import JSONResponse

    from rastir.middleware.asgi import RastirMiddleware

    async def reverse(request: Request) -> JSONResponse:
        return JSONResponse({"answer": await backend_agent(request.query_params["q"])})

    backend_app = RastirMiddleware(Starlette(routes=[Route("/reverse", reverse)]))
    async with run_collector() as c, serving_async(backend_app) as backend_url:
        provider = TracerProvider(resource=Resource.create({"service.name": "otel-api"}))
        provider.add_span_processor(
            # Batch: a synchronous export would block this loop, which serves the collector.
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{c.url}/v1/traces", timeout=10))
        )

        async def call(request: Request) -> JSONResponse:
            # A client per request: the server runs on a loop (and thread) of its own.
            async with httpx.AsyncClient(timeout=10) as client:
                HTTPXClientInstrumentor().instrument_client(client, tracer_provider=provider)
                q = request.query_params["q"]
                r = await client.get(f"{backend_url}/reverse", params={"q": q})
            return JSONResponse(r.json())

        front = OpenTelemetryMiddleware(
            Starlette(routes=[Route("/call", call)]), tracer_provider=provider
        )
        rastir.configure(service="rastir-backend", push_url=c.url, otel_bridge=False)
        try:
            async with serving_async(front) as front_url, httpx.AsyncClient() as plain:
                r = await plain.get(f"{front_url}/call", params={"q": "abc"}, timeout=10)
                assert r.json() == {"answer": "cba"}
        finally:
            assert await anyio.to_thread.run_sync(provider.force_flush, 10_000)
            await anyio.to_thread.run_sync(provider.shutdown)
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        with anyio.fail_after(20):
            while True:
                r = await c.client.get("/v1/traces", params={"service": "rastir-backend"})
                assert r.status_code == 200, r.text
                found = r.json()["traces"]
                if found:
                    break
                await anyio.sleep(0.02)
        tid = found[0]["trace_id"]
        with anyio.fail_after(20):
            while True:
                nodes = await trace(c, tid)
                if len({n["service"] for n in nodes.values()}) == 2 and "backend-agent" in {
                    n["attributes"].get("gen_ai.agent.name") for n in nodes.values()
                }:
                    break
                await anyio.sleep(0.02)
        r = await c.client.get(f"/v1/traces/{tid}")
        tree = r.json()
        assert len(tree["spans"]) == 1  # one root: the OTel ASGI server span
        root = tree["spans"][0]
        assert (root["service"], root["kind"]) == ("otel-api", "http.server")
        assert root["parent_span_id"] is None
        by_kind: dict[tuple[str, str], dict[str, Any]] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            stack.extend(node["children"])
            assert not node.get("orphan")
            by_kind.setdefault((node["service"], node["kind"]), node)
        client_span = by_kind["otel-api", "http.client"]
        server_span = by_kind["rastir-backend", "http.server"]
        agent_span = by_kind["rastir-backend", "agent"]
        assert client_span["attributes"]["http.request.method"] == "GET"
        assert server_span["parent_span_id"] == client_span["span_id"]
        assert agent_span["parent_span_id"] == server_span["span_id"]
        m = await c.scrape()
        assert m.total("rastir_http_server_requests_total", service="otel-api") == 1
        assert m.total("rastir_http_server_requests_total", service="rastir-backend") == 1
