"""A big trace read from the memory store does not hold the collector's event loop.

The store decodes a big trace in a worker thread, from a snapshot taken on the loop.
These tests hold that thread on a gate and check that, meanwhile, the collector
answers ingest and /metrics, that writes and evictions do not change the answer
being read, and that a listing lets other tasks run between its slices.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from rastir._wire import WireSpan
from rastir.collector.store import MemoryStore, SpanRow, TraceQuery
from rastir.collector.store.memory import INLINE_READ_SPANS, LIST_SLICE
from tests.collector.conftest import RunCollector
from tests.collector.spans import T0, batch, encode, span, span_id, trace_id
from tests.sampling.collector import wait_for

pytestmark = pytest.mark.anyio

BIG = 10_000  # spans in the big trace: far above INLINE_READ_SPANS


class GatedStore(MemoryStore):
    """A memory store whose off-loop decoding waits for the test to let it go."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.decoding = threading.Event()
        self.release = threading.Event()

    def _read_snapshot(self, chunks: list[tuple[str, bytes]]) -> list[SpanRow]:
        self.decoding.set()
        # Bounded: were this on the event loop, the test would fail, not hang.
        self.release.wait(20)
        return super()._read_snapshot(chunks)


def big_trace() -> tuple[str, str, list[dict[str, Any]]]:
    """A root and BIG - 1 children, the children first (the root arrives last)."""
    tid, root = trace_id(), span_id()
    spans = [
        span(trace=tid, parent=root, kind="tool", name=f"step {i}", start=T0 + 1000 + i)
        for i in range(BIG - 1)
    ]
    spans.append(span(trace=tid, sid=root, kind="agent", name="planner", duration_ms=60_000))
    return tid, root, spans


async def post_in_batches(c: Any, spans: list[dict[str, Any]]) -> None:
    for i in range(0, len(spans), 5000):
        r = await c.post(encode(batch(spans[i : i + 5000])))
        assert r.status_code == 202, r.text


