from __future__ import annotations

from collections.abc import Iterator

import pytest

import rastir
from rastir import _config
from rastir.export._pipeline import PIPELINE
from rastir.sampling import HEAD


def _reset() -> None:
    rastir.shutdown(timeout=5)
    _config._settings = _config.Settings()
    PIPELINE.bridge = None
    HEAD.set_ratio(1.0)
    PIPELINE.enabled = True
    PIPELINE.queueing = False
    PIPELINE.queue.clear()
    PIPELINE.take_dropped()
    PIPELINE.take_events()


@pytest.fixture(autouse=True)
def _fresh_rastir() -> Iterator[None]:
    """Every test starts unconfigured with an empty queue, and leaves no exporter behind."""
    _reset()
    yield
    _reset()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
