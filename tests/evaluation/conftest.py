from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from rastir.collector import CollectorSettings, create_app
from tests.collector.conftest import Collector, Scrape
from tests.collector.server import serving_async

RunCollector = Callable[..., AbstractAsyncContextManager[Collector]]


@pytest.fixture
def run_collector(tmp_path: Path) -> RunCollector:
    """``async with run_collector(config={...}, **settings) as c``: real uvicorn.

    ``config`` is written to a JSON file and passed as ``eval_config``.
    """

    @asynccontextmanager
    async def run(
        config: dict[str, Any] | None = None, **overrides: Any
    ) -> AsyncIterator[Collector]:
        options: dict[str, Any] = {
            "store": "memory",
            "data_dir": tmp_path / "data",
            "access_log": False,
            "max_loop_lag": None,
        }
        if config is not None:
            path = tmp_path / "evaluation.json"
            path.write_bytes(msgspec.json.encode(config))
            options["eval_config"] = path
        options.update(overrides)
        app = create_app(CollectorSettings(**options))
        async with (
            serving_async(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield Collector(url, app, client)

    return run


async def wait_for(
    collector: Collector, check: Callable[[Scrape], bool], limit: float = 10.0
) -> Scrape:
    """Scrape until ``check`` holds; fails after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while True:
            scrape = await collector.scrape()
            if check(scrape):
                return scrape
            await anyio.sleep(0.02)
