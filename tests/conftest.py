from __future__ import annotations

from collections.abc import Iterator

import pytest

import rastir
from rastir.export._pipeline import PIPELINE


@pytest.fixture(autouse=True)
def _fresh_rastir() -> Iterator[None]:
    """Every test starts unconfigured with an empty queue, and leaves no exporter behind."""
    rastir.shutdown(timeout=5)
    PIPELINE.enabled = True
    PIPELINE.queue.clear()
    PIPELINE.take_dropped()
    yield
    rastir.shutdown(timeout=5)
    PIPELINE.enabled = True
    PIPELINE.queue.clear()
    PIPELINE.take_dropped()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