async def test_ingest_and_metrics_are_answered_while_a_big_trace_is_read(
    run_collector: RunCollector,
) -> None:
    assert BIG > INLINE_READ_SPANS
    store = GatedStore(max_spans=100_000)
    async with run_collector(trace_store=store) as c:
        tid, root, spans = big_trace()
        await post_in_batches(c, spans)
        answer: list[httpx.Response] = []

        async def read_big() -> None:
            answer.append(await c.client.get(f"/v1/traces/{tid}"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_big)
            await wait_for(store.decoding.is_set)
            # The read is in its worker thread: the loop serves everyone else.
            other, other_spans = trace_id(), []
            other_spans.append(span(trace=other, kind="agent"))
            r = await c.post(encode(batch(other_spans, service="other")))
            assert r.status_code == 202, r.text
            late = span(trace=tid, parent=root, kind="llm", name="late", start=T0 + 5)
            assert (await c.post(encode(batch([late])))).status_code == 202
            m = await c.scrape()
            assert m.value("rastir_collector_ingested_spans_total", service="other") == 1
            listed = (await c.client.get("/v1/traces", params={"service": "other"})).json()
            assert [t["trace_id"] for t in listed["traces"]] == [other]
            assert not answer  # still decoding
            store.release.set()

        (r,) = answer
        assert r.status_code == 200, r.text
        tree = r.json()
        # The answer is the trace as it was when asked: complete, one tree, and
        # without the span that came while it was decoded.
        assert tree["summary"]["span_count"] == BIG
        (top,) = tree["spans"]
        assert top["span_id"] == root
        assert top["orphan"] is False
        assert {child["span_id"] for child in top["children"]} == {s["span_id"] for s in spans[:-1]}
        assert [child["start_time_unix_nano"] for child in top["children"]] == sorted(
            s["start_time_unix_nano"] for s in spans[:-1]
        )
        # Asked again, the late span is there.
        again = (await c.client.get(f"/v1/traces/{tid}")).json()
        assert again["summary"]["span_count"] == BIG + 1
        assert late["span_id"] in {child["span_id"] for child in again["spans"][0]["children"]}


def _rows(tid: str, n: int, start: int = T0) -> list[SpanRow]:
    spans = [
        span(trace=tid, kind="tool", start=start + i, duration_ms=0.001, name=str(i))
        for i in range(n)
    ]
    return [SpanRow("svc", WireSpan(**s)) for s in spans]


async def test_a_trace_evicted_while_it_is_read_is_still_answered_whole() -> None:
    store = GatedStore(max_spans=BIG + 100)
    tid = trace_id()
    store.submit(_rows(tid, BIG))
    answer: list[Any] = []

    async def read() -> None:
        answer.append(await store.get_trace(tid))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await wait_for(store.decoding.is_set)
        store.submit(_rows(trace_id(), 200, start=T0 + BIG))  # over the bound: evicts it
        stats = store.stats()
        assert stats.extra["evicted_traces"] == 1
        assert stats.spans_stored == 200
        assert await store.get_trace(tid) is None
        store.release.set()

    (detail,) = answer
    assert detail is not None
    assert detail.summary.span_count == BIG
    assert sorted(row.span.name for row in detail.spans) == sorted(str(i) for i in range(BIG))


async def test_a_small_trace_is_read_on_the_loop() -> None:
    store = GatedStore()
    tid = trace_id()
    store.submit(_rows(tid, INLINE_READ_SPANS))
    detail = await store.get_trace(tid)
    assert detail is not None
    assert len(detail.spans) == INLINE_READ_SPANS
    assert not store.decoding.is_set()


async def test_a_long_listing_lets_a_write_in_and_lists_what_it_wrote() -> None:
    store = MemoryStore()
    # Many short traces, none long enough for the filter: the walk looks at them all.
    for i in range(3 * LIST_SLICE):
        store.submit(_rows(trace_id(), 1, start=T0 + 1_000_000 + i))
    slow = trace_id()
    events: list[str] = []

    async def listing() -> None:
        page = await store.list_traces(TraceQuery(min_duration_ns=1_000_000_000, limit=10))
        events.append("listed")
        assert [t.trace_id for t in page.traces] == [slow]

    async def write() -> None:
        # A slow trace that started before every other: it sorts below the walk's
        # position, so the walk, resumed after the write, still reaches it.
        store.submit([SpanRow("svc", WireSpan(**span(trace=slow, start=T0, duration_ms=2000)))])
        events.append("written")

    async with anyio.create_task_group() as tg:
        tg.start_soon(listing)
        tg.start_soon(write)
    assert events == ["written", "listed"]


async def test_a_listing_that_yields_gives_each_trace_once_newest_first() -> None:
    store = MemoryStore()
    ids = [trace_id() for _ in range(4 * LIST_SLICE)]
    for i, tid in enumerate(ids):
        store.submit(_rows(tid, 1, start=T0 + 10 * i))
    found: list[tuple[int, str]] = []

    async def listing() -> None:
        cursor = None
        for _ in range(100):
            page = await store.list_traces(TraceQuery(status="ok", limit=1000, cursor=cursor))
            found.extend((t.start_time_unix_nano, t.trace_id) for t in page.traces)
            cursor = page.next_cursor
            if cursor is None:
                break

    async def churn() -> None:
        # Between the listing's slices: traces newer than all (above the walk) and
        # in between (below it) arrive.
        for j in range(50):
            store.submit(_rows(trace_id(), 1, start=T0 + 100 * LIST_SLICE * 10 + j))
            store.submit(_rows(trace_id(), 1, start=T0 + 10 * j + 5))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listing)
        tg.start_soon(churn)
    listed = [tid for _, tid in found]
    assert len(listed) == len(set(listed))
    assert set(ids) <= set(listed)
    assert found == sorted(found, reverse=True)
