"""Answering one huge trace: how long the collector's loop stalls, and its peak memory.

Each variant is a real collector process (``rastir.collector.cli.main``, the code
``rastir collector`` runs) on 127.0.0.1, holding one trace of ``--spans`` spans (50,000
by default: an HTTP root, an agent, and every other span a child of the agent, shaped
as ``payload.py``'s agent run). While ``GET /v1/traces/{id}`` is answered, two probe
threads send ``GET /metrics`` and ``POST /v1/telemetry`` (a one-span batch) back to
back: the longest any of them waited is how long the event loop was held.

Measured per GET:

* ``stall``: the longest probe request while the GET ran (the loop held), and the
  probes' median then;
* ``peak``: the process's peak RSS during the GET above its RSS before it (the peak
  is reset through ``/proc/<pid>/clear_refs`` just before the GET);
* ``gc``: the longest CPython garbage collection in the server during the GET, and
  the sum of them (the server records each with ``gc.callbacks``);
* ``ttfb`` and ``total``: time to the answer's first byte and to its last.

Variants: ``memory`` and ``sqlite`` (the stores), ``*_base`` the same from another
copy of the package (``--baseline-src DIR``, a directory holding ``rastir/``), and
``*_gcdefault``: the collector with CPython's default GC settings, without the CLI's
``gc.freeze()`` and thresholds. Rounds are interleaved in rotating order, one fresh
server per variant per round; medians are printed and JSON is written to
``bench/results/big_trace_bench.json``.

    python bench/collector/big_trace_bench.py --rounds 3
    mkdir /tmp/before && git archive HEAD rastir | tar -x -C /tmp/before
    python bench/collector/big_trace_bench.py --rounds 3 \\
        --variants memory,memory_base,sqlite,sqlite_base --baseline-src /tmp/before
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import msgspec  # noqa: E402
from ingest_bench import Server, _raise_nofile, free_port  # noqa: E402
from payload import batch  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# The server: the CLI's main, with every garbage collection timed (monotonic clock,
# shared with the bench) and written out at exit. "default" skips the CLI's GC tuning.
_LAUNCH = """
import atexit, gc, json, sys, time
from rastir.collector import cli
mode, out = sys.argv[1], sys.argv[2]
pauses = []
began = [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.monotonic()
    else:
        pauses.append((began[0], time.monotonic() - began[0], info["generation"]))
gc.callbacks.append(timed)
if mode == "default":
    cli._tune_gc = lambda: None
def dump():
    with open(out, "w") as f:
        json.dump(pauses, f)
atexit.register(dump)
sys.exit(cli.main(sys.argv[3:]))
"""


class Collector(Server):
    """``ingest_bench.Server``, started through ``_LAUNCH``."""

    def __init__(self, variant: str, workdir: Path, baseline: Path | None) -> None:
        self.variant = variant
        self.port = free_port()
        self.log = open(workdir / f"{variant}-{self.port}.log", "wb")  # noqa: SIM115
        self.gc_file = workdir / f"gc-{variant}-{self.port}.json"
        store, _, flavour = variant.partition("_")
        src = ROOT
        if flavour == "base":
            if baseline is None:
                raise ValueError(f"variant {variant} needs --baseline-src")
            src = baseline
        env = dict(os.environ, PYTHONPATH=str(src))
        cmd = [
            sys.executable,
            "-c",
            _LAUNCH,
            "default" if flavour == "gcdefault" else "cli",
            str(self.gc_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            store,
            "--data-dir",
            str(workdir / f"data-{self.port}"),
            "--memory-max-spans",
            "1000000",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=self.log, env=env, cwd=workdir, preexec_fn=_raise_nofile
        )
        self._wait_ready()

    def gc_pauses(self) -> list[tuple[float, float, int]]:
        with open(self.gc_file) as f:
            return [tuple(p) for p in json.load(f)]


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> bytes:
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def ingest(port: int, spans: int) -> str:
    """Post one trace of ``spans`` spans in 5,000-span batches; its trace id."""
    trace = batch(spans, prefix="%08x" % (time.monotonic_ns() & 0xFFFFFFFF))
    encode = msgspec.json.Encoder().encode
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    all_spans = trace["spans"]
    for i in range(0, len(all_spans), 5000):
        trace["spans"] = all_spans[i : i + 5000]
        _request(conn, "POST", "/v1/telemetry", encode(trace))
    # The SQLite store writes in its own thread: wait until every span is stored.
    for _ in range(600):
        text = _request(conn, "GET", "/metrics").decode()
        for line in text.splitlines():
            if line.startswith("rastir_collector_store_spans ") and float(line.split()[1]) >= spans:
                conn.close()
                return str(all_spans[0]["trace_id"])
        time.sleep(0.1)
    raise RuntimeError("the trace was not stored within 60 s")


class Probe(threading.Thread):
    """Requests back to back, each one's (start, latency) recorded, until stopped."""

    def __init__(self, port: int, method: str, path: str, body: bytes | None) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.args = (method, path, body)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            _request(self.conn, *self.args)
            self.samples.append((t, time.monotonic() - t))
            time.sleep(0.002)
        self.conn.close()


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


def measure_get(server: Collector, trace_id: str) -> dict[str, Any]:
    small = batch(1, prefix="%08x" % (time.monotonic_ns() & 0xFFFFFFFF))
    probes = [
        Probe(server.port, "GET", "/metrics", None),
        Probe(server.port, "POST", "/v1/telemetry", msgspec.json.encode(small)),
    ]
    for p in probes:
        p.start()
    time.sleep(0.3)  # the probes' idle latency
    before = _status(server.proc.pid)
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    t0 = time.monotonic()
    conn.request("GET", f"/v1/traces/{trace_id}")
    response = conn.getresponse()
    first = response.read(1)
    ttfb = time.monotonic() - t0
    size = len(first)
    while chunk := response.read(1 << 20):
        size += len(chunk)
    t1 = time.monotonic()
    conn.close()
    after = _status(server.proc.pid)
    time.sleep(0.1)
    for p in probes:
        p.stop.set()
    for p in probes:
        p.join(30)
    during = [lat for p in probes for t, lat in p.samples if t0 - lat <= t <= t1]
    idle = [lat for p in probes for t, lat in p.samples if t < t0 - 0.05]
    return {
        "status": response.status,
        "bytes": size,
        "ttfb_ms": ttfb * 1e3,
        "total_ms": (t1 - t0) * 1e3,
        "stall_ms": max(during, default=0.0) * 1e3,
        "probe_p50_ms": statistics.median(during) * 1e3 if during else 0.0,
        "idle_p50_ms": statistics.median(idle) * 1e3 if idle else 0.0,
        "probes_during": len(during),
        "rss_before_mb": before["VmRSS"],
        "peak_added_mb": after["VmHWM"] - before["VmRSS"],
        "window": (t0, t1),
    }


def run_variant(
    variant: str, args: argparse.Namespace, workdir: Path, baseline: Path | None
) -> list[dict[str, Any]]:
    server = Collector(variant, workdir, baseline)
    try:
        trace_id = ingest(server.port, args.spans)
        results = [measure_get(server, trace_id) for _ in range(args.gets)]
    finally:
        server.stop()
    pauses = server.gc_pauses()
    for r in results:
        t0, t1 = r.pop("window")
        inside = [d for start, d, _gen in pauses if t0 <= start <= t1]
        r["gc_max_ms"] = max(inside, default=0.0) * 1e3
        r["gc_sum_ms"] = sum(inside) * 1e3
        r["gc_full"] = sum(1 for start, _d, gen in pauses if t0 <= start <= t1 and gen == 2)
    return results


COLUMNS = (
    "stall_ms",
    "probe_p50_ms",
    "idle_p50_ms",
    "peak_added_mb",
    "rss_before_mb",
    "gc_max_ms",
    "gc_sum_ms",
    "gc_full",
    "ttfb_ms",
    "total_ms",
    "bytes",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gets", type=int, default=2, help="GETs per server (first is cold)")
    parser.add_argument("--variants", default="memory,sqlite")
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="big-trace-bench-") as tmp:
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for variant in order:
                results = run_variant(variant, args, Path(tmp), args.baseline_src)
                runs[variant].extend(results)
                print(f"round {r + 1} {variant}: " + json.dumps(results), file=sys.stderr)
    header = f"{'variant':<18}" + "".join(f"{c:>15}" for c in COLUMNS)
    print(f"{args.spans} spans, median of {args.rounds} rounds x {args.gets} GETs")
    print(header)
    table: dict[str, dict[str, float]] = {}
    for variant, results in runs.items():
        row = {c: statistics.median(r[c] for r in results) for c in COLUMNS}
        row["stall_ms_max"] = max(r["stall_ms"] for r in results)
        table[variant] = row
        print(f"{variant:<18}" + "".join(f"{row[c]:>15.1f}" for c in COLUMNS))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "machine": {"python": sys.version, "platform": platform.platform(), "cpus": os.cpu_count()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "median": table,
        "runs": runs,
    }
    (RESULTS / "big_trace_bench.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
