"""``POST /v1/telemetry`` over real HTTP: accept, refuse, limit, and what it leaves behind."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rastir.collector import CollectorSettings, create_app
from rastir.collector.ingest import _strings_fit
from rastir.collector.store.base import SpanRow, StoreStats
from rastir.collector.store.memory import MemoryStore
from tests.collector.conftest import RunCollector
from tests.collector.spans import (
    agent_trace,
    batch,
    encode,
    gzipped,
    llm_span,
    span,
    trace_id,
)
from tests.collector.store_kinds import EVERY_STORE, is_sql, store_fixture  # noqa: F401 (the store fixture)
from tests.collector.stores import FullOnceStore

pytestmark = pytest.mark.anyio


class SaturatedStore(MemoryStore):
    """A memory store whose write queue reports itself full."""

    def stats(self) -> StoreStats:
        st = super().stats()
        st.queue_capacity = 1000
        st.queue_depth = 1000
        return st


class BrokenStore(MemoryStore):
    """A store that fails in a way the collector did not plan for."""

    def submit(self, rows: list[SpanRow]) -> bool:
        raise RuntimeError("disk on fire")


class StatsBrokenStore(MemoryStore):
    """A store whose counters fail: the saturation check must not turn that into a 500."""

    def stats(self) -> StoreStats:
        raise RuntimeError("counter overflow")


class RefusingStore(MemoryStore):
    """A store whose queue fills between the saturation check and the submit."""

    def submit(self, rows: list[SpanRow]) -> bool:
        return False


async def test_an_accepted_batch_comes_back_as_a_tree_and_in_the_metrics(
    run_collector: RunCollector,
) -> None:
    tid, spans = agent_trace(service="shop", n_llm=2)
    async with run_collector() as c:
        r = await c.post(encode(batch(spans, service="shop")))
        assert r.status_code == 202
        assert r.json() == {"accepted": 4}

        listing = (await c.client.get("/v1/traces")).json()
        assert [t["trace_id"] for t in listing["traces"]] == [tid]
        summary = listing["traces"][0]
        assert summary["span_count"] == 4
        assert summary["services"] == ["shop"]
        assert summary["input_tokens"] == 200
        assert summary["root_name"] == "planner"

        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
        assert tree["trace_id"] == tid
        (root,) = tree["spans"]
        assert root["kind"] == "agent"
        assert sorted(child["kind"] for child in root["children"]) == ["llm", "llm", "tool"]

        m = await c.scrape()
    llm = {"service": "shop", "model": "gpt-4o", "provider": "openai", "agent": "planner"}
    assert m.value("rastir_llm_calls_total", **llm, status="ok") == 2
    assert m.value("rastir_llm_tokens_total", **llm, token_type="input") == 200
    assert m.value("rastir_llm_tokens_total", **llm, token_type="output") == 40
    assert m.value("rastir_llm_cost_usd_total", **llm) == pytest.approx(0.5)
    assert m.value("rastir_llm_duration_seconds_count", **llm) == 2
    assert m.value("rastir_llm_duration_seconds_bucket", **llm, le="2.0") == 2
    assert m.value("rastir_llm_duration_seconds_bucket", **llm, le="1.0") == 0
    assert m.value("rastir_agent_runs_total", service="shop", agent="planner", status="ok") == 1
    tool = {"service": "shop", "tool": "search", "agent": ""}
    assert m.value("rastir_tool_calls_total", **tool, status="ok") == 1
    assert m.value("rastir_collector_ingested_spans_total", service="shop") == 4
    assert m.value("rastir_collector_ingested_batches_total", service="shop") == 1
    assert m.value("rastir_spans_total", service="shop", kind="llm", status="ok") == 2


async def test_spans_of_one_trace_from_two_services_make_one_tree(
    run_collector: RunCollector,
) -> None:
    tid = trace_id()
    root = span(
        trace=tid, kind="mcp.client", name="tools/call search", mcp__method__name="tools/call"
    )
    server = span(
        trace=tid, parent=root["span_id"], kind="mcp.server", mcp__method__name="tools/call"
    )
    inner = llm_span()
    inner.update(trace_id=tid, parent_span_id=server["span_id"])
    async with run_collector() as c:
        # The server's spans arrive first: children before their parent.
        assert (await c.post(encode(batch([server, inner], service="tools")))).status_code == 202
        assert (await c.post(encode(batch([root], service="app")))).status_code == 202
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
        m = await c.scrape()
    assert tree["summary"]["services"] == ["app", "tools"]
    assert tree["summary"]["span_count"] == 3
    (top,) = tree["spans"]
    assert (top["service"], top["orphan"]) == ("app", False)
    (mid,) = top["children"]
    assert (mid["service"], mid["kind"]) == ("tools", "mcp.server")
    assert [leaf["kind"] for leaf in mid["children"]] == ["llm"]
    mcp = {"method": "tools/call", "tool": ""}
    assert (
        m.value("rastir_mcp_requests_total", service="app", side="client", **mcp, status="ok") == 1
    )
    assert (
        m.value("rastir_mcp_requests_total", service="tools", side="server", **mcp, status="ok")
        == 1
    )


async def test_gzip_bodies_are_accepted(run_collector: RunCollector) -> None:
    _, spans = agent_trace()
    one, two = encode(batch(spans[:2])), encode(batch(spans[2:]))
    async with run_collector() as c:
        r = await c.post(gzipped(one), {"content-encoding": "gzip"})
        assert (r.status_code, r.json()) == (202, {"accepted": 2})
        # RFC 1952 §2.2: a gzip file may hold several members; curl --data-binary of
        # concatenated files does this.
        two_members = gzip.compress(two[:20]) + gzip.compress(two[20:])
        r = await c.post(two_members, {"content-encoding": "GZIP"})
        assert (r.status_code, r.json()) == (202, {"accepted": 2})
        r = await c.post(one, {"content-encoding": "identity"})
        assert r.status_code == 202


async def test_a_body_over_the_limit_is_refused_with_413(run_collector: RunCollector) -> None:
    _, spans = agent_trace(n_llm=20)
    body = encode(batch(spans))
    assert len(body) > 2048
    async with run_collector(max_body_bytes=2048) as c:
        r = await c.post(body)
        assert r.status_code == 413
        assert r.json()["error"] == "too_large"
        assert "exceeds the limit of 2048 bytes" in r.json()["message"]

        # Chunked: no Content-Length, so the limit is enforced while reading.
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        r = await c.client.post("/v1/telemetry", content=chunks())
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 413

        # The connection stays usable after a refusal.
        small = encode(batch(spans[:1]))
        assert (await c.post(small)).status_code == 202
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="too_large") == 2


async def test_a_gzip_bomb_is_refused_without_inflating_it(run_collector: RunCollector) -> None:
    bomb = gzip.compress(b"[" + b" " * (50 << 20) + b"]")  # 50 MiB of JSON whitespace
    assert len(bomb) < 100_000
    async with run_collector(max_body_bytes=1 << 20) as c:
        r = await c.post(bomb, {"content-encoding": "gzip"})
        assert r.status_code == 413
        assert r.json()["message"] == "body inflates to more than the limit of 1048576 bytes"
        assert (await c.client.get("/health")).status_code == 200


def _zero_span() -> dict[str, Any]:
    s = span()
    s["span_id"] = "0" * 16
    return s


def _upper_trace() -> dict[str, Any]:
    s = span()
    s["trace_id"] = s["trace_id"].upper().replace("0", "A")
    return s


def _backwards() -> dict[str, Any]:
    s = span()
    s["end_time_unix_nano"] = s["start_time_unix_nano"] - 1
    return s


def _bad_link() -> dict[str, Any]:
    s = span()
    s["links"] = [{"trace_id": trace_id(), "span_id": "g" * 16}]
    return s


def _zero_parent() -> dict[str, Any]:
    return span(parent="0" * 16)


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"not json", "invalid body: JSON is malformed"),
    ("not an object", b"[1, 2]", "invalid body: Expected `object`, got `array`"),
    ("no spans", b'{"resource": {}}', "invalid body: Object missing required field `spans`"),
    (
        "short trace id",
        encode(batch([span(trace="abc")])),
        "Expected `str` of length >= 32 - at `$.spans[0].trace_id`",
    ),
    ("uppercase id", encode(batch([_upper_trace()])), "expected lowercase hex"),
    ("zero span id", encode(batch([_zero_span()])), "all zeros - at `$.spans[0].span_id`"),
    ("zero parent", encode(batch([_zero_parent()])), "all zeros - at `$.spans[0].parent_span_id`"),
    (
        "end before start",
        encode(batch([span(), _backwards()])),
        "end_time_unix_nano is before start_time_unix_nano - at `$.spans[1]`",
    ),
    ("bad link", encode(batch([_bad_link()])), "at `$.spans[0].links[0].span_id`"),
    ("unknown kind", encode(batch([span(kind="banana")])), "at `$.spans[0].kind`"),
    (
        "negative dropped",
        encode({"spans": [], "dropped": -1}),
        "Expected `int` >= 0 - at `$.dropped`",
    ),
    (
        "bad error category",
        encode(batch([span(status="error", error_type="oops")])),
        "at `$.spans[0].error.type`",
    ),
    # Typed integers beyond int64 would overflow the metrics' floats and SQLite's integers.
    (
        "dropped beyond int64",
        encode({"spans": [], "dropped": 2**63}),
        "Expected `int` <= 9223372036854775807 - at `$.dropped`",
    ),
    (
        "a time beyond int64",
        encode(batch([span(start=2**63 + 5, duration_ms=0)])),
        "Expected `int` <= 9223372036854775807 - at `$.spans[0].start_time_unix_nano`",
    ),
    (
        "another wire version",
        encode({**batch([span()]), "version": 99}),
        "wire version 99 is not supported; this collector accepts version 1 - at `$.version`",
    ),
    (
        "a resource value too long for any integer",
        b'{"resource": {"service.name": "a", "n": 1' + b"0" * 5000 + b'}, "spans": []}',
        'Integer value out of range - at `$.resource["n"]`',
    ),
    (
        "a nested attribute",
        encode(batch([span(a={"b": 1})])),
        'got `object` - at `$.spans[0].attributes["a"]`',
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_invalid_bodies_get_400_with_a_precise_message(
    run_collector: RunCollector, body: bytes, message: str
) -> None:
    async with run_collector() as c:
        r = await c.post(body)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid"
        assert message in r.json()["message"]
        # Nothing of a refused batch is kept.
        assert (await c.client.get("/v1/traces")).json()["traces"] == []


async def test_gzip_errors_and_unknown_encodings_are_refused(run_collector: RunCollector) -> None:
    good = gzipped(batch([span()]))
    async with run_collector() as c:
        r = await c.post(b"plain text, not gzip", {"content-encoding": "gzip"})
        assert r.status_code == 400
        assert "not a valid gzip stream" in r.json()["message"]
        r = await c.post(good[:-12], {"content-encoding": "gzip"})
        assert (r.status_code, r.json()["message"]) == (
            400,
            "invalid body: gzip stream is truncated",
        )
        r = await c.post(zlib.compress(encode(batch([span()]))), {"content-encoding": "deflate"})
        assert r.status_code == 415
        assert r.json()["error"] == "unsupported_encoding"


async def test_a_batch_over_the_span_limit_is_413_so_the_sdk_splits_it(
    run_collector: RunCollector,
) -> None:
    async with run_collector(max_spans_per_batch=3) as c:
        r = await c.post(encode(batch([span() for _ in range(4)])))
        assert (r.status_code, r.json()) == (
            413,
            {"error": "too_many_spans", "message": "batch has 4 spans; the limit is 3"},
        )
        assert (await c.post(encode(batch([span() for _ in range(3)])))).status_code == 202
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="too_many_spans") == 1
    assert m.total("rastir_collector_ingested_spans_total") == 3


def test_the_sdk_splits_a_batch_over_the_span_limit_and_delivers_every_span(
    tmp_path: Path,
) -> None:
    import rastir
    from tests.collector.server import RunningServer

    app = create_app(
        CollectorSettings(
            store="memory", data_dir=tmp_path, access_log=False, max_spans_per_batch=10
        )
    )
    server = RunningServer(app)
    server.start()
    try:

        @rastir.tool(tool_name="t")
        def work(i: int) -> int:
            return i

        # One batch of 64 spans, 413 at the collector: halved until each half fits.
        rastir.configure(service="app", push_url=server.url, otel_bridge=False, batch_size=64)
        for i in range(64):
            work(i)
        assert rastir.flush(10.0)
        assert app.state.collector.store.stats().spans_stored == 64
    finally:
        server.stop()


async def test_a_saturated_collector_answers_429_before_reading_the_body(
    run_collector: RunCollector,
) -> None:
    async with run_collector(trace_store=SaturatedStore()) as c:
        # An invalid body gets 429, not 400: the body was never decoded.
        r = await c.post(b"this is not json")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"] == "queue_full"
        r = await c.post(encode(batch([span()])))
        assert r.status_code == 429
        ready = await c.client.get("/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False, "reason": "queue_full"})
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="queue_full") == 2
    assert m.total("rastir_collector_ingested_spans_total") == 0


async def raw_request(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; read one response (not waiting to send more)."""
    host, port = url.removeprefix("http://").split(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive()
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        pairs = (line.split(":", 1) for line in lines[1:])
        headers = {k.lower(): v.strip() for k, v in pairs}
        while len(rest) < int(headers["content-length"]):
            rest += await stream.receive()
        return int(lines[0].split()[1]), headers, rest


class ReadProbe:
    """ASGI wrapper that signals (across threads) when a request starts reading its body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.reading = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def probed_receive() -> Any:
            self.reading.set()
            return await receive()

        await self.app(scope, probed_receive, send)


async def test_requests_beyond_the_inflight_limit_get_429_without_their_body(
    run_collector: RunCollector,
) -> None:
    release = anyio.Event()
    body = encode(batch([span()]))

    async def stalled() -> AsyncIterator[bytes]:
        yield body[:10]
        await release.wait()
        yield body[10:]

    probe: list[ReadProbe] = []

    def wrap(app: Any) -> Any:
        probe.append(ReadProbe(app))
        return probe[0]

    async with run_collector(max_inflight=1, wrap=wrap) as c:
        results: dict[str, httpx.Response] = {}

        async def post_stalled() -> None:
            results["stalled"] = await c.client.post("/v1/telemetry", content=stalled())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_stalled)
                # Once the collector reads the first body, that request holds the only slot.
                await anyio.to_thread.run_sync(probe[0].reading.wait, abandon_on_cancel=True)
                # The second request never sends its body, and is refused anyway.
                status, headers, reply = await raw_request(
                    c.url,
                    b"POST /v1/telemetry HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n{",
                )
                assert status == 429
                assert headers["retry-after"] == "1"
                assert b"inflight_limit" in reply
                release.set()
        assert results["stalled"].status_code == 202


async def test_a_store_full_at_submit_time_answers_429(run_collector: RunCollector) -> None:
    async with run_collector(trace_store=RefusingStore()) as c:
        r = await c.post(encode(batch([span()])))
        assert r.status_code == 429
        assert r.json()["error"] == "queue_full"
        assert "retry-after" in r.headers


@pytest.mark.parametrize("ack", ["queued", "committed"])
async def test_a_batch_the_full_store_refused_is_counted_once_when_the_retry_lands(
    run_collector: RunCollector, ack: str
) -> None:
    tid, spans = agent_trace(service="shop", n_llm=2)
    unsampled = llm_span()
    unsampled["sampled"] = False
    body = encode(batch([*spans, unsampled], service="shop", dropped=3))
    store = FullOnceStore()
    async with run_collector(trace_store=store, ack=ack) as c:
        refused = await c.post(body)
        assert (refused.status_code, refused.json()["error"]) == (429, "queue_full")
        m = await c.scrape()
        # The refusal left nothing behind: not a span, a token or a head-sampling drop.
        assert m.total("rastir_collector_ingested_spans_total") == 0
        assert m.total("rastir_collector_ingested_batches_total") == 0
        assert m.total("rastir_collector_client_dropped_spans_total") == 0
        assert m.total("rastir_llm_calls_total") == 0
        assert m.total("rastir_llm_tokens_total") == 0
        assert m.total("rastir_spans_total") == 0
        assert m.total("rastir_collector_sampled_out_spans_total") == 0
        assert m.value("rastir_collector_rejected_requests_total", reason="queue_full") == 1
        # The sender retries the same batch: now it lands, and counts once.
        retried = await c.post(body)
        assert (retried.status_code, retried.json()) == (202, {"accepted": 5})
        assert (await c.client.get(f"/v1/traces/{tid}")).json()["summary"]["span_count"] == 4
        m = await c.scrape()
    llm = {"service": "shop", "model": "gpt-4o", "provider": "openai"}
    assert m.total("rastir_llm_calls_total", **llm) == 3
    assert m.total("rastir_llm_tokens_total", **llm, token_type="input") == 300
    assert m.value("rastir_collector_ingested_spans_total", service="shop") == 5
    assert m.value("rastir_collector_ingested_batches_total", service="shop") == 1
    assert m.value("rastir_collector_client_dropped_spans_total", service="shop") == 3
    assert m.value("rastir_collector_sampled_out_spans_total", stage="head") == 1
    assert store.refused == 1


async def test_a_batch_larger_than_the_whole_store_queue_is_413_so_it_is_not_retried(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    async with run_collector(store="sqlite", queue_capacity=100, data_dir=tmp_path / "db") as c:
        # 150 spans can never fit a 100-span queue: a 429 would be retried forever.
        r = await c.post(encode(batch([llm_span() for _ in range(150)])))
        assert (r.status_code, r.json()["error"]) == (413, "too_large")
        assert "write queue" in r.json()["message"]
        assert "retry-after" not in r.headers
        m = await c.scrape()
        assert m.total("rastir_llm_calls_total") == 0
        assert m.total("rastir_collector_ingested_spans_total") == 0
        assert m.value("rastir_collector_rejected_requests_total", reason="too_large") == 1
        # A batch that fits the (empty) queue lands as usual.
        r = await c.post(encode(batch([llm_span() for _ in range(80)])))
        assert r.status_code == 202, r.text
        m = await c.scrape()
    assert m.total("rastir_llm_calls_total") == 80
    assert m.total("rastir_collector_ingested_spans_total") == 80


async def test_an_unexpected_failure_is_a_counted_503_never_a_500(
    run_collector: RunCollector, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_collector(trace_store=BrokenStore()) as c:
        r = await c.post(encode(batch([span()])))
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"] == "internal_error"
        assert (await c.client.get("/health")).status_code == 200
        m = await c.scrape()
    assert m.value("rastir_collector_rejected_requests_total", reason="internal_error") == 1
    assert "disk on fire" in caplog.text


async def test_a_failing_saturation_check_is_a_503_too(run_collector: RunCollector) -> None:
    async with run_collector(trace_store=StatsBrokenStore()) as c:
        r = await c.post(encode(batch([span()])))
        assert (r.status_code, r.json()["error"]) == (503, "internal_error")


async def test_an_unsupported_encoding_is_refused_before_the_body_is_read(
    run_collector: RunCollector,
) -> None:
    async with run_collector() as c:
        status, _, reply = await raw_request(
            c.url,
            b"POST /v1/telemetry HTTP/1.1\r\nhost: x\r\ncontent-encoding: br\r\n"
            b"content-length: 5000\r\n\r\n",
        )
        assert status == 415
        assert b"unsupported_encoding" in reply


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer wrong", 403),
        ("Bearer s3cret-but-longer", 403),
        ("Basic czNjcmV0", 401),
        ("Bearer", 401),
        ("Bearer s3cret", 202),
        ("bearer s3cret", 202),
    ],
)
async def test_ingest_requires_the_ingest_token(
    run_collector: RunCollector, header: str | None, status: int
) -> None:
    async with run_collector(ingest_token="s3cret") as c:
        headers = {"authorization": header} if header is not None else {}
        r = await c.post(encode(batch([span()])), headers)
        assert r.status_code == status
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
        # Auth comes first: a refused request is refused whatever its body.
        if status != 202:
            assert (await c.post(b"garbage", headers)).status_code == status


async def test_attribute_values_and_maps_over_the_limits_are_cut_and_counted(
    run_collector: RunCollector,
) -> None:
    s = span(kind="tool", gen_ai__tool__name="search", a="x" * 50, b=1, c=["y" * 30, "ok"], d=2.5)
    s["name"] = "n" * 40
    async with run_collector(max_attr_value_len=10, max_attrs_per_span=4) as c:
        assert (await c.post(encode(batch([s])))).status_code == 202
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
        m = await c.scrape()
    (node,) = tree["spans"]
    attrs = node["attributes"]
    assert list(attrs) == ["gen_ai.tool.name", "a", "b", "c"]  # the first 4, in order
    assert attrs["a"] == "x" * 9 + "…"
    assert attrs["c"] == ["y" * 9 + "…", "ok"]
    assert node["name"] == "n" * 9 + "…"
    assert m.value("rastir_collector_truncated_total", field="attribute_map") == 1
    assert m.value("rastir_collector_truncated_total", field="attribute_value") == 2
    assert m.value("rastir_collector_truncated_total", field="span_name") == 1


@pytest.mark.parametrize(
    "long_value",
    [
        "x" * 300,  # a plain run with no quote in it
        'say "hi" ' * 40,  # escaped quotes split the raw run
        "é" * 120 + "\u2028" * 100,  # multibyte UTF-8, and a character JSON may escape
        "z" * 150,  # one over the limit, inside a body with many quotes around it
    ],
)
async def test_long_values_are_cut_inside_a_large_batch(
    run_collector: RunCollector, long_value: str
) -> None:
    # A limit large enough for the raw-body shortcut (_strings_fit) to be tried, and a
    # batch of ordinary spans around the one long value: it is still found and cut.
    spans = [span(kind="tool", gen_ai__tool__name=f"t{i}", note="short") for i in range(50)]
    spans[25]["attributes"]["big"] = long_value
    async with run_collector(max_attr_value_len=149) as c:
        assert (await c.post(encode(batch(spans)))).status_code == 202
        tree = (await c.client.get(f"/v1/traces/{spans[25]['trace_id']}")).json()
        m = await c.scrape()
    (node,) = [n for n in tree["spans"] if n["span_id"] == spans[25]["span_id"]]
    assert node["attributes"]["big"] == long_value[:148] + "…"
    assert m.value("rastir_collector_truncated_total", field="attribute_value") == 1


# Values without quotes or backslashes reach the shortcut's "fit" answer (an escaped
# quote anywhere sends it to the walk), so most values are drawn from those, some as
# long runs around the limits drawn below; the rest mix in every character JSON escapes.
_TEXT = st.one_of(
    st.integers(0, 450).map("a".__mul__),  # long runs, on both sides of the limit
    st.integers(0, 250).map("é\u2028".__mul__),
    st.text(st.sampled_from("abé\u2028😀{}:,\t"), max_size=600),
    st.text(st.sampled_from('ab"\\/é\n\t\u2028\x01😀{}:,'), max_size=600),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_TEXT, min_size=1, max_size=8),
    max_len=st.integers(min_value=126, max_value=400),
    ascii_only=st.booleans(),
)
def test_strings_fit_never_hides_a_long_string(
    values: list[str], max_len: int, ascii_only: bool
) -> None:
    # The shortcut may say "maybe not" freely, but "fit" must be true of every string.
    payload = {"spans": [{"name": "n", "attributes": {str(i): v for i, v in enumerate(values)}}]}
    body = (
        json.dumps(payload, ensure_ascii=True).encode()
        if ascii_only
        else msgspec.json.encode(payload)
    )
    if _strings_fit(body, max_len):
        assert max(map(len, values)) <= max_len


def test_strings_fit_holds_for_an_ordinary_batch() -> None:
    # The shortcut is taken for what SDKs send (else it saves nothing), and refused for a
    # value one character over the limit.
    spans = [llm_span(prompt_note="a" * 100) for _ in range(100)]
    body = encode(batch(spans))
    assert len(body) > 20_000
    assert _strings_fit(body, 4096)
    spans[50]["attributes"]["long"] = "b" * 4097
    assert not _strings_fit(encode(batch(spans)), 4096)


async def test_client_reported_drops_are_counted_per_service(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        r = await c.post(encode(batch([], service="a", dropped=5)))
        assert (r.status_code, r.json()) == (202, {"accepted": 0})
        assert (await c.post(encode(batch([span()], service="a", dropped=2)))).status_code == 202
        assert (await c.post(encode(batch([span()], service="b")))).status_code == 202
        m = await c.scrape()
    assert m.value("rastir_collector_client_dropped_spans_total", service="a") == 7
    assert m.value("rastir_collector_client_dropped_spans_total", service="b") == 0
    # A batch without a service name is counted as the SDK's default.
    async with run_collector() as c:
        assert (await c.post(encode({"spans": [span()]}))).status_code == 202
        m = await c.scrape()
    assert m.value("rastir_collector_ingested_spans_total", service="unknown_service") == 1


async def test_committed_mode_answers_once_the_spans_are_in_sqlite(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    tid, spans = agent_trace()
    async with run_collector(store="sqlite", ack="committed", data_dir=tmp_path / "db") as c:
        r = await c.post(encode(batch(spans)))
        assert (r.status_code, r.json()) == (202, {"accepted": len(spans)})
        # Committed: readable at once, no flush needed.
        detail = await c.client.get(f"/v1/traces/{tid}")
        assert detail.status_code == 200
        assert detail.json()["summary"]["span_count"] == len(spans)


async def test_every_503_of_a_collector_not_started_carries_the_configured_retry_after() -> None:
    app = create_app(CollectorSettings(store="memory", access_log=False, retry_after=7))
    transport = httpx.ASGITransport(app=app)
    score = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "name": "x", "score": 1}
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
        answers = [
            await client.post("/v1/telemetry", content=encode(batch([span()]))),
            await client.get("/v1/traces"),
            await client.get("/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"),
            await client.post("/v1/scores", json=score),
        ]
    assert [(r.status_code, r.headers.get("retry-after")) for r in answers] == [(503, "7")] * 4


async def test_a_collector_that_has_not_started_refuses_with_503() -> None:
    app = create_app(CollectorSettings(store="memory", access_log=False))
    # No lifespan has run: the store is not open.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
        r = await client.post("/v1/telemetry", content=encode(batch([span()])))
        assert (r.status_code, r.json()["error"]) == (503, "not_ready")
        assert r.headers["retry-after"] == "1"
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/health")).status_code == 200


async def test_non_string_resource_and_label_values_do_not_break_metrics(
    run_collector: RunCollector,
) -> None:
    odd = llm_span(model="m")
    odd["attributes"]["gen_ai.request.model"] = ["a", "list"]
    odd["attributes"]["gen_ai.provider.name"] = 42
    odd["attributes"]["gen_ai.usage.input_tokens"] = "many"
    odd["attributes"]["rastir.cost.usd"] = -3.0  # a counter never goes down
    body = encode({"resource": {"service.name": 7}, "spans": [odd]})
    async with run_collector() as c:
        assert (await c.post(body)).status_code == 202
        m = await c.scrape()
    labels = {"service": "7", "model": "__invalid__", "provider": "42", "agent": ""}
    assert m.value("rastir_llm_calls_total", **labels, status="ok") == 1
    assert m.value("rastir_llm_tokens_total", **labels, token_type="input") == 0
    assert m.value("rastir_llm_cost_usd_total", **labels) == 0


@EVERY_STORE
@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("llm", "gen_ai.usage.input_tokens"),
        ("llm", "gen_ai.usage.output_tokens"),
        ("llm", "rastir.cost.usd"),
        ("llm", "rastir.ttft_ms"),
        ("evaluation", "rastir.evaluation.score"),
        ("retrieval", "rastir.retrieval.documents"),
        ("custom", "rastir.cost.usd"),
        ("http.server", "http.response.status_code"),
    ],
)
async def test_an_attribute_integer_beyond_any_float_is_stored_and_left_out_of_the_metrics(
    run_collector: RunCollector, store: str, kind: str, key: str
) -> None:
    # JSON integers have no range and the SDK sends big ones as they are: 10**400
    # used to overflow the metrics' floats (503 for ever) or the store's writer.
    s = span(kind=kind)
    s["attributes"][key] = 10**400
    async with run_collector(store=store, ack="committed" if is_sql(store) else "queued") as c:
        r = await c.post(encode(batch([s])))
        assert r.status_code == 202, r.text
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
        m = await c.scrape()
    assert tree["spans"][0]["attributes"][key] == 10**400
    assert tree["summary"]["cost_usd"] == 0
    assert tree["summary"]["input_tokens"] == 0
    assert m.total("rastir_llm_tokens_total") == 0
    assert m.total("rastir_llm_cost_usd_total") == 0
    assert m.total("rastir_spans_total") == 1
    assert m.value("rastir_collector_rejected_requests_total", reason="internal_error") == 0


@EVERY_STORE
async def test_integers_at_the_int64_limits_are_accepted_and_counted(
    run_collector: RunCollector, store: str
) -> None:
    big = 2**63 - 1
    llm = llm_span(model="m")
    llm["attributes"].update(
        {"gen_ai.usage.input_tokens": big, "rastir.cost.usd": big, "rastir.ttft_ms": big}
    )
    ev = span(kind="evaluation", trace=llm["trace_id"], rastir__evaluation__score=big, n=-big - 1)
    async with run_collector(store=store) as c:
        r = await c.post(encode({**batch([llm, ev]), "dropped": big}))
        assert r.status_code == 202, r.text
        await c.app.state.collector.store.flush()
        summary = (await c.client.get(f"/v1/traces/{llm['trace_id']}")).json()["summary"]
        m = await c.scrape()
    assert summary["span_count"] == 2
    assert summary["cost_usd"] == float(big)
    assert m.total("rastir_llm_tokens_total", token_type="input") == float(big)
    assert m.total("rastir_collector_client_dropped_spans_total") == float(big)


async def test_a_long_service_name_is_cut_once_per_batch_and_stays_queryable(
    run_collector: RunCollector,
) -> None:
    from rastir.collector.ingest import MAX_SERVICE_LEN

    name = "s" * (1 << 20)
    spans = [span(trace=trace_id()) for _ in range(20)]
    resource = {"service.name": name, "host.name": "h" * 5000, "ok": "fine"}
    async with run_collector(store="sqlite", max_attr_value_len=100) as c:
        r = await c.post(encode({"resource": resource, "spans": spans}))
        assert r.status_code == 202
        await c.app.state.collector.store.flush()
        cut = "s" * (MAX_SERVICE_LEN - 1) + "…"
        listed = (await c.client.get("/v1/traces", params={"service": cut})).json()["traces"]
        tree = (await c.client.get(f"/v1/traces/{spans[0]['trace_id']}")).json()
        m = await c.scrape()
    assert len(listed) == 20
    assert tree["summary"]["services"] == [cut]
    assert tree["spans"][0]["service"] == cut
    assert m.value("rastir_collector_truncated_total", field="service_name") == 1
    assert m.value("rastir_collector_truncated_total", field="resource") == 2  # name, host
    assert m.value("rastir_collector_ingested_spans_total", service=cut[:128]) == 20


async def test_a_long_resource_reaches_the_sinks_cut(run_collector: RunCollector) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    resource = {"service.name": "x" * 300, **{f"k{i}": "v" * 50 for i in range(10)}}
    async with run_collector(max_attr_value_len=20, max_attrs_per_span=4) as c:
        c.app.state.collector.sinks.append(lambda svc, res, spans: seen.append((svc, res)))
        assert (await c.post(encode({"resource": resource, "spans": [span()]}))).status_code == 202
        m = await c.scrape()
    ((service, res),) = seen
    assert len(service) == 256
    assert list(res) == ["service.name", "k0", "k1", "k2"]
    assert res["service.name"] == service  # the name the store has
    assert res["k0"] == "v" * 19 + "…"
    # the map, then three values cut (service.name counted as the service's cut)
    assert m.value("rastir_collector_truncated_total", field="resource") == 1 + 4
    assert m.value("rastir_collector_truncated_total", field="service_name") == 1


def _otlp_json(value: dict[str, Any], start: str = "1750000000000000000") -> bytes:
    span_json = {
        "traceId": trace_id(),
        "spanId": "00f067aa0ba902b7",
        "name": "op",
        "startTimeUnixNano": start,
        "endTimeUnixNano": start,
        "attributes": [{"key": "n", "value": value}],
    }
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span_json]}]}]}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (_otlp_json({"intValue": "1" + "0" * 400}), 400, "intValue: '1000"),
        (_otlp_json({"intValue": 2**64}), 400, "intValue: 18446744073709551616... is not"),
        (_otlp_json({"intValue": -(2**63) - 1}), 400, "Expected `int` >= -9223372036854775808"),
    ],
    ids=["a string beyond 64 bits", "a number beyond 64 bits", "a number below int64"],
)
async def test_otlp_integers_beyond_64_bits_are_refused_not_overflowed(
    run_collector: RunCollector, body: bytes, status: int, message: str
) -> None:
    async with run_collector() as c:
        r = await c.client.post(
            "/v1/traces", content=body, headers={"content-type": "application/json"}
        )
        assert (await c.client.get("/v1/traces")).json()["traces"] == []
    assert r.status_code == status, r.text
    assert message in r.text
