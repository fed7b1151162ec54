"""Cold ``import rastir``: wall time in fresh interpreters, and which modules it costs.

Run: ``python bench/import_bench.py [--quick] [--rounds N]``. Prints two tables and
writes ``bench/results/import_bench.json``.

Each round starts fresh interpreters (this venv's python, working directory = the
repository root) in rotating order:

* ``python -c "pass"``: interpreter start-up, the baseline;
* ``python -c "import rastir"``;
* ``python -c "import opentelemetry.sdk.trace"``: the peer;
* ``python -c "import opentelemetry.trace"``: the OTel API alone, for context.

The import cost is the child's CPU time (user + system, from ``RUSAGE_CHILDREN``)
minus the baseline's, paired within each round; the median over rounds is reported.
CPU time is what a busy machine does not inflate (``--clock wall`` judges on wall
time instead; both are printed). ``python -X importtime`` runs of the same imports give
each module's own ("self") and cumulative time; the modules that ``-c "pass"`` does not
import are the ones the import brought in.

Bytecode: the children run with ``PYTHONPYCACHEPREFIX`` set to a temporary directory
and ``PYTHONDONTWRITEBYTECODE`` removed, and one untimed warm-up run fills that cache.
So every timed run is a fresh process reading cached bytecode, as after ``pip install``
(which compiles ``.pyc`` files), whatever this machine's environment says; nothing is
written into the source tree. ``--no-bytecode-cache`` measures compiling from source
every time instead.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

GOAL_MS = 30.0
TARGETS = {
    "pass": "pass",
    "rastir": "import rastir",
    "opentelemetry.sdk.trace": "import opentelemetry.sdk.trace",
    "opentelemetry.trace (API)": "import opentelemetry.trace",
}
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def child_env(pycache: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def run_child(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one fresh interpreter running ``code``.

    CPU is the child's user + system time (``RUSAGE_CHILDREN`` before and after; the
    children run one at a time), which time spent waiting for a busy machine's CPUs
    does not inflate.
    """
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", code], cwd=h.ROOT, env=env, check=True)
    wall = (time.perf_counter_ns() - t0) / 1e6
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e3
    return wall, cpu


def importtime(code: str, env: dict[str, str]) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) for each import, in completion order."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=h.ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            rows.append((m[4], int(m[1]), int(m[2]), len(m[3]) // 2))
    return rows


def attribute(
    runs: list[list[tuple[str, int, int, int]]], baseline: set[str]
) -> tuple[float, list[dict[str, Any]]]:
    """Median total (sum of the top-level imports) and per-module medians, new modules only."""
    totals = []
    per: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"self": [], "cum": [], "depth": []})
    for rows in runs:
        total = 0
        for name, self_us, cum_us, depth in rows:
            if name in baseline:
                continue
            if depth == 0:
                total += cum_us
            p = per[name]
            p["self"].append(self_us)
            p["cum"].append(cum_us)
            p["depth"].append(depth)
        totals.append(total)
    modules: list[dict[str, Any]] = [
        {
            "module": name,
            "self_ms": h.median(p["self"]) / 1000,
            "cumulative_ms": h.median(p["cum"]) / 1000,
            "depth": min(p["depth"]),
        }
        for name, p in per.items()
    ]
    modules.sort(key=lambda m: -m["self_ms"])
    return h.median(totals) / 1000, modules


