"""Collector throughput with OTLP export of every span, against export off, in one run.

Both variants are the memory-store collector (``python -m rastir.collector --store
memory``) under the same ``wrk`` load as ``ingest_bench.py`` (100-span batches with
fresh ids, ``post_batch.lua``), interleaved in rotating order, one fresh server per
run:

* ``export off``: ingest, metrics, store;
* ``export on``: the same, and every span exported as OTLP/HTTP protobuf to a sink on
  127.0.0.1 (``otlp_sink_app.py``, its own uvicorn process, reading and answering 200).

With export on, a collector whose export queue is 90% full answers 429 (the export
target is slower than ingest); the load generator's connections then wait
``Retry-After`` as the SDK's exporter does (``--no-backoff``: retry at once).

After each measured run the export queue is given up to 15 s to drain, and the window
counted runs from the start of the load to the drained queue. Per variant it prints
spans/s accepted, spans/s exported, export drops, the collector's CPU per span, and
**spans per core-second** (spans handled per second of the collector's CPU time: the
goal is >= 40k with export on, PERFORMANCE.md). Writes JSON to
``bench/results/otlp_export_bench.json``. Needs ``wrk``.

    python bench/collector/otlp_export_bench.py                  # 7 rounds of 8 s
    python bench/collector/otlp_export_bench.py --rounds 3 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from ingest_bench import Server, _cpu_seconds, free_port, run_wrk  # noqa: E402
from payload import PREFIX, SPANS_PER_BATCH, body  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VARIANTS = ("export off", "export on")


def _scrape(server: Server) -> dict[str, float]:
    """The counters this benchmark reads, summed over their labels."""
    want = {
        "rastir_collector_ingested_spans_total": "ingested",
        "rastir_collector_exported_spans_total": "exported",
        "rastir_collector_export_queue_depth": "queue",
        "rastir_collector_export_failures_total": "failures",
        "rastir_collector_export_dropped_spans_total": "dropped",
    }
    out = dict.fromkeys(want.values(), 0.0)
    for line in server.metrics().splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        key = want.get(name)
        if key:
            out[key] += float(line.rsplit(" ", 1)[1])
    return out


class Sink:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.log = open(workdir / f"sink-{port}.log", "wb")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "otlp_sink_app:app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the OTLP sink did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def measure(
    variant: str, args: argparse.Namespace, workdir: Path, body_file: Path, sink_port: int
) -> dict[str, Any]:
    extra = args.collector_args.split()
    if variant == "export on":
        extra += ["--otlp-endpoint", f"http://127.0.0.1:{sink_port}/v1/traces"]
    port = free_port()
    server = Server("memory", port, workdir, extra)
    try:
        honor = not args.no_backoff
        if args.warmup > 0:
            run_wrk(port, args.connections, args.warmup, args.threads, body_file, honor)
        _wait_drained(server, 15.0)
        before = _scrape(server)
        cpu0 = _cpu_seconds(server.proc.pid)
        t0 = time.monotonic()
        res = run_wrk(port, args.connections, args.duration, args.threads, body_file, honor)
        drained = _wait_drained(server, 15.0)
        seconds = time.monotonic() - t0
        cpu = _cpu_seconds(server.proc.pid) - cpu0
        after = _scrape(server)
        ingested = after["ingested"] - before["ingested"]
        exported = after["exported"] - before["exported"]
        handled = exported if variant == "export on" else ingested
        rss, _peak = server.rss_mb()
        return {
            "variant": variant,
            "seconds": seconds,
            "load_seconds": res["duration_us"] / 1e6,
            "statuses": res["statuses"],
            "refused_429": res["statuses"].get("429", 0),
            "ingested_spans": ingested,
            "exported_spans": exported,
            "export_dropped_spans": after["dropped"] - before["dropped"],
            "export_failures": after["failures"] - before["failures"],
            "queue_drained": drained,
            "accepted_spans_per_s": ingested / seconds,
            "exported_spans_per_s": exported / seconds,
            "cpu_seconds": cpu,
            "cpu_us_per_span": cpu * 1e6 / max(1.0, handled),
            "spans_per_core_second": handled / cpu if cpu else 0.0,
            "p99_ms": res["p99_us"] / 1000,
            "rss_mb": rss,
        }
    finally:
        server.stop()
        shutil.rmtree(workdir / f"data-{port}", ignore_errors=True)


def _wait_drained(server: Server, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if _scrape(server)["queue"] == 0:
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--collector-args", default="", help="extra collector options, space separated")
    p.add_argument(
        "--no-backoff",
        action="store_true",
        help="clients retry a 429 at once (default: they wait Retry-After, as the SDK does)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "otlp_export_bench.json")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rastir-otlp-bench-"))
    body_file = workdir / "body.json"
    template = body()
    assert template.count(PREFIX.encode()) >= SPANS_PER_BATCH
    body_file.write_bytes(template)
    sink_port = free_port()
    sink = Sink(sink_port, workdir)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        for r in range(args.rounds):
            order = VARIANTS[r % 2 :] + VARIANTS[: r % 2]
            for v in order:
                res = measure(v, args, workdir, body_file, sink_port)
                runs[v].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {v:10s} accepted {res['accepted_spans_per_s']:>9,.0f}/s "
                    f"exported {res['exported_spans_per_s']:>9,.0f}/s dropped {res['export_dropped_spans']:>7,.0f} "
                    f"CPU {res['cpu_us_per_span']:5.1f} us/span = {res['spans_per_core_second']:>8,.0f} spans/core-s "
                    f"429s {res['refused_429']}",
                    flush=True,
                )
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(v: str, key: str) -> float:
        return float(statistics.median(x[key] for x in runs[v]))

    summary = {
        v: {
            key: med(v, key)
            for key in (
                "accepted_spans_per_s",
                "exported_spans_per_s",
                "export_dropped_spans",
                "export_failures",
                "refused_429",
                "cpu_us_per_span",
                "spans_per_core_second",
                "p99_ms",
                "rss_mb",
            )
        }
        for v in VARIANTS
    }
    off, on = summary["export off"], summary["export on"]
    print()
    print(
        f"collector, memory store, {SPANS_PER_BATCH}-span batches, wrk -t{args.threads} "
        f"-c{args.connections}, {args.duration:g}s x {args.rounds} rounds (median)"
    )
    print(
        f"{'variant':12s} {'accepted/s':>11s} {'exported/s':>11s} {'drops':>7s} "
        f"{'CPU us/span':>12s} {'spans/core-s':>13s} {'vs off':>7s} {'p99 ms':>7s} {'429s':>6s}"
    )
    for v in VARIANTS:
        row = summary[v]
        print(
            f"{v:12s} {row['accepted_spans_per_s']:>11,.0f} {row['exported_spans_per_s']:>11,.0f} "
            f"{row['export_dropped_spans']:>7,.0f} {row['cpu_us_per_span']:>12.1f} "
            f"{row['spans_per_core_second']:>13,.0f} "
            f"{row['spans_per_core_second'] / off['spans_per_core_second']:>7.2f} {row['p99_ms']:>7.1f} "
            f"{row['refused_429']:>6,.0f}"
        )
    goal = on["spans_per_core_second"] >= 40_000 and on["export_dropped_spans"] == 0
    print(
        f"\ngoal >= 40,000 spans/s per core with export of every span: "
        f"{on['spans_per_core_second']:,.0f}, drops {on['export_dropped_spans']:,.0f} -> "
        f"{'PASS' if goal else 'FAIL'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "otlp_export",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "loadavg": list(os.getloadavg()),
                },
                "config": {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                },
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
