"""The MCP interop matrix: its servers, clients and span records, in one module.

Imported by the tests, and run as a script for the parts that need a process of their
own (an OpenTelemetry SDK is process-global, and stdio servers are subprocesses)::

    python tests/mcp_bridge/matrix.py serve --transport stdio --server endpoint --spans F
    python tests/mcp_bridge/matrix.py serve --transport http --server plain --otel-sdk
    python tests/mcp_bridge/matrix.py call --client otel --transport legacy --server endpoint

Every process writes the spans it finishes, rastir's and the OTel SDK's, as JSON lines
("records") to a file or to stdout, so a test can rebuild the whole trace.

Servers: ``endpoint`` (tools under ``@mcp_endpoint``) or ``plain`` (a plain MCPServer,
with mcp's built-in OpenTelemetry middleware). Either way the tool ``echo`` calls a
rastir-traced helper, ``matrix.inner``: the tool's own inner span.

Clients: ``rastir`` (``rastir.wrap(Client(...))`` inside an ``@agent`` span), ``otel`` (a
plain client inside an OTel SDK span) and ``plain`` (a plain client, no span at all).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

import rastir
from rastir.context import current_baggage
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge import mcp_endpoint
from rastir.middleware import RastirMiddleware, instrument_httpx
from rastir.spans import Span

TOOL = "echo"
INNER = "matrix.inner"
AGENT = "matrix-agent"
CALLER = "matrix-caller"
TOKEN_ATTR = "matrix.token"
HERE = os.path.abspath(__file__)

Record = dict[str, Any]


# -- records --------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def rastir_record(span: Span) -> Record:
    return {
        "src": "rastir",
        "label": f"{span.kind}:{span.name}",
        "name": span.name,
        "kind": span.kind,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "status": span.status,
        "error": dict(span.error) if span.error else None,
        "attributes": {k: _plain(v) for k, v in span.attributes.items()},
        "links": [[link.context.trace_id, link.context.span_id] for link in span.links or ()],
    }


def otel_record(span: Any) -> Record:
    ctx = span.get_span_context()
    kind = span.kind.name.lower()
    return {
        "src": "otel",
        "label": f"otel.{kind}:{span.name}",
        "name": span.name,
        "kind": kind,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "status": span.status.status_code.name.lower(),
        "error": None,
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "links": [],
    }


class RecordWriter:
    """Writes each finished span as one JSON line, from any thread."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def write(self, record: Record) -> None:
        line = json.dumps(record)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def rastir_sink(self, span: Span) -> None:
        self.write(rastir_record(span))


