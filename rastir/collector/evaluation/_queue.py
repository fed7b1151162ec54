"""A bounded FIFO for one event loop: ``put_nowait`` from sync code, ``get`` from tasks.

anyio's memory object streams would do, but a full stream answers ``send_nowait`` with
an exception, and under overload the ingest sink would raise and catch one per
dropped evaluation (about a microsecond each, a hundred per batch). Here a full queue
is one length comparison. Only the event loop thread touches it.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["BoundedQueue"]

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    __slots__ = ("_items", "_waiters", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._waiters: deque[anyio.Event] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """Append ``item``; False, and nothing changes, when the queue is full."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(item)
        if self._waiters:
            self._waiters.popleft().set()
        return True

    async def get(self) -> T:
        """The oldest item, waiting for one if the queue is empty."""
        while not self._items:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event in self._waiters:
                    self._waiters.remove(event)
                elif self._items and self._waiters:
                    self._waiters.popleft().set()  # pass on the wake-up meant for us
                raise
        return self._items.popleft()

    def clear(self) -> int:
        """Empty the queue; the number of items dropped."""
        n = len(self._items)
        self._items.clear()
        return n
