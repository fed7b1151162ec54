"""Trace stores for the collector: the contract, the two stores, and a factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
from rastir.collector.store.sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
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
        kind: ``"sqlite"`` (the file ``rastir.db`` in ``data_dir``) or ``"memory"``.
        data_dir: the collector's data directory; created when missing.
        options: keyword arguments for the store's constructor.

    Raises:
        ValueError: an unknown kind, a ``postgresql://`` URL (not built yet), or an
            option out of range.
        TypeError: an option the store does not take.
    """
    if kind == "sqlite":
        return SQLiteStore(Path(data_dir) / _DATABASE, **options)
    if kind == "memory":
        return MemoryStore(**options)
    if kind.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "the PostgreSQL trace store is not built yet: use --store sqlite (the default) "
            "or --store memory"
        )
    raise ValueError(f"unknown trace store {kind!r}: expected 'sqlite' or 'memory'")
