"""Streaming and SSE through RastirMiddleware: nothing buffered, the span covers it all.

To prove chunks are not held back, the server stops after chunk N and waits for an
event that the client sets only once it has received chunk N. A middleware that
buffered the body would deadlock there, and ``anyio.fail_after`` would fail the test.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import httpx
import pytest
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import rastir
from rastir.middleware import RastirMiddleware
from tests.middleware.servers import VALID, VALID_SID, VALID_TID, SpanWaiter, asgi_server

CHUNKS = [f"chunk {i}\n".encode() for i in range(5)]
HOLD_AFTER = 2  # the server waits after sending CHUNKS[HOLD_AFTER]


class Gate:
    """Set by the client (test thread), awaited by the server (uvicorn's thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    async def wait(self) -> None:
        # Bounded so a failed test cannot hang the server thread; the client's
        # fail_after(5) fires first.
        await anyio.to_thread.run_sync(self.event.wait, 20)


@rastir.trace
async def produce(i: int) -> bytes:
    return CHUNKS[i]


def streaming_app(gate: Gate) -> Starlette:
    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for i in range(len(CHUNKS)):
                yield await produce(i)
                if i == HOLD_AFTER:
                    await gate.wait()

        return StreamingResponse(body(), media_type="text/plain")

    async def sse(request: Request) -> Response:
        async def events() -> AsyncIterator[dict[str, str]]:
            for i in range(len(CHUNKS)):
                yield {"event": "token", "data": (await produce(i)).decode().strip()}
                if i == HOLD_AFTER:
                    await gate.wait()

        return EventSourceResponse(events())

    app = Starlette(routes=[Route("/stream", stream), Route("/sse", sse)])
    app.add_middleware(RastirMiddleware)
    return app


@pytest.mark.anyio
async def test_a_streamed_body_arrives_chunk_by_chunk_and_intact(spans: SpanWaiter) -> None:
    gate = Gate()
    received = b""
    try:
        with asgi_server(streaming_app(gate)) as url:
            async with httpx.AsyncClient() as client:
                with anyio.fail_after(5):
                    async with client.stream(
                        "GET", f"{url}/stream", headers={"traceparent": VALID}
                    ) as response:
                        async for chunk in response.aiter_raw():
                            received += chunk
                            if received.endswith(CHUNKS[HOLD_AFTER]):
                                gate.event.set()
            server = spans.one("http.server")
    finally:
        gate.event.set()
    assert received == b"".join(CHUNKS)
    assert (server.tid, server.psid) == (VALID_TID, VALID_SID)
    assert server.attributes["http.response.status_code"] == 200
    # Every chunk was produced inside the span, which ended after the last one.
    producers = spans.of_kind("trace")
    assert len(producers) == len(CHUNKS)
    for child in producers:
        assert (child.tid, child.psid) == (server.tid, server.sid)
        assert server.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= server.end_time_unix_nano


@pytest.mark.anyio
async def test_sse_events_are_not_delayed_and_the_span_covers_the_stream(
    spans: SpanWaiter,
) -> None:
    gate = Gate()
    lines: list[str] = []
    try:
        with asgi_server(streaming_app(gate)) as url:
            async with httpx.AsyncClient() as client:
                with anyio.fail_after(5):
                    async with client.stream("GET", f"{url}/sse") as response:
                        assert response.headers["content-type"].startswith("text/event-stream")
                        async for line in response.aiter_lines():
                            lines.append(line)
                            if line == f"data: chunk {HOLD_AFTER}":
                                gate.event.set()
                            if line == f"data: chunk {len(CHUNKS) - 1}":
                                break
            server = spans.one("http.server")
    finally:
        gate.event.set()
    assert [line for line in lines if line.startswith("data: ")] == [
        f"data: chunk {i}" for i in range(len(CHUNKS))
    ]
    assert server.name == "GET /sse"
    last = max(spans.of_kind("trace"), key=lambda s: s.end_time_unix_nano)
    assert last.end_time_unix_nano <= server.end_time_unix_nano
