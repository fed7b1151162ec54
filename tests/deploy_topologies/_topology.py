"""A server process model for real: start it, send it traced requests, stop it, audit.

The server (gunicorn, uvicorn) runs as a subprocess on 127.0.0.1 and exports to the
real collector of ``tests.examples.conftest`` (``ack=committed``: a 202 means stored).
Its spans leave only at exit (``RASTIR_FLUSH_INTERVAL=60``, batches of 512), so the
audit also proves that every worker flushed on its way out.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from rastir.demo._process import Child
from rastir.viewer import QueryClient
from tests.collector.conftest import Scrape
from tests.examples.conftest import example_env, nodes

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
_URL = re.compile(r"http://127\.0\.0\.1:\d+")


@dataclass(frozen=True)
class Sent:
    """One request: the ``traceparent`` it carried, and the worker that served it."""

    trace_id: str
    parent_id: str
    pid: int


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    collector: str,
    service: str,
    ready: str,
    *,
    listener: socket.socket | None = None,
) -> Iterator[tuple[Child, str]]:
    """The server, started with ``RASTIR_SERVICE=service``; yields it and its base URL
    once a line containing ``ready`` is printed: the URL in that line, or the address
    of ``listener``, a listening socket whose descriptor the server inherits. Stopped
    (SIGTERM, then SIGKILL) on the way out if the test did not stop it."""
    env = example_env(collector)
    env.update(RASTIR_SERVICE=service, RASTIR_FLUSH_INTERVAL="60", PYTHONPATH=str(ROOT))
    fds = () if listener is None else (listener.fileno(),)
    child = Child(service, argv, env, pass_fds=fds)
    try:
        line = child.wait_for(lambda s: ready in s, timeout=30)
        if listener is None:
            match = _URL.search(line)
            assert match is not None, line
            url = match.group(0)
        else:
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        yield child, url
    finally:
        child.stop(timeout=5)


@contextlib.contextmanager
def listening() -> Iterator[socket.socket]:
    """A socket listening on 127.0.0.1, for a server that takes a descriptor: requests
    wait in its backlog until a worker accepts them, however late it starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield sock


def send(url: str, n: int, *, threads: int = 4) -> list[Sent]:
    """``n`` requests, ``threads`` at a time, each with a ``traceparent`` of its own."""

    def one(i: int) -> Sent:
        tid, sid = secrets.token_hex(16), secrets.token_hex(8)
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.get(f"/work/k{i}", headers={"traceparent": f"00-{tid}-{sid}-01"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["value"], body["trace_id"]) == (f"K{i}", tid)
        return Sent(tid, sid, body["pid"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def stop_cleanly(child: Child, worker_pids: set[int], exit_code: int = 0) -> None:
    """SIGTERM the server: it exits with ``exit_code``, every worker is gone, and
    nothing in its output says a span was lost, a worker hung or a worker failed."""
    try:
        code = child.stop(timeout=20)
        output = "\n".join(child.lines)
        assert code == exit_code, output
        for bad in ("rastir exporter", "WORKER TIMEOUT", "Traceback", "was sent SIG"):
            assert bad not in output, output
        alive = {pid for pid in worker_pids if _alive(pid)}
        assert not alive, f"workers still running after the server exited: {alive}"
    finally:
        for pid in worker_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_each_span_arrived_once(
    collector: str, service: str, sent: Sequence[Sent], startups: int, route: str
) -> None:
    """Every request's ``http.server`` span and its ``tool`` child arrived, once, under
    ``service`` and parented by the ``traceparent`` sent; ``startups`` ``app.startup``
    spans arrived (one per process that imported the app); nothing more, and no
    sender reported a drop."""
    query = QueryClient(collector)
    for s in sent:
        spans = nodes(query.get_trace(s.trace_id))
        assert [(n["kind"], n["service"]) for n in spans] == [
            ("http.server", service),
            ("tool", service),
        ], spans
        server, tool = spans
        assert server["parent_span_id"] == s.parent_id
        assert server["attributes"]["http.route"] == route
        assert tool["parent_span_id"] == server["span_id"]
    traces = query.list_traces(service=service, limit=1000)["traces"]
    assert sum(t["root_name"] == "app.startup" for t in traces) == startups, traces
    scrape = Scrape(httpx.get(f"{collector}/metrics", timeout=30).text)
    # Each span once: the store keeps the last of two copies, this counter both.
    ingested = scrape.value("rastir_collector_ingested_spans_total", service=service)
    assert ingested == 2 * len(sent) + startups
    assert scrape.value("rastir_collector_client_dropped_spans_total", service=service) == 0
