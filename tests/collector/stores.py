"""Trace stores that misbehave on purpose, shared by the collector and OTLP tests."""

from __future__ import annotations

from rastir.collector.store.base import SpanRow
from rastir.collector.store.errors import StoreFullError
from rastir.collector.store.memory import MemoryStore


class FullOnceStore(MemoryStore):
    """A store whose write queue is full for the first batch only (both ack modes)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def submit(self, rows: list[SpanRow]) -> bool:
        if not self.refused:
            self.refused += 1
            return False
        return super().submit(rows)

    async def write(self, rows: list[SpanRow]) -> None:
        if not self.refused:
            self.refused += 1
            raise StoreFullError(len(rows), 1000)
        await super().write(rows)
