from __future__ import annotations

# The collector tests' fixture: a real collector on uvicorn, 127.0.0.1.
from tests.collector.conftest import run_collector

__all__ = ["run_collector"]
