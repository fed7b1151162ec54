"""OpenTelemetry, with the real SDK as the peer: interop over HTTP, and the bridge.

Interop needs no bridge: W3C headers carry the trace between an OTel-instrumented
process and a rastir one. The bridge joins the two *in one process*: OTel spans
started inside a rastir span are its children, and the other way round.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.export._pipeline import PIPELINE
from rastir.middleware import RastirMiddleware, instrument_httpx
from tests.middleware.servers import SpanWaiter, asgi_server


class OTel:
    """A private SDK tracer provider exporting to memory (never the global one)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def one(self, kind: SpanKind) -> ReadableSpan:
        found = [s for s in self.finished() if s.kind == kind]
        assert len(found) == 1, self.finished()
        return found[0]


@pytest.fixture
def otel() -> Iterator[OTel]:
    sdk = OTel()
    yield sdk
    sdk.provider.shutdown()


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"trace": rastir.current_trace_id()})


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None
    return int(span.parent.span_id)


# -- interop over HTTP -----------------------------------------------------------------
def test_an_otel_instrumented_httpx_caller_and_a_rastir_service_make_one_trace(
    otel: OTel, spans: SpanWaiter
) -> None:
    app = Starlette(routes=[Route("/", whoami)])
    app.add_middleware(RastirMiddleware)
    client = httpx.Client()
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=otel.provider)
    with asgi_server(app) as url, client:
        with otel.tracer.start_as_current_span("otel caller"):
            body = client.get(url).json()
        server = spans.one("http.server")
    otel_client = otel.one(SpanKind.CLIENT)
    caller = otel.one(SpanKind.INTERNAL)
    tid = caller.context.trace_id
    assert body == {"trace": f"{tid:032x}"}
    assert otel_client.context.trace_id == tid
    assert parent_of(otel_client) == caller.context.span_id
    assert (server.tid, server.psid) == (tid, otel_client.context.span_id)


def test_a_rastir_caller_and_an_otel_asgi_service_make_one_trace(
    otel: OTel, spans: SpanWaiter
) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        span = trace.get_current_span().get_span_context()
        return JSONResponse({"trace": f"{span.trace_id:032x}"})

    app = OpenTelemetryMiddleware(
        Starlette(routes=[Route("/", endpoint)]), tracer_provider=otel.provider
    )
    with asgi_server(app) as url, instrument_httpx(httpx.Client()) as client:
        with rastir.span("rastir caller"):
            body = client.get(url).json()
        outbound = spans.one("http.client")
    otel_server = otel.one(SpanKind.SERVER)
    assert body == {"trace": outbound.trace_id}
    assert otel_server.context.trace_id == outbound.tid
    assert parent_of(otel_server) == outbound.sid
    assert otel_server.parent is not None
    assert otel_server.parent.is_remote


# -- the bridge --------------------------------------------------------------------------
def test_otel_spans_inside_a_rastir_span_are_its_children(otel: OTel, spans: SpanWaiter) -> None:
    rastir.configure(otel_bridge=True)
    assert PIPELINE.bridge is not None
    with rastir.span("rastir outer") as outer:
        assert outer is not None
        with otel.tracer.start_as_current_span("otel inner"):
            pass
    inner = otel.one(SpanKind.INTERNAL)
    assert inner.context.trace_id == outer.tid
    assert parent_of(inner) == outer.sid
    # Once the rastir span ends, OTel's context is back to what it was.
    assert not trace.get_current_span().get_span_context().is_valid


def test_rastir_spans_inside_an_otel_span_are_its_children(otel: OTel, spans: SpanWaiter) -> None:
    rastir.configure(otel_bridge=True)
    with (
        otel.tracer.start_as_current_span("otel outer") as outer,
        rastir.span("rastir inner"),
        otel.tracer.start_as_current_span("otel innermost"),
    ):
        pass
    ctx = outer.get_span_context()
    inner = spans.one("custom")
    innermost = next(s for s in otel.finished() if s.name == "otel innermost")
    assert (inner.tid, inner.psid) == (ctx.trace_id, ctx.span_id)
    assert parent_of(innermost) == inner.sid
    assert innermost.context.trace_id == ctx.trace_id


def test_with_the_bridge_a_rastir_service_parents_otel_spans_and_follows_an_otel_server(
    otel: OTel, spans: SpanWaiter
) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        with otel.tracer.start_as_current_span("otel work in the handler"):
            pass
        return JSONResponse({})

    rastir.configure(otel_bridge=True)
    inner = Starlette(routes=[Route("/", endpoint)])
    inner.add_middleware(RastirMiddleware)
    # OTel's ASGI middleware outside ours, in the same process: our server span is a
    # child of its server span, and OTel work in the handler is a child of ours.
    app = OpenTelemetryMiddleware(inner, tracer_provider=otel.provider, exclude_spans=["send"])
    with asgi_server(app) as url:
        assert httpx.get(url).status_code == 200
        server = spans.one("http.server")
    otel_server = otel.one(SpanKind.SERVER)
    work = next(s for s in otel.finished() if s.name == "otel work in the handler")
    assert (server.tid, server.psid) == (otel_server.context.trace_id, otel_server.context.span_id)
    assert parent_of(work) == server.sid


def test_with_the_bridge_otel_spans_made_by_a_lazy_wsgi_body_are_children_of_its_span(
    otel: OTel, spans: SpanWaiter
) -> None:
    from rastir.middleware import RastirWSGIMiddleware
    from rastir.middleware.wsgi import Environ, StartResponse

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("content-type", "text/plain")])

        def body() -> Iterator[bytes]:
            try:
                for i in range(2):
                    with otel.tracer.start_as_current_span(f"chunk {i}"):
                        pass
                    yield b"x"
            finally:
                with otel.tracer.start_as_current_span("cleanup"):
                    pass

        return body()

    rastir.configure(otel_bridge=True)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "t", "SERVER_PORT": "80"}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        return None

    body = RastirWSGIMiddleware(app)(environ, start_response)
    assert list(body) == [b"x", b"x"]
    body.close()  # type: ignore[attr-defined]
    server = spans.one("http.server")
    made = {s.name: s for s in otel.finished()}
    assert set(made) == {"chunk 0", "chunk 1", "cleanup"}
    for span in made.values():
        assert span.context.trace_id == server.tid
        assert parent_of(span) == server.sid
    # Between chunks and afterwards, OTel's context is the caller's again.
    assert not trace.get_current_span().get_span_context().is_valid


def bridged() -> bool:
    return PIPELINE.bridge is not None


def test_the_bridge_turns_on_by_itself_only_when_an_sdk_provider_is_set_first(
    otel_globals: None,
) -> None:
    rastir.configure()
    assert not bridged()  # OTel imported, but no SDK provider: off
    trace.set_tracer_provider(TracerProvider())
    assert not bridged()  # decided at configure(), not later
    rastir.configure()
    assert bridged()
    rastir.configure(otel_bridge=False)
    assert not bridged()


def test_without_opentelemetry_imported_the_bridge_stays_off_and_otel_is_never_imported() -> None:
    code = (
        "import sys, rastir, rastir.middleware\n"
        "from rastir.export._pipeline import PIPELINE\n"
        "rastir.configure(service='x')\n"
        "print(PIPELINE.bridge, any(m.startswith('opentelemetry') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["None", "False"]
