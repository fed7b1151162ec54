"""A mixed trace: an OTel-instrumented service calls a rastir service; one tree comes out."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.middleware.asgi import RastirMiddleware
from tests.collector.conftest import RunCollector
from tests.collector.server import serving_async

pytestmark = pytest.mark.anyio


@rastir.agent(agent_name="answerer")
async def answer(question: str) -> str:
    return question.upper()


async def answer_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"answer": await answer(request.query_params.get("q", ""))})


def call_from_otel_service(collector_url: str, rastir_url: str) -> tuple[str, str]:
    """Service A, instrumented with the OTel SDK only: one client span around the call."""
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-frontend"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces", timeout=10))
    )
    tracer = provider.get_tracer("frontend")
    try:
        with tracer.start_as_current_span(
            "GET",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "GET", "url.full": f"{rastir_url}/answer"},
        ) as span:
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers, context=trace.set_span_in_context(span))
            r = httpx.get(f"{rastir_url}/answer", params={"q": "hi"}, headers=headers, timeout=10)
            span.set_attribute("http.response.status_code", r.status_code)
            assert r.json() == {"answer": "HI"}
            ctx = span.get_span_context()
    finally:
        provider.shutdown()  # the SimpleSpanProcessor has exported on end
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(tree["spans"])
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node["children"])
    return out


async def test_an_otel_service_calling_a_rastir_service_makes_one_tree(
    run_collector: RunCollector,
) -> None:
    app = RastirMiddleware(Starlette(routes=[Route("/answer", answer_endpoint)]))
    async with run_collector() as c, serving_async(app) as rastir_url:
        rastir.configure(
            service="rastir-backend", push_url=c.url, otel_bridge=False, flush_interval=0.05
        )
        tid, client_sid = await anyio.to_thread.run_sync(call_from_otel_service, c.url, rastir_url)
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)

        r = await c.client.get(f"/v1/traces/{tid}")
        assert r.status_code == 200, r.text
        tree = r.json()
        # One root, the OTel client span; no orphans.
        [root] = tree["spans"]
        assert (root["span_id"], root["kind"], root["service"]) == (
            client_sid,
            "http.client",
            "otel-frontend",
        )
        [server] = root["children"]
        assert (server["kind"], server["service"]) == ("http.server", "rastir-backend")
        [agent] = server["children"]
        assert (agent["kind"], agent["name"], agent["service"]) == (
            "agent",
            "answerer",
            "rastir-backend",
        )
        assert len(nodes(tree)) == 3
        assert all(not n["orphan"] for n in nodes(tree))
