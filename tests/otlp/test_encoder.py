"""The OTLP encoders: what opentelemetry-proto reads back equals what went in."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import msgspec
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

import rastir
from rastir._wire import ERROR_CATEGORIES, WireError, WireEvent, WireLink, WireSpan
from rastir.collector.otlp.receive import decode_json, decode_protobuf
from rastir.export.otlp import (
    OTEL_KIND,
    RENAMED,
    encode_batch_otlp,
    encode_request,
    encode_request_json,
    otel_view,
)
from rastir.middleware.asgi import RastirMiddleware
from rastir.middleware.httpx import instrument_httpx
from rastir.testing import capture_spans

KINDS = sorted(OTEL_KIND)
INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
SCALARS = st.one_of(
    st.text(max_size=20),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
# Free keys, plus the semconv keys the mapping reads, never the names it owns or renames.
KEYS = st.one_of(
    st.text(min_size=1, max_size=16).filter(
        lambda k: not k.startswith("rastir.") and k not in RENAMED
    ),
    st.sampled_from(
        [
            "gen_ai.operation.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.agent.name",
            "gen_ai.tool.name",
            "gen_ai.prompt.name",
            "mcp.method.name",
            "mcp.resource.uri",
            "http.request.method",
            "http.route",
            "error.type",
        ]
    ),
)
ATTRS = st.dictionaries(KEYS, VALUES, max_size=6)
TRACE_IDS = st.integers(min_value=1, max_value=(1 << 128) - 1).map(lambda n: f"{n:032x}")
SPAN_IDS = st.integers(min_value=1, max_value=(1 << 64) - 1).map(lambda n: f"{n:016x}")
# The wire's own bound (UnixNano: int64), which a receiver also enforces.
TIMES = st.integers(min_value=0, max_value=(1 << 63) - 1)


@st.composite
def wire_spans(draw: st.DrawFn) -> WireSpan:
    start = draw(TIMES)
    end = draw(st.integers(min_value=start, max_value=(1 << 63) - 1))
    status = draw(st.sampled_from(["ok", "error", "cancelled"]))
    error = None
    if status == "error":
        error = WireError(
            type=draw(st.sampled_from(ERROR_CATEGORIES)),
            exception_type=draw(st.text(max_size=12) | st.sampled_from(["500", "404"])),
            message=draw(st.text(max_size=30)),
        )
    return WireSpan(
        trace_id=draw(TRACE_IDS),
        span_id=draw(SPAN_IDS),
        parent_span_id=draw(st.none() | SPAN_IDS),
        name=draw(st.text(max_size=20)),
        sampled=draw(st.booleans()),
        kind=draw(st.sampled_from(KINDS)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        status=status,  # type: ignore[arg-type]
        error=error,
        attributes=draw(ATTRS),
        events=draw(
            st.lists(
                st.builds(
                    WireEvent,
                    name=st.text(max_size=12).filter(lambda n: n != "exception"),
                    time_unix_nano=TIMES,
                    attributes=ATTRS,
                ),
                max_size=3,
            )
        ),
        links=draw(
            st.lists(
                st.builds(WireLink, trace_id=TRACE_IDS, span_id=SPAN_IDS, attributes=ATTRS),
                max_size=2,
            )
        ),
    )


RESOURCES = st.dictionaries(st.text(min_size=1, max_size=12), SCALARS, max_size=4)
BATCHES = st.lists(st.tuples(RESOURCES, st.lists(wire_spans(), max_size=5)), min_size=1, max_size=3)


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    assert which is not None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which)


def _kvs(kvs: Any) -> dict[str, Any]:
    out = {kv.key: _value(kv.value) for kv in kvs}
    assert len(out) == len(kvs), "a key was written twice"
    return out


def _plain(value: Any) -> Any:
    """Python's view of a wire value: tuples as lists, ints beyond int64 as text."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value) is int and not -(1 << 63) <= value < (1 << 63):
        return str(value)
    return value


