"""The memory store keeps spans encoded: what goes in comes back out, exactly once."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from rastir._wire import WireError, WireEvent, WireLink, WireSpan
from rastir.collector.store import MemoryStore, SpanRow

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
