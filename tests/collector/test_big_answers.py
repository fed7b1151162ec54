"""A big trace's answer is streamed in pieces, and is the same tree, byte for byte.

``GET /v1/traces/{id}`` assembles a trace's shape as indexes (``TreePlan``) and encodes
it one node at a time (``encode_tree``), in pieces handed out by worker threads: the
answer is never held whole, and the loop is free between the pieces. These tests
check the bytes against the tree ``build_tree`` makes, on every store, over real
HTTP: wide, deep (answered flat, AUD-36) and broken (orphans, cycles, duplicates).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest

from rastir._wire import WireSpan
from rastir.collector.store import SpanRow, TraceDetail, build_tree, summarize
from rastir.collector.store.assemble import CHUNK_BYTES, MAX_NESTING, TreePlan, encode_tree
from tests.collector.conftest import RunCollector
from tests.collector.spans import T0, batch, encode, span, span_id, trace_id
from tests.collector.store_kinds import EVERY_STORE, store_fixture  # noqa: F401 (the store fixture)
from tests.collector.test_query_audit import chain, collector, post
from tests.collector.test_store_heavy import BIG, big_trace, post_in_batches

pytestmark = pytest.mark.anyio


def expected(spans: list[dict[str, Any]], service: str = "svc") -> bytes:
    """The answer as ``build_tree`` makes it, encoded in one call."""
    rows = [SpanRow(service, msgspec.convert(s, WireSpan)) for s in spans]
    tid = rows[0].span.trace_id
    return msgspec.json.encode(build_tree(TraceDetail(summarize(tid, rows), rows)))


async def fetch(client: httpx.AsyncClient, tid: str) -> tuple[httpx.Response, list[bytes]]:
    """The answer and the pieces it came in, as the client read them."""
    async with client.stream("GET", f"/v1/traces/{tid}") as r:
        pieces = [piece async for piece in r.aiter_raw()]
    return r, pieces


def broken(tid: str) -> list[dict[str, Any]]:
    """Orphans, a two-span cycle, a span sent twice, errors, events and links."""
    root, a, b = span_id(), span_id(), span_id()
    spans = [
        span(trace=tid, sid=root, kind="agent", start=T0 + 5),
        span(trace=tid, sid=a, parent=b, start=T0 + 7, error_type="timeout", status="error"),
        span(trace=tid, sid=b, parent=a, start=T0 + 6),
        span(trace=tid, parent=span_id(), start=T0 + 1, gen_ai__agent__name="lost"),
        span(trace=tid, parent=root, name="first copy", start=T0 + 9),
    ]
    spans.append(dict(spans[-1], name="second copy"))
    spans[0]["events"] = [{"name": "retry", "time_unix_nano": T0 + 6, "attributes": {"n": 2}}]
    spans[0]["links"] = [{"trace_id": trace_id(), "span_id": span_id()}]
    return spans


def test_the_pieces_are_bounded_and_join_into_the_tree() -> None:
    for spans in (broken(trace_id()), chain(trace_id(), MAX_NESTING + 5)):
        rows = [SpanRow("svc", msgspec.convert(s, WireSpan)) for s in spans]
        detail = TraceDetail(summarize(rows[0].span.trace_id, rows), rows)
        node = max(len(msgspec.json.encode(n)) for n in build_tree(detail)["spans"])
        pieces = list(encode_tree(TreePlan(detail), chunk_bytes=1024))
        assert len(pieces) > 1
        # A piece ends once it reaches the size: it holds at most one node beyond it.
        assert all(len(p) < 1024 + node + 64 for p in pieces)
        assert b"".join(pieces) == msgspec.json.encode(build_tree(detail))
        assert json.loads(b"".join(pieces)).get("flattened") is (
            True if len(spans) > MAX_NESTING else None
        )


@EVERY_STORE
async def test_a_big_trace_is_streamed_and_is_the_tree_byte_for_byte(
    run_collector: RunCollector, store: str
) -> None:
    tid, _root, spans = big_trace()
    async with collector(run_collector, store) as c:
        await post_in_batches(c, spans)
        r, pieces = await fetch(c.client, tid)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    # Streamed: no length known in advance, sent as it is encoded.
    assert "content-length" not in r.headers
    assert r.headers["transfer-encoding"] == "chunked"
    body = b"".join(pieces)
    assert len(body) > 4 * CHUNK_BYTES
    assert body == expected(spans)
    assert json.loads(body)["summary"]["span_count"] == BIG


@EVERY_STORE
async def test_a_deep_big_trace_is_streamed_flat(run_collector: RunCollector, store: str) -> None:
    tid = trace_id()
    spans = chain(tid, 3000)
    async with collector(run_collector, store) as c:
        await post(c, list(reversed(spans)))  # children before parents
        r, pieces = await fetch(c.client, tid)
    assert r.status_code == 200
    assert "content-length" not in r.headers
    body = b"".join(pieces)
    assert body == expected(spans)
    answer = json.loads(body)
    assert answer["flattened"] is True
    assert [n["span_id"] for n in answer["spans"]] == [s["span_id"] for s in spans]


@EVERY_STORE
async def test_a_small_or_broken_trace_comes_whole_with_its_length(
    run_collector: RunCollector, store: str
) -> None:
    tid = trace_id()
    spans = broken(tid)
    async with collector(run_collector, store) as c:
        await post(c, spans)
        r, pieces = await fetch(c.client, tid)
    assert r.status_code == 200
    body = b"".join(pieces)
    assert r.headers["content-length"] == str(len(body))
    assert body == expected(spans)
    answer = json.loads(body)
    assert sorted(n["orphan"] for n in answer["spans"]) == [False, True, True]


async def test_the_loop_serves_others_while_a_big_answer_is_being_sent(
    run_collector: RunCollector,
) -> None:
    tid, root, spans = big_trace()
    async with collector(run_collector, "memory") as c:
        await post_in_batches(c, spans)
        async with c.client.stream("GET", f"/v1/traces/{tid}") as r:
            chunks = r.aiter_raw()
            pieces = [await chunks.__anext__()]
            # The answer has begun and is not done: the collector still takes spans
            # (one for this very trace), answers /metrics and other traces.
            late = span(trace=tid, parent=root, kind="llm", name="late", start=T0 + 5)
            other = span(kind="agent")
            await post(c, [late])
            await post(c, [other], service="other")
            m = await c.scrape()
            assert m.value("rastir_collector_ingested_spans_total", service="other") == 1
            small = await c.client.get(f"/v1/traces/{other['trace_id']}")
            assert small.json()["summary"]["span_count"] == 1
            pieces += [piece async for piece in chunks]
        # The answer is the trace as it was asked for: without the late span.
        assert b"".join(pieces) == expected(spans)
        again = (await c.client.get(f"/v1/traces/{tid}")).json()
        assert again["summary"]["span_count"] == BIG + 1


async def test_a_reader_that_goes_away_mid_answer_leaves_the_collector_serving(
    run_collector: RunCollector,
) -> None:
    tid, _root, spans = big_trace()
    async with collector(run_collector, "memory") as c:
        await post_in_batches(c, spans)
        for _ in range(3):
            async with c.client.stream("GET", f"/v1/traces/{tid}") as r:
                assert r.status_code == 200
                await r.aiter_raw().__anext__()
            # Closed after its first piece: the rest is never asked for.
        r, pieces = await fetch(c.client, tid)
        assert b"".join(pieces) == expected(spans)
        assert (await c.post(encode(batch([span()])))).status_code == 202
