"""Audit of sampling as a demanding user runs it: real middleware, real collector."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.export._encode import to_wire
from rastir.mcp_bridge._meta import merge_meta, read_meta
from rastir.middleware.asgi import RastirMiddleware
from rastir.sampling import HEAD, trace_id_sampled
from rastir.spans import Span
from rastir.testing import capture_spans
from tests.collector.conftest import Collector, Scrape
from tests.collector.server import serving_async
from tests.collector.spans import batch, encode, span, trace_id
from tests.sampling.collector import running_collector, stored_trace_ids


async def _scrape_until(c: Collector, check: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``check`` holds; fails after 10 s."""
    with anyio.fail_after(10):
        while True:
            scrape = await c.scrape()
            if check(scrape):
                return scrape
            await anyio.sleep(0.01)


# Low 56 bits of a trace id this process keeps at ratio 0.5, and one it drops.
_KEPT_AT_HALF = (1 << 56) - 1
_DROPPED_AT_HALF = 0


def _tid(low: int) -> str:
    return f"{(0x5A << 100) | low:032x}"


def _app() -> Starlette:
    async def work(request: Request) -> JSONResponse:
        with rastir.span("work", kind="tool"):
            out: dict[str, str] = {}
            rastir.inject(out)
        return JSONResponse(out)

    return Starlette(routes=[Route("/work", work)])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ratio", "flags", "low", "sampled"),
    [
        (1.0, 0, _KEPT_AT_HALF, False),  # upstream dropped it: dropped here too
        (0.0, 1, _DROPPED_AT_HALF, True),  # upstream kept it: kept at a local ratio of 0
        (0.5, 0, _KEPT_AT_HALF, False),
        (0.5, 1, _DROPPED_AT_HALF, True),
    ],
)
async def test_the_asgi_middleware_follows_the_inbound_flag_whatever_the_local_ratio(
    ratio: float, flags: int, low: int, sampled: bool
) -> None:
    HEAD.set_ratio(ratio)
    tid = _tid(low)
    assert trace_id_sampled(tid, 0.5) is (low == _KEPT_AT_HALF)
    with capture_spans() as spans:
        async with (
            serving_async(RastirMiddleware(_app())) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            r = await client.get(
                "/work", headers={"traceparent": f"00-{tid}-00f067aa0ba902b7-{flags:02x}"}
            )
        assert r.status_code == 200
        downstream = r.json()["traceparent"]
    mine = [s for s in spans if s.trace_id == tid]
    assert {s.kind for s in mine} == {"http.server", "tool"}
    assert all(s.sampled is sampled for s in mine)
    assert all(to_wire(s).sampled is sampled for s in mine)
    assert downstream.startswith(f"00-{tid}-")
    assert downstream.endswith("-01" if sampled else "-00")


@pytest.mark.parametrize(("ratio", "flags"), [(1.0, 0), (0.0, 1)])
def test_an_mcp_meta_flag_decides_the_tool_span_and_is_passed_on(ratio: float, flags: int) -> None:
    HEAD.set_ratio(ratio)
    tid = _tid(_KEPT_AT_HALF if not flags else _DROPPED_AT_HALF)
    context, refused = read_meta({"traceparent": f"00-{tid}-00f067aa0ba902b7-{flags:02x}"})
    assert context is not None
    assert not refused
    tool = Span("tools/call lookup", "tool", context)
    child = Span("llm", "llm", tool)
    assert tool.sampled is bool(flags)
    assert child.sampled is bool(flags)
    onward = merge_meta({"user": 1}, child)
    assert onward["user"] == 1
    assert onward["traceparent"].endswith(f"-{flags:02x}")


@pytest.mark.anyio
async def test_head_sampled_out_llm_spans_are_counted_but_neither_stored_nor_evaluated(
    tmp_path: Path,
) -> None:
    config = tmp_path / "evaluation.json"
    config.write_text(json.dumps({"evaluators": [{"name": "is_json", "type": "json_valid"}]}))

    def trace(sampled: bool) -> tuple[str, list[dict[str, Any]]]:
        tid = trace_id()
        root = span(trace=tid, kind="agent", name="planner")
        llm = span(trace=tid, parent=root["span_id"], gen_ai__request__model="gpt-4o")
        llm["attributes"]["gen_ai.completion"] = '{"ok": true}'
        spans = [root, llm]
        if not sampled:
            for s in spans:
                s["sampled"] = False
        return tid, spans

    kept_tid, kept = trace(True)
    dropped_tid, dropped = trace(False)
    async with running_collector(tmp_path, eval_config=config) as c:
        assert (await c.post(encode(batch(kept + dropped)))).status_code == 202
        m = await c.scrape()
        scrape = await _scrape_until(
            c,
            lambda m: (
                m.total("rastir_evaluations_total") >= 1
                and m.total("rastir_evaluation_queue_depth") == 0
                and m.total("rastir_evaluation_in_progress") == 0
            ),
        )
        stored = await stored_trace_ids(c)
        detail = (await c.client.get(f"/v1/traces/{dropped_tid}")).status_code
    assert scrape.total("rastir_evaluations_total") == 1
    assert scrape.total("rastir_evaluations_total", result="passed") == 1
    assert m.total("rastir_llm_calls_total") == 2  # metrics count both
    assert m.value("rastir_collector_sampled_out_spans_total", stage="head") == 2
    assert kept_tid in stored
    assert dropped_tid not in stored
    assert detail == 404


@pytest.mark.anyio
async def test_a_flood_of_distinct_traces_keeps_the_tail_buffer_bounded_and_counted(
    tmp_path: Path,
) -> None:
    bound = 20
    async with running_collector(
        tmp_path,
        tail_sampling=True,
        tail_max_traces=bound,
        tail_decision_wait=600,
        tail_root_grace=600,
        tail_ratio=0.0,
        tail_slow_threshold=None,
    ) as c:
        # An error trace first: it is the first forced out, and still kept.
        error_tid = trace_id()
        error = [span(trace=error_tid, kind="agent", status="error", error_type="timeout")]
        assert (await c.post(encode(batch(error)))).status_code == 202
        flood: list[str] = []
        for _ in range(10):
            spans = [span(kind="agent") for _ in range(30)]
            flood.extend(s["trace_id"] for s in spans)
            assert (await c.post(encode(batch(spans)))).status_code == 202
            m = await c.scrape()
            assert m.total("rastir_collector_tail_sampling_buffered_traces") <= bound
        forced = 1 + len(flood) - bound
        m = await c.scrape()
        with anyio.fail_after(10):
            while True:
                stored = await stored_trace_ids(c)
                if error_tid in stored:
                    break
                await anyio.sleep(0.01)
    assert m.total("rastir_collector_tail_sampling_buffered_traces") == bound
    assert m.total("rastir_collector_tail_sampling_buffered_spans") == bound
    early = m.value("rastir_collector_tail_sampling_early_decisions_total", reason="buffer_full")
    assert early == forced
    assert (
        m.value("rastir_collector_tail_sampling_traces_total", decision="kept", reason="error") == 1
    )
    assert (
        m.value("rastir_collector_tail_sampling_traces_total", decision="dropped", reason="ratio")
        == forced - 1
    )
    assert m.value("rastir_collector_sampled_out_spans_total", stage="tail") == forced - 1
    # every span is counted in the metrics, whatever the sampler did with it
    assert m.total("rastir_spans_total") == 1 + len(flood)
    assert stored == {error_tid}
