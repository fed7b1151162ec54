from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from rastir.collector import CollectorSettings, create_app
from rastir.collector.store.base import TraceStore
from tests.collector.server import serving_async


@dataclass
class Scrape:
    """A parsed ``/metrics`` page."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    families: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family in text_string_to_metric_families(self.text):
            self.families[family.name] = family
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when absent."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def series(self, family: str) -> set[frozenset[tuple[str, str]]]:
        """Distinct label sets of a family (histogram buckets folded)."""
        out = set()
        for s in self.families[family].samples:
            out.add(frozenset((k, v) for k, v in s.labels.items() if k != "le"))
        return out


@dataclass
class Collector:
    url: str
    app: Starlette
    client: httpx.AsyncClient

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"content-type": "application/json", **(headers or {})}
        return await self.client.post("/v1/telemetry", content=body, headers=h)

    async def post_as_a_sender(self, body: bytes, attempts: int = 50) -> httpx.Response:
        """Post as the SDK's exporter does: a 429 (the collector shedding load, as it
        may on a busy test machine) is retried, soon; the last answer is returned."""
        for _ in range(attempts - 1):
            r = await self.post(body)
            if r.status_code != 429:
                return r
            await anyio.sleep(0.05)
        return await self.post(body)

    async def scrape(self, headers: dict[str, str] | None = None) -> Scrape:
        r = await self.client.get("/metrics", headers=headers)
        assert r.status_code == 200, r.text
        return Scrape(r.text)


RunCollector = Callable[..., AbstractAsyncContextManager[Collector]]


@pytest.fixture
def run_collector(tmp_path: Path) -> RunCollector:
    """``async with run_collector(**settings) as c``: a collector on real uvicorn."""

    @asynccontextmanager
    async def run(
        trace_store: TraceStore | None = None,
        wrap: Callable[[Any], Any] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Collector]:
        options: dict[str, Any] = {
            "store": "memory",
            "data_dir": tmp_path / "data",
            "access_log": False,
            # Client and server share this process: on a loaded machine a big batch
            # lags the loop past the limit and the collector sheds it with 429, which
            # only tests of shedding want (they pass max_loop_lag themselves).
            "max_loop_lag": None,
            # The test spans start in 2025 (spans.T0): no retention pass may delete
            # them while a slow test runs. Retention tests pass it themselves.
            "retention": None,
        }
        options.update(overrides)
        app = create_app(CollectorSettings(**options), store=trace_store)
        async with (
            serving_async(wrap(app) if wrap else app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield Collector(url, app, client)

    return run
