"""Losing spans without a count: the SDK exporter's answers, timeouts, stops and forks.

Each test drives the real exporter against a real server on 127.0.0.1 (the recording
server, a raw socket server, or the real collector on uvicorn) and checks that every
span is delivered, or counted (``ExporterStats``, the next batch's ``dropped``
field) and logged once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import rastir
from rastir import _config
from rastir.collector import CollectorSettings, create_app
from rastir.export._pipeline import PIPELINE
from rastir.export.http import HttpTransport
from tests.collector.server import serving
from tests.recording_server import recording_server

_GAVE_UP = "gave up on"
_STOPPED = "stopped with"


def _spans(n: int, name: str = "work") -> None:
    for _ in range(n):
        with rastir.span(name):
            pass


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rastir.export" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


# -- each answer: retried, or dropped and counted -------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "retried"),
    [
        (400, {}, False),
        (401, {"WWW-Authenticate": "Bearer"}, False),
        (403, {}, False),
        (404, {}, False),
        (500, {}, True),
        (503, {}, True),
        (503, {"Retry-After": "0"}, True),
        (429, {"Retry-After": "0"}, True),
        (408, {}, True),
    ],
)
def test_each_answer_is_retried_or_dropped_counted_reported_and_logged_once(
    status: int, headers: dict[str, str], retried: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.export")
    with recording_server() as server:
        server.script.answers = [(status, headers)]
        rastir.configure(service="answers", push_url=server.url, flush_interval=60)
        _spans(5)
        assert rastir.flush(30)
        stats = _config._exporter_or_none().stats
        if retried:
            assert len(server.spans()) == 5
            assert server.dropped() == 0
            assert (stats.retries, stats.spans_dropped) == (1, 0)
            assert _warnings(caplog, _GAVE_UP) == []
        else:
            # Final: the batch is given up, counted, and its loss reported in the
            # next request's dropped field (here a report with no span).
            assert server.spans() == []
            assert server.dropped() == 5
            assert (stats.retries, stats.spans_dropped, stats.batches_failed) == (0, 5, 1)
            (line,) = _warnings(caplog, _GAVE_UP)
            assert "gave up on 5 spans" in line
            assert str(status) in line


def test_a_single_span_too_large_for_the_collector_is_dropped_and_counted_not_retried() -> None:
    with recording_server() as server:
        server.script.answers = [(413, {}), (413, {}), (413, {})]
        rastir.configure(service="big", push_url=server.url, flush_interval=60)
        _spans(2)
        assert rastir.flush(10)
        # The pair is split; each half is one span and still too large: given up.
        assert len(server.attempts) == 4  # the pair, two singles, the report
        assert server.dropped() == 2
        assert _config._exporter_or_none().stats.spans_dropped == 2


def test_a_collector_refusing_every_batch_is_logged_once_not_per_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.export")
    with recording_server() as server:
        server.script.default = (401, {})
        rastir.configure(service="denied", push_url=server.url, batch_size=10, flush_interval=60)
        for _ in range(20):
            _spans(10)
            assert rastir.flush(10)
        stats = _config._exporter_or_none().stats
        assert stats.spans_dropped == 200
        assert len(_warnings(caplog, _GAVE_UP)) == 1  # the rest within the minute: summed
        assert rastir.shutdown(5)
    # At stop, one line sums up what was never delivered nor reported.
    (summary,) = _warnings(caplog, _STOPPED)
    assert "stopped with 200 spans" in summary
    assert "401" in summary
    (rest,) = _warnings(caplog, "in 19 batches")
    assert "gave up on 190 spans" in rest


def test_direct_otlp_counts_each_lost_span_once_and_logs_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.export")
    overflowed = PIPELINE.overflowed
    with recording_server() as server:
        server.script.default = (400, {})  # final in OTLP/HTTP
        rastir.configure(
            service="direct",
            exporter="otlp",
            otlp_endpoint=f"{server.url}/v1/traces",
            otel_bridge=False,
            batch_size=10,
            max_queue=10,
            flush_interval=60,
        )
        for _ in range(5):
            _spans(15)  # more than the queue holds: some are lost before sending
            assert rastir.flush(10)
        stats = _config._exporter_or_none().stats
        overflowed = PIPELINE.overflowed - overflowed
        assert stats.spans_dropped == 75  # every span, counted once
        # One request per batch: no report of earlier losses to send in OTLP.
        assert len(server.attempts) == stats.batches_failed >= 5
        assert rastir.shutdown(5)

    def counted(text: str) -> list[int]:
        return [int(line.split(text)[1].split()[0]) for line in _warnings(caplog, text)]

    # One line at once for each kind of loss, the rest summed into one at stop.
    gave_up = counted("gave up on ")
    assert len(gave_up) == 2
    assert sum(gave_up) == 75 - overflowed
    before = [int(line.split()[2]) for line in _warnings(caplog, "dropped before export")]
    assert len(before) <= 2
    assert sum(before) == overflowed
    assert _warnings(caplog, _STOPPED) == []  # nothing left unaccounted


def test_a_drop_reaches_the_real_collector_as_its_services_metric() -> None:
    app = create_app(
        CollectorSettings(store="memory", access_log=False, ingest_token="right", retention=None)
    )
    with serving(app) as url:
        rastir.configure(service="tokens", push_url=url, token="wrong", flush_interval=60)
        _spans(7)
        assert rastir.flush(10)  # 403: given up, counted
        assert _config._exporter_or_none().stats.spans_dropped == 7
        rastir.configure(service="tokens", push_url=url, token="right", flush_interval=60)
        _spans(1)
        assert rastir.flush(10)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("rastir_collector_client_dropped_spans_total", (("service", "tokens"),))] == 7
    # Refused with 403 (the batch, and the reports of its loss), counted there too.
    assert values[("rastir_collector_rejected_requests_total", (("reason", "forbidden"),))] >= 1


def test_a_batch_over_the_real_collectors_span_limit_is_split_and_loses_nothing() -> None:
    app = create_app(
        CollectorSettings(store="memory", access_log=False, retention=None, max_spans_per_batch=5)
    )
    with serving(app) as url:
        # Queued before configure(), as in a starting process: they leave as one batch.
        PIPELINE.queueing = True
        _spans(16)
        rastir.configure(service="split", push_url=url, batch_size=16, flush_interval=60)
        exporter = _config._exporter_or_none()
        assert rastir.flush(10)
        stats = exporter.stats
        text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    # 16 and both 8s were refused (413 too_many_spans), the four 4s accepted.
    assert (
        values[("rastir_collector_rejected_requests_total", (("reason", "too_many_spans"),))] == 3
    )
    assert values[("rastir_collector_ingested_spans_total", (("service", "split"),))] == 16
    assert (stats.batches_sent, stats.spans_sent, stats.spans_dropped) == (4, 16, 0)


# -- a connection reset mid-body, a server that dribbles its answer ------------------------


class _RawServer:
    """Accepts connections on 127.0.0.1; each is handled by the next scripted behaviour.

    ``reset``: read part of the request, then close with a TCP RST. ``ok``: read the
    request and answer 202. ``dribble``: read the request, then send an answer head a
    byte at a time until the client goes away or ``stop`` is set.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.bodies: list[bytes] = []
        self.dribbling = threading.Event()  # a request's answer is being dribbled
        self.client_left = threading.Event()  # a dribbled-to client closed first
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stop.is_set():
                conn.close()
                return
            what = self.script.pop(0) if self.script else "ok"
            with conn:
                self._handle(conn, what)

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return body

    def _handle(self, conn: socket.socket, what: str) -> None:
        conn.settimeout(30)
        if what == "reset":
            conn.recv(100)
            # SO_LINGER on, 0 s: close() sends a RST instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        body = self._read_request(conn)
        if what == "dribble":
            conn.setblocking(False)
            conn.sendall(b"HTTP/1.1 202 Accepted")
            self.dribbling.set()
            for _ in range(600):  # at most 30 s
                try:
                    conn.sendall(b"X")  # inside the reason phrase: never a complete head
                except OSError:
                    break  # the client reset the connection
                if self.stop.wait(0.05):
                    return
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        break  # the client closed its end
                except BlockingIOError:
                    continue  # still open, and quiet
                except OSError:
                    break
            else:
                return  # dribbled to the end: the client never left
            self.client_left.set()
            return
        self.bodies.append(body)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.stop.set()
        # Wake the accept() the thread waits in: closing the socket does not.
        with socket.create_connection(self.sock.getsockname()[:2], timeout=5):
            pass
        self.thread.join(35)
        self.sock.close()
        assert not self.thread.is_alive()


