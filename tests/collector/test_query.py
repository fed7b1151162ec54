"""The query API: filters, paging, one trace's tree, parameter errors and query auth."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from rastir._wire import json_schema
from rastir.collector.query import QueryError, parse_time, parse_trace_id, parse_trace_query
from rastir.collector.store._cursor import encode_cursor
from tests.collector.conftest import RunCollector
from tests.collector.spans import T0, agent_trace, batch, encode, llm_span, span, trace_id
from tests.collector.store_kinds import EVERY_STORE, store_fixture  # noqa: F401 (the store fixture)

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1750000000", T0),
        ("1750000000.5", T0 + SECOND // 2),
        ("1750000000.000000001", T0 + 1),
        ("2025-06-15T15:06:40Z", T0),
        ("2025-06-15t15:06:40z", T0),
        ("2025-06-15 15:06:40Z", T0),
        ("2025-06-15T15:06:40.123456789Z", T0 + 123_456_789),
        ("2025-06-15T17:06:40+02:00", T0),
        ("2025-06-15T10:36:40-04:30", T0),
        ("2016-12-31T23:59:60Z", 1483228800 * SECOND),  # a leap second
        ("2262-04-11T23:47:16.854775807Z", 2**63 - 1),  # the last one the stores hold
        ("9223372036.854775807", 2**63 - 1),
        (
            "2025-06-15T15:29:40+23:59",
            T0 - 23 * 3600 * SECOND - 59 * 60 * SECOND + 23 * 60 * SECOND,
        ),
    ],
)
def test_times_are_rfc3339_or_unix_seconds(text: str, ns: int) -> None:
    assert parse_time("start", text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-06-15",
        "2025-06-15T15:06:40",
        "2025-02-30T00:00:00Z",
        "-5",
        "1e9",
        "1969-12-31T23:59:59Z",
        # beyond the 64-bit nanoseconds the stores keep (2262-04-11T23:47:16Z)
        "999999999999",
        "9223372037",
        "9999-12-31T23:59:59Z",
        "2262-04-11T23:47:17Z",
        # offsets are times of day (RFC 3339 §5.6)
        "2025-01-01T00:00:00+24:00",
        "2025-01-01T00:00:00+05:99",
        "2025-01-01T00:00:00-99:00",
    ],
)
def test_other_times_are_refused_naming_the_parameter(text: str) -> None:
    with pytest.raises(QueryError, match=r"^end="):
        parse_time("end", text)


def test_trace_ids_are_checked_and_folded_to_lowercase() -> None:
    tid = trace_id()
    assert parse_trace_id(tid.upper()) == tid
    for bad in ("abc", "g" * 32, "0" * 32, tid + "0"):
        with pytest.raises(QueryError, match="malformed trace id"):
            parse_trace_id(bad)


def test_a_query_is_built_from_every_parameter() -> None:
    q = parse_trace_query(
        QueryParams(
            "service=a&agent=b&model=c&status=error&error_type=timeout&min_duration_ms=1.5"
            "&start=1750000000&end=2025-06-15T15:06:41Z&limit=1000&cursor=xyz"
        )
    )
    assert (q.service, q.agent, q.model, q.status, q.error_type) == (
        "a",
        "b",
        "c",
        "error",
        "timeout",
    )
    assert (q.min_duration_ns, q.start_ns, q.end_ns) == (1_500_000, T0, T0 + SECOND)
    assert (q.limit, q.cursor) == (1000, "xyz")
    assert parse_trace_query(QueryParams("")).limit == 50


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("servce=a", "unknown parameter 'servce'"),
        ("service=a&service=b", "parameter 'service' is given more than once"),
        ("status=bad", "status='bad' must be ok or error"),
        ("error_type=boom", "error_type='boom' must be one of"),
        ("limit=0", "limit='0' must be an integer from 1 to 1000"),
        ("limit=1001", "limit='1001' must be an integer from 1 to 1000"),
        ("limit=ten", "limit='ten' must be an integer"),
        ("min_duration_ms=-1", "min_duration_ms='-1' must be a number"),
        ("min_duration_ms=nan", "min_duration_ms='nan' must be a number"),
        ("start=10&end=5", "end must be after start"),
        ("start=tomorrow", "start='tomorrow' is not a time"),
        ("service=", "service must be 1 to 256 characters"),
        ("cursor=" + "x" * 1025, "cursor must be 1 to 1024 characters"),
        ("min_duration_ms=99999999999999", "must be a number of milliseconds from 0 to"),
        ("min_duration_ms=inf", "must be a number of milliseconds from 0 to"),
    ],
)
def test_bad_parameters_raise_a_precise_error(query: str, message: str) -> None:
    with pytest.raises(QueryError) as e:
        parse_trace_query(QueryParams(query))
    assert message in str(e.value)


@pytest.mark.anyio
async def test_traces_are_filtered_and_paged_over_http(run_collector: RunCollector) -> None:
    slow_tid = trace_id()
    slow = llm_span(model="claude", gen_ai__agent__name="writer")
    slow.update(trace_id=slow_tid, start_time_unix_nano=T0 + 10 * SECOND)
    slow["end_time_unix_nano"] = slow["start_time_unix_nano"] + 30 * SECOND
    failed_tid = trace_id()
    failed = span(
        trace=failed_tid, kind="tool", status="error", error_type="timeout", start=T0 + 20 * SECOND
    )
    plain = [agent_trace()[1] for _ in range(5)]
    async with run_collector() as c:
        for spans in plain:
            assert (await c.post(encode(batch(spans, service="a")))).status_code == 202
        assert (await c.post(encode(batch([slow], service="b")))).status_code == 202
        assert (await c.post(encode(batch([failed], service="b")))).status_code == 202

        async def ids(query: str) -> list[str]:
            r = await c.client.get("/v1/traces?" + query)
            assert r.status_code == 200, r.text
            return [t["trace_id"] for t in r.json()["traces"]]

        assert await ids("service=b") == [failed_tid, slow_tid]  # newest first
        assert await ids("model=claude") == [slow_tid]
        assert await ids("agent=writer") == [slow_tid]
        assert await ids("status=error") == [failed_tid]
        assert await ids("error_type=timeout") == [failed_tid]
        assert await ids("min_duration_ms=20000") == [slow_tid]
        assert await ids(f"start={(T0 + 15 * SECOND) / SECOND}") == [failed_tid]
        assert await ids("end=2025-06-15T15:06:45Z&service=b") == []
        assert len(await ids("status=ok")) == 6

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await c.client.get("/v1/traces?" + query)).json()
            seen += [t["trace_id"] for t in page["traces"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 4
        assert len(seen) == len(set(seen)) == 7

        r = await c.client.get("/v1/traces?cursor=not-a-cursor")
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = await c.client.get("/v1/traces?limit=5000")
        assert r.status_code == 400
        assert r.json()["message"] == "limit='5000' must be an integer from 1 to 1000"


@pytest.mark.anyio
async def test_one_trace_is_404_when_unknown_and_400_when_malformed(
    run_collector: RunCollector,
) -> None:
    tid, spans = agent_trace()
    async with run_collector() as c:
        await c.post(encode(batch(spans)))
        assert (await c.client.get(f"/v1/traces/{tid.upper()}")).status_code == 200
        r = await c.client.get(f"/v1/traces/{trace_id()}")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        r = await c.client.get("/v1/traces/xyz")
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = await c.client.get("/v1/traces/" + "0" * 32)
        assert r.status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/traces", "/v1/traces/{tid}", "/metrics"])
async def test_query_endpoints_require_the_query_token(
    run_collector: RunCollector, path: str
) -> None:
    tid, spans = agent_trace()
    path = path.format(tid=tid)
    async with run_collector(query_token="q-token", ingest_token="i-token") as c:
        r = await c.post(encode(batch(spans)), {"authorization": "Bearer i-token"})
        assert r.status_code == 202
        r = await c.client.get(path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        # The ingest token is not a query token.
        assert (
            await c.client.get(path, headers={"authorization": "Bearer i-token"})
        ).status_code == 403
        assert (
            await c.client.get(path, headers={"authorization": "Bearer q-token"})
        ).status_code == 200
        for open_path in ("/health", "/ready", "/v1/schema"):
            assert (await c.client.get(open_path)).status_code == 200


@pytest.mark.anyio
async def test_metrics_can_be_public_while_traces_stay_protected(
    run_collector: RunCollector,
) -> None:
    async with run_collector(query_token="q", public_metrics=True) as c:
        assert (await c.client.get("/metrics")).status_code == 200
        assert (await c.client.get("/v1/traces")).status_code == 401


@pytest.mark.anyio
async def test_the_schema_health_and_unknown_routes(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        r = await c.client.get("/v1/schema")
        assert r.status_code == 200
        assert r.json() == json_schema()
        health = (await c.client.get("/health")).json()
        assert health["status"] == "ok"
        assert (await c.client.get("/ready")).json() == {"ready": True}
        r = await c.client.get("/nope")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        r = await c.client.get("/v1/telemetry")
        assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")


@pytest.mark.anyio
async def test_a_chain_too_deep_for_json_comes_back_flattened(run_collector: RunCollector) -> None:
    tid = trace_id()
    chain = [span(trace=tid, kind="trace")]
    for i in range(3000):
        chain.append(span(trace=tid, parent=chain[-1]["span_id"], kind="trace", start=T0 + i + 1))
    async with run_collector() as c:
        assert (await c.post(encode(batch(chain)))).status_code == 202
        r = await c.client.get(f"/v1/traces/{tid}")
    assert r.status_code == 200
    tree = r.json()
    assert tree["flattened"] is True
    assert len(tree["spans"]) == 3001
    assert tree["spans"][0]["span_id"] == chain[0]["span_id"]
    assert tree["summary"]["span_count"] == 3001


@pytest.mark.anyio
@EVERY_STORE
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=999999999999", "start='999999999999' is too late"),
        ("end=9999-12-31T23:59:59Z", "end='9999-12-31T23:59:59Z' is too late"),
        ("start=2025-01-01T00:00:00%2B24:00", "has an invalid offset '+24:00'"),
        ("min_duration_ms=99999999999999", "min_duration_ms='99999999999999' must be"),
        ("cursor=" + encode_cursor(2**64 - 1, 1), "invalid cursor"),
        ("cursor=" + encode_cursor(2**63, "x"), "invalid cursor"),
        ("cursor=" + encode_cursor(1, 2**63), "invalid cursor"),
    ],
)
async def test_values_beyond_64_bits_are_400_on_either_store(
    run_collector: RunCollector, store: str, query: str, message: str
) -> None:
    async with run_collector(store=store) as c:
        assert (await c.post(encode(batch([span()])))).status_code == 202
        r = await c.client.get("/v1/traces?" + query)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert message in r.json()["message"]
