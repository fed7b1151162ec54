"""Clients that ask for a big trace and then do not read it.

``GET /v1/traces/{id}`` streams a big trace in pieces; the server's ``send`` waits
while the connection's write buffer is full, so before this a client that stopped
reading held its answer (the trace's spans, its plan, ~42 MB for 50,000 spans) for
as long as it kept the connection open. Each piece may now wait
``SEND_STALL_TIMEOUT`` seconds and the whole answer ``SEND_WAIT_BUDGET``; past
either, the answer is cut, counted in ``rastir_collector_slow_readers_total`` and
its connection closed.

Real uvicorn on 127.0.0.1 with ``rastir collector``'s protocol; the clients are
plain sockets with a small receive buffer, since httpx always reads. The deadlines
are shortened (module constants) so that the tests take seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rastir.collector import CollectorSettings, create_app
from rastir.collector import app as app_module
from rastir.collector.cli import StampedHttpToolsProtocol
from rastir.collector.store.assemble import CHUNK_BYTES
from tests.collector.conftest import Scrape
from tests.collector.server import RunningServer
from tests.collector.spans import T0, batch, encode, span, span_id, trace_id
from tests.collector.store_kinds import EVERY_STORE, store_fixture  # noqa: F401 (the store fixture)

# Generous bounds on waits for the server: never reached when it behaves.
_WAIT = 30.0
_POLL = 0.05
SPANS = 4000  # with a 4,000-character attribute each: ~17 MB of JSON, far above the
# ~3 MB the kernel's socket buffers take on loopback, so the answer must stall.
_FILLER = "x" * 4000


class Running:
    def __init__(self, server: RunningServer, tid: str, size: int) -> None:
        self.server = server
        self.url = server.url
        self.tid = tid
        self.size = size  # the full answer's bytes

    def connections(self) -> int:
        """Connections uvicorn still holds (a closed one is gone once its buffer is)."""
        return len(self.server.server.server_state.connections)

    def scrape(self) -> Scrape:
        return Scrape(httpx.get(f"{self.url}/metrics", timeout=_WAIT).text)

    def cuts(self, reason: str) -> float:
        return self.scrape().value("rastir_collector_slow_readers_total", reason=reason)

    def wait_for_cuts(self, reason: str, n: int) -> None:
        deadline = time.monotonic() + _WAIT
        while self.cuts(reason) < n:
            assert time.monotonic() < deadline, f"{n} answers not cut ({reason}) in {_WAIT} s"
            time.sleep(_POLL)  # polling the server's counter, bounded above

    def stalled_reader(self, path: str = "") -> socket.socket:
        """A client that asks for the big trace (or ``path``) and reads nothing."""
        host, port = self.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(_WAIT)
        sock.connect((host, int(port)))
        path = path or f"/v1/traces/{self.tid}"
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        return sock


def _big_trace() -> tuple[str, list[dict[str, Any]]]:
    tid, root = trace_id(), span_id()
    spans = [
        span(trace=tid, parent=root, kind="tool", name=f"step {i}", start=T0 + i, note=_FILLER)
        for i in range(SPANS - 1)
    ]
    spans.append(span(trace=tid, sid=root, kind="agent", name="planner", duration_ms=60_000))
    return tid, spans


def _post(url: str, spans: list[dict[str, Any]]) -> None:
    r = httpx.post(
        f"{url}/v1/telemetry",
        content=encode(batch(spans)),
        headers={"content-type": "application/json"},
        timeout=_WAIT,
    )
    assert r.status_code == 202, r.text


@contextmanager
def _collector(
    data_dir: Path,
    store: str = "memory",
    protocol: type[HttpToolsProtocol] = StampedHttpToolsProtocol,
    **overrides: Any,
) -> Iterator[Running]:
    """A collector holding one big trace, on real uvicorn with ``protocol``."""
    settings = CollectorSettings(
        store=store,
        data_dir=data_dir,
        ack="committed",
        access_log=False,
        max_loop_lag=None,
        retention=None,
        memory_max_spans=100_000,
        **overrides,
    )
    server = RunningServer(create_app(settings))
    server.server.config.http = protocol  # uvicorn takes a protocol class as it is
    server.start()
    try:
        tid, spans = _big_trace()
        for i in range(0, len(spans), 500):
            _post(server.url, spans[i : i + 500])
        r = httpx.get(f"{server.url}/v1/traces/{tid}", timeout=_WAIT)
        assert r.status_code == 200
        yield Running(server, tid, len(r.content))
    finally:
        server.stop()


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server still sends, and whether it ended by a close (EOF or reset).

    Bounded: each read waits ``_WAIT`` at most, and the answer is finite."""
    out = bytearray()
    sock.settimeout(_WAIT)
    try:
        while chunk := sock.recv(1 << 20):
            out += chunk
    except ConnectionResetError:
        return bytes(out), True
    except TimeoutError:
        return bytes(out), False
    return bytes(out), True