@contextmanager
def _raw_server(script: list[str]) -> Iterator[_RawServer]:
    server = _RawServer(script)
    try:
        yield server
    finally:
        server.close()


def test_a_connection_reset_mid_body_is_retried_and_nothing_is_lost() -> None:
    with _raw_server(["reset"]) as server:
        rastir.configure(service="reset", push_url=server.url, flush_interval=60, gzip=False)
        _spans(50)  # a body of several kilobytes: the reset comes before its end
        assert rastir.flush(30)
        stats = _config._exporter_or_none().stats
        assert (stats.retries, stats.spans_dropped) == (1, 0)
        assert len(server.bodies) == 1
        assert server.bodies[0].count(b'"span_id"') == 50


def test_a_server_dribbling_its_answer_cannot_hold_a_request_past_the_timeout() -> None:
    with _raw_server(["dribble"]) as server:
        transport = HttpTransport(server.url, timeout=1.0)
        result = transport.send(b"{}")
        transport.close()
        # Each byte came well within the timeout, yet the request as a whole timed
        # out, and the client left while the server was still dribbling.
        assert result.status == 0
        assert "TimeoutError" in result.error
        assert server.client_left.wait(10)


# -- stopping with the collector down or hanging -------------------------------------------


def test_shutdown_with_a_hanging_collector_counts_and_logs_every_span_it_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.export")
    release = threading.Event()
    with recording_server() as server:
        server.script.hang = release
        rastir.configure(
            service="hang", push_url=server.url, batch_size=10, flush_interval=60, timeout=30
        )
        exporter = _config._exporter_or_none()
        _spans(1)
        assert server.hanging.wait(10)  # the first request is held
        _spans(24)
        assert not rastir.shutdown(0.2)  # still in the request
        in_flight = exporter._taken - len(server.spans())  # taken, held by the server
        left = 25 - in_flight
        # What it had yet to send is counted (and stays reported for a later
        # exporter), not cleared unseen.
        assert PIPELINE.dropped == left == exporter.stats.spans_dropped
        assert len(PIPELINE.queue) == 0
        (summary,) = _warnings(caplog, _STOPPED)
        assert "stopped with 25 spans" in summary
        assert f"({left} still queued" in summary
        assert f"{in_flight} in a request" in summary
        release.set()
        server.script.hang = None
        assert exporter._thread is not None
        exporter._thread.join(30)
        assert not exporter._thread.is_alive()
        # The held request went through after all; nothing else was sent.
        assert len(server.spans()) == in_flight
        assert PIPELINE.dropped == left


