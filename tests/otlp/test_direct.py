"""Direct mode: ``configure(exporter="otlp")`` sends OTLP protobuf without a rastir collector."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import rastir
from rastir import _config
from tests.collector.conftest import RunCollector
from tests.collector.server import serving_async

pytestmark = pytest.mark.anyio


@dataclass
class OtelReceiver:
    """A stand-in for an OpenTelemetry collector: decodes with opentelemetry-proto."""

    url: str = ""
    status: int = 200
    requests: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = field(
        default_factory=list
    )

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        out: list[tuple[dict[str, Any], Any]] = []
        for _, _, request in self.requests:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, s) for s in ss.spans)
        return out


@asynccontextmanager
async def otel_receiver() -> AsyncIterator[OtelReceiver]:
    receiver = OtelReceiver()

    async def traces(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        receiver.requests.append(
            (
                request.url.path,
                dict(request.headers),
                ExportTraceServiceRequest.FromString(body),
            )
        )
        return Response(b"", status_code=receiver.status, media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    async with serving_async(app) as url:
        receiver.url = url
        yield receiver


@rastir.tool(tool_name="search")
def search(q: str) -> str:
    return q


@rastir.llm(model="gpt-4o", provider="openai")
def ask(q: str) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}


@rastir.agent(agent_name="triage")
def triage(q: str) -> str:
    ask(q)
    return search(q)


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


async def test_configured_for_otlp_the_app_sends_protobuf_to_an_otel_collector() -> None:
    async with otel_receiver() as receiver:
        rastir.configure(
            service="direct-svc",
            exporter="otlp",
            otlp_endpoint=f"{receiver.url}/v1/traces",
            headers={"x-api-key": "k1"},
            otel_bridge=False,
        )
        triage("where is my order")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)

        path, headers, _ = receiver.requests[0]
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-api-key"] == "k1"
        spans = receiver.spans()
        assert {r["service.name"] for r, _ in spans} == {"direct-svc"}
        named = {s.name: s for _, s in spans}
        assert set(named) == {"invoke_agent triage", "chat gpt-4o", "execute_tool search"}
        agent, llm, tool = (
            named["invoke_agent triage"],
            named["chat gpt-4o"],
            named["execute_tool search"],
        )
        assert (agent.kind, llm.kind, tool.kind) == (1, 3, 1)  # INTERNAL, CLIENT, INTERNAL
        assert llm.parent_span_id == tool.parent_span_id == agent.span_id
        assert llm.trace_id == agent.trace_id
        a = attrs(llm)
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.agent.name"] == "triage"
        assert llm.end_time_unix_nano >= llm.start_time_unix_nano > 0


async def test_the_environment_selects_direct_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    async with otel_receiver() as receiver:
        monkeypatch.setenv("RASTIR_EXPORTER", "otlp")
        monkeypatch.setenv("RASTIR_OTLP_ENDPOINT", receiver.url)  # no path: /v1/traces
        monkeypatch.setenv("RASTIR_SERVICE", "env-svc")
        settings = rastir.configure(otel_bridge=False)
        assert (settings.exporter, settings.otlp_endpoint) == ("otlp", f"{receiver.url}/v1/traces")
        search("x")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        [(resource, span)] = receiver.spans()
        assert (resource["service.name"], span.name) == ("env-svc", "execute_tool search")


def test_the_otel_sdk_endpoint_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")
    s = rastir.configure(exporter="otlp")
    assert s.otlp_endpoint == "http://otel:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://otel:4318/custom/traces")
    s = rastir.configure(exporter="otlp")
    assert s.otlp_endpoint == "http://otel:4318/custom/traces"
    rastir.shutdown()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exporter": "otlp"}, "needs otlp_endpoint"),
        ({"exporter": "otlp", "otlp_endpoint": "otel:4318"}, "http:// or https://"),
        ({"exporter": "zipkin"}, "exporter must be 'rastir' or 'otlp'"),
    ],
)
def test_bad_direct_mode_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rastir.configure(**options)


async def test_direct_mode_into_our_own_collector_rebuilds_the_spans(
    run_collector: RunCollector,
) -> None:
    async with run_collector() as c:
        rastir.configure(
            service="direct-svc", exporter="otlp", otlp_endpoint=c.url, otel_bridge=False
        )
        triage("q")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        listing = (await c.client.get("/v1/traces")).json()["traces"]
        [summary] = listing
        tree = (await c.client.get(f"/v1/traces/{summary['trace_id']}")).json()
        [root] = tree["spans"]
        # The rastir names and kinds come back, not the OTel ones.
        assert (root["name"], root["kind"], root["service"]) == ("triage", "agent", "direct-svc")
        assert sorted((n["name"], n["kind"]) for n in root["children"]) == [
            ("ask", "llm"),
            ("search", "tool"),
        ]
        m = await c.scrape()
        assert m.total("rastir_llm_tokens_total", service="direct-svc", token_type="input") == 3


async def test_spans_the_otel_collector_refuses_are_counted_as_dropped() -> None:
    async with otel_receiver() as receiver:
        receiver.status = 400  # final: no retry
        rastir.configure(
            service="direct-svc",
            exporter="otlp",
            otlp_endpoint=f"{receiver.url}/v1/traces",
            otel_bridge=False,
        )
        for _ in range(5):
            search("x")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        receiver.status = 200
        search("y")  # the next round takes the count of the lost five
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        exporter = _config._exporter_or_none()
        assert exporter.stats.spans_dropped == 5
        assert exporter.stats.spans_sent == 1
        assert len(receiver.spans()) == 6  # five refused, then one accepted
