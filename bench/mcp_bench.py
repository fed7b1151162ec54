"""Overhead of the MCP bridge on an in-memory ``call_tool``, against the bare call.

Run: ``python bench/mcp_bench.py [--quick] [--rounds N]``. Prints a table and writes
``bench/results/mcp_bench.json``.

The transport is mcp's in-memory JSON-RPC (``Client(server, mode="legacy")``): client
and server run in one event loop, as tasks talking over memory streams, with the full
JSON-RPC dispatch on both sides, so the whole MCP round trip is on that loop's thread.
Variants, all in one process, all connected before timing starts:

* ``bare``: a plain ``Client`` calling a plain async tool (``add``);
* ``bare+traceparent``: the plain client passing a constant ``traceparent`` in ``meta``:
  what mcp itself spends carrying a trace context (validating ``_meta`` on both sides,
  and its server middleware extracting the context), with no rastir at all. The
  difference between ``wrapped`` and this is rastir's own share;
* ``wrapped``: the same client under ``rastir.wrap`` (an ``mcp.client`` span and the
  ``_meta`` merge): **the goal, at most 3 % over bare**;
* ``wrapped+endpoint``: the wrapped client calling the same tool under
  ``@mcp_endpoint`` (a client and a server span per call: the whole bridge);
* and the same four over mcp's direct in-process dispatcher (``mode="auto"``), for
  reference: a much cheaper call, so the same microseconds weigh more.

Each round runs every variant for about ``--target-ms`` (interleaved, order rotated),
and a variant's overhead is paired with ``bare`` within the round; the median over
rounds is reported. The clock is the event-loop thread's CPU time, which holds the
whole round trip and leaves out other processes; wall time is printed beside it.
Garbage collection is off inside a timed run and runs between runs, as in timeit.
Spans go into rastir's real queue, drained by a thread standing in for the exporter.

``--instructions`` adds a figure no neighbour can disturb: each variant runs in a
child process under ``valgrind --tool=callgrind``, once with N calls and once with 3N,
and the difference in executed instructions over 2N is the cost of one call
(start-up, imports and warm-up cancel out; ``PYTHONHASHSEED=0``). Slow (minutes),
needs Debian's ``valgrind``; in-memory JSON-RPC only.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
from mcp import Client
from mcp.server.mcpserver import MCPServer

import rastir
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge import mcp_endpoint

T = TypeVar("T")
GOAL_PCT = 3.0
WARMUP_CALLS = 200
ARGS = {"a": 2, "b": 3}


def make_server(traced: bool) -> MCPServer:
    server = MCPServer("bench")

    async def add(a: int, b: int) -> int:
        return a + b

    server.tool()(mcp_endpoint(add) if traced else add)
    return server


class Drain:
    """Empties rastir's span queue on a thread of its own, as the exporter would."""

    def __init__(self) -> None:
        self.taken = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-drain", daemon=True)

    def start(self) -> None:
        rastir.configure(service="mcp-bench", push_url=None)
        PIPELINE.queueing = True
        PIPELINE.max_queue = 1 << 20
        PIPELINE.on_wake = self._wake.set
        PIPELINE.wake_at = 512
        self._thread.start()

    def _run(self) -> None:
        queue = PIPELINE.queue
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            PIPELINE.woken()
            while queue:
                queue.popleft()
                self.taken += 1

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        PIPELINE.on_wake = None
        PIPELINE.wake_at = 1 << 62
        PIPELINE.queueing = False
        PIPELINE.queue.clear()


