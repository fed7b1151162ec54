"""Per-request cost of rastir's ASGI and WSGI middleware, against OpenTelemetry's.

Run: ``python bench/middleware_bench.py [--quick] [--rounds N] [--http-seconds S]
[--no-http]``. Prints the tables and writes ``bench/results/middleware_bench.json``.

What is measured, all in one run:

1. **ASGI in-process.** A Starlette app with one JSON route (``/items/{item_id}``) is
   called directly, ``await app(scope, receive, send)`` in a loop on one event loop,
   with a prepared scope (a fresh copy per call, since Starlette writes into it) whose
   headers carry a valid ``traceparent`` as a traced caller would send. Variants: the
   bare app; the app under ``RastirMiddleware``; the same without a ``traceparent``;
   the app under opentelemetry-instrumentation-asgi's ``OpenTelemetryMiddleware`` as
   shipped (it also records internal ``http send``/``http receive`` spans), and with
   ``exclude_spans=["receive", "send"]``.
2. **WSGI in-process.** A Flask app with the same route, called as a WSGI server
   would: ``app(environ, start_response)``, iterate the body, ``close()``. Variants:
   bare; ``RastirWSGIMiddleware``; opentelemetry-instrumentation-wsgi's
   ``OpenTelemetryMiddleware``.
3. **Over HTTP.** Each variant is a separate server process on 127.0.0.1
   (``bench/middleware_server.py``): uvicorn with httptools for ASGI, gunicorn
   (gthread worker) for WSGI when it is installed. ``wrk`` (one thread, 32
   connections, with the same ``traceparent`` header) loads one server at a time for
   a bounded duration; the servers are loaded in rotating order, and the median
   requests/s over rounds is compared with the bare server's.

Variants are interleaved (A B C, B C A, ...); overhead is paired with the bare
baseline within each round and the median over rounds is reported, on both clocks:
``cpu`` (the request thread's CPU time: what a request costs the application, and
what other processes on a shared machine disturb least) and ``wall`` (which also
holds the background threads' share of the GIL, and any preemption). Verdicts use
cpu; both are printed and written.

Where spans go: rastir's into the real ``PIPELINE`` deque, drained by a thread wired
exactly as the exporter is (woken every 512 spans, drops them), so the request path
runs the code it runs in production, queue append and wake-up included. The row
"rastir, no hand-off" turns the queue off for its runs: the middleware's own cost,
without the append and without spans freed on the drain thread's core. OTel's into a
``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that drops every
batch. Neither pays for encoding.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
from middleware_server import (
    TRACEPARENT,
    DropExporter,
    QueueDrain,
    asgi_app,
    asgi_variant,
    wsgi_app,
    wsgi_variant,
)

from rastir.middleware import stats

wall, cpu = h.wall_ns, h.cpu_ns

# Goals, from PERFORMANCE.md.
GOAL_ASGI_NS = 6000.0
GOAL_ASGI_RATIO = 1 / 40
GOAL_ASGI_LOSS = 0.15
GOAL_WSGI_NS = 3000.0
GOAL_WSGI_LOSS = 0.10

ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).resolve().parent / "middleware_server.py"

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"wrk/4.1.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
]


# -- in-process runners ------------------------------------------------------------------
def asgi_scope(traceparent: bool) -> dict[str, Any]:
    headers = list(HEADERS)
    if traceparent:
        headers.append((b"traceparent", TRACEPARENT.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def asgi_runner(loop: asyncio.AbstractEventLoop, app: Any, scope: dict[str, Any]) -> h.Runner:
    request = {"type": "http.request", "body": b"", "more_body": False}
    seen: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.append(message["status"])

    async def body(n: int) -> tuple[int, int]:
        copy = scope.copy
        w0, c0 = wall(), cpu()
        for _ in repeat(None, n):
            await app(copy(), receive, send)
        return wall() - w0, cpu() - c0

    def run(n: int) -> tuple[int, int]:
        seen.clear()
        result = loop.run_until_complete(body(n))
        if seen.count(200) != n:
            raise RuntimeError(f"expected {n} responses of 200, got {seen[:3]}...")
        return result

    return run


def wsgi_environ(traceparent: bool) -> dict[str, Any]:
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/items/42",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk/4.1.0",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if traceparent:
        environ["HTTP_TRACEPARENT"] = TRACEPARENT
    return environ


def wsgi_runner(app: Any, environ: dict[str, Any]) -> h.Runner:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return None

    def run(n: int) -> tuple[int, int]:
        statuses.clear()
        copy = environ.copy
        w0, c0 = wall(), cpu()
        for _ in repeat(None, n):
            body = app(copy(), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        elapsed = wall() - w0, cpu() - c0
        if statuses.count("200 OK") != n:
            raise RuntimeError(f"expected {n} responses of 200 OK, got {statuses[:3]}...")
        return elapsed

    return run


def no_handoff(run: h.Runner) -> h.Runner:
    """``run`` with the pipeline queue off: spans are made and ended but not handed to
    the drain thread, so the row shows the middleware's own cost, and its difference
    from the production-wired row the cost of the hand-off (the append, and the
    spans freed on the drain thread, usually on the other core)."""
    from rastir.export._pipeline import PIPELINE

    def wrapped(n: int) -> tuple[int, int]:
        PIPELINE.queueing = False
        try:
            return run(n)
        finally:
            PIPELINE.queueing = True

    return wrapped


def measure(
    variants: list[h.Variant], rounds: int, target_ns: float, drain: QueueDrain, provider: Any
) -> dict[str, dict[str, float]]:
    def between() -> None:
        # Untimed, after every run: both span queues emptied and the heap collected,
        # so no variant pays for what the one before it left behind (a background
        # export, or a garbage collection of its spans).
        drain.settle()
        provider.force_flush()
        gc.collect()

    between()
    h.interleave(variants, rounds=rounds, target_ns=target_ns, between=between)
    base = variants[0]
    out: dict[str, dict[str, float]] = {}
    for v in variants:
        row: dict[str, float] = {"n": float(v.n)}
        for clock in h.CLOCKS:
            row[f"{clock}_ns"] = h.median(v.samples[clock])
            if v is not base:
                row[f"{clock}_added_ns"] = h.median(h.paired(v, base, clock))
        out[v.name] = row
    return out


def in_process_table(title: str, results: dict[str, dict[str, float]], ours: str, peer: str) -> str:
    rows = []
    peer_added = results[peer]["cpu_added_ns"]
    for name, r in results.items():
        added_w = r.get("wall_added_ns")
        added_c = r.get("cpu_added_ns")
        rows.append(
            (
                name,
                f"{r['cpu_ns'] / 1000:.2f}",
                "" if added_c is None else f"{added_c / 1000:+.2f}",
                "" if added_w is None else f"{added_w / 1000:+.2f}",
                "" if added_c is None else h.fmt_ratio(added_c, peer_added),
            )
        )
    return h.table(
        ["variant", "µs/request (cpu)", "added µs (cpu)", "added µs (wall)", f"added vs {peer}"],
        rows,
        title=title,
    )


# -- over HTTP ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process for one variant; stopped by its pid."""

    def __init__(self, kind: str, variant: str, port: int) -> None:
        self.kind, self.variant, self.port = kind, variant, port
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                "--kind",
                kind,
                "--variant",
                variant,
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.log: list[str] = []

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            if line.startswith("READY"):
                threading.Thread(target=self._pump, daemon=True).start()
                return
        raise RuntimeError(f"{self.kind}/{self.variant} did not start: {''.join(self.log)}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def session_cpu_s(sid: int) -> float:
    """CPU seconds (user + system, all threads) of every process in session ``sid``:
    the server and, for gunicorn, its worker."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp session ...; utime and stime are the
        # 14th and 15th fields of the whole line (proc(5)).
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


_WRK_REQUESTS = re.compile(r"(\d+) requests in")


def wrk(port: int, seconds: float, connections: int = 32) -> tuple[float, str]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-H",
        f"traceparent: {TRACEPARENT}",
        f"http://127.0.0.1:{port}/items/42",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    m = _WRK_RPS.search(out.stdout)
    if m is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out.stdout}\n{out.stderr}")
    if "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk saw errors:\n{out.stdout}")
    return float(m.group(1)), out.stdout


def over_http(
    kind: str, variants: Sequence[str], rounds: int, seconds: float
) -> dict[str, dict[str, Any]]:
    servers = [Server(kind, v, free_port()) for v in variants]
    try:
        for s in servers:
            s.wait_ready()
        for s in servers:  # warm-up: imports, first-request paths, connection pools
            wrk(s.port, max(1.0, seconds / 3))
        samples: dict[str, list[float]] = {v: [] for v in variants}
        cpu_per_request: dict[str, list[float]] = {v: [] for v in variants}
        k = len(servers)
        for r in range(rounds):
            order = servers[r % k :] + servers[: r % k]
            for s in order:
                cpu0 = session_cpu_s(s.proc.pid)
                rps, text = wrk(s.port, seconds)
                cpu1 = session_cpu_s(s.proc.pid)
                m = _WRK_REQUESTS.search(text)
                requests = int(m.group(1)) if m else 0
                samples[s.variant].append(rps)
                if requests:
                    cpu_per_request[s.variant].append((cpu1 - cpu0) / requests * 1e6)
        for s in servers:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.variant} server died: {''.join(s.log[-20:])}")
    finally:
        for s in servers:
            s.stop()
    base = samples[variants[0]]
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        losses = [1 - a / b for a, b in zip(samples[v], base, strict=True)]
        out[v] = {
            "rps_median": h.median(samples[v]),
            "rps_samples": samples[v],
            "loss_vs_bare_median": h.median(losses) if v != variants[0] else 0.0,
            # Server CPU per request (all its threads and processes): less disturbed
            # by other load on the machine than requests/s, which wrk shares cores for.
            "server_cpu_us_per_request_median": h.median(cpu_per_request[v]),
            "server_cpu_us_per_request_samples": cpu_per_request[v],
        }
    return out


# -- instructions (callgrind) -------------------------------------------------------------
_IR = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(kind: str, variant: str, n1: int, n2: int) -> float:
    """Instructions per request: the difference of two callgrind runs over their requests.

    Start-up, imports and warm-up are the same in both runs and cancel out. The count
    does not depend on what else the machine is doing.
    """
    import tempfile

    counts = []
    args = [sys.executable, str(SERVER), "--kind", kind, "--variant", variant, "--requests"]
    with tempfile.TemporaryDirectory(prefix="rastir-bench-pyc-") as pycache:
        # Both runs load the same cached bytecode, written by an untimed run first:
        # where PYTHONDONTWRITEBYTECODE is set, or a source file is edited while the
        # bench runs, one run would otherwise compile modules the other did not, and
        # the difference would count the compiler.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=pycache, PYTHONHASHSEED="0")
        subprocess.run([*args, "10"], capture_output=True, timeout=600, env=env, check=True)
        for n in (n1, n2):
            cmd = [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                # Only what runs inside sys.call_tracing(): the measured requests
                # (see middleware_server.run_requests), not start-up or warm-up.
                "--collect-atstart=no",
                "--toggle-collect=sys_call_tracing",
                *args,
                str(n),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
            m = _IR.search(out.stderr)
            if out.returncode != 0 or m is None:
                raise RuntimeError(f"callgrind failed for {kind}/{variant}: {out.stderr[-2000:]}")
            counts.append(int(m.group(1)))
    return (counts[1] - counts[0]) / (n2 - n1)


def instruction_counts(quick: bool) -> dict[str, dict[str, float]]:
    n1, n2 = (200, 600) if quick else (1000, 3000)
    jobs = [(k, v) for k in ("asgi", "wsgi") for v in ("bare", "rastir", "otel")]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda job: instructions(job[0], job[1], n1, n2), jobs))
    out: dict[str, dict[str, float]] = {"asgi": {}, "wsgi": {}}
    for (kind, variant), count in zip(jobs, counts, strict=True):
        out[kind][variant] = count
    return out


def instructions_table(counts: dict[str, dict[str, float]]) -> str:
    rows = []
    for kind, by_variant in counts.items():
        bare = by_variant["bare"]
        ours = by_variant["rastir"] - bare
        peer = by_variant["otel"] - bare
        rows.append(
            (
                kind.upper(),
                f"{bare:,.0f}",
                f"{ours:+,.0f}",
                f"{peer:+,.0f}",
                h.fmt_ratio(ours, peer),
            )
        )
    return h.table(
        ["middleware", "bare", "rastir added", "otel added", "ours/otel"],
        rows,
        title="Instructions per request (callgrind, in-process, with traceparent)",
    )


def http_table(title: str, results: dict[str, dict[str, Any]]) -> str:
    rows = []
    bare_cpu = results["bare"]["server_cpu_us_per_request_median"]
    for name, r in results.items():
        cpu_us = r["server_cpu_us_per_request_median"]
        rows.append(
            (
                name,
                f"{r['rps_median']:.0f}",
                f"{min(r['rps_samples']):.0f}-{max(r['rps_samples']):.0f}",
                f"{-100 * r['loss_vs_bare_median']:+.1f}%" if name != "bare" else "",
                f"{cpu_us:.1f}",
                f"{cpu_us - bare_cpu:+.1f}" if name != "bare" else "",
            )
        )
    return h.table(
        [
            "variant",
            "requests/s (median)",
            "range",
            "vs bare",
            "server CPU µs/request",
            "added",
        ],
        rows,
        title=title,
    )


# -- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = h.base_parser(__doc__)
    parser.add_argument("--http-seconds", type=float, default=None, help="wrk duration per run")
    parser.add_argument("--http-rounds", type=int, default=None, help="wrk rounds per variant")
    parser.add_argument("--no-http", action="store_true", help="in-process measurements only")
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the callgrind instruction counts"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 9)
    target_ns = 0.05e9 if args.quick else 0.25e9
    http_rounds = args.http_rounds or (2 if args.quick else 5)
    http_seconds = args.http_seconds or (2.0 if args.quick else 5.0)

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    drain = QueueDrain()
    drain.start()
    loop = asyncio.new_event_loop()
    results: dict[str, Any] = {}
    texts: list[str] = []
    try:
        # 1. ASGI in-process
        app = asgi_app()
        with_tp, without_tp = asgi_scope(True), asgi_scope(False)
        asgi = [
            h.Variant("bare", asgi_runner(loop, app, with_tp)),
            h.Variant("rastir", asgi_runner(loop, asgi_variant(app, "rastir"), with_tp)),
            h.Variant(
                "rastir, no traceparent",
                asgi_runner(loop, asgi_variant(app, "rastir"), without_tp),
            ),
            h.Variant(
                "rastir, no hand-off",
                no_handoff(asgi_runner(loop, asgi_variant(app, "rastir"), with_tp)),
            ),
            h.Variant("otel", asgi_runner(loop, asgi_variant(app, "otel", provider), with_tp)),
            h.Variant(
                "otel, exclude_spans",
                asgi_runner(loop, asgi_variant(app, "otel-lean", provider), with_tp),
            ),
        ]
        results["asgi_in_process"] = measure(asgi, rounds, target_ns, drain, provider)
        texts.append(
            in_process_table(
                "ASGI in-process (Starlette JSON route)",
                results["asgi_in_process"],
                "rastir",
                "otel",
            )
        )
        print(texts[-1], "\n", flush=True)

        # 2. WSGI in-process
        wapp = wsgi_app()
        environ = wsgi_environ(True)
        wsgi = [
            h.Variant("bare", wsgi_runner(wapp, environ)),
            h.Variant("rastir", wsgi_runner(wsgi_variant(wapp, "rastir"), environ)),
            h.Variant(
                "rastir, no traceparent",
                wsgi_runner(wsgi_variant(wapp, "rastir"), wsgi_environ(False)),
            ),
            h.Variant(
                "rastir, no hand-off",
                no_handoff(wsgi_runner(wsgi_variant(wapp, "rastir"), environ)),
            ),
            h.Variant("otel", wsgi_runner(wsgi_variant(wapp, "otel", provider), environ)),
        ]
        results["wsgi_in_process"] = measure(wsgi, rounds, target_ns, drain, provider)
        texts.append(
            in_process_table(
                "WSGI in-process (Flask JSON route)", results["wsgi_in_process"], "rastir", "otel"
            )
        )
        print(texts[-1], "\n", flush=True)
    finally:
        loop.close()
        drain.stop()
        provider.shutdown()
    if stats.invalid_traceparent or stats.hook_errors:
        raise RuntimeError(f"unexpected middleware refusals: {stats}")

    http_notes: list[str] = []
    # 3. instruction counts, when valgrind is installed (Debian's valgrind package)
    if not args.no_instructions:
        if shutil.which("valgrind") is None:
            http_notes.append("valgrind is not installed: instruction counts skipped")
        else:
            results["instructions"] = instruction_counts(args.quick)
            texts.append(instructions_table(results["instructions"]))
            print(texts[-1], "\n", flush=True)

    # 4. over HTTP
    if not args.no_http:
        if shutil.which("wrk") is None:
            http_notes.append("wrk is not installed (apt-get install -y wrk): HTTP part skipped")
        else:
            results["asgi_http"] = over_http(
                "asgi", ["bare", "rastir", "otel"], http_rounds, http_seconds
            )
            texts.append(
                http_table(
                    "ASGI over HTTP (uvicorn + httptools, wrk -t1 -c32)", results["asgi_http"]
                )
            )
            print(texts[-1], "\n", flush=True)
            try:
                import gunicorn  # type: ignore[import-untyped]  # noqa: F401
            except ImportError:
                http_notes.append(
                    "gunicorn is not installed (pip install gunicorn): WSGI over HTTP skipped"
                )
            else:
                results["wsgi_http"] = over_http(
                    "wsgi", ["bare", "rastir", "otel"], http_rounds, http_seconds
                )
                texts.append(
                    http_table(
                        "WSGI over HTTP (gunicorn gthread, 1 worker, wrk -t1 -c32)",
                        results["wsgi_http"],
                    )
                )
                print(texts[-1], "\n", flush=True)

    # verdicts
    ai, wi = results["asgi_in_process"], results["wsgi_in_process"]
    verdicts: list[tuple[str, str, str, str]] = []
    asgi_added = ai["rastir"]["cpu_added_ns"]
    asgi_ratio = asgi_added / ai["otel"]["cpu_added_ns"]
    verdicts.append(
        (
            "ASGI added per request (in-process)",
            f"{asgi_added / 1000:.2f} µs",
            "≤ 6 µs",
            h.verdict(asgi_added, GOAL_ASGI_NS),
        )
    )
    verdicts.append(
        (
            "ASGI added, ours / OTel",
            h.fmt_ratio(asgi_added, ai["otel"]["cpu_added_ns"]),
            "≤ 1/40",
            h.verdict(asgi_ratio, GOAL_ASGI_RATIO),
        )
    )
    if "asgi_http" in results:
        loss = results["asgi_http"]["rastir"]["loss_vs_bare_median"]
        verdicts.append(
            (
                "ASGI requests/s loss over HTTP",
                f"{100 * loss:.1f}%",
                "≤ 15%",
                h.verdict(loss, GOAL_ASGI_LOSS),
            )
        )
    wsgi_added = wi["rastir"]["cpu_added_ns"]
    verdicts.append(
        (
            "WSGI added per request (in-process)",
            f"{wsgi_added / 1000:.2f} µs",
            "≤ 3 µs",
            h.verdict(wsgi_added, GOAL_WSGI_NS),
        )
    )
    if "wsgi_http" in results:
        loss = results["wsgi_http"]["rastir"]["loss_vs_bare_median"]
        verdicts.append(
            (
                "WSGI requests/s loss over HTTP",
                f"{100 * loss:.1f}%",
                "≤ 10%",
                h.verdict(loss, GOAL_WSGI_LOSS),
            )
        )
    texts.append(
        h.table(["goal", "measured", "goal", "verdict"], verdicts, title="Goals (PERFORMANCE.md)")
    )
    print(texts[-1])
    for note in http_notes:
        print("note:", note)

    if not args.no_json:
        path = h.write_json(
            "middleware_bench",
            {
                "rounds": rounds,
                "http_rounds": http_rounds,
                "http_seconds": http_seconds,
                "results": results,
                "verdicts": [
                    {"goal": g, "measured": m, "target": t, "verdict": v} for g, m, t, v in verdicts
                ],
                "notes": http_notes,
                "tables": texts,
                "sink": "rastir: PIPELINE deque + drain thread; otel: BatchSpanProcessor + dropping exporter",
                "rastir_spans_drained": drain.taken,
                "otel_spans_dropped": exporter.spans,
                "loadavg_at_end": list(os.getloadavg()),
            },
            quick=args.quick,
        )
        print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
