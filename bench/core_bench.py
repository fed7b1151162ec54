"""Per-call overhead of the rastir decorators against a bare function and the OTel SDK.

Run: ``python bench/core_bench.py [--quick] [--rounds N]``. Prints a table and writes
``bench/results/core_bench.json``.

What is measured, per call, in one process:

* ``@rastir.trace`` on a trivial sync function; the same with 6 constant attributes
  (``trace(attributes=...)``) and with 6 attributes set inside the function through
  ``rastir.current_span().set_attribute``;
* an ``async def`` under ``@rastir.trace``, awaited in a loop in one event loop;
* ``@rastir.llm`` on a function returning an OpenAI-style dict, called with
  ``model=``; and, when ``openai`` is installed, returning a real ``ChatCompletion``.
  Both run the whole adapter pipeline (request phase, response phase, cost); each
  decorated function is called once before timing, since the first ``@llm`` call
  imports the adapters and loads the price data;
* every decorator with ``rastir.configure(enabled=False)``.

The peer is the OpenTelemetry SDK in the same run: a ``TracerProvider`` with a
``BatchSpanProcessor`` whose exporter drops every batch, used as a decorator
(``@tracer.start_as_current_span("x")``) and as ``with tracer.start_as_current_span``,
with the same attributes set the same way.

Where rastir's spans go: ``configure(push_url=None)`` keeps no queue, which would
leave out the queue append. So the spans go into the real ``PIPELINE`` deque
(``queueing = True``, a large ``max_queue``) and a drain thread stands in for the
exporter: ``PIPELINE.on_end`` wakes it every 512 spans exactly as it wakes the real
exporter, and it takes the spans off the queue and drops them, which is what OTel's
``BatchSpanProcessor`` does with the dropping exporter. Both therefore pay for the
span, the queue append, the wake-up and freeing the span on the other thread; neither
pays for encoding (see ``exporter_bench.py`` for that).

Overhead = (ns per call of the variant) - (ns per call of its bare baseline), paired
within each round; the median over rounds is reported. The verdicts use the calling
thread's CPU time (``time.thread_time_ns``), which a busy machine's other processes
do not inflate and which leaves out the drain thread's work (as it leaves out the
BatchSpanProcessor worker's); wall time is printed beside it, and ``--clock wall``
judges on it instead.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

import rastir
from rastir.export._pipeline import PIPELINE

wall, cpu = h.wall_ns, h.cpu_ns

# Goals, from PERFORMANCE.md.
GOAL_TRACE_NS = 1000.0
GOAL_TRACE_RATIO = 1 / 25
GOAL_DISABLED_NS = 200.0
GOAL_LLM_NS = 5000.0

ATTRS: dict[str, Any] = {
    "app.user_id": "u-1234",
    "app.tenant": "acme",
    "app.route": "/v1/chat",
    "app.request_bytes": 512,
    "app.cache_hit": False,
    "app.score": 0.75,
}
MODEL = "gpt-4o"
MESSAGES = [{"role": "user", "content": "Say hi"}]
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi!"},
            "finish_reason": "stop",
        }
    ],
}


# -- the sinks -------------------------------------------------------------------------------
class DropExporter(SpanExporter):
    """OTel exporter that drops every batch (counting them)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class QueueDrain:
    """Stands in for rastir's exporter thread: wakes on full batches, drops the spans.

    It is wired to ``PIPELINE`` exactly as ``BatchExporter`` is (``on_wake``,
    ``wake_at`` = batch size, ``woken()``), so the application side runs the same code
    it runs in production.
    """

    def __init__(self, batch_size: int = 512) -> None:
        self.batch_size = batch_size
        self.taken = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-drain", daemon=True)

    def start(self) -> None:
        rastir.configure(service="core-bench", push_url=None, enabled=True)
        PIPELINE.queueing = True
        PIPELINE.max_queue = 1 << 20  # never drop: the drop path is not what we measure
        PIPELINE.on_wake = self._on_wake
        PIPELINE.wake_at = self.batch_size
        self._thread.start()

    def _on_wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        q = PIPELINE.queue
        size = self.batch_size
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            PIPELINE.woken()
            while q:
                batch = []
                try:
                    for _ in range(size):
                        batch.append(q.popleft())
                except IndexError:
                    pass
                self.taken += len(batch)
                del batch

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        PIPELINE.on_wake = None
        PIPELINE.wake_at = 1 << 62
        PIPELINE.queue.clear()


