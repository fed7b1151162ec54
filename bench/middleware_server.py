"""The apps, variants and span sinks of ``middleware_bench.py``, and its HTTP servers.

Imported by the bench for the in-process part; run as a script it serves one variant:

    python bench/middleware_server.py --kind asgi --variant rastir --port 8001

or, with ``--requests N``, calls it N times in-process and exits (what the bench runs
under callgrind to count instructions).

``--kind asgi`` serves the Starlette app with uvicorn (httptools, uvloop) on a socket
bound here; ``--kind wsgi`` serves the Flask app with gunicorn (gthread worker, one
process). ``READY`` is printed once the socket listens. Stop it with SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import rastir
from rastir.export._pipeline import PIPELINE

__all__ = [
    "TRACEPARENT",
    "DropExporter",
    "QueueDrain",
    "asgi_app",
    "asgi_variant",
    "wsgi_app",
    "wsgi_variant",
]

# What a traced caller sends: every variant continues this trace.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
VARIANTS = ("bare", "rastir", "otel", "otel-lean")


class DropExporter(SpanExporter):
    """OTel exporter that drops every batch (counting the spans)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class QueueDrain:
    """Stands in for rastir's exporter thread: woken on full batches, drops the spans.

    Wired to ``PIPELINE`` as ``BatchExporter`` is (``on_wake``, ``wake_at`` = batch
    size, ``woken()``), so the request path runs the same code as in production.
    """

    def __init__(self, batch_size: int = 512) -> None:
        self.batch_size = batch_size
        self.taken = 0
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-drain", daemon=True)

    def start(self) -> None:
        rastir.configure(service="middleware-bench", push_url=None)
        PIPELINE.queueing = True
        PIPELINE.max_queue = 1 << 20  # the drop path is not what is measured
        PIPELINE.on_wake = self._wake.set
        PIPELINE.wake_at = self.batch_size
        self._thread.start()

    def _run(self) -> None:
        q = PIPELINE.queue
        size = self.batch_size
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            PIPELINE.woken()
            while q:
                batch = []
                try:
                    for _ in range(size):
                        batch.append(q.popleft())
                except IndexError:
                    pass
                self.taken += len(batch)
                del batch

    def settle(self) -> None:
        """Between timed runs (untimed): wait until the drain took what is queued."""
        deadline = time.monotonic() + 5
        while PIPELINE.queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        PIPELINE.on_wake = None
        PIPELINE.wake_at = 1 << 62
        PIPELINE.queue.clear()


# -- the apps ----------------------------------------------------------------------------
PAYLOAD = {"item_id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}


def asgi_app() -> Any:
    """Starlette, one JSON route with a path parameter."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({**PAYLOAD, "item_id": int(request.path_params["item_id"])})

    return Starlette(routes=[Route("/items/{item_id}", item)])


def asgi_variant(app: Any, variant: str, provider: Any = None) -> Any:
    if variant == "bare":
        return app
    if variant == "rastir":
        from rastir.middleware import RastirMiddleware

        return RastirMiddleware(app)
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    if variant == "otel":
        return OpenTelemetryMiddleware(app, tracer_provider=provider)
    if variant == "otel-lean":
        return OpenTelemetryMiddleware(
            app, tracer_provider=provider, exclude_spans=["receive", "send"]
        )
    raise ValueError(variant)


def wsgi_app() -> Any:
    """Flask, the same route."""
    from flask import Flask, jsonify

    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify({**PAYLOAD, "item_id": item_id})

    return app


def wsgi_variant(app: Any, variant: str, provider: Any = None) -> Any:
    if variant == "bare":
        return app
    if variant == "rastir":
        from rastir.middleware import RastirWSGIMiddleware

        return RastirWSGIMiddleware(app)
    if variant == "otel":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(app, tracer_provider=provider)
    raise ValueError(variant)


# -- serving -----------------------------------------------------------------------------
def _sinks(variant: str) -> Any:
    """Set up where spans go in this server process; returns the OTel provider."""
    if variant == "rastir":
        QueueDrain().start()
        return None
    if variant.startswith("otel"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DropExporter()))
        return provider
    rastir.configure(service="middleware-bench", push_url=None)
    return None


def serve_asgi(variant: str, port: int) -> None:
    import uvicorn

    provider = _sinks(variant)
    app = asgi_variant(asgi_app(), variant, provider)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    print("READY", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def serve_wsgi(variant: str, port: int) -> None:
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 8)
            self.cfg.set("keepalive", 30)
            self.cfg.set("backlog", 2048)
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")
            self.cfg.set("when_ready", lambda server: print("READY", flush=True))

        def load(self) -> Any:
            # In the worker, after the fork: threads do not survive fork.
            return wsgi_variant(wsgi_app(), variant, _sinks(variant))

    App().run()


def run_requests(kind: str, variant: str, n: int) -> None:
    """Call the app ``n`` times in-process, as the in-process bench does (for callgrind)."""
    from middleware_bench import asgi_runner, asgi_scope, wsgi_environ, wsgi_runner

    provider = _sinks(variant)
    if kind == "asgi":
        import asyncio

        loop = asyncio.new_event_loop()
        run = asgi_runner(loop, asgi_variant(asgi_app(), variant, provider), asgi_scope(True))
    else:
        run = wsgi_runner(wsgi_variant(wsgi_app(), variant, provider), wsgi_environ(True))
    # Warm-up first: lazy imports, first-call paths, the interpreter's specialisation.
    run(50)
    # The measured requests run inside sys.call_tracing(), a C function nothing else
    # calls: the bench runs this under callgrind with --toggle-collect=sys_call_tracing,
    # so only they are counted, whatever start-up and imports did. (With no trace
    # function set, call_tracing traces nothing.)
    sys.call_tracing(run, (n,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve one middleware_bench variant")
    parser.add_argument("--kind", choices=("asgi", "wsgi"), required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--requests", type=int, default=0, help="call the app N times in-process, then exit"
    )
    args = parser.parse_args(argv)
    if args.requests:
        run_requests(args.kind, args.variant, args.requests)
    elif args.kind == "asgi":
        serve_asgi(args.variant, args.port)
    else:
        serve_wsgi(args.variant, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
