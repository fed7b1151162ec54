"""What only the SQLite store does: durability, reopening, retention, backpressure."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from anyio.streams.text import TextReceiveStream

from rastir._wire import WireError, WireSpan
from rastir.collector.store import (
    SpanRow,
    SQLiteStore,
    StoreClosedError,
    StoreError,
    StoreFullError,
    TraceQuery,
)
from rastir.collector.store._aggregate import query_tags
from rastir.collector.store._writer import QueuedWriter
from rastir.collector.store.sqlite import _listing_sql, _slow_are_fewer, _transient

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_750_000_000_000_000_000
MS = 1_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tid(n: int) -> str:
    return f"{n:032x}"


def trace(
    n: int,
    spans: int,
    *,
    start: int = T0,
    service: str = "api",
    attributes: dict[str, Any] | None = None,
) -> list[SpanRow]:
    """A root and ``spans - 1`` children, 1 ms apart."""
    return [
        SpanRow(
            service,
            WireSpan(
                trace_id=tid(n),
                span_id=f"{i + 1:016x}",
                name=f"op{i}",
                kind="custom",
                start_time_unix_nano=start + i * MS,
                end_time_unix_nano=start + (i + 1) * MS,
                parent_span_id=None if i == 0 else f"{1:016x}",
                attributes=attributes or {},
            ),
        )
        for i in range(spans)
    ]


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    connection.close()
    return int(count)


async def test_reopening_resumes_with_spans_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.start()
    await store.write(trace(1, 5) + trace(2, 4))
    await store.write(trace(3, 3))
    await store.close()

    again = SQLiteStore(path)
    await again.start()
    try:
        stats = again.stats()
        assert (stats.spans_stored, stats.traces_stored) == (12, 3)
        assert stats.size_bytes > 0
        # A late span joins its trace; a new trace gets a row of its own.
        late = trace(1, 6)[5:]
        await again.write(late + trace(4, 2))
        detail = await again.get_trace(tid(1))
        assert detail is not None
        assert (detail.summary.span_count, detail.summary.duration_ns) == (6, 6 * MS)
        stats = again.stats()
        assert (stats.spans_stored, stats.traces_stored) == (15, 4)
        listed = await again.list_traces(TraceQuery())
        assert sorted(s.trace_id for s in listed.traces) == [tid(n) for n in (1, 2, 3, 4)]
    finally:
        await again.close()
    assert count_rows(path, "span_data") == 15


async def test_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path, batch_max_spans=60)
    await store.start()
    for n in range(1, 41):
        assert store.submit(trace(n, 25))
    await store.close()
    assert store.stats().extra["lost_spans"] == 0
    assert count_rows(path, "span_data") == 1000
    assert not (tmp_path / "t.db-wal").exists() or (tmp_path / "t.db-wal").stat().st_size == 0


async def test_a_store_that_is_not_running_takes_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    assert not store.submit(trace(1, 2))
    with pytest.raises(StoreClosedError):
        await store.write(trace(1, 2))
    with pytest.raises(StoreClosedError):
        await store.get_trace(tid(1))
    await store.start()
    await store.close()
    assert not store.submit(trace(1, 2))
    with pytest.raises(StoreClosedError):
        await store.write(trace(1, 2))
    with pytest.raises(StoreClosedError):
        await store.list_traces(TraceQuery())
    with pytest.raises(StoreClosedError):
        await store.start()
    assert store.stats().dropped_spans == 4


async def test_a_full_queue_refuses_spans_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path, queue_max_spans=10)
    await store.start()
    # Another connection holds the write lock: the writer cannot drain meanwhile.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        assert store.submit(trace(1, 6))
        assert store.submit(trace(2, 4))
        assert not store.submit(trace(3, 1))
        with pytest.raises(StoreFullError) as refused:
            await store.write(trace(4, 2))
        assert (refused.value.spans, refused.value.capacity) == (2, 10)
        stats = store.stats()
        assert (stats.queue_depth, stats.queue_capacity, stats.dropped_spans) == (10, 10, 3)
        assert stats.lag_seconds >= 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with anyio.fail_after(5):
        await store.flush()
    stats = store.stats()
    assert (stats.queue_depth, stats.spans_stored, stats.lag_seconds) == (0, 10, 0.0)
    assert store.submit(trace(3, 1))  # room again
    await store.close()


async def test_retention_deletes_traces_that_ended_long_ago(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", retention_seconds=3600, maintenance_interval=0)
    await store.start()
    now = time.time_ns()
    hour = 3600 * 10**9
    old = trace(1, 3, start=now - 3 * hour, service="old")
    # Started as long ago, but its last span ended just now: kept.
    running = trace(2, 2, start=now - 3 * hour) + trace(2, 3, start=now - 60 * MS)[2:]
    fresh = trace(3, 4, start=now)
    await store.write(old + running + fresh)
    await store.flush()  # the pass that follows a transaction has run

    assert await store.get_trace(tid(1)) is None
    assert await store.get_trace(tid(2)) is not None
    assert await store.get_trace(tid(3)) is not None
    assert (await store.list_traces(TraceQuery(service="old"))).traces == []
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (7, 2)
    assert (stats.extra["retention_deleted_spans"], stats.extra["retention_deleted_traces"]) == (
        3,
        1,
    )
    await store.close()
    assert count_rows(tmp_path / "t.db", "span_data") == 7
    assert count_rows(tmp_path / "t.db", "trace_tags") == 2  # service "api" of each


async def fill_past_the_size_limit(store: QueuedWriter, limit: int) -> int:
    """Write 400 traces of 10 spans into a store bounded to ``limit`` bytes; check that
    the oldest went first and the totals are exact. Returns how many traces were kept.
    """
    padding = {"payload": "x" * 400}
    for first in range(1, 401, 20):
        batch = [
            row
            for n in range(first, first + 20)
            for row in trace(n, 10, start=T0 + n * MS, attributes=padding)
        ]
        await store.write(batch)
    await store.flush()

    stats = store.stats()
    assert stats.extra["size_deleted_traces"] > 0
    assert stats.extra["used_bytes"] <= limit
    assert await store.get_trace(tid(1)) is None  # the oldest went first
    assert await store.get_trace(tid(400)) is not None
    kept = 400 - stats.extra["size_deleted_traces"]
    assert (stats.traces_stored, stats.spans_stored) == (kept, 10 * kept)
    newest = await store.list_traces(TraceQuery(limit=1))
    assert [s.trace_id for s in newest.traces] == [tid(400)]
    return int(kept)


async def test_retention_by_size_deletes_the_oldest_traces(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    limit = 1_500_000
    store = SQLiteStore(path, max_bytes=limit, maintenance_interval=0)
    await store.start()
    try:
        kept = await fill_past_the_size_limit(store, limit)
    finally:
        await store.close()
    assert count_rows(path, "span_data") == 10 * kept
    assert count_rows(path, "traces") == kept


async def test_one_bad_batch_does_not_sink_those_written_with_it(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.start()
    bad = [SpanRow(["not", "a", "name"], trace(2, 1)[0].span)]  # type: ignore[arg-type]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:  # queue all three so that the writer takes them in one transaction
        assert store.submit(trace(1, 3))
        assert store.submit(bad)
        assert store.submit(trace(3, 3))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await store.flush()
    assert await store.get_trace(tid(1)) is not None
    assert await store.get_trace(tid(2)) is None
    assert await store.get_trace(tid(3)) is not None
    with pytest.raises(StoreError, match="could not write"):
        await store.write(bad)
    stats = store.stats()
    # The queued bad batch was lost after its 202; the committed write was refused
    # (its sender keeps the span), so it is not counted as lost.
    assert (stats.spans_stored, stats.extra["failed_spans"]) == (6, 1)
    await store.close()


async def test_spans_with_times_beyond_64_bits_are_counted_not_stored(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.start()
    far = SpanRow("api", msgspec.structs.replace(trace(2, 1)[0].span, end_time_unix_nano=2**64))
    await store.write([*trace(1, 2), far])
    stats = store.stats()
    assert (stats.spans_stored, stats.extra["invalid_spans"]) == (2, 1)
    assert await store.get_trace(tid(2)) is None
    await store.close()


async def test_the_spans_view_shows_the_columns_of_each_span(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.start()
    root, child = trace(1, 2)
    child = SpanRow(
        "worker",
        msgspec.structs.replace(
            child.span,
            status="error",
            error=WireError("timeout", "TimeoutError", "slow"),
            attributes={
                "gen_ai.agent.name": "planner",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
            },
        ),
    )
    await store.write([root, child])
    await store.close()
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns,"
            " status, error_type, agent, model FROM spans ORDER BY span_id"
        ).fetchall()
    connection.close()
    assert rows == [
        (tid(1), f"{1:016x}", None, "api", "op0", "custom", T0, T0 + MS, "ok", None, None, None),
        (
            tid(1),
            f"{2:016x}",
            f"{1:016x}",
            "worker",
            "op1",
            "custom",
            T0 + MS,
            T0 + 2 * MS,
            "error",
            "timeout",
            "planner",
            "gpt-4o-2024-08-06",
        ),
    ]


@pytest.mark.parametrize(
    "query",
    [
        TraceQuery(),
        TraceQuery(status="ok", start_ns=1, end_ns=2),
        TraceQuery(service="api"),
        TraceQuery(status="error"),
        TraceQuery(agent="a", model="m", error_type="timeout", service="api", status="error"),
        TraceQuery(model="m", start_ns=1, end_ns=2, min_duration_ns=3),
    ],
)
@pytest.mark.parametrize("cursor", [None, (T0, 7)])
async def test_listings_walk_an_index_in_order_without_sorting(
    tmp_path: Path, query: TraceQuery, cursor: tuple[int, int] | None
) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.start()
    await store.write(trace(1, 3))
    await store.close()
    sql, params = _listing_sql(query, cursor)
    with sqlite3.connect(tmp_path / "t.db") as connection:
        plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    connection.close()
    assert "TEMP B-TREE" not in plan
    assert "INDEX" in plan or "PRIMARY KEY" in plan, plan
    if query.service or query.agent or query.model or query.status == "error":
        assert "SCAN" not in plan, plan  # a range of the tag index, not every trace


def query_plan(path: Path, query: TraceQuery, cursor: tuple[int, int] | None) -> list[str]:
    sql, params = _listing_sql(query, cursor)
    with sqlite3.connect(path) as connection:
        plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    connection.close()
    return plan


# A walk of a whole table (or of an index holding every row of it), filtering as it
# goes. Scans of a union's arms, "SCAN (subquery-N)", read a page's rows at most.
_FULL_SCAN = re.compile(r"SCAN (t|g|h|traces|trace_tags|span_data|spans)\b")
# Every entry of this partial index matches status=ok: its walk stops at the page.
_PAGE_SCAN = "SCAN t USING INDEX traces_ok_by_start"

FILTERS = {
    "service": TraceQuery(service="api"),
    "agent": TraceQuery(agent="a"),
    "model": TraceQuery(model="m"),
    "status ok": TraceQuery(status="ok"),
    "status error": TraceQuery(status="error"),
    "error type": TraceQuery(error_type="timeout"),
    "min duration": TraceQuery(min_duration_ns=50 * MS),
    "time range": TraceQuery(start_ns=T0, end_ns=T0 + 10 * MS),
    "start": TraceQuery(start_ns=T0),
    "end": TraceQuery(end_ns=T0),
    "ok, min duration": TraceQuery(status="ok", min_duration_ns=3),
    "min duration, time": TraceQuery(min_duration_ns=MS, start_ns=T0, end_ns=T0 + MS),
    "service, min duration": TraceQuery(service="api", min_duration_ns=MS),
    "agent, model, ok": TraceQuery(agent="a", model="m", status="ok"),
    "everything": TraceQuery(
        service="api",
        agent="a",
        model="m",
        status="error",
        error_type="timeout",
        min_duration_ns=MS,
        start_ns=T0,
        end_ns=T0 + MS,
    ),
}


@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("cursor", [None, (T0, 7)])
async def test_no_listing_filter_walks_every_trace(
    tmp_path: Path, name: str, cursor: tuple[int, int] | None
) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.start()
    await store.write(trace(1, 3))
    await store.close()
    query = FILTERS[name]
    plan = query_plan(tmp_path / "t.db", query, cursor)
    full = [line for line in plan if _FULL_SCAN.match(line) and line != _PAGE_SCAN]
    assert not full, plan
    assert all("SEARCH" in line or line == _PAGE_SCAN for line in plan if " t " in line), plan
    if query.min_duration_ns and not (
        query.service or query.agent or query.model or query.error_type or query.status == "error"
    ):
        assert any("traces_by_duration_digits" in line for line in plan), plan
        assert not any("traces_by_start" in line for line in plan), plan


def _durations_and_errors() -> list[SpanRow]:
    """Trace n (1 to 30): one span starting at T0 + n ms, lasting n ** 3 us; every
    fourth an error."""
    return [
        SpanRow(
            "api",
            WireSpan(
                trace_id=tid(n),
                span_id=f"{n:016x}",
                name="op",
                kind="custom",
                start_time_unix_nano=T0 + n * MS,
                end_time_unix_nano=T0 + n * MS + n**3 * 1000,
                status="error" if n % 4 == 0 else "ok",
                error=WireError(type="timeout") if n % 4 == 0 else None,
            ),
        )
        for n in range(1, 31)
    ]


async def test_a_database_made_before_the_listing_indexes_gets_them_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.start()
    await store.write(_durations_and_errors())
    await store.close()
    # The file as the release before this one left it: the same schema (version 1)
    # without the two listing indexes.
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX traces_ok_by_start")
        connection.execute("DROP INDEX traces_by_duration_digits")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    connection.close()
    assert version == 1

    store = SQLiteStore(path)
    await store.start()
    try:
        with sqlite3.connect(path) as connection:
            indexes = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            }
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        connection.close()
        assert {"traces_ok_by_start", "traces_by_duration_digits"} <= indexes
        assert version == 1
        # Answers from the rebuilt indexes, and from rows written after reopening.
        await store.write(trace(99, 2, start=T0 + 99 * MS))
        long_ones = await store.list_traces(TraceQuery(min_duration_ns=8_000_000, limit=100))
        assert [t.trace_id for t in long_ones.traces] == [
            tid(n) for n in range(30, 0, -1) if n**3 * 1000 >= 8_000_000
        ]
        ok = await store.list_traces(TraceQuery(status="ok", limit=5))
        assert [t.trace_id for t in ok.traces] == [tid(n) for n in (99, 30, 29, 27, 26)]
        assert store.stats().traces_stored == 31
    finally:
        await store.close()
    plan = query_plan(path, TraceQuery(min_duration_ns=8_000_000), None)
    assert any("traces_by_duration_digits" in line for line in plan), plan


NO_ERROR = WireError(type="unknown")


def _tagged_traces() -> list[SpanRow]:
    """3,000 one-span traces, 1 ms apart: service "api" but every 100th ("rare", 20 ms
    long); agent "a" on even ones; 2 s long every 150th, else 2 to 49 ms; every 7th an
    error."""
    rows = []
    for n in range(3000):
        rare = n % 100 == 3
        duration = 20 * MS if rare else 2000 * MS if n % 150 == 0 else (n * 7 % 48 + 2) * MS
        rows.append(
            SpanRow(
                "rare" if rare else "api",
                WireSpan(
                    trace_id=tid(n + 1),
                    span_id=f"{n + 1:016x}",
                    name="op",
                    kind="agent",
                    start_time_unix_nano=T0 + n * MS,
                    end_time_unix_nano=T0 + n * MS + duration,
                    status="error" if n % 7 == 0 else "ok",
                    error=WireError(type="timeout") if n % 7 == 0 else None,
                    attributes={"gen_ai.agent.name": "a"} if n % 2 == 0 else {},
                ),
            )
        )
    return rows


@pytest.mark.parametrize(
    ("query", "walks"),
    [
        # Every trace is "api", 20 last 1 s: walk those 20, check the tag.
        (TraceQuery(service="api", min_duration_ns=1000 * MS), "traces_by_duration_digits"),
        (
            TraceQuery(service="api", agent="a", min_duration_ns=1000 * MS),
            "traces_by_duration_digits",
        ),
        # 2,500-odd traces last 10 ms or more (8 digits), fewer carry agent "a".
        (TraceQuery(service="api", agent="a", min_duration_ns=40 * MS), "trace_tags"),
        (
            TraceQuery(
                service="api", status="ok", min_duration_ns=1000 * MS, start_ns=T0 + 900 * MS
            ),
            "traces_by_duration_digits",
        ),
        # 30 traces are "rare", almost every trace lasts 1 ms: walk the tag.
        (TraceQuery(service="rare", min_duration_ns=MS), "trace_tags"),
        (TraceQuery(service="rare", min_duration_ns=20 * MS), "trace_tags"),
        (TraceQuery(agent="a", error_type="timeout", min_duration_ns=40 * MS), "trace_tags"),
    ],
)
async def test_a_tag_and_a_minimum_duration_walk_the_smaller_index_and_list_every_match(
    tmp_path: Path, query: TraceQuery, walks: str
) -> None:
    path = tmp_path / "t.db"
    rows = _tagged_traces()
    store = SQLiteStore(path)
    await store.start()
    try:
        await store.write(rows)
        listed: list[str] = []
        cursor = None
        for _ in range(1000):
            page = await store.list_traces(dataclasses.replace(query, limit=7, cursor=cursor))
            listed += [t.trace_id for t in page.traces]
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        await store.close()
    # Brute force, from the spans themselves.
    min_duration = query.min_duration_ns or 0
    brute = [
        row.span.trace_id
        for row in sorted(rows, key=lambda row: row.span.start_time_unix_nano, reverse=True)
        if row.span.end_time_unix_nano - row.span.start_time_unix_nano >= min_duration
        and (query.service is None or row.service == query.service)
        and (query.agent is None or row.span.attributes.get("gen_ai.agent.name") == query.agent)
        and (query.error_type is None or (row.span.error or NO_ERROR).type == query.error_type)
        and (query.status is None or row.span.status == query.status)
        and (query.start_ns is None or row.span.start_time_unix_nano >= query.start_ns)
    ]
    assert brute  # the query matches something
    assert listed == brute
    with sqlite3.connect(path) as connection:
        slow_first = _slow_are_fewer(connection, query_tags(query)[0], min_duration)
        sql, params = _listing_sql(query, (T0 + 2000 * MS, 1), slow_first=slow_first)
        plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    connection.close()
    assert slow_first == (walks == "traces_by_duration_digits")
    assert not [line for line in plan if _FULL_SCAN.match(line)], plan
    if slow_first:
        assert any("SEARCH t USING INDEX traces_by_duration_digits" in line for line in plan)
        assert not any("SEARCH g" in line for line in plan), plan
    else:
        assert any("SEARCH g USING PRIMARY KEY (tag=? AND value=?" in line for line in plan)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_writes_and_reads_work_on_either_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.start()
    try:
        with anyio.fail_after(5):
            assert store.submit(trace(1, 2))
            await store.flush()
            await store.write(trace(2, 3))
        assert await store.get_trace(tid(1)) is not None
        detail = await store.get_trace(tid(2))
        assert detail is not None
        assert detail.summary.span_count == 3
    finally:
        await store.close()


async def test_reads_run_concurrently_with_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", readers=2)
    await store.start()
    await store.write([row for n in range(1, 51) for row in trace(n, 4)])
    found: list[int] = []

    async def read(n: int) -> None:
        detail = await store.get_trace(tid(n))
        assert detail is not None
        found.append(detail.summary.span_count)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(1, 51):
                tg.start_soon(read, n)
                assert store.submit(trace(100 + n, 2))
    assert found == [4] * 50
    await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore(path).start()


@pytest.mark.parametrize(
    "options",
    [
        {"queue_max_spans": 0},
        {"batch_max_spans": 0},
        {"retention_seconds": 0},
        {"max_bytes": 0},
        {"synchronous": "SOMETIMES"},
        {"maintenance_interval": -1},
        {"readers": 0},
    ],
)
def test_options_out_of_range_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "t.db", **options)


# A child process that acknowledges each committed batch on stdout, as the collector
# acknowledges a committed POST, until it is killed.
CHILD = """
import sys, anyio
from rastir._wire import WireSpan
from rastir.collector.store import SQLiteStore, SpanRow