# -- runners -----------------------------------------------------------------------------------
# Each returns (wall ns, this thread's CPU ns) for n calls; the loops are identical for
# a variant and its baseline, so loop overhead cancels in the difference.
def call0(fn: Callable[[], Any]) -> h.Runner:
    def run(n: int) -> tuple[int, int]:
        w0, c0 = wall(), cpu()
        for _ in repeat(None, n):
            fn()
        return wall() - w0, cpu() - c0

    return run


def call_llm(fn: Callable[..., Any]) -> h.Runner:
    messages, model = MESSAGES, MODEL

    def run(n: int) -> tuple[int, int]:
        w0, c0 = wall(), cpu()
        for _ in repeat(None, n):
            fn(messages, model=model)
        return wall() - w0, cpu() - c0

    return run


def await0(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[Any]]) -> h.Runner:
    async def body(n: int) -> tuple[int, int]:
        w0, c0 = wall(), cpu()
        for _ in repeat(None, n):
            await fn()
        return wall() - w0, cpu() - c0

    def run(n: int) -> tuple[int, int]:
        return loop.run_until_complete(body(n))

    return run


# -- rows ----------------------------------------------------------------------------------------
@dataclass
class Row:
    """One variant and how it is judged."""

    variant: h.Variant
    suite: str
    baseline: str | None = None  # name of the bare variant it is paired with
    peers: tuple[str, ...] = ()  # OTel variants it is compared with: the cheapest is the peer
    goal_ns: float | None = None
    goal_ratio: float | None = None
    note: str = ""


