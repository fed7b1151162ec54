"""Collector ingest throughput over HTTP: wrk posting 100-span batches.

Variants, each its own uvicorn (httptools) process on 127.0.0.1, run interleaved and
in rotating order, one fresh server per run:

* ``bare``: a Starlette endpoint that reads the body and answers 202 (the ceiling);
* ``memory``: ``rastir collector --store memory``;
* ``sqlite``: ``rastir collector`` with its default SQLite store;
* ``memory_base``, ``sqlite_base``: the same collectors run from another copy of the
  package (``--baseline-src DIR``, a directory holding ``rastir/``), to compare a
  change against the code before it in one interleaved run.

Then an overload run: the memory collector under far more connections than it needs
to be saturated, showing 429s (refused before decoding) and the accepted rate kept.

Prints a table (median of the rounds, ratios against ``bare``) and writes JSON to
``bench/results/collector_ingest.json``. Needs ``wrk`` (Debian package ``wrk``).

    python bench/collector/ingest_bench.py                 # 7 rounds of 8 s
    python bench/collector/ingest_bench.py --rounds 3 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from payload import PREFIX, SPANS_PER_BATCH, body  # noqa: E402

LUA = HERE / "post_batch.lua"
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


class Server:
    def __init__(
        self, variant: str, port: int, workdir: Path, extra: list[str], baseline: Path | None = None
    ) -> None:
        self.variant = variant
        self.port = port
        self.log = open(workdir / f"{variant}-{port}.log", "wb")  # noqa: SIM115
        src = ROOT
        if variant.endswith("_base"):
            if baseline is None:
                raise ValueError(f"variant {variant} needs --baseline-src")
            src = baseline
        env = dict(os.environ, PYTHONPATH=str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if variant == "bare":
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "bare_app:app",
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
        else:
            data = workdir / f"data-{port}"
            cmd = [
                sys.executable,
                "-m",
                "rastir.collector",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--store",
                variant.removesuffix("_base"),
                "--data-dir",
                str(data),
                *extra,
            ]
        # cwd: ``python -m`` puts it first on sys.path, ahead of PYTHONPATH.
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=self.log, env=env, cwd=workdir, preexec_fn=_raise_nofile
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.variant} server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.variant} server did not start")

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MB."""
        cur = peak = 0.0
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        return cur, peak

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_wrk(
    port: int,
    connections: int,
    duration: float,
    threads: int,
    body_file: Path,
    honor: bool = False,
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
    ]
    env = dict(os.environ, BODY_FILE=str(body_file), HONOR_RETRY_AFTER="1" if honor else "0")
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=duration + 60,
        preexec_fn=_raise_nofile,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return res
    raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    variant: str,
    args: argparse.Namespace,
    workdir: Path,
    body_file: Path,
    connections: int,
    extra: list[str],
    honor: bool = False,
) -> dict[str, Any]:
    port = free_port()
    server = Server(variant, port, workdir, extra, args.baseline_src)
    try:
        if args.warmup > 0:
            run_wrk(port, connections, args.warmup, args.threads, body_file, honor)
        rss_before, _ = server.rss_mb()
        cpu_before = _cpu_seconds(server.proc.pid)
        res = run_wrk(port, connections, args.duration, args.threads, body_file, honor)
        cpu = _cpu_seconds(server.proc.pid) - cpu_before
        rss, peak = server.rss_mb()
        seconds = res["duration_us"] / 1e6
        accepted = res["statuses"].get("202", 0)
        out = {
            "variant": variant,
            "connections": connections,
            "seconds": seconds,
            "requests": res["requests"],
            "accepted_requests": accepted,
            "refused_429": res["statuses"].get("429", 0),
            "statuses": res["statuses"],
            "spans_per_s": accepted * SPANS_PER_BATCH / seconds,
            "requests_per_s": res["requests"] / seconds,
            "p50_ms": res["p50_us"] / 1000,
            "p99_ms": res["p99_us"] / 1000,
            "max_ms": res["max_us"] / 1000,
            "socket_errors": res["errors_connect"]
            + res["errors_read"]
            + res["errors_write"]
            + res["errors_timeout"],
            "rss_mb": rss,
            "rss_growth_mb": rss - rss_before,
            "peak_rss_mb": peak,
            # Server CPU per accepted batch: steadier than spans/s on a shared machine.
            "cpu_us_per_accepted_request": cpu * 1e6 / max(1, accepted),
            "server_cpu_share": cpu / seconds,
        }
        if variant != "bare":
            text = server.metrics()
            out["collector_rejections"] = {
                line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("rastir_collector_rejected_requests_total{")
            }
        return out
    finally:
        server.stop()
        shutil.rmtree(workdir / f"data-{port}", ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before each measured run"
    )
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--overload-connections", type=int, default=0, help="default: 64 x --connections"
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (the machine has few cores)")
    p.add_argument("--variants", default="bare,memory,sqlite")
    p.add_argument("--no-overload", action="store_true")
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="directory holding another copy of rastir/ for the *_base variants",
    )
    p.add_argument("--collector-args", default="", help="extra collector options, space separated")
    p.add_argument("--out", type=Path, default=RESULTS / "collector_ingest.json")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    variants = [v for v in args.variants.split(",") if v]
    extra = args.collector_args.split()
    workdir = Path(tempfile.mkdtemp(prefix="rastir-bench-"))
    body_file = workdir / "body.json"
    template = body()
    assert template.count(PREFIX.encode()) >= SPANS_PER_BATCH
    body_file.write_bytes(template)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                res = measure(v, args, workdir, body_file, args.connections, extra)
                runs[v].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {v:11s} {res['spans_per_s']:>10,.0f} spans/s  p99 {res['p99_ms']:6.1f} ms  "
                    f"rss {res['rss_mb']:5.0f} MB  statuses {res['statuses']}",
                    flush=True,
                )
        overloads: dict[str, dict[str, Any]] = {}
        if not args.no_overload and "memory" in variants:
            oc = args.overload_connections or args.connections * 64
            targets = ["memory"] + (["memory_base"] if "memory_base" in variants else [])
            for label, honor in (("overload_honor", True), ("overload_no_backoff", False)):
                for target in targets:
                    key = label if target == "memory" else f"{label}_base"
                    res = measure(target, args, workdir, body_file, oc, extra, honor=honor)
                    overloads[key] = res
                    print(
                        f"{key} {target} c={oc}: {res['spans_per_s']:,.0f} spans/s accepted, "
                        f"{res['refused_429']} x 429, p99 {res['p99_ms']:.1f} ms, rss {res['rss_mb']:.0f} MB "
                        f"(+{res['rss_growth_mb']:.0f} during the run)",
                        flush=True,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def med(v: str, key: str) -> float:
        return float(statistics.median(x[key] for x in runs[v]))

    base = med("bare", "spans_per_s") if "bare" in runs else None
    print()
    print(
        f"collector ingest, {SPANS_PER_BATCH}-span batches, wrk -t{args.threads} -c{args.connections}, "
        f"{args.duration:g}s x {args.rounds} rounds (median)"
    )
    print(
        f"{'variant':20s} {'spans/s':>12s} {'vs bare':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'RSS MB':>8s} "
        f"{'429s':>6s} {'CPU us/batch':>13s}"
    )
    summary: dict[str, Any] = {}
    for v in variants:
        sps = med(v, "spans_per_s")
        row = {
            "spans_per_s": sps,
            "ratio_vs_bare": sps / base if base else None,
            "p50_ms": med(v, "p50_ms"),
            "p99_ms": med(v, "p99_ms"),
            "rss_mb": med(v, "rss_mb"),
            "refused_429": med(v, "refused_429"),
            "cpu_us_per_accepted_request": med(v, "cpu_us_per_accepted_request"),
        }
        summary[v] = row
        ratio = f"{row['ratio_vs_bare']:.2f}" if base else "-"
        print(
            f"{v:20s} {sps:>12,.0f} {ratio:>8s} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['rss_mb']:>8.0f} "
            f"{row['refused_429']:>6.0f} {row['cpu_us_per_accepted_request']:>13.0f}"
        )
    for label, res in overloads.items():
        cap = summary.get(res["variant"], {}).get("spans_per_s")
        kept = res["spans_per_s"] / cap if cap else None
        summary[label] = {**res, "kept_vs_capacity": kept}
        print(
            f"{label:20s} {res['spans_per_s']:>12,.0f} {'':>8s} {res['p50_ms']:>8.1f} {res['p99_ms']:>8.1f} "
            f"{res['rss_mb']:>8.0f} {res['refused_429']:>6d}  c={res['connections']}"
            + (f", kept {kept:.0%} of the {res['variant']} capacity" if kept else "")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "collector_ingest",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg(),
                },
                "config": {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                },
                "summary": summary,
                "runs": runs,
                "overload": overloads,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
