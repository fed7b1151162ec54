"""``rastir collector``: serve the collector with uvicorn (httptools).

Every option also reads ``RASTIR_COLLECTOR_<NAME>``; an option given on the command
line wins. Tokens are better passed by environment: command lines are visible to
every user of the machine.

Shutdown (SIGTERM or Ctrl-C): uvicorn stops accepting, lets open requests finish for
up to ``--shutdown-timeout`` seconds, then the app's lifespan refuses intake and
gives the store as long again to write its queue. The process exits 0 within about
twice ``--shutdown-timeout`` plus two seconds.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from time import monotonic
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rastir.collector.logs import configure_logging
from rastir.collector.metrics import collector_version
from rastir.collector.settings import ENV_PREFIX, CollectorSettings

__all__ = ["build_parser", "main", "serve"]

logger = logging.getLogger("rastir.collector")

# option -> help; the option's name is the settings field with dashes.
_OPTIONS: dict[str, str] = {
    "host": "interface to listen on (default 127.0.0.1)",
    "port": "TCP port; 0 picks a free one (default 8080)",
    "data_dir": "directory of the SQLite store (default ./rastir-data)",
    "store": "trace store: sqlite (default) or memory",
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
    "queue_capacity": "SQLite write queue, in spans (default 50000)",
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


class StampedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping when each request's first bytes were read.

    A batch is handled without yielding to the event loop, so under overload requests
    never pile up inside the ingest handler: they wait as tasks that have not run
    yet, where no count the app keeps can see them. The stamp lets the handler see
    how long its request waited (``rastir.arrived`` in the scope, ``monotonic``
    seconds) and refuse it with 429 past ``max_queue_delay``.
    """

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["rastir.arrived"] = monotonic()  # type: ignore[typeddict-unknown-key]


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


def _data_dir_problem(settings: CollectorSettings) -> str | None:
    """Why the SQLite store's directory cannot be used, in one line; None if it can.

    Checked before the server starts, so a mistyped --data-dir is one clear message
    rather than a failed start-up with a traceback in the log.
    """
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


def main(argv: Sequence[str] | None = None, prog: str = "rastir collector") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    problem = _data_dir_problem(settings)
    if problem is not None:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 1
    try:
        return serve(settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
