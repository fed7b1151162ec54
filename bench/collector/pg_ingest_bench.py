"""Spans/s written into the trace store: SQLite, PostgreSQL, and two replicas on PostgreSQL.

wrk posts 100-span batches (``payload.py``, fresh ids per request) as in
``ingest_bench.py``. Variants, interleaved in rotating order, one fresh collector (and
a fresh database) per run:

* ``sqlite``: ``rastir collector`` with its SQLite store;
* ``postgres``: one ``rastir collector --store postgresql://...``;
* ``postgres_x2``: two such replicas on the same database, each under its own wrk
  with half the connections (as behind a load balancer).

The rate is of spans *stored*: after wrk stops, the clock runs on until every
replica's write queue is empty (``rastir_collector_queue_depth``), so a store that
only queues fast does not look fast. The PostgreSQL cluster is a throwaway one on
127.0.0.1 made with the machine's ``initdb`` (Debian package ``postgresql``), with
fsync on, like the SQLite store's WAL.

    python bench/collector/pg_ingest_bench.py                     # 5 rounds of 8 s
    python bench/collector/pg_ingest_bench.py --rounds 3 --duration 5

Prints a table (median of the rounds) and writes ``bench/results/pg_ingest.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ingest_bench import _cpu_seconds, _raise_nofile, free_port, run_wrk  # noqa: E402
from payload import PREFIX, SPANS_PER_BATCH, body  # noqa: E402

from bench._harness import load_note, table, write_json  # noqa: E402
from tests._postgres import PostgresServer, start_postgres  # noqa: E402

VARIANTS = ("sqlite", "postgres", "postgres_x2")
DRAIN_LIMIT = 120.0  # seconds a run's write queues may take to empty


class Collector:
    def __init__(self, store: str, workdir: Path, log: IO[bytes]) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["RASTIR_COLLECTOR_STORE"] = store  # by environment: a DSN is a secret
        cmd = [sys.executable, "-m", "rastir.collector", "--port", str(self.port)]
        cmd += ["--data-dir", str(workdir / f"data-{self.port}"), "--no-access-log"]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, env=env, cwd=workdir, preexec_fn=_raise_nofile
        )
        deadline = time.monotonic() + 60
        while not self._answers("/ready"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector on {store.split('@')[-1]} did not start")
            time.sleep(0.05)

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2):
                return True
        except OSError:
            return False

    def queue_depth(self) -> float:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("rastir_collector_queue_depth "):
                    return float(line.split()[1])
        raise RuntimeError("no rastir_collector_queue_depth in /metrics")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(
    variant: str, args: argparse.Namespace, pg: PostgresServer, workdir: Path, body_file: Path
) -> dict[str, Any]:
    log = open(workdir / f"{variant}.log", "ab")  # noqa: SIM115
    if variant == "sqlite":
        stores = ["sqlite"]
    else:
        dsn = pg.new_database("bench")
        stores = [dsn] * (2 if variant == "postgres_x2" else 1)
    collectors: list[Collector] = []
    try:
        for store in stores:
            collectors.append(Collector(store, workdir, log))
        connections = max(1, args.connections // len(collectors))
        cpu_before = [_cpu_seconds(c.proc.pid) for c in collectors]
        started = time.monotonic()
        # One wrk per replica, at once (threads: run_wrk waits on its process).
        with ThreadPoolExecutor(len(collectors)) as pool:
            futures = [
                pool.submit(run_wrk, c.port, connections, args.duration, 1, body_file, True)
                for c in collectors
            ]
            results = [f.result() for f in futures]
        loaded = time.monotonic() - started
        deadline = time.monotonic() + DRAIN_LIMIT
        while any(c.queue_depth() > 0 for c in collectors):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant}: write queues did not drain")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = sum(_cpu_seconds(c.proc.pid) - b for c, b in zip(collectors, cpu_before, strict=True))
        accepted = sum(r["statuses"].get("202", 0) for r in results)
        refused = sum(r["statuses"].get("429", 0) for r in results)
        return {
            "variant": variant,
            "replicas": len(collectors),
            "accepted_spans": accepted * SPANS_PER_BATCH,
            "refused_429": refused,
            "load_seconds": loaded,
            "drain_seconds": elapsed - loaded,
            "stored_spans_per_s": accepted * SPANS_PER_BATCH / elapsed,
            "cpu_us_per_span": cpu * 1e6 / max(1, accepted * SPANS_PER_BATCH),
            "p99_ms": max(r["p99_us"] for r in results) / 1000,
        }
    finally:
        for c in collectors:
            c.stop()
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    p.add_argument("--connections", type=int, default=16, help="in all, split over replicas")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    workdir = Path(tempfile.mkdtemp(prefix="rastir-pg-ingest-"))
    body_file = workdir / "body.json"
    template = body()
    assert template.count(PREFIX.encode()) >= SPANS_PER_BATCH
    body_file.write_bytes(template)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    pg = start_postgres(fsync=True, for_tests=False)  # a benchmark pays for durability
    try:
        for r in range(args.rounds):
            shift = r % len(variants)
            for v in variants[shift:] + variants[:shift]:
                res = measure(v, args, pg, workdir, body_file)
                runs[v].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {v:12s} {res['stored_spans_per_s']:>9,.0f} "
                    f"spans/s stored (drain {res['drain_seconds']:.1f} s, "
                    f"{res['refused_429']} x 429)",
                    flush=True,
                )
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(v: str, key: str) -> float:
        return float(statistics.median(x[key] for x in runs[v]))

    first = variants[0]
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for v in variants:
        summary[v] = {
            k: med(v, k)
            for k in ("stored_spans_per_s", "cpu_us_per_span", "drain_seconds", "p99_ms")
        }
        rows.append(
            (
                v,
                f"{summary[v]['stored_spans_per_s']:,.0f}",
                f"{summary[v]['stored_spans_per_s'] / med(first, 'stored_spans_per_s'):.2f}",
                f"{summary[v]['cpu_us_per_span']:.1f}",
                f"{summary[v]['drain_seconds']:.1f}",
                f"{summary[v]['p99_ms']:.1f}",
            )
        )
    print()
    print(
        table(
            ("variant", "spans/s stored", f"vs {first}", "CPU us/span", "drain s", "p99 ms"),
            rows,
            title=(
                f"{SPANS_PER_BATCH}-span batches, wrk -c{args.connections} in all, "
                f"{args.duration:g} s x {args.rounds} rounds (median)"
            ),
        )
    )
    print(load_note())
    if not args.no_json:
        payload = {"config": vars(args), "summary": summary, "runs": runs}
        path = write_json("pg_ingest", payload, quick=False)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