def _complete(raw: bytes) -> bool:
    """Whether a raw chunked answer got to its last chunk."""
    return raw.endswith(b"\r\n0\r\n\r\n")


def test_the_normal_answer_is_streamed_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The guard changes nothing for a client that reads: same bytes, nothing cut.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 1.0)
    with _collector(tmp_path) as c:
        with httpx.stream("GET", f"{c.url}/v1/traces/{c.tid}", timeout=_WAIT) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            body = r.read()
        assert len(body) == c.size > 10_000_000
        assert c.cuts("stalled") == c.cuts("too_slow") == 0


def test_a_reader_that_stops_reading_is_cut_counted_and_closed(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Under a server that offers no rastir.abort (create_app in the user's own uvicorn):
    # the answer is left incomplete, and the connection closes once drained.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 1.0)
    with _collector(tmp_path, protocol=HttpToolsProtocol) as c, c.stalled_reader() as sock:
        c.wait_for_cuts("stalled", 1)
        # Meanwhile, and after, everyone else is served.
        r = httpx.get(f"{c.url}/v1/traces/{c.tid}", timeout=_WAIT)
        assert r.status_code == 200
        assert len(r.content) == c.size
        _post(c.url, [span()])
        assert c.cuts("too_slow") == 0
        # The stalled client, reading at last, gets the part that was buffered and then
        # the end of the connection: never the whole answer.
        raw, closed = _drain(sock)
        assert closed
        assert not _complete(raw)
        assert len(raw) < c.size
        assert c.cuts("stalled") == 1


def test_with_rastir_abort_the_connection_is_dropped_without_waiting_for_the_client(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A close keeps the socket until the client has read what is buffered; rastir
    # collector's protocol offers rastir.abort, so the app resets it, freeing the
    # socket and its buffers.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 1.0)
    with _collector(tmp_path) as c:
        before = c.connections()
        with c.stalled_reader() as sock:
            c.wait_for_cuts("stalled", 1)
            deadline = time.monotonic() + _WAIT
            while c.connections() > before:  # the scrapes' connections close too
                assert time.monotonic() < deadline, "the stalled connection was not dropped"
                time.sleep(_POLL)
            raw, closed = _drain(sock)
            assert closed
            assert not _complete(raw)


def test_the_protocol_resets_a_connection_whose_client_stops_reading(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The backstop under every answer: the app's guard is set far off here, so what
    # drops the connection is the protocol's write-stall timer.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 600.0)
    monkeypatch.setattr(StampedHttpToolsProtocol, "write_stall_timeout", 1.0)
    with _collector(tmp_path) as c:
        with c.stalled_reader() as sock:
            # Stalled for three times the timer: reset by then. Without the timer the
            # answer would still be waiting, and the reads below would get all of it.
            time.sleep(3 * StampedHttpToolsProtocol.write_stall_timeout)
            raw, closed = _drain(sock)
            assert closed
            assert not _complete(raw)
            assert len(raw) < c.size
        # The collector goes on serving, whole answers included.
        r = httpx.get(f"{c.url}/v1/traces/{c.tid}", timeout=_WAIT)
        assert r.status_code == 200
        assert len(r.content) == c.size


def test_a_reader_too_slow_in_all_is_cut_by_the_wait_budget(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Never stalled long enough for the per-piece deadline, but the answer's waits
    # add up past the budget.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 60.0)
    monkeypatch.setattr(app_module, "SEND_WAIT_BUDGET", 1.0)
    with _collector(tmp_path) as c, c.stalled_reader() as sock:
        got = 0
        closed = False
        sock.settimeout(_WAIT)
        for _ in range(int(4 * _WAIT / _POLL)):  # bounded: the budget ends it long before
            try:
                data = sock.recv(16384)
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            got += len(data)
            time.sleep(_POLL)  # the slowness under test (~320 KB/s), not a wait
        assert closed
        assert got < c.size
        assert c.cuts("too_slow") == 1
        assert c.cuts("stalled") == 0


@EVERY_STORE
def test_twenty_stalled_readers_do_not_block_a_normal_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str
) -> None:
    # More stalled answers than the store has readers and the app render threads: a
    # stalled answer holds neither (the spans are read before streaming, each piece
    # takes a render thread only while it is encoded).
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 120.0)
    with _collector(tmp_path, store) as c, ExitStack() as stack:
        stalled = [stack.enter_context(c.stalled_reader()) for _ in range(20)]
        # Each stalled answer has started: its first bytes are waiting for the client.
        for sock in stalled:
            sock.settimeout(_WAIT)
            assert sock.recv(16).startswith(b"HTTP/1.1 200")
        r = httpx.get(f"{c.url}/v1/traces/{c.tid}", timeout=_WAIT)
        assert r.status_code == 200
        assert len(r.content) == c.size
        listing = httpx.get(f"{c.url}/v1/traces", timeout=_WAIT)
        assert listing.status_code == 200
        assert [t["trace_id"] for t in listing.json()["traces"]] == [c.tid]
        _post(c.url, [span()])
        assert c.cuts("stalled") == 0  # they are all still held, and nobody waited on them


def test_a_big_metrics_page_is_streamed_and_a_stalled_scraper_is_cut(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Sent whole, the page went into the connection's buffer at once, which held it
    # for as long as a client that does not read kept the connection.
    monkeypatch.setattr(app_module, "SEND_STALL_TIMEOUT", 1.0)
    with _collector(tmp_path, max_label_values=10_000, max_series_per_metric=10_000) as c:
        # Many tool series with long names: a page of several megabytes.
        tools = [span(kind="tool", name=f"tool {i:05d} " + "t" * 200) for i in range(5000)]
        for i in range(0, len(tools), 1000):
            _post(c.url, tools[i : i + 1000])
        with httpx.stream("GET", f"{c.url}/metrics", timeout=_WAIT) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            page = r.read()
        assert len(page) > 8_000_000
        # Every tool call counted: these, and the big trace's steps.
        assert Scrape(page.decode()).total("rastir_tool_calls_total") == 5000 + SPANS - 1
        with c.stalled_reader("/metrics") as sock:
            c.wait_for_cuts("stalled", 1)
            raw, closed = _drain(sock)
            assert closed
            assert not _complete(raw)
            assert len(raw) < len(page)


def test_a_big_listing_is_streamed_whole_and_a_small_one_keeps_its_length(tmp_path: Path) -> None:
    with _collector(tmp_path) as c:
        small = httpx.get(f"{c.url}/v1/traces", timeout=_WAIT)
        assert small.headers["content-length"] == str(len(small.content))
        roots = [span(kind="agent", name=f"run {i:04d} " + "n" * 300) for i in range(999)]
        _post(c.url, roots)
        with httpx.stream("GET", f"{c.url}/v1/traces?limit=1000", timeout=_WAIT) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            body = r.read()
        assert len(body) > 2 * CHUNK_BYTES
        traces = httpx.Response(200, content=body).json()["traces"]
        assert len(traces) == 1000
        assert {t["root_name"] for t in traces} >= {s["name"] for s in roots}
