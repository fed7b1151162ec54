"""Behaviour every trace store shares, run against the memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import rastir.collector.store as store_package
from rastir._wire import ERROR_CATEGORIES, WireError, WireSpan
from rastir.collector.store import (
    MemoryStore,
    PostgresStore,
    SpanRow,
    SQLiteStore,
    TraceDetail,
    TraceQuery,
    TraceStore,
    build_tree,
    open_store,
    summarize,
)
from tests._postgres import PostgresServer

pytestmark = pytest.mark.anyio

Store = MemoryStore | SQLiteStore | PostgresStore

T0 = 1_750_000_000_000_000_000  # Unix nanoseconds
MS = 1_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "t.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_dsn"))
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def span(
    trace: int,
    span_id: int,
    *,
    parent: int | None = None,
    name: str = "op",
    kind: Any = "custom",
    start: int = T0,
    duration: int = MS,
    status: Any = "ok",
    error: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> WireSpan:
    return WireSpan(
        trace_id=tid(trace),
        span_id=sid(span_id),
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        parent_span_id=None if parent is None else sid(parent),
        status=status,
        error=None if error is None else WireError(error),  # type: ignore[arg-type]
        attributes=attributes or {},
    )


async def ingest(store: Store, *batches: list[SpanRow]) -> None:
    """Submit batches (as the collector does) and wait until they are stored."""
    for batch in batches:
        assert store.submit(batch)
    with anyio.fail_after(5):
        await store.flush()


async def trace_ids(store: Store, query: TraceQuery) -> list[str]:
    page = await store.list_traces(query)
    return [summary.trace_id for summary in page.traces]


def walk(tree: dict[str, Any]) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """(parent, node) for every node of an assembled tree, without recursion."""
    stack: list[tuple[dict[str, Any] | None, dict[str, Any]]] = [
        (None, node) for node in tree["spans"]
    ]
    while stack:
        parent, node = stack.pop()
        yield parent, node
        stack.extend((node, child) for child in node["children"])


def test_the_package_exports_exactly_its_all() -> None:
    ours = {
        name
        for name, value in vars(store_package).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", "").startswith("rastir.")
    }
    assert set(store_package.__all__) == ours


# -- assembly -------------------------------------------------------------------------


async def test_children_before_parents_and_late_spans_assemble_into_one_tree(store: Store) -> None:
    grandchild = SpanRow("api", span(1, 3, parent=2, name="llm", start=T0 + 2 * MS))
    child = SpanRow("api", span(1, 2, parent=1, name="agent", start=T0 + MS, duration=5 * MS))
    root = SpanRow("api", span(1, 1, name="request", duration=10 * MS))
    late = SpanRow("api", span(1, 4, parent=1, name="late tool", start=T0 + 8 * MS))
    await ingest(store, [grandchild], [child])
    await ingest(store, [root])
    await ingest(store, [late])

    detail = await store.get_trace(tid(1))
    assert detail is not None
    tree = build_tree(detail)
    assert [node["name"] for node in tree["spans"]] == ["request"]
    top = tree["spans"][0]
    assert [c["name"] for c in top["children"]] == ["agent", "late tool"]
    assert [c["name"] for c in top["children"][0]["children"]] == ["llm"]
    assert not any(node["orphan"] for _, node in walk(tree))
    summary = detail.summary
    assert (summary.root_name, summary.span_count) == ("request", 4)
    assert (summary.start_time_unix_nano, summary.duration_ns) == (T0, 10 * MS)
    json.dumps(tree)  # JSON-ready as it is


async def test_spans_from_two_services_join_one_trace(store: Store) -> None:
    await ingest(store, [SpanRow("worker", span(7, 2, parent=1, name="job", start=T0 + MS))])
    await ingest(store, [SpanRow("api", span(7, 1, name="POST /run", duration=9 * MS))])

    detail = await store.get_trace(tid(7))
    assert detail is not None
    assert detail.summary.services == ["api", "worker"]
    tree = build_tree(detail)
    (top,) = tree["spans"]
    assert (top["service"], top["children"][0]["service"]) == ("api", "worker")
    assert await trace_ids(store, TraceQuery(service="worker")) == [tid(7)]


async def test_a_span_whose_parent_never_arrived_is_a_top_level_orphan(store: Store) -> None:
    await ingest(
        store,
        [
            SpanRow("api", span(3, 1, name="root", duration=10 * MS)),
            SpanRow("api", span(3, 2, parent=99, name="stray", start=T0 + MS)),
        ],
    )
    detail = await store.get_trace(tid(3))
    assert detail is not None
    tree = build_tree(detail)
    assert [(n["name"], n["orphan"]) for n in tree["spans"]] == [("root", False), ("stray", True)]
    assert detail.summary.root_name == "root"


async def test_while_only_orphans_are_known_the_earliest_is_the_root(store: Store) -> None:
    await ingest(
        store,
        [
            SpanRow("api", span(4, 2, parent=1, name="second", start=T0 + MS)),
            SpanRow("api", span(4, 3, parent=1, name="first", start=T0)),
        ],
    )
    detail = await store.get_trace(tid(4))
    assert detail is not None
    assert detail.summary.root_name == "first"
    assert all(node["orphan"] for node in build_tree(detail)["spans"])


@pytest.mark.parametrize("same_batch", [False, True])
async def test_a_span_written_again_replaces_the_earlier_copy(
    store: Store, same_batch: bool
) -> None:
    first = SpanRow("api", span(5, 1, name="first", status="error", error="timeout"))
    second = SpanRow("api", span(5, 1, name="second", duration=3 * MS))
    other = SpanRow("api", span(5, 2, parent=1, name="child"))
    if same_batch:
        await ingest(store, [first, other, second])
    else:
        await ingest(store, [first, other])
        assert await trace_ids(store, TraceQuery(status="error")) == [tid(5)]
        await ingest(store, [second])

    detail = await store.get_trace(tid(5))
    assert detail is not None
    assert sorted(row.span.name for row in detail.spans) == ["child", "second"]
    summary = detail.summary
    assert (summary.span_count, summary.error_count, summary.status) == (2, 0, "ok")
    assert (summary.root_name, summary.duration_ns) == ("second", 3 * MS)
    assert await trace_ids(store, TraceQuery(status="error")) == []
    assert await trace_ids(store, TraceQuery(error_type="timeout")) == []
    assert await trace_ids(store, TraceQuery(status="ok")) == [tid(5)]
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (2, 1)


async def test_an_unknown_trace_is_none(store: Store) -> None:
    await ingest(store, [SpanRow("api", span(1, 1))])
    assert await store.get_trace(tid(2)) is None


async def test_write_returns_once_the_spans_are_readable(store: Store) -> None:
    with anyio.fail_after(5):
        await store.write([SpanRow("api", span(9, 1)), SpanRow("api", span(9, 2, parent=1))])
    detail = await store.get_trace(tid(9))
    assert detail is not None
    assert detail.summary.span_count == 2


async def test_summaries_add_up_tokens_cost_and_errors(store: Store) -> None:
    llm = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "rastir.cost.usd": 0.25,
    }
    await ingest(
        store,
        [
            SpanRow("api", span(2, 1, name="agent", kind="agent", duration=20 * MS)),
            SpanRow("api", span(2, 2, parent=1, kind="llm", start=T0 + MS, attributes=llm)),
            SpanRow(
                "api",
                span(2, 3, parent=1, kind="llm", start=T0 + 2 * MS, attributes=llm, status="error"),
            ),
            SpanRow("api", span(2, 4, parent=1, status="cancelled", start=T0 + 3 * MS)),
        ],
    )
    (summary,) = (await store.list_traces(TraceQuery())).traces
    assert (summary.input_tokens, summary.output_tokens) == (240, 60)
    assert summary.cost_usd == pytest.approx(0.5)
    assert (summary.error_count, summary.status) == (1, "error")
    assert (summary.root_name, summary.span_count, summary.duration_ns) == ("agent", 4, 20 * MS)
    detail = await store.get_trace(tid(2))
    assert detail is not None
    assert detail.summary == summary


@pytest.mark.parametrize("together", [True, False], ids=["one_batch", "later_batch"])
async def test_evaluation_spans_leave_the_traces_status_errors_and_duration_alone(
    store: Store, together: bool
) -> None:
    # An evaluation judged the trace a minute after it ended, and failed (a judge's
    # 500): the trace stays ok, 20 ms long, and found by neither error nor duration.
    app = [
        SpanRow("api", span(3, 1, name="agent", kind="agent", duration=20 * MS)),
        SpanRow("api", span(3, 2, parent=1, kind="llm", start=T0 + MS)),
    ]
    judged = SpanRow(
        "api",
        span(
            3,
            3,
            parent=2,
            kind="evaluation",
            start=T0 + 60_000 * MS,
            duration=2_000 * MS,
            status="error",
            error="provider_error",
        ),
    )
    await ingest(store, *([[*app, judged]] if together else [app, [judged]]))
    detail = await store.get_trace(tid(3))
    assert detail is not None
    summary = detail.summary
    assert (summary.span_count, summary.error_count, summary.status) == (3, 0, "ok")
    assert (summary.start_time_unix_nano, summary.duration_ns) == (T0, 20 * MS)
    assert await trace_ids(store, TraceQuery(status="error")) == []
    assert await trace_ids(store, TraceQuery(error_type="provider_error")) == []
    assert await trace_ids(store, TraceQuery(min_duration_ns=20 * MS + 1)) == []
    assert await trace_ids(store, TraceQuery(status="ok")) == [tid(3)]
    (listed,) = (await store.list_traces(TraceQuery())).traces
    assert listed == summary
    # The evaluation span itself is stored as it came, error and all.
    (ev,) = [row.span for row in detail.spans if row.span.kind == "evaluation"]
    assert ev.status == "error"
    assert ev.error is not None
    assert ev.error.type == "provider_error"


async def test_an_application_error_still_makes_an_error_trace_beside_evaluations(
    store: Store,
) -> None:
    await ingest(
        store,
        [
            SpanRow("api", span(4, 1, kind="agent", status="error", error="timeout")),
            SpanRow("api", span(4, 2, parent=1, kind="evaluation", start=T0 + 5 * MS)),
        ],
    )
    (summary,) = (await store.list_traces(TraceQuery(status="error"))).traces
    assert (summary.error_count, summary.span_count, summary.duration_ns) == (1, 2, MS)
    assert await trace_ids(store, TraceQuery(error_type="timeout")) == [tid(4)]


# -- listing ------------------------------------------------------------------------

# Six traces, each with something the filters can tell apart. Starts are 10 ms apart,
# so newest first is trace 6 ... trace 1.
FIXTURE = {
    1: [
        SpanRow("api", span(1, 1, start=T0 + 10 * MS, duration=50 * MS, name="a1")),
        SpanRow(
            "worker",
            span(1, 2, parent=1, start=T0 + 11 * MS, attributes={"gen_ai.agent.name": "planner"}),
        ),
    ],
    2: [
        SpanRow(
            "api",
            span(
                2,
                1,
                start=T0 + 20 * MS,
                duration=5 * MS,
                attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.agent.name": "writer"},
            ),
        )
    ],
    3: [
        SpanRow(
            "worker",
            span(
                3,
                1,
                start=T0 + 30 * MS,
                duration=80 * MS,
                status="error",
                error="rate_limit",
                attributes={
                    "gen_ai.request.model": "claude",
                    "gen_ai.response.model": "claude-2025",
                },
            ),
        )
    ],
    4: [
        SpanRow("api", span(4, 1, start=T0 + 40 * MS, duration=2 * MS)),
        SpanRow(
            "api",
            span(4, 2, parent=1, start=T0 + 41 * MS, status="error", error="timeout"),
        ),
    ],
    5: [
        SpanRow(
            "tools",
            span(
                5,
                1,
                start=T0 + 50 * MS,
                duration=100 * MS,
                attributes={"gen_ai.agent.name": "planner", "gen_ai.response.model": "gpt-4o"},
            ),
        )
    ],
    6: [SpanRow("api", span(6, 1, start=T0 + 60 * MS, duration=MS, status="cancelled"))],
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TraceQuery(), [6, 5, 4, 3, 2, 1]),
        (TraceQuery(service="worker"), [3, 1]),
        (TraceQuery(service="tools"), [5]),
        (TraceQuery(service="nobody"), []),
        (TraceQuery(agent="planner"), [5, 1]),
        (TraceQuery(model="gpt-4o"), [5, 2]),  # request model on 2, response model on 5
        (TraceQuery(model="claude"), [3]),
        (TraceQuery(model="claude-2025"), [3]),
        (TraceQuery(status="error"), [4, 3]),
        (TraceQuery(status="ok"), [6, 5, 2, 1]),  # cancelled is not an error
        (TraceQuery(error_type="timeout"), [4]),
        (TraceQuery(min_duration_ns=50 * MS), [5, 3, 1]),
        (TraceQuery(start_ns=T0 + 30 * MS), [6, 5, 4, 3]),
        (TraceQuery(end_ns=T0 + 30 * MS), [2, 1]),
        (TraceQuery(start_ns=T0 + 20 * MS, end_ns=T0 + 50 * MS), [4, 3, 2]),
        (TraceQuery(service="api", status="ok"), [6, 2, 1]),
        (TraceQuery(agent="planner", model="gpt-4o"), [5]),
        (TraceQuery(service="worker", status="error", error_type="rate_limit"), [3]),
        (TraceQuery(service="api", min_duration_ns=3 * MS, end_ns=T0 + 40 * MS), [2, 1]),
        (
            TraceQuery(
                service="tools",
                agent="planner",
                model="gpt-4o",
                status="ok",
                min_duration_ns=MS,
                start_ns=T0,
                end_ns=T0 + 60 * MS,
            ),
            [5],
        ),
        (TraceQuery(limit=2), [6, 5]),
    ],
)
async def test_filters_select_traces_newest_first(
    store: Store, query: TraceQuery, expected: list[int]
) -> None:
    await ingest(store, *FIXTURE.values())
    assert await trace_ids(store, query) == [tid(n) for n in expected]


async def test_pages_continue_where_the_last_one_ended(store: Store) -> None:
    await ingest(store, *FIXTURE.values())
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_traces(TraceQuery(limit=3, cursor=cursor, service="api"))
        seen += [summary.trace_id for summary in page.traces]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [tid(n) for n in (6, 4, 2, 1)]


async def test_paging_while_traces_arrive_sees_each_trace_once(store: Store) -> None:
    """Newer traces arrive at the top while a client walks down: no repeats, no gaps."""
    originals = [[SpanRow("api", span(n, 1, start=T0 + n * MS))] for n in range(1, 41)]
    await ingest(store, *originals)
    newer = [[SpanRow("api", span(n, 1, start=T0 + n * MS))] for n in range(100, 130)]
    older = [[SpanRow("api", span(n, 1, start=T0 - n * MS))] for n in range(200, 210)]
    seen: list[str] = []

    async def insert() -> None:
        for batch in newer + older:
            await ingest(store, batch)
            await anyio.lowlevel.checkpoint()

    async def page_through() -> None:
        cursor = None
        while True:
            page = await store.list_traces(TraceQuery(limit=3, cursor=cursor))
            seen.extend(summary.trace_id for summary in page.traces)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(insert)
            tg.start_soon(page_through)

    # The walk only ever goes down (so nothing twice), and misses none of the originals.
    starts = [T0 + (n if n < 200 else -n) * MS for n in (int(t, 16) for t in seen)]
    assert starts == sorted(set(starts), reverse=True)
    assert set(seen) >= {tid(n) for n in range(1, 41)}


# Durations on both sides of each change in their number of decimal digits (the
# SQLite store indexes traces by it), from none at all to ten seconds.
DURATIONS = [0, 1, 9, 10, 99, 100, MS - 1, MS, 10 * MS - 1, 10 * MS, 100 * MS, 10_000 * MS]


@pytest.mark.parametrize("min_duration", [0, 1, 10, 11, MS, 10 * MS + 1, 10**12])
@pytest.mark.parametrize("status", [None, "ok"])
@pytest.mark.parametrize("window", [None, (T0 + 5 * MS, T0 + 20 * MS)])
async def test_a_minimum_duration_selects_exactly_the_long_enough_traces_page_by_page(
    store: Store, min_duration: int, status: Any, window: tuple[int, int] | None
) -> None:
    durations = {n: DURATIONS[n % len(DURATIONS)] for n in range(1, 2 * len(DURATIONS) + 1)}
    await ingest(
        store,
        [
            SpanRow(
                "api",
                span(
                    n,
                    1,
                    start=T0 + n * MS,
                    duration=duration,
                    status="error" if n % 3 == 0 else "ok",
                    error="timeout" if n % 3 == 0 else None,
                ),
            )
            for n, duration in durations.items()
        ],
    )
    start, end = window or (None, None)
    expected = [
        tid(n)
        for n in sorted(durations, reverse=True)
        if durations[n] >= min_duration
        and not (status == "ok" and n % 3 == 0)
        and (start is None or start <= T0 + n * MS)
        and (end is None or T0 + n * MS < end)
    ]
    seen: list[str] = []
    cursor = None
    for _ in range(len(durations)):
        page = await store.list_traces(
            TraceQuery(
                min_duration_ns=min_duration,
                status=status,
                start_ns=start,
                end_ns=end,
                limit=2,
                cursor=cursor,
            )
        )
        seen += [summary.trace_id for summary in page.traces]
        assert all(summary.duration_ns >= min_duration for summary in page.traces)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize("cursor", ["not a cursor", "AAAA", "kQE", "kv8B"])
async def test_a_cursor_the_store_did_not_make_is_refused(store: Store, cursor: str) -> None:
    await ingest(store, *FIXTURE.values())
    with pytest.raises(ValueError, match="cursor"):
        await store.list_traces(TraceQuery(cursor=cursor))


async def test_a_cursor_from_the_other_kind_of_store_is_refused(
    store: Store, tmp_path: Path
) -> None:
    other: Store = (
        SQLiteStore(tmp_path / "o.db") if isinstance(store, MemoryStore) else MemoryStore()
    )
    await other.start()
    try:
        await ingest(other, *FIXTURE.values())
        await ingest(store, *FIXTURE.values())
        cursor = (await other.list_traces(TraceQuery(limit=1))).next_cursor
        assert cursor is not None
        with pytest.raises(ValueError, match="cursor"):
            await store.list_traces(TraceQuery(cursor=cursor))
    finally:
        await other.close()


async def test_a_limit_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_traces(TraceQuery(limit=0))


async def test_stats_count_what_is_stored(store: Store) -> None:
    await ingest(store, *FIXTURE.values())
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (8, 6)
    assert (stats.queue_depth, stats.dropped_spans) == (0, 0)


# -- the memory store -------------------------------------------------------------------


async def test_the_memory_store_evicts_whole_traces_first_seen_first() -> None:
    store = MemoryStore(max_spans=25)
    for n in (1, 2, 3):
        # Trace 1 starts last but was seen first: eviction follows arrival, not start.
        start = T0 + (10 - n) * MS
        assert store.submit([SpanRow("api", span(n, i, start=start)) for i in range(1, 11)])
    assert await store.get_trace(tid(1)) is None
    assert await store.get_trace(tid(2)) is not None
    stats = store.stats()
    assert (stats.spans_stored, stats.traces_stored) == (20, 2)
    assert (stats.extra["evicted_spans"], stats.extra["evicted_traces"]) == (10, 1)
    assert await trace_ids(store, TraceQuery()) == [tid(2), tid(3)]
    assert await trace_ids(store, TraceQuery(service="api", limit=1)) == [tid(2)]


def test_a_memory_store_needs_room_for_a_span() -> None:
    with pytest.raises(ValueError, match="max_spans"):
        MemoryStore(max_spans=0)


# -- open_store ---------------------------------------------------------------------------


async def test_open_store_makes_the_configured_store(tmp_path: Path) -> None:
    sqlite = open_store("sqlite", tmp_path / "data", queue_max_spans=10)
    assert isinstance(sqlite, SQLiteStore)
    assert isinstance(sqlite, TraceStore)
    await sqlite.start()
    await sqlite.close()
    assert (tmp_path / "data" / "rastir.db").is_file()
    memory = open_store("memory", tmp_path, max_spans=5)
    assert isinstance(memory, MemoryStore)
    assert isinstance(memory, TraceStore)
    for url in ("postgresql://db.example/rastir", "postgres://db.example/rastir"):
        shared = open_store(url, tmp_path / "unused", queue_max_spans=10)
        assert isinstance(shared, PostgresStore)
        assert isinstance(shared, TraceStore)
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("mongodb", "unknown trace store"),
        ("mysql://user:hunter2@db/x", r"unknown trace store 'mysql://user:\*\*\*@db/x'"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(tmp_path: Path, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(kind, tmp_path)


# -- assembly, fuzzed ---------------------------------------------------------------------

TRACE = tid(0xABC)
_ids = [sid(n) for n in range(1, 9)]
_span_ids = st.sampled_from(_ids)
_scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither
    st.booleans(),
)
_attributes = st.dictionaries(
    st.sampled_from(
        [
            "gen_ai.agent.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "rastir.cost.usd",
            "other",
        ]
    ),
    _scalars | st.lists(_scalars, max_size=3),
    max_size=4,
)
_spans = st.builds(
    WireSpan,
    trace_id=st.just(TRACE),
    span_id=_span_ids,
    name=st.text(max_size=12),
    kind=st.sampled_from(["agent", "llm", "tool", "custom", "http.server", "evaluation"]),
    start_time_unix_nano=st.integers(min_value=0, max_value=2**63 - 1),
    end_time_unix_nano=st.integers(min_value=0, max_value=2**63 - 1),
    # Parents among the ids (cycles included), unknown ones, or none.
    parent_span_id=st.none() | _span_ids | st.just(sid(0xDEAD)),
    status=st.sampled_from(["ok", "error", "cancelled"]),
    error=st.none() | st.builds(WireError, type=st.sampled_from(ERROR_CATEGORIES)),
    attributes=_attributes,
)
_rows = st.lists(
    st.builds(SpanRow, service=st.sampled_from(["a", "b", "c"]), span=_spans),
    min_size=1,
    max_size=25,
)


@given(rows=_rows)
@settings(max_examples=300, deadline=None)
def test_any_set_of_spans_assembles_with_each_span_exactly_once(rows: list[SpanRow]) -> None:
    latest = {row.span.span_id: row for row in rows}
    detail = TraceDetail(summarize(TRACE, rows), rows)
    tree = build_tree(detail)
    json.dumps(tree)

    placed = [node["span_id"] for _, node in walk(tree)]
    assert sorted(placed) == sorted(latest)
    for parent, node in walk(tree):
        assert node["name"] == latest[node["span_id"]].span.name  # last write wins
        order = [(c["start_time_unix_nano"], c["span_id"]) for c in node["children"]]
        assert order == sorted(order)
        if parent is None:
            declared = node["parent_span_id"]
            assert node["orphan"] == (declared is not None)
        else:
            assert node["parent_span_id"] == parent["span_id"]
            assert not node["orphan"]
    summary = detail.summary
    assert summary.span_count == len(latest)
    assert summary.services == sorted({row.service for row in latest.values()})
    # Evaluation spans judge the trace: their errors are not the trace's.
    assert summary.error_count == sum(
        row.span.status == "error" and row.span.kind != "evaluation" for row in latest.values()
    )


def _split(rows: list[SpanRow], cuts: list[int]) -> list[list[SpanRow]]:
    edges = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    return [rows[a:b] for a, b in itertools.pairwise(edges) if a < b]


@given(rows=_rows, cuts=st.lists(st.integers(min_value=0), max_size=4))
@settings(max_examples=40, deadline=None)
def test_stores_summarize_like_assembly_however_spans_arrive(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    rows: list[SpanRow],
    cuts: list[int],
) -> None:
    """Incrementally kept summaries agree with a summary of all spans at once."""
    expected = summarize(TRACE, rows)
    batches = _split(rows, cuts)

    async def check(store: Store) -> None:
        await store.start()
        try:
            await ingest(store, *batches)
            detail = await store.get_trace(TRACE)
            assert detail is not None
            assert dataclasses.replace(detail.summary, cost_usd=0.0) == dataclasses.replace(
                expected, cost_usd=0.0
            )
            assert detail.summary.cost_usd == pytest.approx(expected.cost_usd)
            (listed,) = (await store.list_traces(TraceQuery())).traces
            assert dataclasses.replace(listed, cost_usd=0.0) == dataclasses.replace(
                expected, cost_usd=0.0
            )
        finally:
            await store.close()

    anyio.run(check, MemoryStore())
    anyio.run(check, SQLiteStore(tmp_path_factory.mktemp("fuzz") / "t.db"))
    anyio.run(check, PostgresStore(postgres_server.new_database("fuzz")))
