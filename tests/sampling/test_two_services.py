"""Head sampling across two processes that share traces through ``traceparent``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import rastir
from rastir.sampling import trace_id_sampled
from tests.sampling.collector import running_collector, stored_trace_ids, wait_for

ROOT = Path(__file__).resolve().parents[2]
TRACES = 120


def _run_service_b(push_url: str, ratio: str, traceparents: list[str]) -> list[list[str]]:
    env = {
        **os.environ,
        "RASTIR_SERVICE": "b",
        "RASTIR_PUSH_URL": push_url,
        "RASTIR_SAMPLE_RATIO": ratio,
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-m", "tests.sampling.service_b"],
        input="\n".join(traceparents) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines()]


@pytest.mark.anyio
async def test_two_services_keep_or_drop_each_trace_together(tmp_path: Path) -> None:
    async with running_collector(tmp_path) as c:
        rastir.configure(service="a", push_url=c.url, sample_ratio=0.5, flush_interval=0.05)
        sent: dict[str, str] = {}
        for _ in range(TRACES):
            with rastir.span("request") as root:
                assert root is not None
                headers: dict[str, str] = {}
                rastir.inject(headers)
                sent[root.trace_id] = headers["traceparent"]
        assert await anyio.to_thread.run_sync(rastir.flush, 10)
        # B samples 10% of the traces it would start, but continues A's decision.
        lines = await anyio.to_thread.run_sync(_run_service_b, c.url, "0.1", list(sent.values()))
        assert len(lines) == TRACES
        kept = {tid for tid in sent if trace_id_sampled(tid, 0.5)}
        assert 0 < len(kept) < TRACES
        for tid, flags, root_decision, b_sampled in lines:
            assert flags == ("01" if tid in kept else "00")
            assert b_sampled == str(tid in kept)
            # A trace B started itself with this id: decided from the id alone.
            assert root_decision == ("1" if trace_id_sampled(tid, 0.1) else "0")

        dropped = 2 * (TRACES - len(kept))

        def all_counted() -> bool:
            return bool(c.app.state.metrics.ingested_spans.child(("b",)).value == TRACES)

        await wait_for(all_counted)
        m = await c.scrape()
        # Every span of both services is in the metrics...
        assert m.value("rastir_spans_total", service="a", kind="custom", status="ok") == TRACES
        assert m.value("rastir_spans_total", service="b", kind="custom", status="ok") == TRACES
        # ...but only kept traces are stored, each with both services' spans.
        assert m.value("rastir_collector_sampled_out_spans_total", stage="head") == dropped
        assert await stored_trace_ids(c) == kept
        for tid in list(kept)[:10]:
            tree = (await c.client.get(f"/v1/traces/{tid}")).json()
            (node,) = tree["spans"]
            assert node["service"] == "a"
            assert [child["service"] for child in node["children"]] == ["b"]