def build_suites(tracer: Any, loop: asyncio.AbstractEventLoop) -> dict[str, list[Row]]:
    """Each suite is interleaved on its own; every row's baseline is in its suite."""
    start_span = tracer.start_as_current_span
    a = ATTRS
    k1, k2, k3, k4, k5, k6 = a
    v1, v2, v3, v4, v5, v6 = a.values()

    # -- sync
    def bare() -> int:
        return 1

    def r_dynamic() -> int:
        span = rastir.current_span()
        if span is not None:
            span.set_attribute(k1, v1)
            span.set_attribute(k2, v2)
            span.set_attribute(k3, v3)
            span.set_attribute(k4, v4)
            span.set_attribute(k5, v5)
            span.set_attribute(k6, v6)
        return 1

    def otel_with() -> int:
        with start_span("x"):
            return 1

    def otel_with_static() -> int:
        with start_span("x", attributes=a):
            return 1

    def otel_with_attrs() -> int:
        with start_span("x") as span:
            span.set_attribute(k1, v1)
            span.set_attribute(k2, v2)
            span.set_attribute(k3, v3)
            span.set_attribute(k4, v4)
            span.set_attribute(k5, v5)
            span.set_attribute(k6, v6)
            return 1

    r_trace = rastir.trace(bare)
    r_static = rastir.trace(attributes=a)(bare)
    r_dyn = rastir.trace(r_dynamic)
    o_deco = start_span("x")(bare)
    o_deco_attrs = start_span("x", attributes=a)(bare)

    sync = [
        Row(h.Variant("bare sync", call0(bare)), "sync"),
        Row(
            h.Variant("rastir @trace", call0(r_trace)),
            "sync",
            "bare sync",
            ("otel with", "otel @decorator"),
            GOAL_TRACE_NS,
            GOAL_TRACE_RATIO,
        ),
        Row(h.Variant("otel with", call0(otel_with)), "sync", "bare sync"),
        Row(h.Variant("otel @decorator", call0(o_deco)), "sync", "bare sync"),
        Row(
            h.Variant("rastir @trace(attributes=6)", call0(r_static)),
            "sync",
            "bare sync",
            ("otel with(attributes=6)", "otel @decorator(attributes=6)"),
            GOAL_TRACE_NS,
            GOAL_TRACE_RATIO,
        ),
        Row(h.Variant("otel with(attributes=6)", call0(otel_with_static)), "sync", "bare sync"),
        Row(h.Variant("otel @decorator(attributes=6)", call0(o_deco_attrs)), "sync", "bare sync"),
        Row(
            h.Variant("rastir @trace + 6 set_attribute", call0(r_dyn)),
            "sync",
            "bare sync",
            ("otel with + 6 set_attribute",),
            None,
            GOAL_TRACE_RATIO,
            "1 µs goal is for the span; the 6 calls are user code",
        ),
        Row(h.Variant("otel with + 6 set_attribute", call0(otel_with_attrs)), "sync", "bare sync"),
    ]

    # -- async
    async def abare() -> int:
        return 1

    async def otel_awith() -> int:
        with start_span("x"):
            return 1

    r_async = rastir.trace(abare)
    o_adeco = start_span("x")(abare)
    asyn = [
        Row(h.Variant("bare async", await0(loop, abare)), "async"),
        Row(
            h.Variant("rastir @trace async", await0(loop, r_async)),
            "async",
            "bare async",
            ("otel with async", "otel @decorator async"),
            GOAL_TRACE_NS,
            GOAL_TRACE_RATIO,
        ),
        Row(h.Variant("otel with async", await0(loop, otel_awith)), "async", "bare async"),
        Row(h.Variant("otel @decorator async", await0(loop, o_adeco)), "async", "bare async"),
    ]

    # -- llm
    def chat(messages: list[dict[str, str]], model: str) -> dict[str, Any]:
        return RESPONSE

    def otel_chat(messages: list[dict[str, str]], model: str) -> Any:
        with start_span("chat") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", model)
            result = chat(messages, model=model)
            span.set_attribute("gen_ai.response.model", result["model"])
            span.set_attribute("gen_ai.response.id", result["id"])
            usage = result["usage"]
            span.set_attribute("gen_ai.usage.input_tokens", usage["prompt_tokens"])
            span.set_attribute("gen_ai.usage.output_tokens", usage["completion_tokens"])
            span.set_attribute(
                "gen_ai.response.finish_reasons", [c["finish_reason"] for c in result["choices"]]
            )
            return result

    # The first @llm call imports the adapters and loads the price data (once per
    # process, ≈ 0.3 s); calibration must not mistake that for the per-call cost.
    r_chat = _warmed(rastir.llm(chat))
    llm = [
        Row(h.Variant("bare chat()", call_llm(chat)), "llm"),
        Row(
            h.Variant("rastir @llm (dict)", call_llm(r_chat)),
            "llm",
            "bare chat()",
            ("otel manual gen_ai attrs (dict)",),
            GOAL_LLM_NS,
        ),
        Row(
            h.Variant("otel manual gen_ai attrs (dict)", call_llm(otel_chat)), "llm", "bare chat()"
        ),
    ]
    completion = _chat_completion()
    if completion is not None:

        def chat_obj(messages: list[dict[str, str]], model: str) -> Any:
            return completion

        def otel_chat_obj(messages: list[dict[str, str]], model: str) -> Any:
            with start_span("chat") as span:
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.request.model", model)
                result = chat_obj(messages, model=model)
                span.set_attribute("gen_ai.response.model", result.model)
                span.set_attribute("gen_ai.response.id", result.id)
                usage = result.usage
                span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
                span.set_attribute(
                    "gen_ai.response.finish_reasons", [c.finish_reason for c in result.choices]
                )
                return result

        llm += [
            Row(
                h.Variant(
                    "rastir @llm (openai ChatCompletion)", call_llm(_warmed(rastir.llm(chat_obj)))
                ),
                "llm",
                "bare chat()",
                ("otel manual gen_ai attrs (ChatCompletion)",),
                GOAL_LLM_NS,
            ),
            Row(
                h.Variant("otel manual gen_ai attrs (ChatCompletion)", call_llm(otel_chat_obj)),
                "llm",
                "bare chat()",
            ),
        ]

    # -- disabled: configure(enabled=False) for the whole suite
    disabled = [
        Row(h.Variant("bare sync ", call0(bare)), "disabled"),
        Row(
            h.Variant("disabled @trace", call0(rastir.trace(bare))),
            "disabled",
            "bare sync ",
            (),
            GOAL_DISABLED_NS,
        ),
        Row(
            h.Variant("disabled @trace(attributes=6)", call0(rastir.trace(attributes=a)(bare))),
            "disabled",
            "bare sync ",
            (),
            GOAL_DISABLED_NS,
        ),
        Row(h.Variant("bare chat() ", call_llm(chat)), "disabled"),
        Row(
            h.Variant("disabled @llm", call_llm(rastir.llm(chat))),
            "disabled",
            "bare chat() ",
            (),
            GOAL_DISABLED_NS,
        ),
        Row(h.Variant("bare async ", await0(loop, abare)), "disabled"),
        Row(
            h.Variant("disabled @trace async", await0(loop, rastir.trace(abare))),
            "disabled",
            "bare async ",
            (),
            GOAL_DISABLED_NS,
        ),
    ]
    return {"sync": sync, "async": asyn, "llm": llm, "disabled": disabled}


