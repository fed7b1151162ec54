"""Trace stores for the collector: the contract, the three stores, and a factory.

:class:`PostgresStore` imports psycopg only when one is made, so importing this
package (or ``rastir.collector``) never needs the ``postgres`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rastir.collector.store import _dsn
from rastir.collector.store.assemble import build_tree, summarize
from rastir.collector.store.base import (
    SpanRow,
    StoreStats,
    TraceDetail,
    TracePage,
    TraceQuery,
    TraceStore,
    TraceSummary,
)
from rastir.collector.store.errors import StoreClosedError, StoreError, StoreFullError
from rastir.collector.store.memory import MemoryStore
from rastir.collector.store.postgres import PostgresStore
from rastir.collector.store.sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "SpanRow",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "StoreStats",
    "TraceDetail",
    "TracePage",
    "TraceQuery",
    "TraceStore",
    "TraceSummary",
    "build_tree",
    "open_store",
    "summarize",
]

_DATABASE = "rastir.db"


def open_store(kind: str, data_dir: str | os.PathLike[str], **options: Any) -> TraceStore:
    """Make the store the collector was configured with (call ``start()`` next).

    Args:
        kind: ``"sqlite"`` (the file ``rastir.db`` in ``data_dir``), ``"memory"``, or a
            ``postgresql://`` (or ``postgres://``) URL: the database several
            collectors may share.
        data_dir: the collector's data directory, created when missing (the
            PostgreSQL store does not use it).
        options: keyword arguments for the store's constructor.

    Raises:
        ValueError: an unknown kind, or an option out of range.
        TypeError: an option the store does not take.
        ImportError: a PostgreSQL URL without psycopg installed.
    """
    if kind == "sqlite":
        return SQLiteStore(Path(data_dir) / _DATABASE, **options)
    if kind == "memory":
        return MemoryStore(**options)
    if _dsn.is_postgres_url(kind):
        return PostgresStore(kind, **options)
    raise ValueError(
        f"unknown trace store {_dsn.redact_dsn(kind)!r}: expected 'sqlite', 'memory' "
        "or a postgresql:// URL"
    )
