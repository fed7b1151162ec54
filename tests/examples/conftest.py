"""Run the examples for real: as subprocesses, exporting to a real collector.

The collector is the real app under uvicorn on 127.0.0.1, with ``ack=committed`` so
that a 202 means stored: once an example's process has exited (flushing on the way
out), its spans can be read back from the query API.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rastir.collector import CollectorSettings, create_app
from rastir.demo._process import Child
from rastir.viewer import QueryClient, iter_spans
from tests.collector.server import serving

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Node = dict[str, Any]


@pytest.fixture(scope="module")
def collector() -> Iterator[str]:
    settings = CollectorSettings(store="memory", ack="committed", access_log=False)
    with serving(create_app(settings)) as url:
        yield url


def example_env(collector: str | None) -> dict[str, str]:
    """The test's environment without RASTIR_*, sending to ``collector`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env["PYTHONIOENCODING"] = "utf-8"
    if collector is not None:
        env.update(RASTIR_PUSH_URL=collector, RASTIR_FLUSH_INTERVAL="0.2")
    return env


def start_server(
    script: Path, collector: str, *args: str, ready: str = "serving on "
) -> tuple[Child, str]:
    """Start an example server on a free port; returns it and the URL it printed."""
    child = Child(
        script.parent.name,
        [sys.executable, str(script), *args, "--port", "0"],
        example_env(collector),
    )
    try:
        line = child.wait_for(lambda s: s.startswith(ready), timeout=60)
    except BaseException:
        child.stop()
        raise
    return child, line.split()[-1]


def trace(collector: str, trace_id: str) -> dict[str, Any]:
    return QueryClient(collector).get_trace(trace_id)


def nodes(tree: dict[str, Any]) -> list[Node]:
    return [dict(n) for n in iter_spans(tree["spans"])]


def children(node: Node) -> list[tuple[str, str]]:
    """``(name, kind)`` of a node's children, in start order."""
    return [(c["name"], c["kind"]) for c in node["children"]]
