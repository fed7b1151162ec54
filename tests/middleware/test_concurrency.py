"""200 requests in flight at once, each with its own traceparent and its own status."""

from __future__ import annotations

import threading
from random import Random

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import rastir
from rastir.middleware import RastirMiddleware
from tests.middleware.servers import SpanWaiter, asgi_server

N = 200
STATUSES = (200, 201, 202, 204, 400, 404, 409, 500, 502, 503)


class Barrier:
    """Opens once all N requests are inside the app, so none finishes alone."""

    def __init__(self) -> None:
        self.arrived = 0
        self.lock = threading.Lock()
        self.all_in = threading.Event()

    async def wait(self) -> None:
        with self.lock:
            self.arrived += 1
            if self.arrived == N:
                self.all_in.set()
        await anyio.to_thread.run_sync(self.all_in.wait, 20)


@pytest.mark.anyio
async def test_200_concurrent_requests_each_get_the_right_parent_and_status(
    spans: SpanWaiter,
) -> None:
    barrier = Barrier()

    @rastir.tool
    async def work(code: int) -> int:
        await barrier.wait()
        return code

    async def endpoint(request: Request) -> Response:
        code = await work(int(request.path_params["code"]))
        if code == 204:
            return Response(status_code=204)
        return JSONResponse({"trace": rastir.current_trace_id()}, status_code=code)

    app = Starlette(routes=[Route("/status/{code:int}", endpoint)])
    app.add_middleware(RastirMiddleware)
    rng = Random(4)
    calls = [
        (rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, STATUSES[i % len(STATUSES)])
        for i in range(N)
    ]
    answers: dict[int, int] = {}
    try:
        with asgi_server(app) as url:
            limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
            async with httpx.AsyncClient(limits=limits, timeout=20) as client:

                async def one(tid: int, sid: int, code: int) -> None:
                    response = await client.get(
                        f"{url}/status/{code}",
                        headers={"traceparent": f"00-{tid:032x}-{sid:016x}-01"},
                    )
                    answers[tid] = response.status_code
                    if code != 204:
                        assert response.json() == {"trace": f"{tid:032x}"}

                with anyio.fail_after(15):
                    async with anyio.create_task_group() as tg:
                        for tid, sid, code in calls:
                            tg.start_soon(one, tid, sid, code)
            servers = spans.wait("http.server", N)
    finally:
        barrier.all_in.set()
    assert barrier.arrived == N
    by_trace = {s.tid: s for s in servers}
    tools = {s.tid: s for s in spans.of_kind("tool")}
    assert len(by_trace) == N
    for tid, sid, code in calls:
        assert answers[tid] == code
        span = by_trace[tid]
        assert span.psid == sid
        assert span.attributes["http.response.status_code"] == code
        assert span.status == ("error" if code >= 500 else "ok")
        assert span.name == "GET /status/{code:int}"
        assert tools[tid].psid == span.sid
