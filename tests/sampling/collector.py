"""A real collector on uvicorn for the sampling and export tests, and helpers to wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from rastir.collector import CollectorSettings, create_app
from tests.collector.conftest import Collector
from tests.collector.server import serving_async


@asynccontextmanager
async def running_collector(tmp_path: Path, **overrides: Any) -> AsyncIterator[Collector]:
    """A collector (memory store unless told) serving on 127.0.0.1 for the block."""
    options: dict[str, Any] = {
        "store": "memory",
        "data_dir": tmp_path / "data",
        "access_log": False,
        # The test spans are dated 2025: no retention sweep may delete them mid-test.
        "retention": None,
    }
    options.update(overrides)
    app = create_app(CollectorSettings(**options))
    async with (
        serving_async(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Collector(url, app, client)


async def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Check ``condition`` every 10 ms until it holds; fail after ``limit`` seconds.

    What is awaited happens on other threads (uvicorn's, the exporter's), which
    cannot set an anyio event of this loop: a bounded poll is the honest wait.
    """
    with anyio.fail_after(limit):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


async def stored_trace_ids(c: Collector) -> set[str]:
    """Every trace id the collector's store holds (all pages)."""
    out: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        r = await c.client.get("/v1/traces", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out.update(t["trace_id"] for t in page["traces"])
        cursor = page["next_cursor"]
        if not cursor:
            return out
