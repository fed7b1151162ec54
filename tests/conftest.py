from __future__ import annotations

from collections.abc import Iterator

import pytest

import rastir
from rastir import _config
from rastir.export._pipeline import PIPELINE
from rastir.sampling import HEAD
from tests._postgres import PostgresServer, start_postgres


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run (see ``tests/_postgres.py``)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database on the session's cluster."""
    return postgres_server.new_database()
