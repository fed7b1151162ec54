"""Metrics are derived from every span before sampling: sampling never changes them."""

from __future__ import annotations

import re
from pathlib import Path
from random import Random
from typing import Any

import pytest

from tests.collector.conftest import Scrape
from tests.collector.spans import agent_trace, batch, encode, span
from tests.sampling.collector import running_collector, wait_for

# What sampling is allowed to change: what is stored, what the sampler and the
# exporter hold and count, and the timing of the requests themselves.
_DIFFER = re.compile(
    r"rastir_collector_(store_|sampled_out_|tail_sampling_|ingest_duration|event_loop_lag"
    r"|inflight|queue_|export)"
)


def traffic(seed: int) -> list[bytes]:
    """Batches of agent traces from two services: errors, slow runs, unsampled ones."""
    rng = Random(seed)
    bodies = []
    for b in range(12):
        spans: list[dict[str, Any]] = []
        for _ in range(8):
            _, trace = agent_trace(n_llm=rng.randint(1, 3))
            if rng.random() < 0.2:
                trace[1].update(status="error", error={"type": "rate_limit"})
            if rng.random() < 0.2:
                trace[0]["end_time_unix_nano"] += 30 * 10**9  # a slow run
            if rng.random() < 0.3:
                for s in trace:
                    s["sampled"] = False  # the SDK's head sampling dropped it
            spans.extend(trace)
        spans.append(span(kind="custom", rastir__metric__name="embed", duration_ms=3))
        bodies.append(encode(batch(spans, service="a" if b % 2 else "b", dropped=b % 3)))
    return bodies


def comparable(m: Scrape) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {k: v for k, v in m.samples.items() if not _DIFFER.match(k[0])}


@pytest.mark.anyio
async def test_the_metrics_are_the_same_with_and_without_sampling(tmp_path: Path) -> None:
    bodies = traffic(seed=8)
    scrapes: dict[str, Scrape] = {}
    variants: dict[str, dict[str, Any]] = {
        "off": {},
        "tail": {
            "tail_sampling": True,
            "tail_decision_wait": 0.2,
            "tail_root_grace": 0.05,
            "tail_ratio": 0.2,
        },
    }
    for name, overrides in variants.items():
        async with running_collector(tmp_path / name, **overrides) as c:
            for body in bodies:
                assert (await c.post(body)).status_code == 202
            sampler = c.app.state.tail_sampler
            if sampler is not None:
                await wait_for(lambda: sampler.traces == 0)  # noqa: B023 - awaited here
            scrapes[name] = await c.scrape()
    off, tail = scrapes["off"], scrapes["tail"]
    assert comparable(off) == comparable(tail)
    # What was compared holds the span-derived families, with real values.
    assert off.total("rastir_llm_tokens_total") > 0
    assert off.total("rastir_llm_errors_total", error_type="rate_limit") > 0
    assert off.total("rastir_collector_client_dropped_spans_total") > 0
    # And sampling did act: fewer spans were stored with it.
    assert tail.value("rastir_collector_sampled_out_spans_total", stage="tail") > 0
    head = off.value("rastir_collector_sampled_out_spans_total", stage="head")
    assert head == tail.value("rastir_collector_sampled_out_spans_total", stage="head") > 0
    assert off.value("rastir_collector_store_spans") == off.total("rastir_spans_total") - head
    assert tail.value("rastir_collector_store_spans") < off.value("rastir_collector_store_spans")