def _expected(span: WireSpan) -> dict[str, Any]:
    """The OTLP span the mapping promises, in plain Python terms."""
    name, kind, attrs, extra, code, message, exception = otel_view(span)
    events = [(e.name, e.time_unix_nano, _plain(dict(e.attributes))) for e in span.events]
    if exception is not None:
        exc_type, exc_message, at = exception
        ev: dict[str, Any] = {}
        if exc_type:
            ev["exception.type"] = exc_type
        if exc_message:
            ev["exception.message"] = exc_message
        events.append(("exception", at, ev))
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or "",
        "name": name,
        "kind": kind,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": _plain({**attrs, **dict(extra)}),
        "events": events,
        "links": [(ln.trace_id, ln.span_id, _plain(dict(ln.attributes))) for ln in span.links],
        "status": (code, message),
        "flags": 1 if span.sampled else 0,
    }


def _decoded(request: ExportTraceServiceRequest) -> list[tuple[dict[str, Any], list[Any]]]:
    out = []
    for rs in request.resource_spans:
        assert len(rs.scope_spans) == 1
        scope = rs.scope_spans[0].scope
        assert (scope.name, scope.version) == ("rastir", rastir.__version__)
        spans = [
            {
                "trace_id": s.trace_id.hex(),
                "span_id": s.span_id.hex(),
                "parent_span_id": s.parent_span_id.hex(),
                "name": s.name,
                "kind": s.kind,
                "start": s.start_time_unix_nano,
                "end": s.end_time_unix_nano,
                "attributes": _kvs(s.attributes),
                "events": [(e.name, e.time_unix_nano, _kvs(e.attributes)) for e in s.events],
                "links": [
                    (ln.trace_id.hex(), ln.span_id.hex(), _kvs(ln.attributes)) for ln in s.links
                ],
                "status": (s.status.code, s.status.message),
                "flags": s.flags,
            }
            for s in rs.scope_spans[0].spans
        ]
        out.append((_kvs(rs.resource.attributes), spans))
    return out


def _round_trip_view(span: WireSpan) -> WireSpan:
    """What a receiver rebuilds: the span, plus the operation its kind implies."""
    _, _, _, extra, *_ = otel_view(span)
    implied = dict(extra).get("gen_ai.operation.name")
    a = _plain(dict(span.attributes))
    if implied is not None:
        a["gen_ai.operation.name"] = implied
    # An "exception type" of digits is an HTTP status, not an exception: no exception
    # event carries it, so the receiver does not get it back.
    error = span.error
    if error is not None and error.exception_type.isdigit():
        error = msgspec.structs.replace(error, exception_type="")
    # Received spans count as sampled: SDKs export only those, and a 0 in the optional
    # flags field means "unknown" from older senders.
    return msgspec.structs.replace(
        span,
        error=error,
        sampled=True,
        attributes=a,
        events=[msgspec.structs.replace(e, attributes=_plain(e.attributes)) for e in span.events],
        links=[msgspec.structs.replace(ln, attributes=_plain(ln.attributes)) for ln in span.links],
    )


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_opentelemetry_proto_decodes_what_we_encode(batches: list[Any]) -> None:
    body = encode_request(batches)
    request = ExportTraceServiceRequest.FromString(body)
    decoded = _decoded(request)
    assert len(decoded) == len(batches)
    for (resource, spans), (got_resource, got_spans) in zip(batches, decoded, strict=True):
        assert got_resource == _plain(resource)
        assert got_spans == [_expected(s) for s in spans]


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_our_json_is_the_same_request_as_our_protobuf(batches: list[Any]) -> None:
    # OTLP/JSON is the proto3 JSON mapping except for hex ids (OTLP spec): with the ids
    # turned back into base64, protobuf's own JSON parser must read the same message.
    doc = msgspec.json.decode(encode_request_json(batches))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
                for ln in s.get("links", []):
                    for key in ("traceId", "spanId"):
                        ln[key] = base64.b64encode(bytes.fromhex(ln[key])).decode()
    parsed = json_format.ParseDict(doc, ExportTraceServiceRequest())
    assert _decoded(parsed) == _decoded(
        ExportTraceServiceRequest.FromString(encode_request(batches))
    )


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_a_rastir_receiver_rebuilds_the_spans_exactly(batches: list[Any]) -> None:
    for decode, encode in ((decode_protobuf, encode_request), (decode_json, encode_request_json)):
        decoded = decode(encode(batches))
        assert decoded.rejected == 0
        assert [(_plain(r), s) for r, s in decoded.groups] == [
            (_plain(r), [_round_trip_view(s) for s in spans]) for r, spans in batches
        ]


