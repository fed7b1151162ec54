from __future__ import annotations

# Real collectors on uvicorn, 127.0.0.1: the collector tests' per-test factory, and the
# examples' module-wide collector that acknowledges spans once they are stored.
from tests.collector.conftest import run_collector
from tests.examples.conftest import collector

__all__ = ["collector", "run_collector"]
