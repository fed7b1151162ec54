"""What the request handlers share about the running collector: its store and its load.

One instance per app, touched only on the event loop thread, so plain attributes do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from random import random
from time import monotonic
from typing import Any

import anyio

from rastir._wire import WireSpan
from rastir.collector.settings import CollectorSettings
from rastir.collector.store.base import TraceStore

__all__ = ["CollectorState", "SpanSink", "watch_loop_lag"]

#: Called with ``(service, resource, spans)`` once the store has taken a batch, on the
#: event loop thread. A sink must not block: it hands the spans to its own bounded
#: queue (an exporter, an evaluator) and counts what it has to drop.
SpanSink = Callable[[str, Mapping[str, Any], list[WireSpan]], None]


class CollectorState:
    """The store, whether it is open, and the numbers the 429 decision reads."""

    __slots__ = (
        "_high_water",
        "_max_inflight",
        "_max_lag",
        "_max_wait",
        "closing",
        "inflight",
        "loop_lag",
        "presample_sinks",
        "pressure",
        "retry_after",
        "sampler",
        "sinks",
        "started",
        "store",
        "tail_store_lost",
    )

    def __init__(self, settings: CollectorSettings, store: TraceStore | None) -> None:
        self.store = store  # opened by the lifespan when None
        #: The ``Retry-After`` header of the 503 answers outside ingest.
        self.retry_after = {"retry-after": str(settings.retry_after)}
        self.started = False
        self.closing = False
        self.inflight = 0
        self.loop_lag = 0.0
        #: Spans of traces the tail sampler kept that the store had no room for: they
        #: were answered 202 long before, so they are lost (only the event loop counts).
        self.tail_store_lost = 0
        self.sinks: list[SpanSink] = []
        #: The tail sampler (rastir.collector.sampling), when on: accepted spans go to it
        #: instead of the store, and it hands kept traces to the store and the sinks.
        self.sampler: SpanSink | None = None
        #: Sinks that see every accepted span before the tail sampler decides, when it
        #: is on (evaluation: judging only kept traces, errors and slow ones first,
        #: would bias its pass rates). Without a sampler they are not used.
        self.presample_sinks: list[SpanSink] = []
        #: Downstream queues that can push back on intake (the OTLP exporter): each
        #: returns a 429 reason while it is too full, else None.
        self.pressure: list[Callable[[], str | None]] = []
        self._max_inflight = settings.max_inflight
        self._high_water = settings.queue_high_water
        self._max_lag = settings.max_loop_lag
        self._max_wait = settings.max_queue_delay

    def saturation(self, waited: float = 0.0) -> str | None:
        """Why intake must be refused right now, or ``None``. Never touches a body.

        ``waited`` is how long the request waited for its handler (0 when unknown).
        Reasons: ``shutting_down`` and ``not_ready`` (answered 503), ``queue_delay``,
        ``inflight_limit``, ``loop_lag``, ``queue_full`` and ``export_queue_full``
        (answered 429).
        """
        if not self.started or self.store is None:
            return "shutting_down" if self.closing else "not_ready"
        max_wait = self._max_wait
        if max_wait is not None and waited > max_wait:
            # Each request is judged by its own wait, so refusals follow the queue
            # request by request; refusing is cheap (no body is decoded), so the
            # queue drains to the limit and no further.
            return "queue_delay"
        if self.inflight >= self._max_inflight:
            return "inflight_limit"
        max_lag = self._max_lag
        if max_lag is not None and self.loop_lag > max_lag:
            # Shed in proportion to how far past the limit the loop lags, everything at
            # twice the limit. Refusing all at once would swing the loop between
            # flooded and idle, and every swing costs accepted throughput.
            excess = (self.loop_lag - max_lag) / max_lag
            if excess >= 1.0 or random() < excess:
                return "loop_lag"
        stats = self.store.stats()
        if stats.queue_capacity and stats.queue_depth >= stats.queue_capacity * self._high_water:
            return "queue_full"
        for check in self.pressure:
            reason = check()
            if reason is not None:
                return reason
        return None


async def watch_loop_lag(state: CollectorState, interval: float = 0.05) -> None:
    """Keep ``state.loop_lag`` at how late the loop woke from the last short sleep.

    A late wake-up means every ready callback waits as long: the loop itself is the
    bottleneck, and taking more bodies in would only lengthen every request.
    """
    while True:
        t = monotonic()
        await anyio.sleep(interval)
        state.loop_lag = max(0.0, monotonic() - t - interval)
