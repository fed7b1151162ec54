"""Shared machinery for the bench scripts: interleaved rounds, medians, tables, JSON.

Every benchmark here follows the same discipline (``PERFORMANCE.md``, "How to
measure"):

* all variants run in one process, interleaved (A B C, B C A, C A B, ...), so a
  machine that slows down or speeds up mid-run shifts every variant alike;
* a variant's overhead is paired with its baseline *within each round* and the
  median over rounds is reported, which discards the rounds a neighbour disturbed
  (as long as they are a minority: the IQR shows when they were not);
* every figure of ours is printed next to a peer measured in the same run.

Nothing here imports rastir or OpenTelemetry: the scripts decide what they measure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "CLOCKS",
    "RESULTS_DIR",
    "ROOT",
    "Runner",
    "Variant",
    "base_parser",
    "calibrate",
    "cpu_ns",
    "fmt_ratio",
    "interleave",
    "load_note",
    "machine_info",
    "median",
    "paired",
    "spread",
    "table",
    "verdict",
    "wall_ns",
    "write_json",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
# Neighbours skew every figure on a shared machine: the JSON records the load average
# when the script started and when it wrote its results.
_LOAD_AT_START = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

# Run ``n`` iterations of the thing measured and return the elapsed (wall, thread-CPU)
# nanoseconds of the timed part only; set-up and clean-up stay outside the clocks.
Runner = Callable[[int], tuple[int, int]]
CLOCKS = ("cpu", "wall")

wall_ns = time.perf_counter_ns
cpu_ns = time.thread_time_ns  # CLOCK_THREAD_CPUTIME_ID: this thread only


@dataclass
class Variant:
    """One thing to time. ``n`` (iterations per round) is set by :func:`calibrate`."""

    name: str
    run: Runner
    n: int = 0
    # ns per iteration, one entry per round, for each clock.
    samples: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLOCKS})


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The interquartile range (25th, 75th percentile) of ``values``."""
    if len(values) < 2:
        v = float(values[0]) if values else 0.0
        return v, v
    q = statistics.quantiles(values, n=4, method="inclusive")
    return float(q[0]), float(q[2])


def calibrate(run: Runner, target_ns: float, start: int = 16, cap: int = 1 << 24) -> int:
    """Iterations that make one call of ``run`` last about ``target_ns`` (wall)."""
    n = start
    while True:
        elapsed = max(run(n)[0], 1)
        if elapsed >= target_ns / 8 or n >= cap:
            return max(1, min(cap, round(n * target_ns / elapsed)))
        n = min(cap, n * max(2, min(64, int(target_ns / 8 / elapsed) + 1)))


def interleave(
    variants: Sequence[Variant],
    *,
    rounds: int,
    target_ns: float,
    warmup_rounds: int = 1,
    between: Callable[[], None] | None = None,
) -> None:
    """Time every variant ``rounds`` times, interleaved, rotating the order each round.

    Fills each variant's ``samples`` with ns per iteration. Warm-up rounds run the
    same rotation but are not recorded. ``between`` runs (untimed) after each variant.
    """
    for v in variants:
        if v.n == 0:
            v.n = calibrate(v.run, target_ns)
        v.samples = {c: [] for c in CLOCKS}
    k = len(variants)
    for r in range(warmup_rounds + rounds):
        shift = r % k
        for v in (*variants[shift:], *variants[:shift]):
            wall, cpu = v.run(v.n)
            if between is not None:
                between()
            if r >= warmup_rounds:
                v.samples["wall"].append(wall / v.n)
                v.samples["cpu"].append(cpu / v.n)


def paired(variant: Variant, baseline: Variant, clock: str = "cpu") -> list[float]:
    """Per-round differences ``variant - baseline`` (ns per iteration)."""
    return [a - b for a, b in zip(variant.samples[clock], baseline.samples[clock], strict=True)]


def verdict(value: float, goal: float) -> str:
    return "PASS" if value <= goal else "FAIL"


def fmt_ratio(ours: float, peer: float) -> str:
    """``0.031 (1/32)``: ours over peer, and how many times cheaper we are."""
    if peer <= 0:
        return "n/a"
    ratio = ours / peer
    if ratio <= 0:
        return f"{ratio:.3f}"
    if ratio < 1:
        return f"{ratio:.3f} (1/{1 / ratio:.0f})"
    return f"{ratio:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, title: str = "") -> str:
    """A plain-text table; columns after the first are right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells[1:])
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for text in f:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "nproc": len(affinity) if affinity is not None else os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": _LOAD_AT_START,
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {
            name: _version(name)
            for name in (
                "rastir",
                "msgspec",
                "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-common",
                "protobuf",
                "openai",
            )
        },
    }


def load_note() -> str:
    """``load average 0.4 -> 1.2 on 2 CPUs``: how busy the machine was during the run."""
    if _LOAD_AT_START is None or not hasattr(os, "getloadavg"):
        return ""
    return (
        f"load average {_LOAD_AT_START[0]:.2f} -> {os.getloadavg()[0]:.2f} "
        f"on {machine_info()['nproc']} CPUs"
    )


def base_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every bench script shares: ``--quick``, ``--rounds``, ``--no-json``."""
    parser = argparse.ArgumentParser(
        description=(description or "").strip().splitlines()[0] if description else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few, short rounds (numbers are rough)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="measured rounds (default: per script)"
    )
    parser.add_argument(
        "--no-json", action="store_true", help="do not write bench/results/<name>.json"
    )
    return parser


def write_json(name: str, payload: dict[str, Any], *, quick: bool) -> Path:
    """Write ``bench/results/<name>.json`` atomically, with the machine and command line."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "command": " ".join(["python", *sys.argv]),
        "quick": quick,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **payload,
    }
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
