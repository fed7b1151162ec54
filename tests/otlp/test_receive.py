"""``POST /v1/traces``: the real OpenTelemetry SDK sends to a real collector on uvicorn."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from rastir._wire import WireSpan
from rastir.collector.store.base import StoreStats
from rastir.collector.store.memory import MemoryStore
from rastir.export.otlp import encode_request
from tests.collector.conftest import Collector, RunCollector
from tests.collector.stores import FullOnceStore

pytestmark = pytest.mark.anyio

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def make_spans(service: str = "otel-shop") -> list[ReadableSpan]:
    """One request of an OTel-instrumented agent service, as the SDK records it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "POST /chat",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/chat",
            "url.path": "/chat",
            "http.response.status_code": 200,
        },
    ):
        with tracer.start_as_current_span(
            "invoke_agent triage",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage"},
        ):
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
                llm.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.agent.name": "triage",
                        "gen_ai.usage.input_tokens": 12,
                        "gen_ai.usage.output_tokens": 5,
                        "gen_ai.response.finish_reasons": ("stop",),
                    }
                )
                llm.add_event("gen_ai.first_token", {"index": 0})
            # An older instrumentation: deprecated names, and it failed.
            with tracer.start_as_current_span("chat claude", kind=SpanKind.CLIENT) as old:
                old.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.system": "anthropic",
                        "gen_ai.request.model": "claude-3",
                        "gen_ai.usage.prompt_tokens": 7,
                        "error.type": "rate_limit",
                    }
                )
                old.record_exception(RuntimeError("slow down"))
                old.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
            with tracer.start_as_current_span(
                "execute_tool search",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
            ):
                pass
            with tracer.start_as_current_span(
                "tools/call search",
                kind=SpanKind.CLIENT,
                attributes={
                    "mcp.method.name": "tools/call",
                    "gen_ai.tool.name": "search",
                    "gen_ai.operation.name": "execute_tool",
                },
            ):
                pass
        with tracer.start_as_current_span("render"):
            pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def sdk_export(url: str, spans: list[ReadableSpan], **options: Any) -> SpanExportResult:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=10, **options)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


