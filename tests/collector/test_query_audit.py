"""The query API and trace assembly pushed hard, on both stores, over real HTTP.

Paging while traces arrive and are deleted, cursors that do not belong, filter edges,
duplicate, cyclic, huge and deep traces, totals of nested LLM calls sent by the real
SDK exporter, the SQLite store across a restart, and parameters that must be 400.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

import rastir
from rastir._wire import WireSpan
from rastir.collector.query import _PARAMS, QueryError, parse_trace_query
from rastir.collector.store import MemoryStore, SpanRow, SQLiteStore, TraceQuery
from rastir.collector.store.assemble import MAX_NESTING
from tests.collector.conftest import Collector, RunCollector
from tests.collector.spans import T0, batch, encode, llm_span, span, span_id, trace_id
from tests.collector.store_kinds import EVERY_STORE, store_fixture  # noqa: F401 (the store fixture)

pytestmark = pytest.mark.anyio

SECOND = 1_000_000_000
MS = 1_000_000


# -- helpers ------------------------------------------------------------------------------


@asynccontextmanager
async def collector(run_collector: RunCollector, store: str, **kw: Any) -> AsyncIterator[Collector]:
    """A collector whose 202 means readable (committed), so reads need no waiting."""
    async with run_collector(store=store, ack="committed", **kw) as c:
        yield c


async def post(c: Collector, spans: list[dict[str, Any]], service: str = "svc") -> None:
    r = await c.post(encode(batch(spans, service=service)))
    assert r.status_code == 202, r.text


async def listing(c: Collector, **params: Any) -> dict[str, Any]:
    r = await c.client.get("/v1/traces", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def ids(c: Collector, **params: Any) -> list[str]:
    return [t["trace_id"] for t in (await listing(c, limit=1000, **params))["traces"]]


async def tree(c: Collector, tid: str) -> dict[str, Any]:
    r = await c.client.get(f"/v1/traces/{tid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def nodes(answer: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], list(answer["spans"])
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node["children"])
    return out


def chain(tid: str, depth: int, start: int = T0) -> list[dict[str, Any]]:
    spans = [span(trace=tid, kind="trace", name="d0", start=start)]
    for i in range(1, depth):
        parent = spans[-1]["span_id"]
        spans.append(span(trace=tid, parent=parent, kind="trace", name=f"d{i}", start=start + i))
    return spans


def json_depth(text: str) -> int:
    """How deep a JSON text nests (brackets outside strings)."""
    depth = most = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            most = max(most, depth)
        elif ch in "]}":
            depth -= 1
    return most


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # int() and float() read more than the documented forms: not here.
        ("limit=1_000", "limit='1_000' must be an integer from 1 to 1000"),
        ("limit=%2B5", "limit='+5' must be an integer"),
        ("limit=%205", "limit=' 5' must be an integer"),
        ("limit=%D9%A5", "must be an integer from 1 to 1000"),  # ARABIC-INDIC DIGIT FIVE
        ("limit=-1", "limit='-1' must be an integer"),
        ("limit=" + "9" * 5000, "must be an integer from 1 to 1000"),
        ("min_duration_ms=1_000", "min_duration_ms='1_000' must be a number"),
        ("min_duration_ms=%205", "min_duration_ms=' 5' must be a number"),
        ("min_duration_ms=0x10", "min_duration_ms='0x10' must be a number"),
        ("min_duration_ms=infinity", "min_duration_ms='infinity' must be a number"),
        ("start=%201750000000", "start=' 1750000000' is not a time"),
        ("start=%D9%A1%D9%A7%D9%A5%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0", "is not a time"),
        # '+' unencoded in a query string is a space: the message says so.
        ("start=2025-06-15T17:06:40+02:00", "send the offset as %2B"),
        ("agent=" + "a" * 4097, "agent must be 1 to 4096 characters"),
        ("model=", "model must be 1 to 4096 characters"),
        ("service=" + "s" * 257, "service must be 1 to 256 characters"),
        ("start=2025-06-15T15:06:40Z&end=2025-06-15T15:06:40Z", "end must be after start"),
    ],
)
def test_parameters_are_read_exactly_as_documented(query: str, message: str) -> None:
    with pytest.raises(QueryError) as e:
        parse_trace_query(QueryParams(query))
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("min_duration_ms=1e3", "min_duration_ns", SECOND),  # what older viewers send
        ("min_duration_ms=.5", "min_duration_ns", MS // 2),
        ("agent=" + "a" * 4096, "agent", "a" * 4096),
        ("limit=0007", "limit", 7),
    ],
)
def test_documented_forms_are_read(query: str, field: str, value: Any) -> None:
    assert getattr(parse_trace_query(QueryParams(query)), field) == value


# Every parameter the API takes, and one it does not.
_KEYS = st.sampled_from([*sorted(_PARAMS), "x"])


@given(st.lists(st.tuples(_KEYS, st.text(max_size=40)), max_size=5))
@settings(max_examples=500, deadline=None)
def test_any_parameters_make_a_query_or_a_query_error(pairs: list[tuple[str, str]]) -> None:
    try:
        query = parse_trace_query(QueryParams(pairs))
    except QueryError:
        return
    assert 1 <= query.limit <= 1000


@EVERY_STORE
async def test_no_parameter_value_gets_anything_but_200_or_400(
    run_collector: RunCollector, store: str
) -> None:
    values = ["0", "", "-1", "1e400", "nan", "%00", "%ff", "%ED%A0%80", "a" * 5000, "1_0", "🙂"]
    async with collector(run_collector, store) as c:
        await post(c, [span()])
        for key in ("service", "agent", "model", "status", "error_type", "min_duration_ms"):
            for value in values:
                r = await c.client.get(f"/v1/traces?{key}={value}")
                assert r.status_code in (200, 400), (key, value, r.text)
        for key in ("start", "end", "limit", "cursor"):
            for value in values[1:] if key in ("start", "end") else values:  # 0 is 1970
                r = await c.client.get(f"/v1/traces?{key}={value}")
                assert r.status_code == 400, (key, value, r.text)
                assert r.json()["error"] == "bad_request"
                assert key in r.json()["message"] or "cursor" in r.json()["message"]


# -- cursors ------------------------------------------------------------------------------


@EVERY_STORE
async def test_a_cursor_sent_with_other_filters_is_refused(
    run_collector: RunCollector, store: str
) -> None:
    async with collector(run_collector, store) as c:
        for n in range(4):
            await post(c, [span(start=T0 + n * SECOND)], service="api")
        first = await listing(c, service="api", limit=2)
        cursor = first["next_cursor"]
        assert cursor is not None
        for other in (
            {"service": "web"},
            {},
            {"service": "api", "status": "ok"},
            {"service": "api", "min_duration_ms": "0"},
            {"service": "api", "start": "0"},
        ):
            r = await c.client.get("/v1/traces", params={**other, "cursor": cursor})
            assert r.status_code == 400, other
            assert "other filters" in r.json()["message"]
        # limit is not a filter: it may change between pages.
        rest = await listing(c, service="api", limit=5, cursor=cursor)
        assert len(rest["traces"]) == 2
        assert rest["next_cursor"] is None


@EVERY_STORE
async def test_a_tampered_or_truncated_cursor_is_a_clear_400(
    run_collector: RunCollector, store: str
) -> None:
    async with collector(run_collector, store) as c:
        for n in range(3):
            await post(c, [span(start=T0 + n * SECOND)])
        cursor = (await listing(c, limit=1))["next_cursor"]
        assert cursor is not None
        flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
        for bad in (cursor[:-3], cursor + "!", "!" + cursor, cursor[:4], flipped, cursor + "AAAA"):
            r = await c.client.get("/v1/traces", params={"limit": 1, "cursor": bad})
            if r.status_code == 200:
                # A flip that still decodes is another well-formed position: fine,
                # as long as it is never a 500.
                assert bad == flipped
                continue
            assert r.status_code == 400, (bad, r.text)
            assert "cursor" in r.json()["message"]


async def test_a_cursor_from_the_other_store_is_400_over_http(run_collector: RunCollector) -> None:
    cursors = {}
    for store in ("memory", "sqlite"):
        async with collector(run_collector, store) as c:
            for n in range(3):
                await post(c, [span(start=T0 + n * SECOND)])
            cursors[store] = (await listing(c, limit=1))["next_cursor"]
    for store, other in (("memory", "sqlite"), ("sqlite", "memory")):
        async with collector(run_collector, store) as c:
            await post(c, [span()])
            r = await c.client.get("/v1/traces", params={"cursor": cursors[other]})
            assert r.status_code == 400
            assert "invalid cursor" in r.json()["message"]


# -- paging under churn --------------------------------------------------------------------


async def walk_pages(
    store: MemoryStore | SQLiteStore, between: Any, limit: int = 3
) -> list[tuple[int, str]]:
    """Every page of the listing, calling ``between(page_number)`` after each."""
    seen: list[tuple[int, str]] = []
    cursor = None
    number = 0
    while True:
        page = await store.list_traces(TraceQuery(limit=limit, cursor=cursor))
        seen += [(s.start_time_unix_nano, s.trace_id) for s in page.traces]
        number += 1
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        await between(number)


def one_span_trace(tid: str, start: int, end: int) -> list[SpanRow]:
    return [
        SpanRow(
            "svc",
            WireSpan(
                trace_id=tid,
                span_id=span_id(),
                name="t",
                kind="custom",
                start_time_unix_nano=start,
                end_time_unix_nano=end,
            ),
        )
    ]


def check_walk(seen: list[tuple[int, str]], throughout: set[str]) -> None:
    trace_ids = [tid for _, tid in seen]
    assert len(trace_ids) == len(set(trace_ids)), "a trace was listed twice"
    assert throughout <= set(trace_ids), "a trace that existed throughout was skipped"
    starts = [start for start, _ in seen]
    assert starts == sorted(starts, reverse=True)


async def test_memory_paging_while_old_traces_are_evicted_and_new_ones_arrive() -> None:
    # 30 traces to be evicted (first seen), then 30 that stay, their starts
    # interleaved, with many equal starts: the tie-break is what pages them.
    store = MemoryStore(max_spans=60)
    doomed = [trace_id() for _ in range(30)]
    stable = [trace_id() for _ in range(30)]
    for n, tid in enumerate(doomed + stable):
        # The last doomed trace is the newest: on the first page, evicted on the fifth.
        start = T0 + (100 if tid == doomed[-1] else n % 7) * MS
        store.submit(one_span_trace(tid, start, start + MS))
    added: list[str] = []

    async def churn(page: int) -> None:
        # Each new trace evicts the oldest first-seen one: 30 new ones evict the doomed.
        for _ in range(min(6, 30 - len(added))):
            added.append(trace_id())
            start = T0 + (len(added) % 9 - 1) * MS
            store.submit(one_span_trace(added[-1], start, start + MS))

    seen = await walk_pages(store, churn)
    check_walk(seen, set(stable))
    assert store.stats().extra["evicted_traces"] == 30
    listed_doomed = set(doomed) & {tid for _, tid in seen}
    assert 0 < len(listed_doomed) < 30, "the deletion did not happen during the walk"


async def test_sqlite_paging_while_retention_deletes_and_new_traces_arrive(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    now = time.time_ns()
    hour = 3600 * SECOND
    doomed = [trace_id() for _ in range(30)]
    stable = [trace_id() for _ in range(30)]
    store = SQLiteStore(path)
    await store.start()
    for n, (gone, kept) in enumerate(zip(doomed, stable, strict=True)):
        start = now - 3 * hour + (n % 7) * MS
        # Ended two hours ago (past a one hour retention), and one still running.
        await store.write(one_span_trace(gone, start, now - 2 * hour))
        await store.write(one_span_trace(kept, start, now + hour))
    await store.close()

    # Reopened with retention, passes after each transaction: the first write of the
    # walk deletes every doomed trace while the client is on its first pages.
    store = SQLiteStore(path, retention_seconds=3600, maintenance_interval=0)
    await store.start()
    try:

        async def churn(page: int) -> None:
            start = now - 3 * hour + (page % 9 - 1) * MS
            await store.write(one_span_trace(trace_id(), start, now + hour))
            await store.flush()  # taken after the retention pass that followed the write

        seen = await walk_pages(store, churn)
        check_walk(seen, set(stable))
        assert store.stats().extra["retention_deleted_traces"] == 30
        listed_doomed = set(doomed) & {tid for _, tid in seen}
        assert 0 < len(listed_doomed) < 30, "the deletion did not happen during the walk"
    finally:
        await store.close()


@EVERY_STORE
async def test_traces_with_equal_starts_are_paged_one_by_one_each_once(
    run_collector: RunCollector, store: str
) -> None:
    async with collector(run_collector, store) as c:
        made = set()
        for _ in range(12):
            s = span(start=T0)
            made.add(s["trace_id"])
            await post(c, [s])
        seen: list[str] = []
        cursor = None
        while True:
            page = await listing(c, limit=1, **({"cursor": cursor} if cursor else {}))
            seen += [t["trace_id"] for t in page["traces"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 12
        assert set(seen) == made


# -- filters ------------------------------------------------------------------------------


@EVERY_STORE
async def test_time_range_edges_are_start_inclusive_and_end_exclusive(
    run_collector: RunCollector, store: str
) -> None:
    async with collector(run_collector, store) as c:
        at = {}
        for n in (0, 1, 2):
            s = span(start=T0 + n * SECOND)
            at[n] = s["trace_id"]
            await post(c, [s])
        assert await ids(c, start="1750000001") == [at[2], at[1]]
        assert await ids(c, start="1750000001.000000001") == [at[2]]
        assert await ids(c, end="1750000001") == [at[0]]
        assert await ids(c, end="1750000001.000000001") == [at[1], at[0]]
        assert await ids(c, start="2025-06-15T15:06:41Z", end="2025-06-15T15:06:42Z") == [at[1]]
        assert await ids(c, start="2025-06-15T20:36:41+05:30") == [at[2], at[1]]


@EVERY_STORE
async def test_a_trace_is_found_by_any_of_its_services_agents_models_and_a_childs_error(
    run_collector: RunCollector, store: str
) -> None:
    tid = trace_id()
    root = span(trace=tid, kind="agent", name="root", start=T0)
    mid = span(trace=tid, parent=root["span_id"], kind="trace", start=T0 + 1)
    deep = span(
        trace=tid,
        parent=mid["span_id"],
        kind="llm",
        start=T0 + 2,
        status="error",
        error_type="rate_limit",
        gen_ai__agent__name="deep-agent",
        gen_ai__response__model="model-x",
    )
    plain = span(start=T0 + SECOND)
    async with collector(run_collector, store) as c:
        await post(c, [deep], service="svc-b")  # the child first, from its own service
        await post(c, [mid, root], service="svc-a")
        await post(c, [plain], service="svc-a")
        assert await ids(c, service="svc-a") == [plain["trace_id"], tid]
        assert await ids(c, service="svc-b") == [tid]
        assert await ids(c, agent="deep-agent") == [tid]
        assert await ids(c, model="model-x") == [tid]
        assert await ids(c, status="error") == [tid]
        assert await ids(c, status="ok") == [plain["trace_id"]]
        assert await ids(c, error_type="rate_limit", service="svc-a", agent="deep-agent") == [tid]
        assert await ids(c, error_type="timeout") == []
        assert await ids(c, status="ok", service="svc-b") == []
        (summary,) = (await listing(c, service="svc-b"))["traces"]
        assert summary["services"] == ["svc-a", "svc-b"]
        assert summary["root_name"] == "root"
        assert (summary["error_count"], summary["status"]) == (1, "error")


@EVERY_STORE
async def test_min_duration_follows_a_trace_still_receiving_spans(
    run_collector: RunCollector, store: str
) -> None:
    tid = trace_id()
    root = span(trace=tid, kind="agent", start=T0, duration_ms=100)
    async with collector(run_collector, store) as c:
        await post(c, [root])
        assert await ids(c, min_duration_ms="1000") == []
        late = span(trace=tid, parent=root["span_id"], start=T0 + 50 * MS, duration_ms=2000)
        await post(c, [late])
        assert await ids(c, min_duration_ms="1000") == [tid]
        assert await ids(c, min_duration_ms="2050") == [tid]
        assert await ids(c, min_duration_ms="2050.000001") == []


@EVERY_STORE
async def test_min_duration_zero_keeps_a_trace_of_evaluation_spans_alone(
    run_collector: RunCollector, store: str
) -> None:
    # A score posted for a trace whose spans are not here: no end, duration 0. The
    # SQLite store compared end - start (negative) and left it out.
    async with collector(run_collector, store) as c:
        await post(c, [span(kind="evaluation", name="judge")])
        (summary,) = (await listing(c))["traces"]
        assert summary["duration_ns"] == 0
        assert await ids(c, min_duration_ms="0") == [summary["trace_id"]]


# -- assembly -----------------------------------------------------------------------------


@EVERY_STORE
async def test_a_batch_retried_after_a_lost_202_counts_once_in_every_total(
    run_collector: RunCollector, store: str
) -> None:
    tid = trace_id()
    root = span(trace=tid, kind="agent", start=T0)
    calls = [llm_span() for _ in range(3)]
    for i, call in enumerate(calls):
        call.update(trace_id=tid, parent_span_id=root["span_id"])
        call["start_time_unix_nano"] += i
        call["end_time_unix_nano"] += i
    async with collector(run_collector, store) as c:
        await post(c, [root, *calls])
        await post(c, [*calls, root])  # the same batch again, in another order
        await post(c, [calls[1]])  # and one span alone
        detail = await tree(c, tid)
        (listed,) = (await listing(c))["traces"]
    for summary in (detail["summary"], listed):
        assert summary["span_count"] == 4
        assert (summary["input_tokens"], summary["output_tokens"]) == (300, 60)
        assert summary["cost_usd"] == pytest.approx(0.75)
    assert sorted(n["span_id"] for n in nodes(detail)) == sorted(
        s["span_id"] for s in (root, *calls)
    )


@EVERY_STORE
async def test_cycles_self_parents_and_orphans_come_back_once_each(
    run_collector: RunCollector, store: str
) -> None:
    tid = trace_id()
    a = span(trace=tid, kind="trace", name="A", start=T0)
    b = span(trace=tid, kind="trace", name="B", start=T0 + 1)
    c_ = span(trace=tid, kind="trace", name="C", start=T0 + 2)
    a["parent_span_id"], b["parent_span_id"], c_["parent_span_id"] = (
        c_["span_id"],
        a["span_id"],
        b["span_id"],
    )
    own = span(trace=tid, kind="trace", name="self", start=T0 + 3)
    own["parent_span_id"] = own["span_id"]
    orphan = span(trace=tid, parent=span_id(), kind="trace", name="orphan", start=T0 + 4)
    async with collector(run_collector, store) as c:
        await post(c, [a, b, c_, own, orphan])
        with anyio.fail_after(5):
            answer = await tree(c, tid)
    top = {n["name"]: n for n in answer["spans"]}
    assert set(top) == {"A", "self", "orphan"}  # A is the earliest of its cycle: cut there
    assert all(n["orphan"] for n in top.values())
    assert [ch["name"] for ch in top["A"]["children"]] == ["B"]
    assert sorted(n["name"] for n in nodes(answer)) == ["A", "B", "C", "orphan", "self"]
    assert answer["summary"]["span_count"] == 5


@EVERY_STORE
async def test_ten_thousand_spans_in_one_trace(run_collector: RunCollector, store: str) -> None:
    tid = trace_id()
    root = span(trace=tid, kind="agent", name="root", start=T0)
    spans = [root] + [
        span(trace=tid, parent=root["span_id"], kind="tool", start=T0 + i + 1) for i in range(9999)
    ]
    async with collector(run_collector, store) as c:
        await post(c, spans[5000:])  # the children first, in two batches
        await post(c, spans[:5000])
        answer = await tree(c, tid)
        (listed,) = (await listing(c))["traces"]
    assert answer.get("flattened") is None
    (top,) = answer["spans"]
    assert len(top["children"]) == 9999
    starts = [ch["start_time_unix_nano"] for ch in top["children"]]
    assert starts == sorted(starts)
    assert answer["summary"] == listed
    assert listed["span_count"] == 10000


@EVERY_STORE
async def test_nesting_is_kept_to_its_bound_and_deeper_traces_come_back_flat(
    run_collector: RunCollector, store: str
) -> None:
    at_bound, beyond, very = trace_id(), trace_id(), trace_id()
    async with collector(run_collector, store) as c:
        await post(c, chain(at_bound, MAX_NESTING))
        await post(c, chain(beyond, MAX_NESTING + 1))
        await post(c, list(reversed(chain(very, 2000))))  # children before parents
        r = await c.client.get(f"/v1/traces/{at_bound}")
        nested = r.json()
        # Readable by jq 1.6 (256 levels) and any JSON reader near Python's limit.
        assert json_depth(r.text) <= 256
        flat = await tree(c, beyond)
        deep = await tree(c, very)
    assert "flattened" not in nested
    assert len(nested["spans"]) == 1
    assert len(nodes(nested)) == MAX_NESTING
    for answer, count in ((flat, MAX_NESTING + 1), (deep, 2000)):
        assert answer["flattened"] is True
        assert len(answer["spans"]) == count
        assert all(not n["children"] for n in answer["spans"])
        assert answer["spans"][0]["parent_span_id"] is None
        parents = {n["span_id"]: n["parent_span_id"] for n in answer["spans"]}
        assert sum(p is None for p in parents.values()) == 1
        assert answer["summary"]["span_count"] == count


@EVERY_STORE
async def test_nested_llm_spans_from_the_real_sdk_count_the_call_once(
    run_collector: RunCollector, store: str
) -> None:
    from tests.adapters import objects

    def usage(prompt: int, completion: int) -> Any:
        return objects.openai_chat(
            id="chatcmpl-1",
            usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0},
        )

    @rastir.llm(name="provider_call")
    def provider_call() -> Any:
        return usage(120, 30)

    @rastir.llm(name="ask")
    def ask() -> Any:
        return provider_call()  # the same call, seen from further out

    @rastir.llm(name="moderate")
    def moderate() -> Any:
        return usage(7, 1)

    @rastir.agent(agent_name="planner")
    def run() -> str:
        ask()
        moderate()
        return rastir.current_trace_id() or ""

    async with collector(run_collector, store) as c:

        def send() -> str:
            rastir.configure(service="app", push_url=c.url, otel_bridge=False)
            tid = run()
            assert rastir.flush(10.0)
            return tid

        tid = await anyio.to_thread.run_sync(send)
        answer = await tree(c, tid)
        (listed,) = (await listing(c, agent="planner"))["traces"]
    by_name = {n["name"]: n for n in nodes(answer)}
    assert (
        by_name["ask"]["attributes"]["rastir.llm.counted_in"] == by_name["provider_call"]["span_id"]
    )
    for summary in (answer["summary"], listed):
        assert (summary["input_tokens"], summary["output_tokens"]) == (127, 31)
        assert summary["span_count"] == 4
    cost = by_name["provider_call"]["attributes"].get("rastir.cost.usd", 0.0)
    cost += by_name["moderate"]["attributes"].get("rastir.cost.usd", 0.0)
    assert listed["cost_usd"] == pytest.approx(cost)


def lose_the_first_answer(app: Any) -> Any:
    """ASGI: the first ingest request is stored, but its 202 never reaches the sender,
    who sees a 503 instead (as after a proxy timed out) and sends the batch again."""
    lost: list[bool] = []

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/telemetry" or lost:
            await app(scope, receive, send)
            return
        lost.append(True)
        answered: list[int] = []

        async def swallow(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])

        await app(scope, receive, swallow)
        assert answered == [202]
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"retry-after", b"0"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    return wrapped


@EVERY_STORE
async def test_a_batch_the_sdk_sends_again_after_a_lost_202_counts_once(
    run_collector: RunCollector, store: str
) -> None:
    from tests.adapters import objects

    @rastir.llm(name="call")
    def call() -> Any:
        return objects.openai_chat(
            usage={"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 0}
        )

    @rastir.agent(agent_name="retrying")
    def run() -> str:
        call()
        call()
        return rastir.current_trace_id() or ""

    async with collector(run_collector, store, wrap=lose_the_first_answer) as c:

        def send() -> str:
            rastir.configure(service="app", push_url=c.url, otel_bridge=False)
            tid = run()
            assert rastir.flush(30.0)
            return tid

        tid = await anyio.to_thread.run_sync(send)
        answer = await tree(c, tid)
        (listed,) = (await listing(c, agent="retrying"))["traces"]
        metrics = await c.scrape()
    # The collector took the batch twice (its metrics say so, as documented) ...
    assert metrics.total("rastir_collector_ingested_spans_total") == 6
    # ... and stores, lists and totals each span once.
    for summary in (answer["summary"], listed):
        assert summary["span_count"] == 3
        assert (summary["input_tokens"], summary["output_tokens"]) == (80, 8)
    assert len(nodes(answer)) == 3


# -- the SQLite store across a restart -----------------------------------------------------


async def test_sqlite_summaries_and_cursors_survive_a_restart(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    data = tmp_path / "keep"
    tid = trace_id()
    root = span(trace=tid, kind="agent", name="root", start=T0)
    async with collector(run_collector, "sqlite", data_dir=data) as c:
        await post(c, [root], service="a")
        child = llm_span()
        child.update(trace_id=tid, parent_span_id=root["span_id"])
        await post(c, [child], service="b")
        await post(c, [child], service="b")  # retried
        for n in range(5):
            await post(c, [span(start=T0 + (n + 1) * SECOND)], service="a")
        before = await listing(c, limit=1000)
        first = await listing(c, service="a", limit=3)
        detail_before = await tree(c, tid)
    async with collector(run_collector, "sqlite", data_dir=data) as c:
        after = await listing(c, limit=1000)
        rest = await listing(c, service="a", limit=3, cursor=first["next_cursor"])
        detail_after = await tree(c, tid)
        # The trace goes on after the restart: a late span joins it.
        late = span(trace=tid, parent=root["span_id"], start=T0 + 10, duration_ms=5000)
        await post(c, [late], service="c")
        grown = [t for t in (await listing(c))["traces"] if t["trace_id"] == tid]
    assert after == before
    assert detail_after == detail_before
    (summary,) = [t for t in after["traces"] if t["trace_id"] == tid]
    assert (summary["span_count"], summary["input_tokens"], summary["services"]) == (
        2,
        100,
        ["a", "b"],
    )
    paged = [t["trace_id"] for t in first["traces"] + rest["traces"]]
    assert paged == [t["trace_id"] for t in before["traces"]]
    assert grown[0]["span_count"] == 3
    assert grown[0]["services"] == ["a", "b", "c"]


# -- the answers stay JSON readers can read --------------------------------------------------


@EVERY_STORE
async def test_hostile_names_come_back_escaped_in_json(
    run_collector: RunCollector, store: str
) -> None:
    name = "\x1b]0;pwned\x07\x1b[2J\r\nFAKE\u202e\x9b31m"
    s = span(name=name, gen_ai__agent__name=name)
    async with collector(run_collector, store) as c:
        await post(c, [s], service="svc\x1b[31m")
        r = await c.client.get(f"/v1/traces/{s['trace_id']}")
        listed = await c.client.get("/v1/traces", params={"agent": name})
    for answer in (r, listed):
        assert answer.status_code == 200
        raw = answer.content
        for control in (b"\x1b", b"\r", b"\n", b"\x07"):
            assert control not in raw
        assert json.loads(raw)  # and still the same text when decoded
    assert r.json()["spans"][0]["name"] == name
    assert listed.json()["traces"][0]["root_name"] == name


async def test_a_trace_id_path_is_checked_before_any_store_is_asked(
    run_collector: RunCollector,
) -> None:
    async with collector(run_collector, "sqlite") as c:
        for path, status in (
            ("/v1/traces/" + "A" * 32, 404),
            ("/v1/traces/%20" + "a" * 32, 400),
            ("/v1/traces/" + "a" * 32 + "%00", 400),
            ("/v1/traces/" + "a" * 31 + "%C4%B0", 400),
            ("/v1/traces/" + "x" * 8000, 400),
        ):
            r = await c.client.get(path)
            assert r.status_code == status, (path, r.text)
            assert r.json()["error"] in ("bad_request", "not_found")
