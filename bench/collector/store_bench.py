"""Trace store benchmark: write throughput, get_trace and list_traces latency.

Writes ``--spans`` spans (default 1M: 100k traces of 10 spans, in 100-span batches
as SDK exporters send them, children before their root) into a fresh SQLiteStore in
a temporary directory, then times ``get_trace`` on random traces and
``list_traces`` with filters, through the async API the collector uses (each read
hops to a worker thread).

Peers, measured in the same run on the same spans:

* ``naive sqlite``: what a first version looks like: one INSERT per span with the
  span as stdlib JSON, one transaction per batch, default journal settings, written
  on the caller's thread.
* ``MemoryStore``: the in-memory store, an upper bound for the ingest path.

Run: ``python bench/collector/store_bench.py [--spans N]``. Prints a table and
writes ``bench/results/store_bench.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rastir._wire import WireError, WireSpan  # noqa: E402
from rastir.collector.store import (  # noqa: E402
    MemoryStore,
    SpanRow,
    SQLiteStore,
    TraceDetail,
    TraceQuery,
    build_tree,
    summarize,
)

SERVICES = ("gateway", "agent-runner", "tools")
AGENTS = ("planner", "researcher", "writer", "critic", "router")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b")
KINDS = ("llm", "tool", "retrieval", "llm", "tool", "llm", "custom", "llm", "tool")


def make_batches(
    spans: int, per_trace: int, batch: int, seed: int = 7
) -> tuple[list[list[SpanRow]], list[str]]:
    rng = random.Random(seed)
    bits = rng.getrandbits
    now = time.time_ns() - 3600 * 10**9
    rows: list[SpanRow] = []
    trace_ids: list[str] = []
    for t in range(spans // per_trace):
        trace_id = f"{bits(128):032x}"
        trace_ids.append(trace_id)
        root_id = f"{bits(64):016x}"
        start = now + t * 1_000_000
        agent = AGENTS[t % len(AGENTS)]
        failed = t % 50 == 0
        children = []
        for i in range(per_trace - 1):
            kind = KINDS[i % len(KINDS)]
            attributes: dict[str, Any] = {"gen_ai.agent.name": agent}
            if kind == "llm":
                # One model per trace, and a second one (a fallback) in a third of them.
                model = MODELS[(t + (i == 7 and t % 3 == 0)) % len(MODELS)]
                attributes.update(
                    {
                        "gen_ai.request.model": model,
                        "gen_ai.response.model": model,
                        "gen_ai.usage.input_tokens": 200 + i,
                        "gen_ai.usage.output_tokens": 50 + i,
                        "rastir.cost.usd": 0.0012,
                    }
                )
            error = (
                WireError("rate_limit", "RateLimitError", "slow down")
                if failed and i == 1
                else None
            )
            children.append(
                SpanRow(
                    SERVICES[1 + i % 2],
                    WireSpan(
                        trace_id,
                        f"{bits(64):016x}",
                        f"{kind}.step{i}",
                        kind,  # type: ignore[arg-type]
                        start + (i + 1) * 10_000,
                        start + (i + 1) * 10_000 + 8_000,
                        parent_span_id=root_id,
                        status="error" if error else "ok",
                        error=error,
                        attributes=attributes,
                    ),
                )
            )
        root = SpanRow(
            SERVICES[0],
            WireSpan(
                trace_id,
                root_id,
                f"agent.{agent}",
                "agent",
                start,
                start + per_trace * 10_000 + 5_000,
                attributes={"gen_ai.agent.name": agent, "http.route": "/v1/run"},
            ),
        )
        rows.extend(children)
        rows.append(root)  # a root ends last, so it is exported last
    return [rows[i : i + batch] for i in range(0, len(rows), batch)], trace_ids


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def write_all(store: Any, batches: list[list[SpanRow]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        if not store.submit(batch):
            # Full: the collector would answer 429. Wait for the writer to catch up.
            await store.flush()
            assert store.submit(batch)
    await store.flush()
    return time.perf_counter() - start


def naive_sqlite(path: Path, batches: list[list[SpanRow]]) -> float:
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE spans (trace_id TEXT, span_id TEXT, service TEXT, data TEXT,"
        " PRIMARY KEY (trace_id, span_id))"
    )
    connection.commit()
    start = time.perf_counter()
    for batch in batches:
        with connection:
            for row in batch:
                span = row.span
                connection.execute(
                    "INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?)",
                    (
                        span.trace_id,
                        span.span_id,
                        row.service,
                        json.dumps(msgspec.to_builtins(span)),
                    ),
                )
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


async def time_calls(call: Any, args: list[Any]) -> list[float]:
    samples = []
    for arg in args:
        start = time.perf_counter()
        await call(arg)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--per-trace", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--peer-spans", type=int, default=100_000, help="spans for the naive peer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store_bench.json")
    args = parser.parse_args()

    t0 = time.perf_counter()
    batches, trace_ids = make_batches(args.spans, args.per_trace, args.batch)
    total = sum(len(b) for b in batches)
    print(f"generated {total:,} spans in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    # The input is millions of live objects that a collector never holds at once
    # (its queue is bounded); keep the cyclic GC from walking them over and over.
    gc.collect()
    gc.freeze()
    peer_batches = batches[: max(1, args.peer_spans // args.batch)]
    peer_total = sum(len(b) for b in peer_batches)
    results: dict[str, Any] = {
        "load_average_at_start": os.getloadavg(),
        "spans": total,
        "spans_per_trace": args.per_trace,
        "batch": args.batch,
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
        },
    }

    with tempfile.TemporaryDirectory() as tmp:
        # Peers first, on a prefix of the same batches.
        peer_seconds = naive_sqlite(Path(tmp) / "naive.db", peer_batches)
        results["naive_sqlite_spans_per_s"] = peer_total / peer_seconds
        memory = MemoryStore(max_spans=peer_total)
        memory_seconds = await write_all(memory, peer_batches)
        results["memory_spans_per_s"] = peer_total / memory_seconds

        store = SQLiteStore(Path(tmp) / "rastir.db")
        await store.start()
        # The writer thread's own CPU time: what the store costs per span, whatever
        # else the machine runs (wall-clock throughput drops when cores are shared).
        writer = store._thread
        assert writer is not None
        assert writer.ident is not None
        clock = time.pthread_getcpuclockid(writer.ident)
        cpu_before = time.clock_gettime(clock)
        seconds = await write_all(store, batches)
        writer_cpu = time.clock_gettime(clock) - cpu_before
        stats = store.stats()
        assert stats.spans_stored == total, stats
        results["sqlite_spans_per_s"] = total / seconds
        results["sqlite_write_seconds"] = seconds
        results["sqlite_writer_cpu_us_per_span"] = writer_cpu / total * 1e6
        results["size_bytes"] = stats.size_bytes

        rng = random.Random(11)
        sample = rng.sample(trace_ids, min(args.lookups, len(trace_ids)))
        await time_calls(store.get_trace, sample[:50])  # warm the reader pool
        get_ms = await time_calls(store.get_trace, sample)
        listing: dict[str, list[float]] = {}
        for name, query in QUERIES.items():
            samples = listing[name] = []
            cursor = None
            for _ in range(100):  # 100 pages deep, 50 traces each
                start = time.perf_counter()
                page = await store.list_traces(dataclasses.replace(query, cursor=cursor))
                samples.append((time.perf_counter() - start) * 1e3)
                cursor = page.next_cursor  # at the end, start again from the top
        await store.close()

    tree_ms = time_build_tree(1000)
    results["get_trace_ms"] = summary(get_ms)
    results["build_tree_1000_spans_ms"] = summary(tree_ms)
    results["list_traces_ms"] = {name: summary(samples) for name, samples in listing.items()}
    results["load_average_at_end"] = os.getloadavg()

    ours, naive = results["sqlite_spans_per_s"], results["naive_sqlite_spans_per_s"]
    table = [
        ("SQLiteStore write (spans/s)", f"{ours:,.0f}", f"{ours / naive:.1f}x"),
        ("naive sqlite write (spans/s)", f"{naive:,.0f}", "1.0x"),
        ("MemoryStore write (spans/s)", f"{results['memory_spans_per_s']:,.0f}", ""),
        (
            "SQLiteStore writer thread CPU (us/span)",
            f"{results['sqlite_writer_cpu_us_per_span']:.2f}",
            "",
        ),
        ("get_trace p50 / p99 (ms)", pair(results["get_trace_ms"]), ""),
        ("build_tree, 1000 spans, p50 / p99 (ms)", pair(results["build_tree_1000_spans_ms"]), ""),
        *(
            (f"list_traces {name} p50 / p99 (ms)", pair(value), "")
            for name, value in results["list_traces_ms"].items()
        ),
        ("database size (MB)", f"{results['size_bytes'] / 1e6:.1f}", ""),
    ]
    print(f"\ntrace store, {total:,} spans ({args.per_trace}/trace, {args.batch}/batch)\n")
    print(f"| {'measure':<48} | {'value':>15} | {'vs naive sqlite':>15} |")
    print(f"|{'-' * 50}|{'-' * 17}|{'-' * 17}|")
    for label, value, ratio in table:
        print(f"| {label:<48} | {value:>15} | {ratio:>15} |")
    start_load, end_load = results["load_average_at_start"][0], results["load_average_at_end"][0]
    print(
        f"\n1-minute load average {start_load:.2f} at start, {end_load:.2f} at end,"
        f" on {os.cpu_count()} CPUs"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


QUERIES = {
    "newest 50": TraceQuery(),
    "agent=critic": TraceQuery(agent="critic"),
    "model=gpt-4o & status=error": TraceQuery(model="gpt-4o", status="error"),
    "service=tools & min_duration": TraceQuery(service="tools", min_duration_ns=50_000),
    "status=ok & before a time": TraceQuery(status="ok", end_ns=time.time_ns() - 3000 * 10**9),
}


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99)}


def pair(value: dict[str, float]) -> str:
    return f"{value['p50']:.3f} / {value['p99']:.3f}"


def time_build_tree(spans: int, rounds: int = 50) -> list[float]:
    """Assembly of one trace of ``spans`` spans: 10 agents of llm/tool calls, shuffled."""
    rng = random.Random(3)
    trace_id = f"{rng.getrandbits(128):032x}"
    ids = [f"{i + 1:016x}" for i in range(spans)]
    rows = [
        SpanRow(
            SERVICES[i % 3],
            WireSpan(
                trace_id,
                ids[i],
                f"step{i}",
                "llm" if i % 2 else "tool",
                T0 + i * 1000,
                T0 + i * 1000 + 500,
                # a root, 10 agents under it, everything else under an agent
                parent_span_id=None if i == 0 else ids[0] if i <= 10 else ids[1 + i % 10],
                attributes={"gen_ai.usage.input_tokens": i},
            ),
        )
        for i in range(spans)
    ]
    rng.shuffle(rows)  # arrival order, not tree order
    detail = TraceDetail(summarize(trace_id, rows), rows)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        build_tree(detail)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


T0 = 1_750_000_000_000_000_000


if __name__ == "__main__":
    anyio.run(main)