class LoopHost:
    """One event loop on its own thread, holding every client open between rounds."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()
        self._release: asyncio.Event | None = None
        self._holders: list[Future[None]] = []

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def open(self, client: Any) -> Any:
        """Enter ``client`` in a task that stays until :meth:`close`."""
        entered: Future[Any] = Future()

        async def hold() -> None:
            if self._release is None:
                self._release = asyncio.Event()
            async with client as c:
                await c.list_tools()  # the tool's schema is known before timing
                entered.set_result(c)
                await self._release.wait()

        self._holders.append(asyncio.run_coroutine_threadsafe(hold(), self.loop))
        return entered.result(30)

    def close(self) -> None:
        if self._release is not None:
            self.loop.call_soon_threadsafe(self._release.set)
        for holder in self._holders:
            holder.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def runner(host: LoopHost, client: Any, **kwargs: Any) -> h.Runner:
    call = client.call_tool

    async def many(n: int) -> tuple[int, int]:
        # As timeit does: no collection inside a timed run (one runs between runs).
        gc.disable()
        try:
            wall0, cpu0 = h.wall_ns(), h.cpu_ns()
            for _ in range(n):
                await call("add", ARGS, **kwargs)
            return h.wall_ns() - wall0, h.cpu_ns() - cpu0
        finally:
            gc.enable()

    def run(n: int) -> tuple[int, int]:
        return host.run(many(n))

    return run


def suite(host: LoopHost, mode: str) -> list[h.Variant]:
    plain, traced = make_server(False), make_server(True)
    return [
        h.Variant("bare", runner(host, host.open(Client(plain, mode=mode)))),
        h.Variant(
            "bare+traceparent",
            runner(host, host.open(Client(plain, mode=mode)), meta=TRACEPARENT),
        ),
        h.Variant("wrapped", runner(host, host.open(rastir.wrap(Client(plain, mode=mode))))),
        h.Variant(
            "wrapped+endpoint", runner(host, host.open(rastir.wrap(Client(traced, mode=mode))))
        ),
    ]


def summarize(variants: list[h.Variant], clock: str, judged: bool) -> list[dict[str, Any]]:
    bare = variants[0]
    rows = []
    for v in variants:
        per_call = h.median(v.samples[clock])
        rec: dict[str, Any] = {
            "variant": v.name,
            "calls_per_round": v.n,
            "us_per_call": round(per_call / 1e3, 2),
            "us_per_call_wall": round(h.median(v.samples["wall"]) / 1e3, 2),
        }
        if v is not bare:
            diffs = h.paired(v, bare, clock)
            pct = [100 * d / b for d, b in zip(diffs, bare.samples[clock], strict=True)]
            low, high = h.spread(pct)
            rec["overhead_us"] = round(h.median(diffs) / 1e3, 2)
            rec["overhead_pct"] = round(h.median(pct), 2)
            rec["overhead_pct_iqr"] = [round(low, 2), round(high, 2)]
            if judged and v.name == "wrapped":
                rec["goal_pct"] = GOAL_PCT
                rec["status"] = h.verdict(rec["overhead_pct"], GOAL_PCT)
        rows.append(rec)
    return rows


def render(rows: list[dict[str, Any]], title: str, clock: str) -> str:
    return h.table(
        [
            "variant",
            f"µs/call ({clock})",
            "µs/call (wall)",
            "overhead µs",
            "overhead %",
            "IQR %",
            "goal",
        ],
        [
            [
                r["variant"],
                f"{r['us_per_call']:.1f}",
                f"{r['us_per_call_wall']:.1f}",
                f"{r['overhead_us']:+.2f}" if "overhead_us" in r else "",
                f"{r['overhead_pct']:+.2f}" if "overhead_pct" in r else "",
                "{:+.2f} .. {:+.2f}".format(*r["overhead_pct_iqr"])
                if "overhead_pct_iqr" in r
                else "",
                f"≤ {r['goal_pct']:.0f} % {r['status']}" if "status" in r else "",
            ]
            for r in rows
        ],
        title=title,
    )


def _collect() -> None:
    gc.collect()


# -- instruction counts (--instructions) -------------------------------------------------
IR_VARIANTS = ("bare", "bare+traceparent", "wrapped", "wrapped+endpoint")


def ir_child(variant: str, n: int) -> None:
    """Run in a child under callgrind: connect, warm up, then ``n`` calls of ``variant``."""
    import anyio

    rastir.configure(service="mcp-bench", push_url=None)
    server = make_server(variant == "wrapped+endpoint")
    extra = {"meta": TRACEPARENT} if variant == "bare+traceparent" else {}

    async def go() -> None:
        client: Any = Client(server, mode="legacy")
        if variant.startswith("wrapped"):
            client = rastir.wrap(client)
        async with client:
            await client.list_tools()
            for _ in range(30):
                await client.call_tool("add", ARGS, **extra)
            gc.collect()
            gc.disable()
            for _ in range(n):
                await client.call_tool("add", ARGS, **extra)

    anyio.run(go)


def _ir_env(pycache: str) -> dict[str, str]:
    """The children's environment: a fixed hash seed, and bytecode from ``pycache``.

    An untimed run fills ``pycache`` first, so neither callgrind run compiles modules
    the other does not (as happens where PYTHONDONTWRITEBYTECODE is set, or when a
    source file is edited while the bench runs).
    """
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONHASHSEED="0", PYTHONPYCACHEPREFIX=pycache)
    return env


def _instructions(variant: str, n: int, pycache: str) -> int:
    import re
    import subprocess

    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--ir-child", variant, str(n)]
    out = subprocess.run(command, capture_output=True, text=True, env=_ir_env(pycache), check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total for {variant}: {out.stderr[-2000:]}")
    return int(found.group(1))


def instruction_counts(n: int) -> list[dict[str, Any]]:
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(v, k) for v in IR_VARIANTS for k in (n, 3 * n)]
    with tempfile.TemporaryDirectory(prefix="rastir-bench-pyc-") as pycache:
        for v in IR_VARIANTS:  # untimed: fills the bytecode cache
            command = [sys.executable, __file__, "--ir-child", v, "1"]
            subprocess.run(command, capture_output=True, env=_ir_env(pycache), check=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = list(pool.map(lambda job: _instructions(job[0], job[1], pycache), jobs))
    totals = dict(zip(jobs, counts, strict=True))
    per_call = {v: (totals[(v, 3 * n)] - totals[(v, n)]) / (2 * n) for v in IR_VARIANTS}
    bare = per_call["bare"]
    rows = []
    for v in IR_VARIANTS:
        rec: dict[str, Any] = {"variant": v, "instructions_per_call": round(per_call[v])}
        if v != "bare":
            rec["overhead_instructions"] = round(per_call[v] - bare)
            rec["overhead_pct"] = round(100 * (per_call[v] - bare) / bare, 2)
        if v == "wrapped":
            rec["goal_pct"] = GOAL_PCT
            rec["status"] = h.verdict(rec["overhead_pct"], GOAL_PCT)
        rows.append(rec)
    return rows


def render_ir(rows: list[dict[str, Any]], n: int) -> str:
    return h.table(
        ["variant", "instructions/call", "overhead", "overhead %", "goal"],
        [
            [
                r["variant"],
                f"{r['instructions_per_call']:,}",
                f"{r['overhead_instructions']:+,}" if "overhead_instructions" in r else "",
                f"{r['overhead_pct']:+.2f}" if "overhead_pct" in r else "",
                f"≤ {r['goal_pct']:.0f} % {r['status']}" if "status" in r else "",
            ]
            for r in rows
        ],
        title=f"instructions per call, callgrind ({n} and {3 * n} calls per child)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ir-child"]:
        ir_child(argv[1], int(argv[2]))
        return 0
    parser = h.base_parser(__doc__)
    parser.add_argument("--clock", choices=h.CLOCKS, default="cpu")
    parser.add_argument("--target-ms", type=float, default=None, help="per variant per round")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per call under callgrind (needs valgrind; minutes)",
    )
    parser.add_argument("--ir-calls", type=int, default=100, help="N for --instructions")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 31)
    target_ns = (args.target_ms or (20.0 if args.quick else 100.0)) * 1e6

    drain = Drain()
    drain.start()
    host = LoopHost()
    results: dict[str, list[dict[str, Any]]] = {}
    titles = {
        "legacy": "in-memory JSON-RPC (Client(server, mode='legacy'))",
        "direct": "direct in-process dispatcher (Client(server), mode='auto'), for reference",
    }
    t_start = time.monotonic()
    try:
        for name, mode in (("legacy", "legacy"), ("direct", "auto")):
            variants = suite(host, mode)
            # The first calls of a connection build pydantic validators and warm the
            # interpreter's specialisations: out of every clock, and before calibration
            # (a cold first variant would otherwise be calibrated to a handful of calls
            # per run, each run then dominated by cache-cold calls after gc.collect).
            for v in variants:
                v.run(WARMUP_CALLS)
            gc.collect()
            h.interleave(variants, rounds=rounds, target_ns=target_ns, between=_collect)
            results[name] = summarize(variants, args.clock, judged=name == "legacy")
            print(render(results[name], titles[name], args.clock), end="\n\n", flush=True)
    finally:
        host.close()
        drain.stop()
    ir_rows: list[dict[str, Any]] | None = None
    if args.instructions:
        ir_rows = instruction_counts(args.ir_calls)
        print(render_ir(ir_rows, args.ir_calls), end="\n\n", flush=True)
    elapsed = time.monotonic() - t_start
    statuses = {"time": next(r["status"] for r in results["legacy"] if r["variant"] == "wrapped")}
    if ir_rows is not None:
        statuses["instructions"] = next(r["status"] for r in ir_rows if r["variant"] == "wrapped")
    # Both must pass: a timed PASS on a busy machine is not a pass.
    status = "PASS" if all(v == "PASS" for v in statuses.values()) else "FAIL"
    status = f"{status} ({', '.join(f'{k} {v}' for k, v in statuses.items())})"
    checks = {"rastir_spans_drained": drain.taken, "rastir_spans_dropped": PIPELINE.dropped}
    print(f"{status}; {rounds} rounds; {elapsed:.1f} s; {h.load_note()}; {checks}")
    if not args.no_json:
        path = h.write_json(
            "mcp_bench",
            {
                "rounds": rounds,
                "clock": args.clock,
                "target_ms_per_run": target_ns / 1e6,
                "goal": f"wrapped call_tool ≤ {GOAL_PCT:.0f} % over bare, in-memory JSON-RPC",
                "summary": status,
                "verdicts": statuses,
                "checks": checks,
                "packages": {"mcp": metadata.version("mcp")},
                "suites": results,
                "instructions": ir_rows,
            },
            quick=args.quick,
        )
        print(f"wrote {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