def parents(rows: list[tuple[str, int, int, int]]) -> dict[str, str]:
    """Which module first imported each one: -X importtime lists a module before its
    importer, so the parent is the next module listed one level shallower."""
    out: dict[str, str] = {}
    for i, (name, _, _, depth) in enumerate(rows):
        for other, _, _, d in rows[i + 1 :]:
            if d < depth:
                out[name] = other if d == depth - 1 else "?"
                break
        else:
            out[name] = "-c"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = h.base_parser(__doc__)
    parser.add_argument(
        "--clock",
        choices=h.CLOCKS,
        default="cpu",
        help="what the verdict uses: cpu = the child's user+system time (default), or wall",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile from source in every run (PYTHONDONTWRITEBYTECODE=1)",
    )
    parser.add_argument("--top", type=int, default=15, help="modules to list (default 15)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 21)
    clock, other = args.clock, ("wall" if args.clock == "cpu" else "cpu")
    t_start = time.monotonic()

    names = list(TARGETS)
    times: dict[str, dict[str, list[float]]] = {n: {c: [] for c in h.CLOCKS} for n in names}
    it_runs: dict[str, list[list[tuple[str, int, int, int]]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="rastir-import-bench-") as tmp:
        env = child_env(None if args.no_bytecode_cache else tmp)
        for code in TARGETS.values():  # fills the bytecode cache; untimed
            run_child(code, env)
            run_child(code, env)
        # Interleaved: rotate the order every round; then -X importtime the same way.
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                wall, cpu = run_child(TARGETS[name], env)
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                it_runs[name].append(importtime(TARGETS[name], env))

    baseline_modules = {row[0] for run in it_runs["pass"] for row in run}
    base = times["pass"]
    results: list[dict[str, Any]] = []
    modules: dict[str, list[dict[str, Any]]] = {}
    for name in names[1:]:
        it_total, mods = attribute(it_runs[name], baseline_modules)
        modules[name] = mods
        rec: dict[str, Any] = {"name": name, "code": TARGETS[name]}
        for c in h.CLOCKS:
            deltas = [a - b for a, b in zip(times[name][c], base[c], strict=True)]
            rec[c] = {
                "process_ms_median": h.median(times[name][c]),
                "import_ms_median": h.median(deltas),
                "import_ms_iqr": list(h.spread(deltas)),
                "import_ms_rounds": [round(d, 2) for d in deltas],
            }
        rec["importtime_total_ms"] = it_total
        rec["modules_imported"] = len(mods)
        results.append(rec)
    ours, peer = results[0], results[1]
    ours["peer"] = peer["name"]
    ours["ratio_vs_peer"] = ours[clock]["import_ms_median"] / peer[clock]["import_ms_median"]
    ours["goal_ms"] = GOAL_MS
    ours["status"] = h.verdict(ours[clock]["import_ms_median"], GOAL_MS)

    cache = "no bytecode cache" if args.no_bytecode_cache else "bytecode cached"
    print(
        h.table(
            [
                "import",
                "ms",
                "IQR",
                f"({other} ms)",
                "-X importtime ms",
                "modules",
                "ours/peer",
                "goal",
                "",
            ],
            [
                [
                    r["name"],
                    f"{r[clock]['import_ms_median']:.1f}",
                    "{:.1f}..{:.1f}".format(*r[clock]["import_ms_iqr"]),
                    f"{r[other]['import_ms_median']:.1f}",
                    f"{r['importtime_total_ms']:.1f}",
                    r["modules_imported"],
                    h.fmt_ratio(r["ratio_vs_peer"], 1.0) if "ratio_vs_peer" in r else "",
                    f"≤{GOAL_MS:g} ms" if "goal_ms" in r else "",
                    r.get("status", ""),
                ]
                for r in results
            ],
            title=(
                f"[import] fresh interpreters, {cache}, {clock} time minus `python -c pass` "
                f"({h.median(base[clock]):.1f} ms), median of {rounds} interleaved rounds"
            ),
        )
    )

    mods = modules["rastir"]
    parent = parents(it_runs["rastir"][0])
    for m in mods:
        m["imported_by"] = parent.get(m["module"], "?")
    subtrees = sorted(mods, key=lambda m: -m["cumulative_ms"])
    print()
    print(
        h.table(
            ["module", "cumulative ms", "self ms", "first imported by"],
            [
                [m["module"], f"{m['cumulative_ms']:.2f}", f"{m['self_ms']:.2f}", m["imported_by"]]
                for m in subtrees[: args.top]
            ],
            title=f"[import rastir] largest subtrees (-X importtime cumulative) of the {len(mods)} modules it imports",
        )
    )
    print()
    print(
        h.table(
            ["module", "self ms", "cumulative ms", "first imported by"],
            [
                [m["module"], f"{m['self_ms']:.2f}", f"{m['cumulative_ms']:.2f}", m["imported_by"]]
                for m in mods[: args.top]
            ],
            title="[import rastir] most self time",
        )
    )
    print(f"\n{time.monotonic() - t_start:.1f} s; {h.load_note()}")
    if not args.no_json:
        path = h.write_json(
            "import_bench",
            {
                "rounds": rounds,
                "clock": clock,
                "bytecode_cache": not args.no_bytecode_cache,
                "baseline_ms_median": {c: h.median(base[c]) for c in h.CLOCKS},
                "results": results,
                "summary": ours["status"],
                "rastir_modules": mods,
                "otel_sdk_modules_top": modules["opentelemetry.sdk.trace"][: args.top],
            },
            quick=args.quick,
        )
        print(f"wrote {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
