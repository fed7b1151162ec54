"""``configure()`` again: the old exporter hands the queue over, or nothing changes at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import rastir
from rastir import _config
from tests.recording_server import RecordingServer, recording_server


class SlowAnswers(threading.Event):
    """For ``RecordingServer.script.hang``: every answer takes 20 ms, like a remote
    collector, so spans arrive while each request is out."""

    def wait(self, timeout: float | None = None) -> bool:
        time.sleep(0.02)  # pacing the server, not waiting for anything
        return True


@contextmanager
def steady_load(name: list[str]) -> Iterator[None]:
    """About a thousand spans a second from another thread, named ``name[0]``.

    Slower than the exporter can send to a :class:`SlowAnswers` server, so the queue
    stays small, but never empty when a batch has gone out: an exporter round never
    ends by itself.
    """
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            for _ in range(10):
                with rastir.span(name[0]):
                    pass
            stop.wait(0.01)  # pacing the load

    worker = threading.Thread(target=produce, name="test-load")
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(30)
        assert not worker.is_alive()


def _last_batch_has(server: RecordingServer, name: str) -> bool:
    return bool(server.received) and any(
        s["name"] == name for s in server.received[-1].body["spans"]
    )


def test_under_steady_load_spans_made_after_reconfiguring_go_only_to_the_new_target() -> None:
    with recording_server() as old, recording_server() as new:
        old.script.hang = SlowAnswers()
        rastir.configure(
            service="old", push_url=old.url, batch_size=50, max_queue=5000, flush_interval=0.05
        )
        retiring = _config._exporter_or_none()
        phase = ["before"]
        with steady_load(phase):
            old.wait_for(lambda: len(old.received) >= 3)
            rastir.configure(
                service="new",
                push_url=new.url,
                batch_size=50,
                max_queue=5000,
                flush_interval=0.05,
                shutdown_timeout=1.0,
            )
            phase[0] = "after"  # every span that starts from now on
            new.wait_for(lambda: _last_batch_has(new, "after"))
        assert rastir.flush(10)
        # The old thread ends although spans kept coming, and it took none of the new.
        assert retiring._thread is not None
        retiring._thread.join(10)
        assert not retiring._thread.is_alive()
        assert [s for s in old.spans() if s["name"] == "after"] == []
        assert {r.body["resource"]["service.name"] for r in old.received} == {"old"}
        assert {r.body["resource"]["service.name"] for r in new.received} == {"new"}


def test_spans_the_retiring_exporter_cannot_send_in_time_are_counted_by_the_new_one() -> None:
    release = threading.Event()
    with recording_server() as old, recording_server() as new:
        old.script.hang = release
        rastir.configure(service="old", push_url=old.url, batch_size=10, flush_interval=60)
        with rastir.span("before"):
            pass
        assert old.hanging.wait(10)  # the old exporter is stuck sending its first batch
        for _ in range(49):
            with rastir.span("before"):
                pass
        retiring = _config._exporter_or_none()
        rastir.configure(
            service="new", push_url=new.url, batch_size=10, flush_interval=60, shutdown_timeout=0.2
        )
        with rastir.span("after"):
            pass
        release.set()
        old.script.hang = None
        assert retiring._thread is not None
        retiring._thread.join(10)
        assert not retiring._thread.is_alive()
        assert rastir.flush(10)
        # Every span from before reached the old target or is reported lost by the new
        # exporter; none of them went to the new target under the new service name.
        assert [s["name"] for s in new.spans()] == ["after"]
        assert 1 <= len(old.spans()) < 50
        assert len(old.spans()) + new.dropped() == 50


def _bad_token(url: str) -> dict[str, Any]:
    return {"push_url": url, "token": "t\u00f8ken\u20ac"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_bad_token, "token .*Latin-1"),
        (lambda url: {"push_url": url, "token": "a\r\nb"}, "token contains a line break"),
        (lambda url: {"push_url": url, "headers": {"X-A": "\u2603"}}, "'X-A'.*Latin-1"),
        (lambda url: {"push_url": url, "headers": {"X-A": "a\nb"}}, "line break"),
        (lambda url: {"push_url": url, "headers": {"X A": "v"}}, "not an HTTP token"),
        (lambda url: {"push_url": url, "headers": {"": "v"}}, "not an HTTP token"),
        (lambda url: {"push_url": f"{url}/caf\u2603"}, "Latin-1"),
        (lambda url: {"exporter": "otlp", "otlp_endpoint": f"{url}/a b"}, "line breaks"),
    ],
)
def test_a_refused_configuration_leaves_the_previous_one_in_force(
    bad: Callable[[str], dict[str, Any]], message: str
) -> None:
    with recording_server() as server:
        good = rastir.configure(service="good", push_url=server.url, flush_interval=60)
        exporter = _config._exporter_or_none()
        with pytest.raises(ValueError, match=message):
            rastir.configure(service="bad", **bad(server.url))
        assert rastir.get_settings() is good
        assert _config._exporter_or_none() is exporter
        with rastir.span("after"):
            pass
        assert rastir.flush(10)
        assert [s["name"] for s in server.spans()] == ["after"]
        assert server.received[0].body["resource"]["service.name"] == "good"
        assert server.dropped() == 0


def test_a_token_from_the_environment_is_checked_before_anything_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with recording_server() as server:
        good = rastir.configure(service="good", push_url=server.url)
        monkeypatch.setenv("RASTIR_TOKEN", "\u20ac")
        with pytest.raises(ValueError, match="token"):
            rastir.configure(service="bad", push_url=server.url)
        assert rastir.get_settings() is good


def test_a_new_exporter_is_woken_by_a_full_batch_whatever_the_last_one_left_pending() -> None:
    from rastir.export._pipeline import PIPELINE

    # The state a previous exporter can leave behind: its thread ended between an
    # application thread marking a wake-up pending and the thread taking it.
    PIPELINE._wake_pending = True
    with recording_server() as server:
        rastir.configure(service="woken", push_url=server.url, batch_size=5, flush_interval=60)
        for _ in range(5):
            with rastir.span("full-batch"):
                pass
        server.wait_for(lambda: len(server.spans()) == 5)  # no flush: the batch woke it
