"""The stores a collector test can run on: ``@EVERY_STORE`` and the ``store`` fixture.

Tests of behaviour every store shares take the store's ``--store`` value from the
``store`` fixture: ``"memory"``, ``"sqlite"``, or for ``"postgres"`` the DSN of a
fresh database on the session's PostgreSQL server (``tests/_postgres.py``).
Import both into the test module.
"""

from __future__ import annotations

import pytest

from rastir.collector.store._dsn import is_postgres_url

__all__ = ["EVERY_STORE", "KINDS", "is_sql", "store_fixture"]

KINDS = ("memory", "sqlite", "postgres")
#: Parametrizes a test over every store, through the ``store`` fixture.
EVERY_STORE = pytest.mark.parametrize("store", KINDS, indirect=True)


@pytest.fixture(name="store")
def store_fixture(request: pytest.FixtureRequest) -> str:
    """The ``--store`` value of the kind the test is parametrized with."""
    kind: str = request.param
    if kind == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        return dsn
    return kind


def is_sql(store: str) -> bool:
    """Whether ``store`` (a ``--store`` value) writes through a queue to a database."""
    return store == "sqlite" or is_postgres_url(store)