def test_names_and_kinds_follow_the_semantic_conventions() -> None:
    def one(kind: str, name: str = "fn", **attrs: Any) -> tuple[str, int]:
        span = WireSpan(
            trace_id="1" * 32,
            span_id="2" * 16,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=1,
            end_time_unix_nano=2,
            attributes={k.replace("__", "."): v for k, v in attrs.items()},
        )
        request = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
        s = request.resource_spans[0].scope_spans[0].spans[0]
        return s.name, s.kind

    internal, server, client = 1, 2, 3
    assert one("agent", "triage", gen_ai__agent__name="triage") == ("invoke_agent triage", internal)
    assert one("agent", "triage") == ("invoke_agent triage", internal)
    assert one("llm", "ask", gen_ai__request__model="gpt-4o") == ("chat gpt-4o", client)
    assert one("llm", gen_ai__operation__name="text_completion", gen_ai__response__model="m1") == (
        "text_completion m1",
        client,
    )
    assert one("llm") == ("chat", client)
    assert one("tool", "lookup", gen_ai__tool__name="search") == ("execute_tool search", internal)
    assert one("mcp.client", mcp__method__name="tools/call", gen_ai__tool__name="add") == (
        "tools/call add",
        client,
    )
    assert one("mcp.server", mcp__method__name="resources/read", mcp__resource__uri="x://a") == (
        "resources/read x://a",
        server,
    )
    assert one("mcp.client", mcp__method__name="tools/list") == ("tools/list", client)
    assert one("http.server", "GET", http__request__method="GET", http__route="/a/{id}") == (
        "GET /a/{id}",
        server,
    )
    assert one("http.client", "GET", http__request__method="GET") == ("GET", client)
    assert one("http.server", http__request__method="_OTHER") == ("HTTP", server)
    for kind in ("trace", "custom", "retrieval", "evaluation"):
        assert one(kind, "mine") == ("mine", internal)


def test_deprecated_names_are_written_under_their_replacements() -> None:
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="ask",
        kind="llm",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes={
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 10,
            "gen_ai.usage.completion_tokens": 3,
            "http.status_code": 200,
            "http.method": "POST",
            "http.request.method": "GET",  # both: the current name wins
        },
    )
    request = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    attrs = _kvs(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 10
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["http.response.status_code"] == 200
    assert attrs["http.request.method"] == "GET"
    assert not set(attrs) & set(RENAMED)


def test_a_failed_span_carries_status_error_type_and_an_exception_event() -> None:
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="ask",
        kind="llm",
        start_time_unix_nano=1,
        end_time_unix_nano=9,
        status="error",
        error=WireError(type="rate_limit", exception_type="openai.RateLimitError", message="429"),
    )
    s = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    otel = s.resource_spans[0].scope_spans[0].spans[0]
    assert (otel.status.code, otel.status.message) == (2, "429")
    assert _kvs(otel.attributes)["error.type"] == "rate_limit"
    [event] = otel.events
    assert (event.name, event.time_unix_nano) == ("exception", 9)
    assert _kvs(event.attributes) == {
        "exception.type": "openai.RateLimitError",
        "exception.message": "429",
    }


