"""Errors raised by trace stores."""

from __future__ import annotations

from rastir.errors import RastirError

__all__ = ["StoreClosedError", "StoreError", "StoreFullError"]


class StoreError(RastirError):
    """Root of the errors a trace store raises."""


class StoreFullError(StoreError):
    """The write queue had no room for the spans: answer 429 and let the sender retry.

    Attributes:
        spans: how many spans were refused.
        capacity: the queue's capacity, in spans.
    """

    def __init__(self, spans: int, capacity: int) -> None:
        super().__init__(f"trace store queue is full: {spans} spans refused (capacity {capacity})")
        self.spans = spans
        self.capacity = capacity


class StoreClosedError(StoreError):
    """The store is closed (or was never started) and takes no more writes."""