def by_name(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack = list(tree["spans"])
    while stack:
        node = stack.pop()
        out[node["name"]] = node
        stack.extend(node["children"])
    return out


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    """OTLP/JSON of the SDK's own request: proto3 JSON with hex ids (OTLP spec)."""
    doc = json_format.MessageToDict(encode_spans(spans))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
    return msgspec.json.encode(doc)


async def check_shop(c: Collector, spans: list[ReadableSpan], service: str = "otel-shop") -> None:
    """The spans of :func:`make_spans` are in the store as rastir spans, and in the metrics."""
    tid = f"{spans[0].context.trace_id:032x}"
    r = await c.client.get(f"/v1/traces/{tid}")
    assert r.status_code == 200, r.text
    tree = r.json()
    assert [n["name"] for n in tree["spans"]] == ["POST /chat"]  # one root, no orphans
    nodes = by_name(tree)
    assert len(nodes) == len(spans) == 7
    kinds = {name: node["kind"] for name, node in nodes.items()}
    assert kinds == {
        "POST /chat": "http.server",
        "invoke_agent triage": "agent",
        "chat gpt-4o": "llm",
        "chat claude": "llm",
        "execute_tool search": "tool",
        "tools/call search": "mcp.client",
        "render": "trace",
    }
    root = nodes["POST /chat"]
    agent = nodes["invoke_agent triage"]
    assert agent["parent_span_id"] == root["span_id"]
    assert {child["name"] for child in agent["children"]} == {
        "chat gpt-4o",
        "chat claude",
        "execute_tool search",
        "tools/call search",
    }
    llm = nodes["chat gpt-4o"]
    otel_llm = next(s for s in spans if s.name == "chat gpt-4o")
    assert llm["start_time_unix_nano"] == otel_llm.start_time
    assert llm["end_time_unix_nano"] == otel_llm.end_time
    assert llm["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert [e["name"] for e in llm["events"]] == ["gen_ai.first_token"]
    old = nodes["chat claude"]
    assert old["status"] == "error"
    assert old["error"]["type"] == "rate_limit"
    assert old["error"]["exception_type"] == "RuntimeError"
    assert old["error"]["message"] == "429 Too Many Requests"
    # Deprecated names are read under the current ones...
    assert old["attributes"]["gen_ai.provider.name"] == "anthropic"
    assert "gen_ai.system" not in old["attributes"]
    # ...and the SDK's own exception event (with its stack trace) is kept.
    assert [e["name"] for e in old["events"]] == ["exception"]

    m = await c.scrape()
    llm_labels = {"service": service, "model": "gpt-4o", "provider": "openai", "agent": "triage"}
    assert m.value("rastir_llm_tokens_total", token_type="input", **llm_labels) == 12
    assert m.value("rastir_llm_tokens_total", token_type="output", **llm_labels) == 5
    assert m.total("rastir_llm_tokens_total", provider="anthropic", token_type="input") == 7
    assert m.total("rastir_llm_errors_total", model="claude-3", error_type="rate_limit") == 1
    assert m.total("rastir_agent_runs_total", service=service) == 1
    assert m.total("rastir_tool_calls_total", service=service, tool="search") == 1
    assert m.total("rastir_mcp_requests_total", service=service, side="client") == 1
    assert m.total("rastir_http_server_requests_total", service=service) == 1
    assert m.total("rastir_collector_ingested_spans_total", service=service) == 7


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
async def test_the_otel_sdk_exporter_sends_protobuf_that_lands_in_traces_and_metrics(
    run_collector: RunCollector, compression: Compression
) -> None:
    spans = make_spans()
    async with run_collector() as c:
        result = await anyio.to_thread.run_sync(
            lambda: sdk_export(c.url, spans, compression=compression)
        )
        assert result is SpanExportResult.SUCCESS
        await check_shop(c, spans)


@pytest.mark.parametrize("gzipped", [False, True])
async def test_otlp_json_lands_in_traces_and_metrics(
    run_collector: RunCollector, gzipped: bool
) -> None:
    # The Python SDK has no OTLP/JSON exporter: this is its request in OTLP/JSON.
    spans = make_spans()
    body = otlp_json(spans)
    headers = dict(JSON)
    if gzipped:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    async with run_collector() as c:
        r = await c.client.post("/v1/traces", content=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {}
        await check_shop(c, spans)


async def test_the_exporter_token_is_required_and_refusals_are_otlp_statuses(
    run_collector: RunCollector,
) -> None:
    spans = make_spans()
    body = encode_spans(spans).SerializeToString()
    async with run_collector(ingest_token="s3cret") as c:
        r = await c.client.post("/v1/traces", content=body, headers=PROTOBUF)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/x-protobuf"
        assert r.headers["www-authenticate"].startswith("Bearer")
        status = _status(r.content)
        assert status == (16, "missing bearer token")  # UNAUTHENTICATED

        r = await c.client.post(
            "/v1/traces", content=body, headers={**JSON, "authorization": "Bearer nope"}
        )
        assert r.status_code == 403
        assert r.json() == {"code": 7, "message": "wrong bearer token"}

        failed = await anyio.to_thread.run_sync(lambda: sdk_export(c.url, spans))
        assert failed is SpanExportResult.FAILURE
        ok = await anyio.to_thread.run_sync(
            lambda: sdk_export(c.url, spans, headers={"authorization": "Bearer s3cret"})
        )
        assert ok is SpanExportResult.SUCCESS
        m = await c.scrape()
        assert m.value("rastir_collector_rejected_requests_total", reason="unauthorized") >= 2
        assert m.total("rastir_collector_ingested_spans_total") == 7


def _status(body: bytes) -> tuple[int, str]:
    """google.rpc.Status: code = 1 (int32), message = 2 (string)."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
    )

    pool = descriptor_pool.DescriptorPool()
    fd = descriptor_pb2.FileDescriptorProto(name="status.proto", package="t", syntax="proto3")
    msg = fd.message_type.add(name="Status")
    msg.field.add(name="code", number=1, type=5, label=1)
    msg.field.add(name="message", number=2, type=9, label=1)
    pool.Add(fd)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Status"))
    status = cls.FromString(body)
    return status.code, status.message


class SaturatedStore(MemoryStore):
    """A memory store whose write queue reports itself full."""

    def stats(self) -> StoreStats:
        st = super().stats()
        st.queue_capacity = 1000
        st.queue_depth = 1000
        return st


async def test_a_saturated_collector_answers_429_with_retry_after_before_decoding(
    run_collector: RunCollector,
) -> None:
    async with run_collector(trace_store=SaturatedStore()) as c:
        # Not protobuf at all: a 429, not a 400, because the body is never decoded.
        r = await c.client.post("/v1/traces", content=b"\xff\xff garbage", headers=PROTOBUF)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert _status(r.content)[0] == 8  # RESOURCE_EXHAUSTED


async def test_the_sdk_retrying_after_a_full_store_is_counted_once_for_every_resource(
    run_collector: RunCollector,
) -> None:
    # Two resources in one request: a refusal must not count the first one's spans.
    spans = make_spans("otel-a") + make_spans("otel-b")
    store = FullOnceStore()
    async with run_collector(trace_store=store) as c:
        # The SDK gets 429 with Retry-After, waits and sends the request again.
        result = await anyio.to_thread.run_sync(lambda: sdk_export(c.url, spans))
        assert result is SpanExportResult.SUCCESS
        assert store.refused == 1
        for root in (spans[-1], spans[-8]):
            tree = (await c.client.get(f"/v1/traces/{root.context.trace_id:032x}")).json()
            assert tree["summary"]["span_count"] == 7
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="queue_full") == 1
    for service in ("otel-a", "otel-b"):
        assert m.value("rastir_collector_ingested_spans_total", service=service) == 7
        assert m.value("rastir_collector_ingested_batches_total", service=service) == 1
        assert m.total("rastir_llm_calls_total", service=service) == 2
        assert m.total("rastir_llm_tokens_total", service=service, token_type="input") == 19
        assert m.total("rastir_spans_total", service=service) == 7


async def test_a_request_larger_than_the_store_queue_fails_at_once_counted_nowhere_else(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    spans = make_spans() * 22  # 154 spans (ids repeat: they never reach the store)
    async with run_collector(store="sqlite", queue_capacity=100, data_dir=tmp_path / "db") as c:
        # A 413 is final for the SDK: no retry storm for a request that can never fit.
        result = await anyio.to_thread.run_sync(lambda: sdk_export(c.url, spans))
        assert result is SpanExportResult.FAILURE
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="too_large") == 1
    assert m.total("rastir_collector_rejected_requests_total") == 1
    assert m.total("rastir_collector_ingested_spans_total") == 0
    assert m.total("rastir_llm_calls_total") == 0
    assert m.total("rastir_llm_tokens_total") == 0


async def test_invalid_bodies_get_400_with_a_status_and_bad_media_types_415(
    run_collector: RunCollector,
) -> None:
    async with run_collector(max_body_bytes=4096) as c:
        r = await c.client.post("/v1/traces", content=b"\x0a\xff\xff\xff", headers=PROTOBUF)
        assert r.status_code == 400
        code, message = _status(r.content)
        assert code == 3
        assert "ExportTraceServiceRequest" in message
        r = await c.client.post("/v1/traces", content=b'{"resourceSpans": 3}', headers=JSON)
        assert r.status_code == 400
        assert r.json()["code"] == 3
        r = await c.client.post("/v1/traces", content=b"{}", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = await c.client.post("/v1/traces", content=b"\x00" * 5000, headers=PROTOBUF)
        assert r.status_code == 413
        assert _status(r.content)[0] == 8
        r = await c.client.post(
            "/v1/traces",
            content=gzip.compress(b"\x00" * 100_000),
            headers={**PROTOBUF, "content-encoding": "gzip"},
        )
        assert r.status_code == 413
        # An empty request is valid: nothing to accept.
        r = await c.client.post("/v1/traces", content=b"", headers=PROTOBUF)
        assert (r.status_code, r.content) == (200, b"")


def _span(trace_id: str, span_id: str, **changes: Any) -> WireSpan:
    s = WireSpan(
        trace_id=trace_id,
        span_id=span_id,
        name="work",
        kind="trace",
        start_time_unix_nano=10,
        end_time_unix_nano=20,
    )
    return msgspec.structs.replace(s, **changes) if changes else s


async def test_bad_spans_are_refused_alone_and_reported_as_partial_success(
    run_collector: RunCollector,
) -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    good = [_span(tid, "00f067aa0ba902b7"), _span(tid, "00f067aa0ba902b8")]
    request = ExportTraceServiceRequest.FromString(
        encode_request([({"service.name": "mixed"}, good)])
    )
    spans = request.resource_spans[0].scope_spans[0].spans
    zero = spans.add()
    zero.CopyFrom(spans[0])
    zero.trace_id = bytes(16)  # W3C: an all-zero trace id is invalid
    backwards = spans.add()
    backwards.CopyFrom(spans[1])
    backwards.span_id = bytes.fromhex("00f067aa0ba902b9")
    backwards.end_time_unix_nano = 1
    async with run_collector() as c:
        r = await c.client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 2
        assert "trace_id" in reply.partial_success.error_message
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
        assert sorted(n["span_id"] for n in tree["spans"]) == [s.span_id for s in good]
        m = await c.scrape()
        assert m.value("rastir_collector_otlp_rejected_spans_total") == 2

        doc = msgspec.json.decode(
            json_format.MessageToJson(request).encode()  # base64 ids: not OTLP/JSON
        )
        r = await c.client.post("/v1/traces", content=msgspec.json.encode(doc), headers=JSON)
        assert r.status_code == 200
        assert r.json()["partialSuccess"]["rejectedSpans"] == "4"
