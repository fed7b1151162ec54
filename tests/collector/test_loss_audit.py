"""Losing spans without a count: the collector's store failing, its export target
hanging, and SIGTERM under load. Every span a 202 acknowledged is stored, or counted
in /metrics and logged."""

from __future__ import annotations

import logging
import signal
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from rastir.collector.otlp.export import DROP_REASONS, OtlpExporter
from tests.collector.conftest import RunCollector
from tests.collector.spans import agent_trace, batch, encode, span
from tests.collector.test_cli import collector_process, missing_after_restart, push_then_signal
from tests.core.test_export_loss_audit import _raw_server
from tests.sampling.collector import stored_trace_ids, wait_for

pytestmark = pytest.mark.anyio


@contextmanager
def write_locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock (an operator's shell, a
    backup tool) for the block."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


async def test_a_locked_database_keeps_acknowledged_spans_pushes_back_and_loses_none(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    async with run_collector(store="sqlite", queue_capacity=40, retry_after=1) as c:
        store = c.app.state.collector.store
        tid, spans = agent_trace()
        assert (await c.post(encode(batch(spans)))).status_code == 202
        acked = [tid]
        await wait_for(lambda: store.stats().queue_depth == 0)
        with write_locked(tmp_path / "data" / "rastir.db"):
            refused = None
            for _ in range(30):
                tid, spans = agent_trace()
                r = await c.post(encode(batch(spans)))
                if r.status_code != 202:
                    refused = r
                    break
                acked.append(tid)
            # The write queue held the acknowledged spans until it was full; then
            # ingest pushed back instead of acknowledging spans it could not keep.
            assert refused is not None
            assert (refused.status_code, refused.json()["error"]) == (429, "queue_full")
            assert refused.headers["retry-after"] == "1"
            ready = await c.client.get("/ready")
            assert (ready.status_code, ready.json()["reason"]) == (503, "queue_full")
            # The writer has met the lock (after SQLite's 5 s busy timeout): counted.
            await wait_for(lambda: store.stats().extra["write_errors"] >= 1, limit=30)
            m = await c.scrape()
            assert m.value("rastir_collector_store_write_errors_total") >= 1
            assert m.value("rastir_collector_store_failed_spans_total", reason="write_error") == 0
        # The lock is gone: the writer's next attempt stores every acknowledged span.
        await wait_for(lambda: store.stats().queue_depth == 0, limit=30)
        assert set(acked) <= await stored_trace_ids(c)
        m = await c.scrape()
        assert m.total("rastir_collector_store_failed_spans_total") == 0
        assert (await c.client.get("/ready")).status_code == 200


async def test_committed_mode_answers_503_while_the_database_is_locked_and_counts_nothing(
    run_collector: RunCollector, tmp_path: Path
) -> None:
    async with run_collector(store="sqlite", ack="committed", retry_after=2) as c:
        tid, spans = agent_trace()
        assert (await c.post(encode(batch(spans)))).status_code == 202
        with write_locked(tmp_path / "data" / "rastir.db"):
            tid, spans = agent_trace()
            r = await c.post(encode(batch(spans)))
            # Nothing was promised: the sender is told to retry.
            assert (r.status_code, r.json()["error"]) == (503, "store_error")
            assert r.headers["retry-after"] == "2"
        m = await c.scrape()
        assert m.value("rastir_collector_rejected_requests_total", reason="store_error") == 1
        assert m.total("rastir_collector_ingested_spans_total") == len(spans)  # the first
        assert m.total("rastir_collector_store_failed_spans_total") == 0
        # The retry is acknowledged and stored, and counted once.
        r = await c.post(encode(batch(spans)))
        assert r.status_code == 202
        assert tid in await stored_trace_ids(c)
        m = await c.scrape()
        assert m.total("rastir_collector_ingested_spans_total") == 2 * len(spans)


async def test_acknowledged_spans_still_unwritten_at_shutdown_are_counted_and_logged(
    run_collector: RunCollector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.collector.store")
    acked = 0
    lock: sqlite3.Connection | None = None
    try:
        async with run_collector(store="sqlite", shutdown_timeout=0.5) as c:
            store = c.app.state.collector.store
            assert (await c.post(encode(batch(agent_trace()[1])))).status_code == 202
            await wait_for(lambda: store.stats().queue_depth == 0)
            lock = sqlite3.connect(tmp_path / "data" / "rastir.db", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            for _ in range(3):
                spans = agent_trace()[1]
                assert (await c.post(encode(batch(spans)))).status_code == 202
                acked += len(spans)
            await wait_for(lambda: store.stats().extra["write_errors"] >= 1, limit=30)
            assert store.stats().queue_depth == acked
        # The app stopped with the lock still held: the spans could not be written
        # within the shutdown timeout, and the log says how many.
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "rastir.collector.store" and "unwritten" in r.getMessage()
    ]
    assert len(lines) == 1, caplog.text
    assert f"{acked} spans unwritten" in lines[0]


# -- OTLP export to a target that accepts connections and never answers ---------------------


@contextmanager
def silent_target() -> Iterator[str]:
    """A TCP port that takes connections (the kernel's backlog) and never answers."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/traces"
    finally:
        sock.close()


async def test_a_silent_export_target_never_slows_ingest_and_every_span_is_accounted_for(
    run_collector: RunCollector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.collector.export")
    with silent_target() as url:
        async with run_collector(
            otlp_endpoint=url,
            otlp_timeout=0.5,
            otlp_queue_size=100,
            otlp_batch_size=50,
            otlp_flush_interval=0.02,
            otlp_retry_budget=0.2,
            shutdown_timeout=0.5,
        ) as c:
            exporter: OtlpExporter = c.app.state.otlp_exporter
            posted = 0
            for _ in range(10):
                spans = [span() for _ in range(40)]
                r = await c.post(encode(batch(spans, service="app")))
                assert r.status_code == 202, r.text  # never a 429 for a target never seen up
                posted += 40
                assert exporter.depth <= 100
            await wait_for(lambda: exporter.failed_requests >= 1, limit=30)
            m = await c.scrape()
            dropped = {
                reason: m.value(
                    "rastir_collector_export_dropped_spans_total", exporter="otlp", reason=reason
                )
                for reason in DROP_REASONS
            }
            assert dropped["queue_full"] > 0
            assert m.value("rastir_collector_ingested_spans_total", service="app") == posted
        # Stopped: exported, dropped by reason, or still in a request at the deadline,
        # and the log says how many were not delivered.
        counts = exporter.dropped
        assert exporter.exported == 0
        stuck = exporter.depth + exporter.inflight
        assert sum(counts.values()) + stuck == posted
        (line,) = [
            r.getMessage() for r in caplog.records if "OTLP export stopped" in r.getMessage()
        ]
        assert f"{counts['shutdown'] + stuck} not delivered at shutdown" in line
        assert f"queue_full={counts['queue_full']}" in line


async def test_a_target_trickling_its_answer_does_not_hold_ingest_back_past_its_timeout(
    run_collector: RunCollector,
) -> None:
    # The first export is answered (the target is healthy); the second one's answer
    # comes a byte at a time, each well within the timeout, for up to 30 s.
    with _raw_server(["ok", "dribble"]) as target:
        async with run_collector(
            otlp_endpoint=f"{target.url}/v1/traces",
            otlp_timeout=0.5,
            otlp_queue_size=100,
            otlp_batch_size=50,
            otlp_flush_interval=0.02,
            shutdown_timeout=0.5,
        ) as c:
            exporter: OtlpExporter = c.app.state.otlp_exporter
            assert (await c.post(encode(batch([span() for _ in range(10)])))).status_code == 202
            await wait_for(lambda: exporter.exported == 10)
            assert (await c.post(encode(batch([span() for _ in range(50)])))).status_code == 202
            await wait_for(target.dribbling.is_set)
            for _ in range(20):
                if exporter.depth >= 90:
                    break
                r = await c.post(encode(batch([span() for _ in range(40)])))
                assert r.status_code in (202, 429), r.text
            assert exporter.depth >= 90
            # Past the request's timeout the target no longer counts as keeping up:
            # ingest takes spans again, and the request itself ends as a timeout (the
            # whole request is bounded, not each read), so the export thread moves on.
            await wait_for(lambda: exporter.pressure() is None)
            await wait_for(target.client_left.is_set)
            await wait_for(lambda: exporter.failed_requests >= 1)
            assert "TimeoutError" in exporter.last_error
            r = await c.post(encode(batch([span() for _ in range(40)])))
            assert r.status_code == 202, r.text
            await wait_for(lambda: exporter.depth + exporter.inflight == 0)
            m = await c.scrape()
            assert m.value("rastir_collector_export_failures_total", exporter="otlp") >= 1


# -- SIGTERM while senders push ------------------------------------------------------------


async def test_sigterm_under_load_keeps_every_span_a_202_acknowledged(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    async with collector_process("--data-dir", data, "--shutdown-timeout", "5") as c:
        # Mid-stream, queued mode: some acknowledged spans are still in the store's
        # write queue.
        acked = await push_then_signal(c, signal.SIGTERM, 100)
        with anyio.fail_after(30):
            assert await c.process.wait() == 0
        assert not [r for r in c.lines if "unwritten" in str(r.get("msg", ""))]
    assert len(acked) >= 100
    assert await missing_after_restart(data, acked) == []