def _failed(exception_type: str | None, events: list[WireEvent] | None = None) -> Any:
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="GET",
        kind="http.client",
        start_time_unix_nano=1,
        end_time_unix_nano=9,
        status="error",
        error=WireError(
            type="provider_error",
            exception_type=exception_type,  # type: ignore[arg-type]
            message="HTTP 500",
        ),
        attributes={"http.request.method": "GET", "http.response.status_code": 500},
        events=events or [],
    )
    request = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    return request.resource_spans[0].scope_spans[0].spans[0]


@pytest.mark.parametrize("exception_type", [None, "", "500", "404"])
def test_an_error_status_without_a_raised_exception_gets_no_exception_event(
    exception_type: str | None,
) -> None:
    # The HTTP middleware records a 4xx/5xx answer as an error with the status code
    # (or nothing) as its "exception type": no exception was raised, so none is made up.
    otel = _failed(exception_type)
    assert (otel.status.code, otel.status.message) == (2, "HTTP 500")
    assert _kvs(otel.attributes)["error.type"] == "provider_error"
    assert list(otel.events) == []


def test_a_span_with_its_own_exception_event_gets_no_second_one() -> None:
    own = WireEvent(
        name="exception",
        time_unix_nano=5,
        attributes={"exception.type": "httpx.ConnectError", "exception.stacktrace": "..."},
    )
    otel = _failed("httpx.ConnectError", [own])
    assert [(e.name, e.time_unix_nano) for e in otel.events] == [("exception", 5)]


@pytest.mark.anyio
async def test_http_errors_from_the_middleware_are_exported_without_an_exception_event() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        down = httpx.MockTransport(lambda r: httpx.Response(404))
        async with instrument_httpx(httpx.AsyncClient(transport=down)) as client:
            await client.get("http://down/missing")
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    rastir.configure(service="s", push_url=None, otel_bridge=False)
    with capture_spans() as spans:
        transport = httpx.ASGITransport(app=RastirMiddleware(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/x")
    request = ExportTraceServiceRequest.FromString(
        encode_batch_otlp(list(spans), {"service.name": "s"})
    )
    exported = request.resource_spans[0].scope_spans[0].spans
    assert sorted(s.kind for s in exported) == [2, 3]  # the server span and the client span
    for s in exported:
        assert s.status.code == 2
        assert [e.name for e in s.events] == []


def test_a_cancelled_span_is_status_unset() -> None:
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="t",
        kind="tool",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        status="cancelled",
    )
    otel = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    s = otel.resource_spans[0].scope_spans[0].spans[0]
    assert s.status.code == 0
    assert _kvs(s.attributes)["rastir.status"] == "cancelled"
    assert decode_protobuf(otel.SerializeToString()).groups[0][1][0].status == "cancelled"


def test_values_beyond_int64_are_sent_as_text_not_wrapped() -> None:
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="t",
        kind="trace",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes={"big": 1 << 70, "low": -(1 << 63), "high": (1 << 63) - 1},
    )
    otel = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    attrs = _kvs(otel.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert attrs["big"] == str(1 << 70)
    assert (attrs["low"], attrs["high"]) == (-(1 << 63), (1 << 63) - 1)


def test_a_lone_surrogate_cannot_make_the_request_unreadable() -> None:
    # Python strings may hold them; UTF-8 cannot, and a protobuf parser refuses the
    # whole request over one invalid string.
    span = WireSpan(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="bad \ud800 name",
        kind="trace",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes={"text": "x\udfffy"},
    )
    otel = ExportTraceServiceRequest.FromString(encode_request([({}, [span])]))
    s = otel.resource_spans[0].scope_spans[0].spans[0]
    assert s.name == "bad ? name"
    assert _kvs(s.attributes)["text"] == "x?y"
