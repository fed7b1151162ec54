"""Helpers for the middleware tests: real servers on 127.0.0.1, stats, OTel globals.

``asgi_server(app)`` runs uvicorn (httptools) and ``wsgi_server(app)`` runs werkzeug's
threaded WSGI server, each in a thread of its own on a port the OS picks. The socket
is bound and listening before the context manager yields, so requests simply queue
until the server accepts them: nothing waits on a timer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from werkzeug.serving import make_server

from rastir.middleware import stats
from rastir.spans import Span

VALID_TID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
VALID_SID = 0x00F067AA0BA902B7
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@contextmanager
def asgi_server(app: Any, *, lifespan: str = "off", ws: str = "auto") -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="httptools",
        ws=ws,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level="critical",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # pragma: no cover - reported below
            failure.append(exc)

    thread = threading.Thread(target=run, name="uvicorn", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"
    assert not failure, failure


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server on 127.0.0.1; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class StatsDelta:
    """What ``rastir.middleware.stats`` counted during the test."""

    def __init__(self) -> None:
        self._start = stats.as_dict()

    def __getitem__(self, name: str) -> int:
        return stats.as_dict()[name] - self._start[name]


def reset_otel_globals() -> None:
    """Forget OpenTelemetry's global tracer provider.

    The API lets a process set it once; tests that exercise the automatic bridge
    decision need it set and then unset, as opentelemetry-test-utils'
    ``reset_trace_globals`` does for OTel's own tests.
    """
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


class SpanWaiter:
    """A span sink that tests can wait on: server spans end on the server's threads,
    sometimes after the client already has the response (a WSGI span ends when the
    server closes the body)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._cond = threading.Condition()

    def __call__(self, span: Span) -> None:
        with self._cond:
            self.spans.append(span)
            self._cond.notify_all()

    def wait(self, kind: str | None = None, count: int = 1, *, timeout: float = 5.0) -> list[Span]:
        """The first ``count`` finished spans of ``kind``, waiting for them if needed."""

        def found() -> list[Span]:
            return [s for s in self.spans if kind is None or s.kind == kind]

        with self._cond:
            if not self._cond.wait_for(lambda: len(found()) >= count, timeout):
                seen = ", ".join(f"{s.name}({s.kind})" for s in self.spans)
                raise AssertionError(f"expected {count} {kind} spans, have: {seen}")
            return found()[:count]

    def one(self, kind: str, *, timeout: float = 5.0) -> Span:
        """The single span of ``kind`` (waiting for it); fails if there are more."""
        span = self.wait(kind, timeout=timeout)[0]
        with self._cond:
            others = [s for s in self.spans if s.kind == kind]
        assert len(others) == 1, others
        return span

    def of_kind(self, kind: str) -> list[Span]:
        with self._cond:
            return [s for s in self.spans if s.kind == kind]