def _warmed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` after one untimed call (one-time imports and data loads happen there)."""
    fn(MESSAGES, model=MODEL)
    return fn


def _chat_completion() -> Any:
    """A real ``openai`` ChatCompletion built offline, or None without openai."""
    try:
        from openai.types.chat import ChatCompletion
    except ImportError:
        return None
    return ChatCompletion.model_validate(RESPONSE)


# -- reporting --------------------------------------------------------------------------------------
def summarize(rows: list[Row], clock: str) -> list[dict[str, Any]]:
    """Medians per clock; verdicts on ``clock``."""
    by_name = {r.variant.name: r for r in rows}

    def over(name: str, c: str) -> float:
        r = by_name[name]
        assert r.baseline is not None
        return h.median(h.paired(r.variant, by_name[r.baseline].variant, c))

    out: list[dict[str, Any]] = []
    for r in rows:
        v = r.variant
        rec: dict[str, Any] = {
            "name": v.name.strip(),
            "suite": r.suite,
            "iterations_per_round": v.n,
            "baseline": r.baseline.strip() if r.baseline else None,
        }
        for c in h.CLOCKS:
            m: dict[str, Any] = {
                "ns_per_call_median": h.median(v.samples[c]),
                "ns_per_call_rounds": [round(x, 1) for x in v.samples[c]],
            }
            rec[c] = m
            if r.baseline is not None:
                diffs = h.paired(v, by_name[r.baseline].variant, c)
                m["overhead_ns_median"] = h.median(diffs)
                m["overhead_ns_iqr"] = list(h.spread(diffs))
            if r.peers:
                po, peer = min((over(p, c), p) for p in r.peers)
                m["peer"] = peer
                m["peer_overhead_ns"] = po
                m["ratio_vs_peer"] = m["overhead_ns_median"] / po if po > 0 else None
        statuses: list[str] = []
        main = rec[clock]
        if r.peers:
            rec["peer"] = main["peer"]
            if r.goal_ratio is not None and main["ratio_vs_peer"] is not None:
                rec["goal_ratio"] = r.goal_ratio
                statuses.append(h.verdict(main["ratio_vs_peer"], r.goal_ratio))
        if r.goal_ns is not None:
            rec["goal_ns"] = r.goal_ns
            statuses.append(h.verdict(main["overhead_ns_median"], r.goal_ns))
        if statuses:
            rec["status"] = "FAIL" if "FAIL" in statuses else "PASS"
        if r.note:
            rec["note"] = r.note
        out.append(rec)
    return out


def render(records: list[dict[str, Any]], suite: str, clock: str) -> str:
    other = "wall" if clock == "cpu" else "cpu"
    rows = []
    for rec in records:
        goal = []
        if "goal_ns" in rec:
            goal.append(f"≤{rec['goal_ns'] / 1000:g} µs")
        if "goal_ratio" in rec:
            goal.append(f"≤1/{1 / rec['goal_ratio']:.0f} peer")
        m, o = rec[clock], rec[other]
        over = m.get("overhead_ns_median")
        iqr = m.get("overhead_ns_iqr")
        rows.append(
            [
                rec["name"],
                f"{m['ns_per_call_median']:.0f}",
                "" if over is None else f"{over:+.0f}",
                "" if iqr is None else f"{iqr[0]:.0f}..{iqr[1]:.0f}",
                "" if over is None else f"{o['overhead_ns_median']:+.0f}",
                rec.get("peer", ""),
                h.fmt_ratio(over, m["peer_overhead_ns"])
                if over is not None and "peer" in rec
                else "",
                ", ".join(goal),
                rec.get("status", ""),
            ]
        )
    return h.table(
        ["variant", "ns/call", "overhead", "IQR", f"({other})", "peer", "ours/peer", "goal", ""],
        rows,
        title=f"[{suite}] ns per call, {clock} clock; overhead = variant - bare, median of paired rounds",
    )


def main(argv: list[str] | None = None) -> int:
    parser = h.base_parser(__doc__)
    parser.add_argument(
        "--clock",
        choices=h.CLOCKS,
        default="cpu",
        help="clock the verdicts use: cpu = this thread's CPU time (default), wall = perf_counter",
    )
    parser.add_argument(
        "--target-ms",
        type=float,
        default=None,
        help="duration of one variant's run in one round (default 10, quick 5)",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 41)
    target_ns = (args.target_ms or (5.0 if args.quick else 10.0)) * 1e6

    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("core-bench")

    drain = QueueDrain()
    drain.start()
    loop = asyncio.new_event_loop()
    suites = build_suites(tracer, loop)
    results: dict[str, list[dict[str, Any]]] = {}
    t_start = time.monotonic()
    try:
        for suite, rows in suites.items():
            disabled = suite == "disabled"
            if disabled:
                rastir.configure(service="core-bench", push_url=None, enabled=False)
            try:
                gc.collect()
                h.interleave([r.variant for r in rows], rounds=rounds, target_ns=target_ns)
            finally:
                if disabled:
                    rastir.configure(service="core-bench", push_url=None, enabled=True)
            results[suite] = summarize(rows, args.clock)
            print(render(results[suite], suite, args.clock), end="\n\n", flush=True)
    finally:
        drain.stop()
        loop.close()
        provider.shutdown()
    elapsed = time.monotonic() - t_start

    checks = {
        "rastir_spans_dropped": PIPELINE.dropped,
        "rastir_spans_drained": drain.taken,
        "otel_spans_exported": exporter.spans,
    }
    statuses = [rec["status"] for recs in results.values() for rec in recs if "status" in rec]
    summary = "PASS" if all(s == "PASS" for s in statuses) else "FAIL"
    print(
        f"{statuses.count('PASS')} PASS, {statuses.count('FAIL')} FAIL; {rounds} rounds; {elapsed:.1f} s; {h.load_note()}; {checks}"
    )
    if not args.no_json:
        path = h.write_json(
            "core_bench",
            {
                "rounds": rounds,
                "clock": args.clock,
                "target_ms_per_run": target_ns / 1e6,
                "sink": "PIPELINE deque + drain thread (wake every 512 spans), see module docstring",
                "checks": checks,
                "summary": summary,
                "suites": results,
            },
            quick=args.quick,
        )
        print(f"wrote {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