def install_otel_sdk(on_end: Callable[[Record], None]) -> Any:
    """A real OTel SDK tracer provider, set globally, handing each span to ``on_end``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class _Exporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            for span in spans:
                on_end(otel_record(span))
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Exporter()))
    trace.set_tracer_provider(provider)
    return provider


def configure_rastir(service: str, bridge: str) -> None:
    rastir.configure(service=service, otel_bridge={"auto": None, "on": True, "off": False}[bridge])


# -- servers --------------------------------------------------------------------------
def build_server(kind: str) -> MCPServer:
    """``endpoint``: tools under ``@mcp_endpoint``; ``plain``: no rastir on the tools."""
    server = MCPServer("matrix")

    @rastir.trace(name=INNER)
    def inner(token: str) -> str:
        span = rastir.current_span()
        if span is not None:
            span.set_attribute(TOKEN_ATTR, token)
        return token

    if kind == "endpoint":

        @server.tool(name=TOOL)
        @mcp_endpoint
        async def echo_endpoint(token: str) -> str:
            return inner(token)

        @server.tool(name="baggage")
        @mcp_endpoint
        async def baggage() -> dict[str, str]:
            return current_baggage()

    elif kind == "plain":

        @server.tool(name=TOOL)
        async def echo_plain(token: str) -> str:
            return inner(token)

    else:
        raise ValueError(kind)
    return server


def _serve_http(server: MCPServer, out: IO[str]) -> None:
    import uvicorn

    app = RastirMiddleware(server.streamable_http_app())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    srv = uvicorn.Server(config)

    original_startup = srv.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets)
        out.write(f"PORT {port}\n")
        out.flush()

    srv.startup = startup  # type: ignore[method-assign]
    srv.run(sockets=[sock])


def serve(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["stdio", "http"], required=True)
    p.add_argument("--server", choices=["endpoint", "plain"], required=True)
    p.add_argument("--otel-sdk", action="store_true")
    p.add_argument("--bridge", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--spans", default="-", help="file for the records, or - for stdout")
    args = p.parse_args(argv)
    if args.transport == "stdio" and args.spans == "-":
        p.error("a stdio server needs --spans FILE: stdout is the MCP channel")
    out: IO[str] = sys.stdout if args.spans == "-" else open(args.spans, "a")  # noqa: SIM115
    writer = RecordWriter(out)
    if args.otel_sdk:
        install_otel_sdk(writer.write)
    configure_rastir("matrix-server", args.bridge)
    PIPELINE.add_sink(writer.rastir_sink)
    server = build_server(args.server)
    if args.transport == "stdio":
        anyio.run(server.run_stdio_async)
    else:
        _serve_http(server, out)


# -- clients --------------------------------------------------------------------------
def stdio_params(server: str, *, otel_sdk: bool, bridge: str, spans: str) -> StdioServerParameters:
    args = [HERE, "serve", "--transport", "stdio", "--server", server, "--bridge", bridge]
    if otel_sdk:
        args.append("--otel-sdk")
    args += ["--spans", spans]
    return StdioServerParameters(
        command=sys.executable, args=args, env={"PATH": os.environ.get("PATH", "")}
    )


async def call_tool(
    client: str,
    transport: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    server: MCPServer | None = None,
    stdio: StdioServerParameters | None = None,
    url: str | None = None,
    mode: str = "auto",
    list_first: bool = False,
) -> CallToolResult:
    """Call one tool once, as the given client over the given transport."""

    async def once(instrumented: bool) -> CallToolResult:
        async with httpx2.AsyncClient() as http:
            target: Any
            if transport == "direct":
                target = Client(server, mode="auto")  # type: ignore[arg-type]
            elif transport == "legacy":
                target = Client(server, mode="legacy")  # type: ignore[arg-type]
            elif transport == "stdio":
                target = Client(stdio, mode=mode)  # type: ignore[arg-type]
            elif transport == "http":
                assert url is not None
                if instrumented:
                    instrument_httpx(http)
                target = Client(streamable_http_client(url, http_client=http), mode=mode)
            else:
                raise ValueError(transport)
            if instrumented:
                target = rastir.wrap(target)
            async with target as c:
                if list_first:
                    await c.list_tools()
                result: CallToolResult = await c.call_tool(tool, arguments)
                return result

    if client == "rastir":

        @rastir.agent(AGENT)
        async def agent() -> CallToolResult:
            return await once(True)

        return await agent()
    if client == "otel":
        from opentelemetry import trace

        with trace.get_tracer("matrix").start_as_current_span(CALLER):
            return await once(False)
    if client == "plain":
        return await once(False)
    raise ValueError(client)


async def call_echo(client: str, transport: str, token: str, **kwargs: Any) -> str:
    """Call the echo tool once; returns its answer."""
    result = await call_tool(client, transport, TOOL, {"token": token}, **kwargs)
    assert not result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


def call(argv: Sequence[str]) -> None:
    """Run one client in this process and print every record it made, as JSON lines."""
    p = argparse.ArgumentParser()
    p.add_argument("--client", choices=["rastir", "otel", "plain"], required=True)
    p.add_argument("--transport", choices=["direct", "legacy", "stdio", "http"], required=True)
    p.add_argument("--server", choices=["endpoint", "plain"], default="endpoint")
    p.add_argument("--otel-sdk", action="store_true", help="an OTel SDK in this process")
    p.add_argument("--bridge", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--server-otel-sdk", action="store_true")
    p.add_argument("--server-bridge", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--server-spans", default=os.devnull)
    p.add_argument("--url")
    p.add_argument("--token", required=True)
    args = p.parse_args(argv)
    records: list[Record] = []
    lock = threading.Lock()

    def keep(record: Record) -> None:
        with lock:
            records.append(record)

    if args.otel_sdk:
        install_otel_sdk(keep)
    configure_rastir("matrix-client", args.bridge)
    PIPELINE.add_sink(lambda span: keep(rastir_record(span)))
    kwargs: dict[str, Any] = {}
    if args.transport in ("direct", "legacy"):
        kwargs["server"] = build_server(args.server)
    elif args.transport == "stdio":
        kwargs["stdio"] = stdio_params(
            args.server,
            otel_sdk=args.server_otel_sdk,
            bridge=args.server_bridge,
            spans=args.server_spans,
        )
    else:
        kwargs["url"] = args.url
    answer = anyio.run(lambda: call_echo(args.client, args.transport, args.token, **kwargs))
    assert answer == args.token
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    {"serve": serve, "call": call}[command](rest)
