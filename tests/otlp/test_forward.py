"""Spans from OpenTelemetry SDKs, received and forwarded by the collector's OTLP export.

A collector between an OTel SDK and an OTLP backend must not change what the SDK
said: the span kind (PRODUCER, CONSUMER, a SERVER span that is neither HTTP nor MCP),
an explicit status OK, the span's own name, its exception events. rastir's own
additions (``rastir.*``, an ``error.type`` it derived) stay out of what it forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.requests import Request
from starlette.responses import Response

from rastir.collector.otlp.receive import decode_protobuf
from rastir.export.otlp import encode_request
from tests.otlp_export.receiver import Receiver, receiving
from tests.sampling.collector import running_collector, wait_for

pytestmark = pytest.mark.anyio


@dataclass
class RawReceiver(Receiver):
    """The export tests' receiver, also keeping every request as decoded protobuf."""

    raw: list[ExportTraceServiceRequest] = field(default_factory=list)

    async def traces(self, request: Request) -> Response:
        response = await super().traces(request)
        body = await request.body()  # cached by Starlette: the same bytes
        with self.lock:
            self.raw.append(ExportTraceServiceRequest.FromString(body))
        return response

    def by_name(self) -> dict[str, PbSpan]:
        with self.lock:
            return {
                s.name: s
                for r in self.raw
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            }


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


async def test_otel_sdk_spans_are_forwarded_with_their_kind_name_status_and_events(
    tmp_path: Path,
) -> None:
    receiver = RawReceiver()
    with receiving(receiver) as target:
        async with running_collector(tmp_path, otlp_endpoint=target, otlp_flush_interval=0.02) as c:

            def send() -> dict[str, Any]:
                exporter = OTLPSpanExporter(endpoint=f"{c.url}/v1/traces", timeout=10)
                provider = TracerProvider(resource=Resource.create({"service.name": "grpc-svc"}))
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                tracer = provider.get_tracer("test")
                sent: dict[str, Any] = {}
                with tracer.start_as_current_span(
                    "helloworld.Greeter/SayHello",
                    kind=SpanKind.SERVER,
                    attributes={"rpc.system": "grpc", "rpc.method": "SayHello"},
                ) as root:
                    with tracer.start_as_current_span(
                        "SELECT users", kind=SpanKind.CLIENT, attributes={"db.system.name": "pg"}
                    ):
                        pass
                    with tracer.start_as_current_span("orders publish", kind=SpanKind.PRODUCER):
                        pass
                    with tracer.start_as_current_span("orders process", kind=SpanKind.CONSUMER):
                        pass
                    # A third-party GenAI instrumentation's own name is kept, not rewritten.
                    with tracer.start_as_current_span(
                        "openai.chat",
                        kind=SpanKind.CLIENT,
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o",
                            "gen_ai.provider.name": "openai",
                        },
                    ) as llm:
                        try:
                            raise ValueError("bad input")
                        except ValueError as e:
                            llm.record_exception(e)
                            llm.set_status(Status(StatusCode.ERROR, "bad input"))
                    root.set_status(Status(StatusCode.OK))
                    sent["trace_id"] = f"{root.get_span_context().trace_id:032x}"
                provider.shutdown()
                return sent

            sent = await anyio.to_thread.run_sync(send)
            await wait_for(lambda: len(receiver.by_name()) >= 5)
            stored = (await c.client.get(f"/v1/traces/{sent['trace_id']}")).json()
    got = receiver.by_name()
    assert sorted(got) == sorted(
        [
            "helloworld.Greeter/SayHello",
            "SELECT users",
            "orders publish",
            "orders process",
            "openai.chat",
        ]
    )
    kinds = {name: s.kind for name, s in got.items()}
    assert kinds == {
        "helloworld.Greeter/SayHello": PbSpan.SPAN_KIND_SERVER,
        "SELECT users": PbSpan.SPAN_KIND_CLIENT,
        "orders publish": PbSpan.SPAN_KIND_PRODUCER,
        "orders process": PbSpan.SPAN_KIND_CONSUMER,
        "openai.chat": PbSpan.SPAN_KIND_CLIENT,
    }
    assert got["helloworld.Greeter/SayHello"].status.code == PbStatus.STATUS_CODE_OK
    assert got["SELECT users"].status.code == PbStatus.STATUS_CODE_UNSET
    # Attributes as the SDK sent them: nothing of rastir's added.
    assert _attrs(got["helloworld.Greeter/SayHello"].attributes) == {
        "rpc.system": "grpc",
        "rpc.method": "SayHello",
    }
    failed = got["openai.chat"]
    assert _attrs(failed.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
    }
    assert (failed.status.code, failed.status.message) == (
        PbStatus.STATUS_CODE_ERROR,
        "bad input",
    )
    # The SDK's exception event, once, with its stack trace: no second one made up.
    (event,) = failed.events
    assert event.name == "exception"
    assert _attrs(event.attributes)["exception.type"] == "ValueError"
    assert "exception.stacktrace" in _attrs(event.attributes)
    # In rastir's own store the spans have rastir kinds, and keep the OTel kind.
    nodes: dict[str, Any] = {}
    stack = list(stored["spans"])
    while stack:
        node = stack.pop()
        nodes[node["name"]] = node
        stack.extend(node["children"])
    assert nodes["helloworld.Greeter/SayHello"]["kind"] == "trace"
    assert nodes["helloworld.Greeter/SayHello"]["attributes"]["rastir.otel.kind"] == "server"
    assert nodes["helloworld.Greeter/SayHello"]["attributes"]["rastir.otel.status"] == "ok"
    assert nodes["orders publish"]["attributes"]["rastir.otel.kind"] == "producer"
    assert nodes["openai.chat"]["kind"] == "llm"
    assert nodes["openai.chat"]["error"]["exception_type"] == "ValueError"


