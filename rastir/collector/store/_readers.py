"""A small pool of read connections, opened on demand by worker threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from rastir.collector.store.errors import StoreClosedError

__all__ = ["ReaderPool"]

R = TypeVar("R")


class ReaderPool(Generic[R]):
    """Read connections kept for reuse: at most ``keep`` idle, the rest closed.

    ``open`` makes a reader and ``close`` releases one; both run in the worker
    thread that needs a reader (or gives it back), never on the event loop.
    """

    def __init__(self, open: Callable[[], R], close: Callable[[R], None], keep: int) -> None:
        self._open = open
        self._close = close
        self._keep = keep
        self._idle: list[R] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> R:
        """An idle reader, or a new one.

        Raises:
            StoreClosedError: the pool is closed.
        """
        with self._lock:
            if self._closed:
                raise StoreClosedError("the trace store is closed")
            if self._idle:
                return self._idle.pop()
        return self._open()

    def release(self, reader: R) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append(reader)
                return
        self._close(reader)

    def discard(self, reader: R) -> None:
        """Close a reader that must not be used again (its connection failed)."""
        self._close(reader)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for reader in idle:
            self._close(reader)
