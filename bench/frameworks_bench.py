"""Cost of ``@langgraph_agent`` on a real compiled ReAct graph, against LangChain's tracer.

Run: ``python bench/frameworks_bench.py [--quick] [--rounds N]``. Prints a table and
writes ``bench/results/frameworks_bench.json``.

One ``graph.invoke`` of the test suite's ReAct graph (``tests/frameworks/react_graph.py``:
three model turns, two tool calls, 11 spans when traced). Variants, interleaved in one
process:

* ``bare``: the graph, nothing else;
* ``rastir``: the same call under ``@langgraph_agent`` (rastir configured without an
  exporter, so spans are built and handed to the pipeline, then dropped);
* ``langchain tracer``: the same call inside ``collect_runs()``, LangChain's in-memory
  run collector (the tracer half of LangSmith tracing, without the network): the peer.

Overheads are paired with ``bare`` within each round; the median over rounds is
reported. Clocks: wall time, and the process's CPU time (LangGraph runs tools on a
thread pool, so the calling thread's CPU alone would miss work).
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from _harness import (
    ROOT,
    Variant,
    base_parser,
    interleave,
    load_note,
    machine_info,
    median,
    paired,
    spread,
    table,
    write_json,
)

sys.path.insert(0, str(ROOT))

from langchain_core.tracers.context import collect_runs

import rastir
from tests.frameworks.react_graph import build_graph

INPUT = {"messages": [("user", "add 2 and 3, then multiply by 4")]}


def main() -> None:
    args = base_parser(__doc__).parse_args()
    rounds = 5 if args.quick else args.rounds
    target_ns = (50 if args.quick else 200) * 1e6
    rastir.configure(service="bench")
    graph = build_graph()

    def bare_call() -> Any:
        return graph.invoke(INPUT)

    @rastir.langgraph_agent(agent_name="bench")
    def traced_call() -> Any:
        return graph.invoke(INPUT)

    def peer_call() -> Any:
        with collect_runs():
            return graph.invoke(INPUT)

    def runner(fn: Any) -> Any:
        def run(n: int) -> tuple[int, int]:
            gc.disable()
            try:
                w0, c0 = time.perf_counter_ns(), time.process_time_ns()
                for _ in range(n):
                    fn()
                return time.perf_counter_ns() - w0, time.process_time_ns() - c0
            finally:
                gc.enable()

        return run

    variants = [
        Variant("bare", runner(bare_call)),
        Variant("rastir", runner(traced_call)),
        Variant("langchain tracer", runner(peer_call)),
    ]
    interleave(variants, rounds=rounds, target_ns=target_ns, between=gc.collect)
    bare, ours, peer = variants
    rows = []
    result: dict[str, Any] = {}
    for clock in ("wall", "cpu"):
        base = median(bare.samples[clock])
        ours_over = paired(ours, bare, clock)
        peer_over = paired(peer, bare, clock)
        o, p = median(ours_over), median(peer_over)
        rows.append(
            (
                clock,
                f"{base / 1e3:.0f} µs",
                f"{o / 1e3:+.0f} µs ({o / base:+.1%})",
                f"{p / 1e3:+.0f} µs ({p / base:+.1%})",
                f"{o / p:.2f}" if p > 0 else "n/a",
            )
        )
        result[clock] = {
            "bare_ns": base,
            "rastir_over_ns": o,
            "rastir_iqr_ns": spread(ours_over),
            "peer_over_ns": p,
            "peer_iqr_ns": spread(peer_over),
        }
    print(
        table(
            ["clock", "bare invoke", "rastir", "langchain tracer", "rastir/peer"],
            rows,
            title=f"ReAct graph invoke (3 model turns, 2 tools), median of {rounds} rounds",
        )
    )
    print(load_note())
    write_json(
        "frameworks_bench",
        {"machine": machine_info(), "rounds": rounds, "results": result},
        quick=args.quick,
    )
    rastir.shutdown()


if __name__ == "__main__":
    main()