async def main():
    store = SQLiteStore(sys.argv[1])
    await store.start()
    n = 0
    while True:
        n += 1
        rows = [
            SpanRow("svc", WireSpan(f"{n:032x}", f"{i + 1:016x}", "op", "custom", n, n + 1))
            for i in range(10)
        ]
        await store.write(rows)
        print(n, flush=True)

anyio.run(main)
"""


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acknowledged: list[int] = []
    # Bounded generously: the child has to import and open the store first.
    with anyio.fail_after(60):
        async with await anyio.open_process(
            [sys.executable, "-c", CHILD, str(path)], env=env, cwd=ROOT
        ) as process:
            assert process.stdout is not None
            buffer = ""
            async for chunk in TextReceiveStream(process.stdout):
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                acknowledged += [int(line) for line in lines]
                if len(acknowledged) >= 30:
                    process.kill()  # SIGKILL: no cleanup, no checkpoint
                    break
            await process.wait()
            assert process.returncode == -9, await _stderr(process)

    store = SQLiteStore(path)
    await store.start()
    try:
        for n in acknowledged:
            detail = await store.get_trace(tid(n))
            assert detail is not None, n
            assert detail.summary.span_count == 10
        stats = store.stats()
        assert stats.spans_stored >= 10 * len(acknowledged)
        # Transactions are whole: no trace was left half written.
        assert stats.spans_stored == 10 * stats.traces_stored
    finally:
        await store.close()


async def _stderr(process: anyio.abc.Process) -> str:
    if process.stderr is None:
        return ""
    return (await process.stderr.receive()).decode(errors="replace")


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("database is locked", True),
        ("database or disk is full", True),
        ("disk I/O error", True),
        ("attempt to write a readonly database", True),
        ("no such table: spans", False),
        ("UNIQUE constraint failed: spans.trace_id", False),
    ],
)
def test_a_failure_without_an_error_code_is_judged_by_sqlites_message(
    message: str, transient: bool
) -> None:
    """Python 3.10's sqlite3 exceptions carry no ``sqlite_errorcode``: a locked or full
    database must still be retried (acknowledged spans kept), not given up."""
    error = sqlite3.OperationalError(message)
    assert getattr(error, "sqlite_errorcode", None) is None
    assert _transient(error) is transient
    assert _transient(ValueError(message)) is False
