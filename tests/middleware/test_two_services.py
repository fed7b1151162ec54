"""Two services over real HTTP, one trace in a real collector.

* The collector: ``rastir.collector.app.create_app`` with the in-memory store, on uvicorn.
* Service A, in this process (``service.name`` "service-a"): FastAPI under
  RastirMiddleware, an ``@rastir.agent`` handler that calls B through an
  ``instrument_httpx``'d client.
* Service B, in its own process (``service.name`` "service-b", see ``service_b.py``):
  Starlette under RastirMiddleware with an ``@rastir.tool`` handler.

Both push to the collector; its query API must show one trace, with the chain
agent → http.client → http.server (B) → tool, and both service names.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import rastir
from rastir.collector.app import create_app
from rastir.collector.settings import CollectorSettings
from rastir.middleware import RastirMiddleware, instrument_httpx
from tests.middleware.servers import asgi_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[str]:
    # ack="committed": a batch is answered once stored, so a flush that returned means
    # the spans are queryable.
    settings = CollectorSettings(store="memory", ack="committed", data_dir=tmp_path)
    with asgi_server(create_app(settings), lifespan="on") as url:
        yield url


@pytest.fixture
def service_b(collector: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.middleware.service_b", "--collector", collector],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("PORT "), f"service B did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def service_a(b_url: str) -> FastAPI:
    app = FastAPI()

    @app.get("/plan/{city}")
    @rastir.agent(agent_name="planner")
    async def plan(city: str) -> dict[str, Any]:
        async with instrument_httpx(httpx.AsyncClient(timeout=10)) as client:
            weather = (await client.get(f"{b_url}/weather/{city}")).json()
        return {"plan": f"picnic in {city}", "weather": weather, "trace": rastir.current_trace_id()}

    app.add_middleware(RastirMiddleware)
    return app


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node["children"]:
        yield from walk(child)


def test_two_services_make_one_trace_in_the_collector(collector: str, service_b: str) -> None:
    rastir.configure(service="service-a", push_url=collector)
    with asgi_server(service_a(service_b)) as a_url:
        answer = httpx.get(f"{a_url}/plan/paris", timeout=10).json()
    trace_id = answer["trace"]
    # B answered from inside the same trace.
    assert answer["weather"] == {"city": "paris", "forecast": "sunny", "trace": trace_id}
    assert rastir.flush(timeout=10)
    assert httpx.post(f"{service_b}/flush", timeout=15).json() == {"flushed": True}

    traces = httpx.get(f"{collector}/v1/traces").json()["traces"]
    assert [t["trace_id"] for t in traces] == [trace_id]
    tree = httpx.get(f"{collector}/v1/traces/{trace_id}").json()
    (root,) = tree["spans"]
    nodes = list(walk(root))
    assert not any(n["orphan"] for n in nodes)
    chain = []
    node = root
    while True:
        chain.append((node["kind"], node["name"], node["service"]))
        if not node["children"]:
            break
        (node,) = node["children"]
    assert chain == [
        ("http.server", "GET /plan/{city}", "service-a"),
        ("agent", "planner", "service-a"),
        ("http.client", "GET", "service-a"),
        ("http.server", "GET /weather/{city}", "service-b"),
        ("tool", "lookup_weather", "service-b"),
    ]
    assert {n["service"] for n in nodes} == {"service-a", "service-b"}
    assert all(n["trace_id"] == trace_id for n in nodes)
    b_server = nodes[3]
    assert b_server["attributes"]["http.route"] == "/weather/{city}"
    assert b_server["attributes"]["http.response.status_code"] == 200
