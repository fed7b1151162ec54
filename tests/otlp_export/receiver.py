"""An OTLP/HTTP traces receiver for the export tests: Starlette on real uvicorn.

It decodes every request with ``opentelemetry-proto`` (the reference decoder), keeps
what it received, and answers what the test scripts: 200 by default, or a queue of
answers (status and headers) given beforehand.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    """One exported span as the receiver decoded it, with its resource."""

    resource: dict[str, Any]
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass
class Receiver:
    """What arrived, and what to answer next."""

    spans: list[Received] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Cleared, requests wait for it: a target that answers, but slowly.
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if not self.gate.is_set():
            await anyio.to_thread.run_sync(self.gate.wait, 30)
        headers = dict(request.headers)
        with self.lock:
            self.requests.append({"at": time.monotonic(), "headers": headers, "size": len(body)})
            if self.answers:
                status, extra, reply = self.answers.pop(0)
                return Response(reply, status_code=status, headers=extra)
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        assert headers["content-type"] == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        got: list[Received] = []
        for rs in req.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Received(
                            resource=resource,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(got)
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])

    def count(self) -> int:
        with self.lock:
            return len(self.spans)


def free_port() -> int:
    """A port nothing listens on (for a target that is down, until it comes up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@contextmanager
def receiving(receiver: Receiver, port: int = 0) -> Iterator[str]:
    """Serve ``receiver`` on 127.0.0.1:``port`` (0: any free port); yields the base URL."""
    config = uvicorn.Config(
        receiver.app(),
        host="127.0.0.1",
        port=port,
        http="httptools",
        ws="none",
        loop="asyncio",
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(10) or not server.started:
            raise RuntimeError("the OTLP receiver did not start")
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the OTLP receiver did not stop within 30 s")
