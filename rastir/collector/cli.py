"""``rastir collector``: serve the collector with uvicorn (httptools).

Every option also reads ``RASTIR_COLLECTOR_<NAME>``; an option given on the command
line wins. Tokens, and a ``--store postgresql://`` URL holding a password, are better
passed by environment: command lines are visible to every user of the machine. The
URL's password is never logged or echoed in an error (it is shown as ``***``).

Shutdown (SIGTERM or Ctrl-C): uvicorn stops accepting, lets open requests finish for
up to ``--shutdown-timeout`` seconds, then the app's lifespan refuses intake and
gives the store as long again to write its queue. The process exits 0 within about
twice ``--shutdown-timeout`` plus two seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from time import monotonic
from types import FrameType
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rastir.collector.logs import configure_logging
from rastir.collector.metrics import collector_version
from rastir.collector.settings import ENV_PREFIX, CollectorSettings

__all__ = [
    "BODY_TIMEOUT",
    "HEAD_TIMEOUT",
    "MAX_HEAD_BYTES",
    "StampedHttpToolsProtocol",
    "build_parser",
    "main",
    "serve",
]

logger = logging.getLogger("rastir.collector")

# option -> help; the option's name is the settings field with dashes.
_OPTIONS: dict[str, str] = {
    "host": "interface to listen on (default 127.0.0.1)",
    "port": "TCP port; 0 picks a free one (default 8080)",
    "data_dir": "directory of the SQLite store (default ./rastir-data; unused by PostgreSQL)",
    "store": (
        "trace store: sqlite (default), memory, or postgresql://user:password@host/db, "
        "a database several collectors share (pass a password by environment)"
    ),
    "ingest_token": "bearer token POST /v1/telemetry requires (default: none)",
    "query_token": "bearer token the query API and /metrics require (default: none)",
    "retention": "delete spans older than this: 3600, 12h, 7d, off (default 7d)",
    "retention_bytes": "delete the oldest spans beyond this store size: 512MiB, 10GiB, off",
    "ack": "queued (default): 202 once queued; committed: 202 once durable on disk",
    "max_body_bytes": "largest body, on the wire and inflated (default 8MiB)",
    "max_spans_per_batch": "most spans in one batch (default 10000)",
    "max_attr_value_len": "longer attribute strings are cut (default 4096)",
    "max_attrs_per_span": "attributes kept per span (default 128)",
    "max_label_values": "distinct values per metric label before __other__ (default 1000)",
    "max_series_per_metric": "series per metric group before __other__ (default 10000)",
    "max_inflight": "ingest requests at once before 429 (default 256)",
    "max_queue_delay": (
        "refuse an ingest request with 429 after waiting this long for its handler: "
        "100ms, 1s, off (default 250ms)"
    ),
    "max_loop_lag": (
        "event-loop lag from which ingest is shed with 429, all of it at twice the lag: "
        "250ms, 1s, off (default 0.5s)"
    ),
    "queue_capacity": "write queue of the SQLite or PostgreSQL store, in spans (default 50000)",
    "memory_max_spans": "spans the memory store keeps (default 100000)",
    "retry_after": "Retry-After seconds sent with 429 (default 1)",
    "shutdown_timeout": "seconds for open requests, and again for the store, at exit (default 10)",
    "log_level": "critical, error, warning, info (default) or debug",
    "log_format": "logfmt (default) or json",
    "eval_config": "evaluation config file, JSON/TOML/YAML (docs/evaluation.md; default: none)",
    "eval_judge_url": "OpenAI-compatible base URL of the LLM judge, e.g. https://api.openai.com/v1",
    "eval_judge_model": "model the LLM judge is asked for",
    "eval_judge_key": "bearer key for the judge (better by environment)",
    "eval_judge_timeout": "seconds for one judge request (default 30)",
    "eval_judge_retries": "retries of a timed-out or failed judge request (default 2)",
    "eval_queue_size": "evaluations waiting before more are dropped (default 1000)",
    "eval_workers": "evaluations run at once (default 2)",
    "otlp_endpoint": "export kept spans to this OTLP/HTTP traces URL (default: no export)",
    "otlp_headers": "headers for the OTLP endpoint: k=v,k2=v2 (better by environment)",
    "otlp_compression": "none (default) or gzip: 8x fewer bytes for ~5 us of CPU per span",
    "otlp_timeout": "seconds for one export request (default 10)",
    "otlp_batch_size": "spans per export request (default 512)",
    "otlp_queue_size": "spans waiting for export before more are dropped (default 20000)",
    "otlp_flush_interval": "seconds a partial export batch waits (default 1)",
    "otlp_retry_budget": "seconds one export batch is retried before it is dropped (default 30)",
    "tail_decision_wait": "tail sampling: decide a trace this long after its last span (10)",
    "tail_root_grace": "tail sampling: ...or this long after it once its root arrived (6)",
    "tail_slow_threshold": "tail sampling: keep traces lasting this long: 10s, 1m, off (10s)",
    "tail_ratio": "tail sampling: share of the other traces kept, 0 to 1 (default 0.1)",
    "tail_max_traces": "tail sampling: traces buffered before early decisions (default 10000)",
    "tail_max_spans": "tail sampling: spans buffered before early decisions (default 200000)",
}
_FLAGS: dict[str, str] = {
    "public_metrics": "serve /metrics without the query token",
    "tail_sampling": "keep error traces, slow ones and a share of the rest (docs/sampling.md)",
}


def build_parser(prog: str = "rastir collector") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the rastir collector: ingest spans, store traces, serve metrics.",
        epilog=f"Each option can also be set as {ENV_PREFIX}<OPTION> (dashes as underscores).",
    )
    for name, help_text in _OPTIONS.items():
        env = ENV_PREFIX + name.upper()
        p.add_argument(
            "--" + name.replace("_", "-"), dest=name, metavar="VALUE", help=f"{help_text} [{env}]"
        )
    for name, help_text in _FLAGS.items():
        env = ENV_PREFIX + name.upper()
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            action="store_const",
            const="true",
            help=f"{help_text} [{env}]",
        )
    p.add_argument(
        "--access-log",
        dest="access_log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"one log line per request (default on) [{ENV_PREFIX}ACCESS_LOG]",
    )
    p.add_argument("--version", action="version", version=f"rastir {collector_version()}")
    return p


def settings_from_args(args: argparse.Namespace) -> CollectorSettings:
    """Settings from the environment, overridden by the options given.

    Raises:
        ValueError: an option or variable is invalid; the message names it.
    """
    known = {f.name for f in fields(CollectorSettings)}
    overrides: dict[str, Any] = {}
    turned_off: dict[str, Any] = {}
    for name, raw in vars(args).items():
        if raw is None or name not in known:
            continue
        if isinstance(raw, bool):
            overrides[name] = raw
            continue
        value = CollectorSettings.parse(name, raw, "--" + name.replace("_", "-"))
        if value is None:  # "off", "none": from_env would take None for "not given"
            turned_off[name] = None
        else:
            overrides[name] = value
    settings = CollectorSettings.from_env(**overrides)
    return replace(settings, **turned_off) if turned_off else settings


#: The request line and the headers of one request, at most; more is answered 431.
#: uvicorn and llhttp bound no header (a 20 MiB one was read whole); httptools takes
#: URLs up to 64 KiB, and this leaves as much again for the headers.
MAX_HEAD_BYTES: Final = 128 * 1024
#: Seconds from a request's first byte to the end of its headers; then 408.
HEAD_TIMEOUT: Final = 10.0
#: Seconds from the end of a request's headers to the end of its body; then the
#: connection is closed. The SDK's exporter, like OpenTelemetry's, gives up after
#: 10 s: a body still arriving after 30 s has no sender waiting for the answer.
BODY_TIMEOUT: Final = 30.0
#: Seconds the connection's write buffer may stay above its high-water mark (the
#: client reads nothing) before the connection is reset. A backstop for every answer:
#: the app cuts its streamed answers after 30 s of stall first, and counts them.
WRITE_STALL_TIMEOUT: Final = 40.0
# Counted for each header beside its name and value: ": " and CRLF.
_HEADER_OVERHEAD: Final = 4


class _HeadTooLarge(Exception):
    """Raised inside llhttp's callbacks to stop parsing, once 431 is sent."""


class StampedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request and bounding slow clients.

    The stamp: a batch is handled without yielding to the event loop, so under
    overload requests never pile up inside the ingest handler: they wait as tasks
    that have not run yet, where no count the app keeps can see them. The stamp lets
    the handler see how long its request waited (``rastir.arrived`` in the scope,
    ``monotonic`` seconds) and refuse it with 429 past ``max_queue_delay``.

    The bounds: uvicorn arms a timer only between requests (``timeout_keep_alive``),
    so a client that connects and sends nothing, or sends its headers or its body a
    byte a second, holds a connection forever; a slow body also holds one of the
    ingest's ``max_inflight`` places, and 256 of them refuse every other sender
    with 429. Here a connection must start its first request within
    ``timeout_keep_alive``, send its headers within :attr:`head_timeout` (at most
    :attr:`max_head_bytes` of them) and its body within :attr:`body_timeout`.
    A late head is answered 408; a late body closes the connection, which the
    handler reading it sees as a disconnect (its place is freed at once). A client
    that stops reading an answer holds its buffers: once the write buffer has stayed
    above its high-water mark for :attr:`write_stall_timeout`, the connection is
    reset. The app's own guard on streamed answers (30 s, counted) comes first.
    """

    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES
    write_stall_timeout: float = WRITE_STALL_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn's own timer, armed before the first request as it is after each
        # response: its first byte (data_received) disarms it.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The client has stopped reading, or reads slower than we write: if it does
        # not read again within write_stall_timeout, the connection goes (a close
        # would wait for the buffer to drain, which it may never do).
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.write_stall_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _write_stalled(self) -> None:
        self._stall = None
        logger.info(
            "client stopped reading for %g s: connection reset",
            self.write_stall_timeout,
            extra={"client": _peer(self.client)},
        )
        self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a parser error, also to ours (_count): 431 was sent.
        if not self._head_refused:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["rastir.arrived"] = monotonic()  # type: ignore[typeddict-unknown-key]
        # A reset the app may ask for: an answer cut because its reader stopped reading
        # (app.py, _GuardedStream). A close would wait for the buffer to drain, which
        # such a reader never lets happen.
        self.scope["rastir.abort"] = self.transport.abort  # type: ignore[typeddict-unknown-key]
        self._head_bytes = 0
        self._arm(self.head_timeout, self._head_late)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + _HEADER_OVERHEAD)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._disarm()
            self._head_refused = True
            self._refuse(
                431,
                "Request Header Fields Too Large",
                "head_too_large",
                f"the request line and headers exceed {self.max_head_bytes} bytes",
            )
            # llhttp stops parsing and reports a parser error (send_400_response)
            raise _HeadTooLarge

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        self._refuse(
            408,
            "Request Timeout",
            "request_timeout",
            f"the request's headers took more than {self.head_timeout:g} s",
        )

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.info("request body timed out", extra={"client": _peer(self.client)})
            # The handler, if it still reads the body, gets http.disconnect.
            self.transport.close()

    def _refuse(self, status: int, phrase: str, reason: str, message: str) -> None:
        """Answer ``status`` and close, unless a response is being written."""
        if self.transport.is_closing():
            return
        logger.info(message, extra={"client": _peer(self.client), "status": status})
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"error": reason, "message": message}, separators=(",", ":")).encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, phrase.encode(), len(body), body)
            )
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


class _Server(uvicorn.Server):
    """uvicorn's server, logging the address it really bound (``--port 0``)."""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                logger.info(
                    "listening", extra={"host": host, "port": port, "url": f"http://{host}:{port}"}
                )