# -- forwarding changes nothing, for any span another SDK could send ------------------

_KEYS = st.sampled_from(
    [
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.tool.name",
        "mcp.method.name",
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "error.type",
        "rpc.system",
        "messaging.system",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["chat", "invoke_agent", "execute_tool", "tools/call", "GET", "timeout"]),
    st.text(max_size=8),
    st.integers(min_value=0, max_value=600),
)
_ATTRS = st.dictionaries(_KEYS, _VALUES, max_size=5)


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for k, v in attrs.items():
        kv = KeyValue(key=k)
        if isinstance(v, str):
            kv.value.string_value = v
        else:
            kv.value.int_value = v
        out.append(kv)
    return out


@st.composite
def _otel_spans(draw: st.DrawFn) -> PbSpan:
    start = draw(st.integers(min_value=1, max_value=1 << 62))
    end = start + draw(st.integers(min_value=0, max_value=10**10))
    code = draw(st.sampled_from([0, 1, 2]))
    span = PbSpan(
        trace_id=draw(st.binary(min_size=16, max_size=16).filter(any)),
        span_id=draw(st.binary(min_size=8, max_size=8).filter(any)),
        name=draw(st.text(max_size=12)),
        kind=draw(st.integers(min_value=0, max_value=5)),  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=_kvs(draw(_ATTRS)),
    )
    if code:
        span.status.code = code  # type: ignore[assignment]
        if code == 2:
            span.status.message = draw(st.text(max_size=10))
    for name in draw(st.lists(st.sampled_from(["exception", "retry"]), max_size=2)):
        ev = span.events.add(name=name, time_unix_nano=draw(st.integers(start, end)))
        if name == "exception":
            ev.attributes.extend(_kvs({"exception.type": "E", "exception.message": "m"}))
    return span


@settings(max_examples=200, deadline=None)
@given(st.lists(_otel_spans(), min_size=1, max_size=6))
def test_forwarding_another_sdks_spans_keeps_them_as_they_came(spans: list[PbSpan]) -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(_kvs({"service.name": "otel"}))
    rs.scope_spans.add().spans.extend(spans)
    first = decode_protobuf(request.SerializeToString())
    forwarded = ExportTraceServiceRequest.FromString(encode_request(first.groups))
    out = list(forwarded.resource_spans[0].scope_spans[0].spans)
    assert len(out) == len(spans)
    for sent, got in zip(spans, out, strict=True):
        assert got.name == sent.name
        assert got.kind == sent.kind
        assert _attrs(got.attributes) == _attrs(sent.attributes)
        assert [(e.name, _attrs(e.attributes)) for e in got.events] == [
            (e.name, _attrs(e.attributes)) for e in sent.events
        ]
        assert got.status.code == sent.status.code
        if sent.status.code == PbStatus.STATUS_CODE_ERROR and sent.status.message:
            assert got.status.message == sent.status.message
    # A second rastir collector on the way rebuilds the same spans.
    again = decode_protobuf(forwarded.SerializeToString())
    assert again.groups == first.groups
