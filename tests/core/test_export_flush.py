"""``flush()`` and ``shutdown()`` finish under a steady stream of new spans."""

from __future__ import annotations

import rastir
from rastir import _config
from tests.core.test_export_reconfigure import SlowAnswers, steady_load
from tests.recording_server import recording_server


def test_flush_returns_once_the_spans_queued_before_it_are_sent_under_steady_load() -> None:
    with recording_server() as server:
        server.script.hang = SlowAnswers()
        rastir.configure(
            service="load", push_url=server.url, batch_size=50, max_queue=5000, flush_interval=0.05
        )
        with steady_load(["load"]):
            server.wait_for(lambda: len(server.received) >= 3)
            with rastir.span("marker"):
                pass
            # The queue never empties meanwhile, so this is the count, not a round.
            assert rastir.flush(30)
            assert any(s["name"] == "marker" for s in server.spans())
        assert server.dropped() == 0  # the load is paced: nothing overflowed


def test_flush_waits_for_the_batch_in_flight_and_the_report_of_its_loss() -> None:
    with recording_server() as server:
        server.script.answers = [(400, {})]
        rastir.configure(service="lost", push_url=server.url, flush_interval=60)
        with rastir.span("refused"):
            pass
        assert rastir.flush(10)
        assert server.spans() == []
        assert server.dropped() == 1  # the loss went out before flush returned


def test_shutdown_stops_the_exporter_thread_under_steady_load() -> None:
    with recording_server() as server:
        server.script.hang = SlowAnswers()
        rastir.configure(
            service="load", push_url=server.url, batch_size=50, max_queue=5000, flush_interval=0.05
        )
        exporter = _config._exporter_or_none()
        with steady_load(["load"]):
            server.wait_for(lambda: len(server.received) >= 3)
            # What is queued now is sent; the spans that keep coming are not waited for.
            assert exporter.shutdown(10)
            assert exporter._thread is not None
            assert not exporter._thread.is_alive()
