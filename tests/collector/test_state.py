"""The 429 decision: what makes the collector refuse intake, before any body is read."""

from __future__ import annotations

from typing import Any

import pytest

from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState
from rastir.collector.store.base import StoreStats
from rastir.collector.store.memory import MemoryStore


class QueueStore(MemoryStore):
    def __init__(self, depth: int, capacity: int) -> None:
        super().__init__()
        self.depth, self.capacity = depth, capacity

    def stats(self) -> StoreStats:
        return StoreStats(queue_depth=self.depth, queue_capacity=self.capacity)


def _state(store: MemoryStore | None = None, **settings: Any) -> CollectorState:
    state = CollectorState(CollectorSettings(store="memory", **settings), store or MemoryStore())
    state.started = True
    return state


def test_a_started_idle_collector_takes_intake() -> None:
    assert _state().saturation() is None


def test_not_started_and_shutting_down_are_told_apart() -> None:
    state = _state()
    state.started = False
    assert state.saturation() == "not_ready"
    state.closing = True
    assert state.saturation() == "shutting_down"


@pytest.mark.parametrize(("depth", "reason"), [(89, None), (90, "queue_full"), (100, "queue_full")])
def test_the_store_queue_high_water_mark(depth: int, reason: str | None) -> None:
    assert _state(QueueStore(depth, 100), queue_high_water=0.9).saturation() == reason


def test_a_store_without_a_queue_is_never_full() -> None:
    assert _state(QueueStore(0, 0)).saturation() is None


def test_the_inflight_limit() -> None:
    state = _state(max_inflight=2)
    state.inflight = 1
    assert state.saturation() is None
    state.inflight = 2
    assert state.saturation() == "inflight_limit"


def test_a_request_that_waited_too_long_for_its_handler_is_refused() -> None:
    state = _state(max_queue_delay=0.1)
    assert state.saturation() is None  # no stamp: the wait is unknown
    assert state.saturation(0.1) is None
    assert state.saturation(0.11) == "queue_delay"
    assert _state(max_queue_delay=None).saturation(60.0) is None


def test_loop_lag_sheds_a_growing_share_and_all_at_twice_the_limit() -> None:
    state = _state(max_loop_lag=0.5)
    state.loop_lag = 0.5
    assert state.saturation() is None
    state.loop_lag = 1.0
    assert all(state.saturation() == "loop_lag" for _ in range(100))
    state.loop_lag = 0.75  # half shed: across many requests, some of each
    results = {state.saturation() for _ in range(500)}
    assert results == {None, "loop_lag"}
    off = _state(max_loop_lag=None)
    off.loop_lag = 60.0
    assert off.saturation() is None
