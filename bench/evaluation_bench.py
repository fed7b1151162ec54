"""What server-side evaluation adds to ingest: the sink's cost per 100-span batch.

Run: ``python bench/evaluation_bench.py [--quick] [--rounds N]``. Prints a table and
writes ``bench/results/evaluation_bench.json``.

Each iteration decodes the collector benchmark's 100-span batch (40 LLM spans, here
with captured prompt and completion) and hands it to ``IngestEndpoint.accept()``: the
checks, the metrics, the memory store, then the sinks. This is the ingest path minus
HTTP. Variants, interleaved in one process:

* ``no evaluation``: the peer, no sink registered;
* ``3 evaluators, queue with room``: every LLM span selected by three evaluators,
  120 evaluations queued per batch (the queue is emptied after each batch, as the
  workers would, in every variant);
* ``3 evaluators, queue full``: the same, every evaluation dropped and counted;
* ``3 evaluators, sample 0.1``: sampling by trace id rejects 9 traces in 10;
* ``3 evaluators, other services``: no LLM span matches the service selector;
* ``sink alone: ...``: the evaluation sink by itself on the decoded batch, which is
  the whole of what evaluation adds to ingest (its "added" column is its own cost).

Workers are not running: judge calls happen off the ingest path and are not what is
measured. The goal (issue 10) is that evaluation leaves ingest unaffected; the table
shows the added µs per batch and the ratio to ingest without evaluation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
import anyio
import msgspec
from collector.payload import batch as payload_batch

from rastir._wire import WireBatch
from rastir.collector.evaluation import EvaluationConfig, EvaluationService, EvaluatorConfig
from rastir.collector.evaluation._queue import BoundedQueue
from rastir.collector.ingest import IngestEndpoint
from rastir.collector.metrics import Metrics
from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState
from rastir.collector.store.memory import MemoryStore

PROMPT = json.dumps(
    [{"role": "user", "parts": [{"type": "text", "content": "Plan a weekend in Lisbon. " * 8}]}]
)
COMPLETION = json.dumps(
    [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Day one: Alfama and the castle. " * 10}],
        }
    ]
)


def _body(seed: int) -> bytes:
    b = payload_batch(prefix="%08x" % (seed + 1), seed=seed)
    for s in b["spans"]:
        if s["kind"] == "llm":
            s["attributes"]["gen_ai.input.messages"] = PROMPT
            s["attributes"]["gen_ai.output.messages"] = COMPLETION
    return msgspec.json.encode(b)


def _evaluators(**extra: Any) -> EvaluationConfig:
    return EvaluationConfig(
        evaluators=[
            EvaluatorConfig(name="json", type="json_valid", **extra),
            EvaluatorConfig(name="policy", type="policy", options={"deny": ["x"]}, **extra),
            EvaluatorConfig(name="short", type="length", options={"max_chars": 900}, **extra),
        ]
    )


def _drive(coro: Any) -> None:
    """Run a coroutine that never suspends (queued ack, memory store) to its end."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("accept() suspended: the bench needs the queued ack mode")


async def main_async() -> None:
    args = h.base_parser(__doc__).parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    target = 2e7 if args.quick else 1e8
    settings = CollectorSettings(store="memory", memory_max_spans=20_000)
    bodies = [_body(i) for i in range(64)]
    decoder = msgspec.json.Decoder(WireBatch)

    def setup(config: EvaluationConfig | None, capacity: int) -> Callable[[int], tuple[int, int]]:
        metrics = Metrics()
        store = MemoryStore(max_spans=settings.memory_max_spans)
        state = CollectorState(settings, store)
        state.started = True
        ingest = IngestEndpoint(settings, metrics, state)
        if config is not None:
            service = EvaluationService(settings, metrics, ingest.accept, config=config)
            queue: BoundedQueue[Any] = BoundedQueue(capacity)
            service._queue = queue
            state.sinks.append(service.sink)
            if capacity == 0:
                queue.capacity = 0
        else:
            queue = BoundedQueue(0)

        def run(n: int) -> tuple[int, int]:
            w0, c0 = h.wall_ns(), h.cpu_ns()
            for i in range(n):
                b = decoder.decode(bodies[i & 63])
                _drive(ingest.accept("bench-app", b.resource, b.spans, 0))
                queue.clear()  # the workers' part, in every variant alike
            return h.wall_ns() - w0, h.cpu_ns() - c0

        return run

    def sink_only(config: EvaluationConfig, capacity: int) -> Callable[[int], tuple[int, int]]:
        async def accept(*args: Any) -> int:
            return 0

        service = EvaluationService(settings, Metrics(), accept, config=config)
        queue: BoundedQueue[Any] = BoundedQueue(capacity)
        service._queue = queue
        decoded = [decoder.decode(body) for body in bodies]

        def run(n: int) -> tuple[int, int]:
            sink = service.sink
            w0, c0 = h.wall_ns(), h.cpu_ns()
            for i in range(n):
                b = decoded[i & 63]
                sink("bench-app", b.resource, b.spans)
                queue.clear()
            return h.wall_ns() - w0, h.cpu_ns() - c0

        return run

    variants = [
        h.Variant("no evaluation (peer)", setup(None, 0)),
        h.Variant("3 evaluators, queue with room", setup(_evaluators(), 1000)),
        h.Variant("3 evaluators, queue full", setup(_evaluators(), 0)),
        h.Variant("3 evaluators, sample 0.1", setup(_evaluators(sample=0.1), 10**9)),
        h.Variant("3 evaluators, other services", setup(_evaluators(services=["x"]), 10**9)),
        h.Variant("sink alone: queue with room", sink_only(_evaluators(), 1000)),
        h.Variant("sink alone: queue full", sink_only(_evaluators(), 0)),
        h.Variant("sink alone: sample 0.1", sink_only(_evaluators(sample=0.1), 1000)),
    ]
    h.interleave(variants, rounds=rounds, target_ns=target)
    peer = h.median(variants[0].samples["cpu"])
    rows = []
    results: dict[str, dict[str, float | list[float]]] = {}
    for v in variants:
        cpu = h.median(v.samples["cpu"])
        added = h.median(h.paired(v, variants[0])) if "alone" not in v.name else cpu
        lo, hi = h.spread(v.samples["cpu"])
        rows.append(
            [
                v.name,
                f"{cpu / 1000:,.1f}",
                f"{lo / 1000:,.1f}-{hi / 1000:,.1f}",
                f"{added / 1000:+,.1f}",
                h.fmt_ratio(cpu, peer),
            ]
        )
        results[v.name] = {"cpu_ns": cpu, "added_cpu_ns": added, "iqr_cpu_ns": [lo, hi]}
    print(
        h.table(
            ["variant", "µs/batch (CPU)", "IQR", "added µs", "vs no evaluation"],
            rows,
            title=f"decode + accept() of a 100-span batch (40 LLM), {rounds} rounds; "
            f"{h.load_note()}",
        )
    )
    if not args.no_json:
        path = h.write_json("evaluation_bench", {"results": results}, quick=args.quick)
        print(f"wrote {path}")


if __name__ == "__main__":
    anyio.run(main_async)