def _run_script(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_exit_with_the_collector_down_logs_the_number_of_spans_lost() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    proc = _run_script(
        f"""
        import rastir
        rastir.configure(service="down", push_url="http://127.0.0.1:{port}",
                         batch_size=10, max_queue=40, flush_interval=60,
                         shutdown_timeout=0.5)
        for _ in range(100):
            with rastir.span("x"):
                pass
        """
    )
    assert proc.returncode == 0, proc.stderr
    # 60 overflowed the queue, 40 were never delivered: one line says 100.
    lines = [line for line in proc.stderr.splitlines() if _STOPPED in line]
    assert len(lines) == 1, proc.stderr
    assert "stopped with 100 spans neither delivered nor reported" in lines[0]


def test_exit_with_a_hanging_collector_logs_the_number_of_spans_lost() -> None:
    release = threading.Event()
    with recording_server() as server:
        server.script.hang = release
        proc = _run_script(
            f"""
            import rastir
            rastir.configure(service="stuck", push_url={server.url!r}, batch_size=10,
                             flush_interval=60, shutdown_timeout=0.5, timeout=30)
            for _ in range(25):
                with rastir.span("x"):
                    pass
            """
        )
        release.set()
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if _STOPPED in line]
    assert len(lines) == 1, proc.stderr
    assert "stopped with 25 spans" in lines[0]


# -- fork ----------------------------------------------------------------------------------


def _child_work(n: int) -> None:
    _spans(n, "mp-child")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_spans_of_a_multiprocessing_fork_child_are_sent_when_it_ends() -> None:
    with recording_server() as server:
        rastir.configure(service="mp", push_url=server.url, flush_interval=60)
        _spans(2, "parent")  # queued in the parent: the parent's to send (D10)
        child = multiprocessing.get_context("fork").Process(target=_child_work, args=(5,))
        with warnings.catch_warnings():
            # Python 3.12 warns about fork() in a process with threads (the server's).
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        child.join(60)
        assert child.exitcode == 0
        # The child ends with os._exit() (no atexit): its queue went out before that.
        assert child.pid is not None
        assert rastir.flush(10)
        server.wait_for(lambda: len(server.spans()) >= 7)
        by_pid: dict[int, list[str]] = {}
        for r in server.received:
            by_pid.setdefault(r.body["resource"]["process.pid"], []).extend(
                s["name"] for s in r.body["spans"]
            )
        assert by_pid == {child.pid: ["mp-child"] * 5, os.getpid(): ["parent", "parent"]}
