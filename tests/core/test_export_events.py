"""SDK health events in ``WireBatch.sdk_events``: never lost, never counted twice.

The real exporter against the recording server (which keeps only the bodies it
answered 2xx, so the sum over them is what a collector would count): batches given
up, retried, split, reconfiguring, forking, stopping, and direct OTLP mode, which has
no field for them.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator

import msgspec
import pytest

import rastir
from rastir._wire import SDK_EVENTS, WireBatch
from rastir.export._encode import encode_batch, wire_spans
from rastir.export._pipeline import PIPELINE
from rastir.export.batch import _with_events
from rastir.mcp_bridge import stats as mcp_stats
from rastir.middleware import stats as http_stats
from rastir.testing import capture_spans
from tests.core.test_export_otlp_direct import otlp_target
from tests.recording_server import RecordingServer, recording_server


@pytest.fixture(autouse=True)
def _no_earlier_events() -> Iterator[None]:
    """Events other tests counted in this process are not these tests' to see."""
    PIPELINE.take_events()
    yield
    PIPELINE.take_events()


def _events(server: RecordingServer) -> dict[str, int]:
    """The events in every accepted body, summed."""
    out: dict[str, int] = {}
    with server.lock:
        for r in server.received:
            for name, n in r.body.get("sdk_events", {}).items():
                out[name] = out.get(name, 0) + n
    return out


def _spans(n: int) -> None:
    for _ in range(n):
        with rastir.span("work"):
            pass


def test_the_counters_send_names_of_the_closed_set_only() -> None:
    names = set(http_stats.event_counts()) | set(mcp_stats.event_counts())
    assert names == set(SDK_EVENTS)


def test_the_added_field_is_byte_for_byte_the_structs_encoding() -> None:
    with capture_spans() as captured:
        _spans(3)
    resource: dict[str, str | int | float | bool] = {"service.name": "enc"}
    events = {"http.hook_error": 2, "mcp.invalid_baggage": 1}
    spliced = _with_events(encode_batch(captured, resource, 5), events)
    whole = msgspec.json.encode(WireBatch(wire_spans(captured), resource, 5, sdk_events=events))
    assert spliced == whole
    assert msgspec.json.decode(spliced, type=WireBatch).sdk_events == events


def test_events_go_out_once_with_the_spans_and_not_again() -> None:
    with recording_server() as server:
        rastir.configure(service="once", push_url=server.url, flush_interval=60)
        http_stats.count_hook_error()
        mcp_stats.count("invalid_traceparent")
        _spans(2)
        assert rastir.flush(10)
        _spans(2)
        assert rastir.flush(10)
        assert _events(server) == {"http.hook_error": 1, "mcp.invalid_traceparent": 1}
        assert "sdk_events" not in server.received[-1].body  # absent when nothing new


@pytest.mark.parametrize("status", [400, 403])
def test_a_batch_given_up_passes_its_events_to_the_next_one(status: int) -> None:
    with recording_server() as server:
        server.script.answers = [(status, {})]
        rastir.configure(service="lost", push_url=server.url, flush_interval=60)
        for _ in range(3):
            http_stats.count_invalid()
        _spans(4)
        assert rastir.flush(10)  # refused; the report of its loss carries the events
        assert server.dropped() == 4
        assert _events(server) == {"http.invalid_traceparent": 3}


def test_a_retried_batch_is_one_report_of_its_events() -> None:
    with recording_server() as server:
        server.script.answers = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
        rastir.configure(service="retried", push_url=server.url, flush_interval=60)
        http_stats.count_invalid_tracestate()
        _spans(1)
        assert rastir.flush(30)
        assert len(server.attempts) == 3
        assert _events(server) == {"http.invalid_tracestate": 1}


def test_a_split_batch_reports_its_events_once() -> None:
    with recording_server() as server:
        server.script.answers = [(413, {})]
        PIPELINE.queueing = True
        _spans(8)  # queued before configure(): they leave as one batch, then its halves
        http_stats.count_hook_error()
        rastir.configure(service="split", push_url=server.url, batch_size=8, flush_interval=60)
        assert rastir.flush(10)
        assert len(server.spans()) == 8
        assert _events(server) == {"http.hook_error": 1}


def test_reconfiguring_hands_the_events_over_without_loss_or_repeat() -> None:
    with recording_server() as old, recording_server() as new:
        old.script.default = (400, {})  # every batch refused: its events stay pending
        rastir.configure(service="a", push_url=old.url, flush_interval=60)
        http_stats.count_invalid_baggage()
        http_stats.count_invalid_baggage()
        _spans(1)
        assert rastir.flush(10)
        assert old.received == []
        rastir.configure(service="b", push_url=new.url, flush_interval=60)
        http_stats.count_invalid_baggage()
        assert rastir.flush(10)
        assert _events(new) == {"http.invalid_baggage": 3}
        rastir.configure(service="c", push_url=old.url, flush_interval=60)
        old.script.default = (202, {})
        assert rastir.flush(10)
        _spans(1)
        assert rastir.flush(10)
        assert _events(old) == {}  # the new target had them all, once


def test_shutdown_reports_events_that_no_span_carried() -> None:
    with recording_server() as server:
        rastir.configure(service="bye", push_url=server.url, flush_interval=60)
        mcp_stats.count("invalid_tracestate")
        rastir.shutdown(timeout=10)
        assert _events(server) == {"mcp.invalid_tracestate": 1}
        assert server.spans() == []
        rastir.configure(service="again", push_url=server.url, flush_interval=60)
        _spans(1)
        assert rastir.flush(10)
        assert _events(server) == {"mcp.invalid_tracestate": 1}


def test_a_counter_reset_by_the_user_reports_its_new_value_never_a_negative() -> None:
    http_stats.count_hook_error()
    http_stats.count_hook_error()
    assert PIPELINE.take_events() == {"http.hook_error": 2}
    with http_stats._lock:
        http_stats.hook_errors = 0
    assert PIPELINE.take_events() == {}
    http_stats.count_hook_error()
    assert PIPELINE.take_events() == {"http.hook_error": 1}


def test_direct_otlp_mode_leaves_the_events_for_a_rastir_collector() -> None:
    with otlp_target() as target:
        rastir.configure(
            service="direct",
            exporter="otlp",
            otlp_endpoint=target.url,
            otel_bridge=False,
            flush_interval=60,
        )
        http_stats.count_invalid()
        _spans(2)
        assert rastir.flush(10)
        assert target.span_names() == ["work", "work"]
        assert PIPELINE.has_events()  # not taken: OTLP has no field for them
    with recording_server() as server:
        rastir.configure(service="later", push_url=server.url, flush_interval=60)
        assert rastir.flush(10)
        assert _events(server) == {"http.invalid_traceparent": 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reports_its_own_events_only_even_with_the_lock_held_at_the_fork() -> None:
    http_stats.count_hook_error()  # the parent's, not yet reported
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with http_stats._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    with recording_server() as server:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                rastir.configure(service="child", push_url=server.url, flush_interval=60)
                counting = threading.Thread(target=http_stats.count_hook_error)
                counting.start()
                counting.join(10)  # with the parent's lock held for ever, it would hang
                code = 3 if counting.is_alive() else 0 if rastir.flush(10) else 2
            finally:
                os._exit(code)
        release.set()
        holder.join(10)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child = _events(server)
        assert child == {"http.hook_error": 1}
        rastir.configure(service="parent", push_url=server.url, flush_interval=60)
        _spans(1)
        assert rastir.flush(10)
        assert _events(server) == {"http.hook_error": 2}  # the child's one, the parent's one