def _tune_gc() -> None:
    """Run the cyclic GC far less often: this process is ours, and its garbage is acyclic.

    Every span decodes into several container objects, and queues and the memory
    store keep many alive. With CPython's default thresholds (700, 10, 10) the
    collector spent about half its time in full collections walking every live span
    (measured: 1100 -> 560 us per 100-span batch). Spans hold no reference cycles,
    so refcounting frees them; the cyclic GC still runs, only rarely. Objects alive
    at startup (imports, the app) are moved out of its sight with ``gc.freeze``.

    The thresholds bound the pauses too: a young collection walks at most ~20k
    objects, a middle one ~200k (the memory store keeps every span alive, so almost
    everything survives into it), and a full one runs every ~20M allocations.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 100)


def serve(settings: CollectorSettings) -> int:
    """Run the collector until SIGTERM/SIGINT; returns the exit status."""
    from rastir.collector.app import create_app

    configure_logging(settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except ValueError as e:  # a config file the settings name (evaluation) is unusable
        logger.error("invalid configuration: %s", e)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=StampedHttpToolsProtocol,
        loop="auto",
        lifespan="on",
        access_log=False,  # replaced by AccessLogMiddleware's structured line
        log_config=None,  # configure_logging did it
        log_level=settings.log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
        server_header=False,
    )
    server = _Server(config)
    _tune_gc()

    # uvicorn catches SIGTERM while it serves, and re-raises it once it has shut down
    # gracefully; this handler then turns it into a normal exit (status 0). Before
    # uvicorn installs its own, it asks the starting server to stop.
    terminated = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    # Not started and not asked to stop: the store or the socket failed (logged).
    return 0 if server.started or terminated else 1


def _store_problem(settings: CollectorSettings) -> str | None:
    """Why the configured store cannot be used, in one line; None if it can.

    Checked before the server starts, so a mistyped --data-dir (SQLite) or a missing
    psycopg (PostgreSQL) is one clear message rather than a failed start-up with a
    traceback in the log. A PostgreSQL store does not use --data-dir.
    """
    if settings.store_is_shared:
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return (
                f"cannot use --store {settings.store_display}: the PostgreSQL store "
                "needs psycopg 3: pip install 'rastir[postgres]'"
            )
        return _postgres_problem(settings)
    if settings.store != "sqlite":
        return None
    path = settings.data_dir
    if path.exists() and not path.is_dir():
        return f"cannot use --data-dir {str(path)!r}: it is a file, not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot use --data-dir {str(path)!r}: {e.strerror or e}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"cannot use --data-dir {str(path)!r}: not writable"
    return None


def _postgres_problem(settings: CollectorSettings) -> str | None:
    """Whether the database answers: an unknown database, a refused login or a server
    that is down is one line here, not a traceback from the store's start-up."""
    import psycopg

    from rastir.collector.store._dsn import scrub

    try:
        with psycopg.connect(settings.store, connect_timeout=10) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        return f"cannot use --store {settings.store_display}: {scrub(reason, settings.store)}"
    return None


def main(argv: Sequence[str] | None = None, prog: str = "rastir collector") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    problem = _store_problem(settings)
    if problem is not None:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 1
    try:
        return serve(settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
