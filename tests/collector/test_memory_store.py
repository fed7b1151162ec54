"""The memory store keeps spans encoded: what goes in comes back out, exactly once."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from rastir._wire import WireError, WireEvent, WireLink, WireSpan
from rastir.collector.store import MemoryStore, SpanRow, TraceQuery

pytestmark = pytest.mark.anyio

T0 = 1_750_000_000_000_000_000
TRACE = "ab" * 16


def _span(
    n: int, *, parent: int | None = None, name: str = "s", attrs: dict[str, Any] | None = None
) -> WireSpan:
    return WireSpan(
        trace_id=TRACE,
        span_id=f"{n:016x}",
        name=name,
        kind="llm",
        start_time_unix_nano=T0 + n,
        end_time_unix_nano=T0 + n + 10,
        parent_span_id=None if parent is None else f"{parent:016x}",
        attributes=attrs or {},
    )


async def test_spans_read_back_equal_to_what_was_written() -> None:
    store = MemoryStore()
    spans = [
        _span(1, attrs={"gen_ai.usage.input_tokens": 5, "f": float("inf"), "l": ["a", "b"]}),
        WireSpan(
            trace_id=TRACE,
            span_id=f"{2:016x}",
            name="with extras",
            kind="tool",
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + 1,
            parent_span_id=f"{1:016x}",
            status="error",
            error=WireError(type="timeout", exception_type="TimeoutError", message="late"),
            events=[WireEvent(name="e", time_unix_nano=T0, attributes={"k": 1})],
            links=[WireLink(trace_id="cd" * 16, span_id="ef" * 8)],
        ),
    ]
    store.submit([SpanRow("svc", s) for s in spans])
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.span for row in detail.spans] == spans
    assert {row.service for row in detail.spans} == {"svc"}


async def test_a_span_outside_the_wire_constraints_still_reads_back() -> None:
    # Spans the collector makes itself are not validated: an id of the wrong length
    # must not make the trace unreadable.
    odd = WireSpan(
        trace_id=TRACE,
        span_id="short",
        name="odd",
        kind="llm",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1,
        error=WireError(type="timeout"),
    )
    store = MemoryStore()
    store.submit([SpanRow("svc", odd)])
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.span for row in detail.spans] == [odd]


async def test_repeated_spans_count_once_and_the_last_write_wins() -> None:
    store = MemoryStore()
    store.submit([SpanRow("svc", _span(1)), SpanRow("svc", _span(2, parent=1))])
    # again in a later batch, and twice within one batch
    store.submit([SpanRow("svc", _span(2, parent=1, name="newer"))])
    store.submit([SpanRow("svc", _span(3, parent=1)), SpanRow("svc", _span(3, parent=1, name="x"))])
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [(row.span.span_id[-1], row.span.name) for row in detail.spans] == [
        ("1", "s"),
        ("2", "newer"),
        ("3", "x"),
    ]
    assert detail.summary.span_count == 3
    assert store.stats().spans_stored == 3


async def test_a_batch_from_two_services_keeps_each_span_service() -> None:
    store = MemoryStore()
    store.submit([SpanRow("a", _span(1)), SpanRow("b", _span(2, parent=1)), SpanRow("a", _span(3))])
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.service for row in detail.spans] == ["a", "b", "a"]
    assert detail.summary.services == ["a", "b"]
    assert store.stats().spans_stored == 3


async def test_stored_spans_are_not_kept_as_objects_and_the_store_stays_bounded() -> None:
    store = MemoryStore(max_spans=1000)
    for t in range(20):
        trace = f"fee1{t:028x}"
        store.submit(
            [
                SpanRow(
                    "svc",
                    WireSpan(
                        trace_id=trace,
                        span_id=f"{i + 1:016x}",
                        name="s",
                        kind="llm",
                        start_time_unix_nano=T0,
                        end_time_unix_nano=T0 + 1,
                        attributes={"l": ["x"]},
                    ),
                )
                for i in range(100)
            ]
        )
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (1000, 10)
    assert (stats.extra["evicted_spans"], stats.extra["evicted_traces"]) == (1000, 10)
    gc.collect()
    # Kept encoded: no span object outlives the batch that brought it.
    assert not [o for o in gc.get_objects() if isinstance(o, WireSpan) and o.trace_id[:4] == "fee1"]
    detail = await store.get_trace(f"fee1{19:028x}")
    assert detail is not None
    assert len(detail.spans) == 100


async def test_an_integer_beyond_64_bits_is_stored_and_read_back() -> None:
    # JSON has no integer range, so the wire accepts one; msgpack has a range.
    store = MemoryStore()
    spans = [_span(1, attrs={"n": 2**64 + 1, "m": -(2**70)}), _span(2)]
    store.submit([SpanRow("svc", s) for s in spans])
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.span for row in detail.spans] == spans


async def test_a_trace_sent_again_and_again_keeps_one_copy_of_its_spans() -> None:
    store = MemoryStore(max_spans=2000)
    rows = [SpanRow("svc", _span(n, attrs={"x": "y" * 500})) for n in range(1, 201)]
    store.submit(rows)
    once = store._traces[TRACE].chunks
    size = sum(len(data) for _, data in once)
    for _ in range(30):
        store.submit(rows[:150])  # a retried batch, some of it
        store.submit(rows)
    chunks = store._traces[TRACE].chunks
    # Compacted on every repeat: what is kept is what the span bound counts.
    assert len(chunks) == 1
    assert sum(len(data) for _, data in chunks) == size
    assert store.stats().spans_stored == 200
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.span for row in detail.spans] == [row.span for row in rows]


async def test_a_repeat_from_two_services_compacts_by_service_in_order() -> None:
    store = MemoryStore()
    a, b = SpanRow("a", _span(1)), SpanRow("b", _span(2, parent=1))
    for _ in range(5):
        store.submit([a, b])
    assert [service for service, _ in store._traces[TRACE].chunks] == ["a", "b"]
    detail = await store.get_trace(TRACE)
    assert detail is not None
    assert [row.service for row in detail.spans] == ["a", "b"]


def _trace(trace_id: str, start: int, end: int) -> list[SpanRow]:
    return [
        SpanRow(
            "svc",
            WireSpan(
                trace_id=trace_id,
                span_id=f"{n:016x}",
                name="s",
                kind="tool",
                start_time_unix_nano=start,
                end_time_unix_nano=end,
            ),
        )
        for n in (1, 2)
    ]


async def test_retention_deletes_traces_that_ended_before_the_cutoff() -> None:
    now = time.time_ns()
    hour = 3600 * 10**9
    store = MemoryStore(retention_seconds=60, maintenance_interval=0)
    old, running, recent = "a1" * 16, "b2" * 16, "c3" * 16
    store.submit(_trace(old, now - 2 * hour, now - hour))
    store.submit(_trace(running, now - 2 * hour, now))  # started long ago, still going
    store.submit(_trace(recent, now, now + 1))
    assert await store.get_trace(old) is None
    assert await store.get_trace(running) is not None
    assert await store.get_trace(recent) is not None
    page = await store.list_traces(TraceQuery(service="svc"))
    assert {t.trace_id for t in page.traces} == {running, recent}
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (4, 2)
    assert (stats.extra["retention_deleted_spans"], stats.extra["retention_deleted_traces"]) == (
        2,
        1,
    )


async def test_the_span_bound_still_evicts_in_order_after_retention_deleted_some() -> None:
    now = time.time_ns()
    hour = 3600 * 10**9
    store = MemoryStore(max_spans=4, retention_seconds=60, maintenance_interval=0)
    ids = [f"{n:032x}" for n in range(1, 6)]
    old = "a1" * 16
    store.submit(_trace(ids[0], now, now + 1))
    store.submit(_trace(ids[1], now, now + 1))
    store.submit(_trace(old, now - 2 * hour, now - hour))  # over the bound: ids[0] goes
    for trace_id in ids[2:]:  # old is deleted by retention on the next write
        store.submit(_trace(trace_id, now, now + 1))
    # Evicted first seen first, the place old held in that order skipped.
    assert [await store.get_trace(t) is not None for t in ids] == [False] * 3 + [True] * 2
    assert await store.get_trace(old) is None
    stats = store.stats()
    assert (stats.spans_stored, stats.extra["evicted_traces"]) == (4, 3)
    assert stats.extra["retention_deleted_traces"] == 1


async def test_a_store_without_retention_keeps_old_traces() -> None:
    store = MemoryStore(maintenance_interval=0)
    store.submit(_trace("a1" * 16, 1, 2))
    assert await store.get_trace("a1" * 16) is not None


@pytest.mark.parametrize(
    "options", [{"retention_seconds": 0}, {"retention_seconds": -1}, {"maintenance_interval": -1}]
)
def test_retention_options_out_of_range_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        MemoryStore(**options)
