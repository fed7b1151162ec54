"""An export target that answers a byte at a time cannot hold the export thread.

Each byte comes well within the socket timeout, so only a deadline on the request as
a whole ends it. The target is a raw socket server on 127.0.0.1.
"""

from __future__ import annotations

from rastir.collector.otlp.export import OtlpExporter
from tests.core.test_export_loss_audit import _raw_server
from tests.otlp_export.test_export import _wire_spans


def _exporter(url: str, batch_size: int, fast_retries: bool = True) -> OtlpExporter:
    """An exporter with a 1 s request timeout, fast batches and fast retries."""
    exporter = OtlpExporter(
        f"{url}/v1/traces",
        timeout=1.0,
        batch_size=batch_size,
        flush_interval=0.02,
        retry_budget=60.0,
    )
    if fast_retries:
        exporter.backoff_base, exporter.backoff_cap = 0.01, 0.05
    return exporter


def test_a_trickled_answer_times_out_and_the_batch_is_retried_to_the_recovered_target() -> None:
    # The first connection is answered a byte at a time (for up to 30 s); the next
    # one is answered at once.
    with _raw_server(["dribble", "ok"]) as target:
        exporter = _exporter(target.url, 8)
        exporter("svc", {"service.name": "svc"}, _wire_spans(8))
        exporter.start()
        try:
            assert target.dribbling.wait(10)
            assert exporter.flush(20)
        finally:
            assert exporter.shutdown(1)
        # The trickled request failed as a timeout, the export thread left it (the
        # target saw the client go), and the retry delivered the batch.
        assert target.client_left.wait(10)
        assert exporter.failed_requests == 1
        assert "TimeoutError" in exporter.last_error
        assert exporter.requests == 2
        assert exporter.exported == 8
        assert sum(exporter.dropped.values()) == 0
        assert len(target.bodies) == 1


def test_a_batch_queued_behind_a_trickled_request_is_exported_next() -> None:
    with _raw_server(["dribble", "ok", "ok"]) as target:
        exporter = _exporter(target.url, 4)
        exporter("a", {"service.name": "a"}, _wire_spans(4))
        exporter.start()
        try:
            assert target.dribbling.wait(10)
            # Queued while the thread is in the trickled request.
            exporter("b", {"service.name": "b"}, _wire_spans(4))
            assert exporter.flush(20)
        finally:
            assert exporter.shutdown(1)
        assert exporter.exported == 8
        assert exporter.failed_requests == 1
        assert len(target.bodies) == 2


def test_shutdown_during_a_trickled_request_stops_the_thread_and_counts_the_batch() -> None:
    with _raw_server(["dribble"]) as target:
        exporter = _exporter(target.url, 8, fast_retries=False)
        exporter("svc", {"service.name": "svc"}, _wire_spans(8))
        exporter.start()
        assert target.dribbling.wait(10)
        # The trickle would go on for 30 s; the join waits for the shutdown timeout
        # plus one request's timeout, and the request ends within its own.
        assert exporter.shutdown(0.1)
        assert exporter._thread is not None
        assert not exporter._thread.is_alive()
        assert exporter.exported == 0
        assert exporter.dropped["shutdown"] == 8
        assert sum(exporter.dropped.values()) == 8
        assert target.client_left.wait(10)
