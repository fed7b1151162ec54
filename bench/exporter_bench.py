"""Exporter CPU per span: encoding and gzip, then the whole exporter thread end to end.

Run: ``python bench/exporter_bench.py [--quick] [--rounds N] [--spans N]``. Prints two
tables and writes ``bench/results/exporter_bench.json``.

1. **Encoding**, interleaved in one thread: ``encode_batch`` (msgspec JSON) on 512-span
   batches, and gzip as the transport does it (``zlib.compressobj(1, DEFLATED, 31)``),
   against the OTel OTLP encoder (``encode_spans(...).SerializePartialToString()``, as
   the OTLP/HTTP exporter calls it) on the same spans made by the OTel SDK. The spans
   come from the real decorators: half are ``@rastir.trace`` roots with 6 attributes
   set inside (str, int, float, bool), half ``@rastir.llm`` children whose attributes
   (model, response id, tokens, finish reasons: 7) the decorator reads from an
   OpenAI-style response, so ~6.5 attributes a span.
2. **End to end**: ``rastir.configure(push_url=...)`` to a sink on 127.0.0.1 (stdlib
   ``http.server`` in a thread of this process that reads each body, discards it and
   answers 202). The main thread calls the decorated functions, the real exporter
   thread batches, encodes (and gzips, when on) and POSTs; each round ends with
   ``rastir.flush()``. The figure is the exporter thread's own CPU time over the round
   divided by the spans it sent. Two variants, interleaved round by round: the default
   (gzip is automatic, hence off for this loopback sink) and ``gzip=True``, what a
   collector on another host gets. The goal is judged on the default.

How the exporter thread's CPU is read: ``time.pthread_getcpuclockid(thread.ident)``
gives the thread's ``CLOCK_THREAD_CPUTIME_ID`` clock, read with
``time.clock_gettime_ns`` from the main thread: nanosecond resolution, that thread
only. ``/proc/self/task/<tid>/stat`` (utime + stime, 10 ms ticks) is read too, as a
cross-check. ``resource.getrusage`` is not used for the verdict: it is the whole
process, so it would charge the exporter with the producer's decorator calls and the
sink's request handling, both in this process; it is reported for context only.
"""

from __future__ import annotations

import gzip
import os
import random
import resource
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
import msgspec

import rastir
from rastir import _config
from rastir._wire import WireBatch
from rastir.export._encode import encode_batch
from rastir.export._pipeline import PIPELINE
from rastir.spans import Span
from rastir.testing import capture_spans

GOAL_NS_PER_SPAN = 2000.0
BATCH = 512
MODELS = ("gpt-4o", "gpt-4o-mini", "o3-mini")
ROUTES = ("/v1/chat", "/v1/search", "/v1/agent/run")

wall, cpu = h.wall_ns, h.cpu_ns


# -- the workload: the same calls, traced by rastir or by the OTel SDK ----------------------------
class Workload:
    """Deterministic request parameters; one request = a root span and an LLM child."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def params(self) -> tuple[dict[str, Any], str, dict[str, Any]]:
        r = self.rng
        attrs: dict[str, Any] = {
            "app.user_id": f"u-{r.randrange(100_000)}",
            "app.tenant": r.choice(("acme", "globex", "initech")),
            "app.route": r.choice(ROUTES),
            "app.request_bytes": r.randrange(100, 50_000),
            "app.cache_hit": r.random() < 0.3,
            "app.score": round(r.random(), 4),
        }
        model = r.choice(MODELS)
        response = {
            "id": f"chatcmpl-{r.getrandbits(96):024x}",
            "object": "chat.completion",
            "model": f"{model}-2024-08-06",
            "usage": {
                "prompt_tokens": r.randrange(10, 4000),
                "completion_tokens": r.randrange(1, 1000),
            },
            "choices": [{"index": 0, "finish_reason": r.choice(("stop", "stop", "length"))}],
        }
        return attrs, model, response


def rastir_app() -> Callable[[dict[str, Any], str, dict[str, Any]], None]:
    """The instrumented application: ``handle_request`` calls the model once."""

    @rastir.llm
    def chat(
        messages: list[dict[str, str]], model: str, _response: dict[str, Any]
    ) -> dict[str, Any]:
        return _response

    @rastir.trace
    def handle_request(attrs: dict[str, Any], model: str, response: dict[str, Any]) -> None:
        span = rastir.current_span()
        if span is not None:
            for k, v in attrs.items():
                span.set_attribute(k, v)
        chat([{"role": "user", "content": "hi"}], model=model, _response=response)

    return handle_request


def rastir_batches(n_batches: int, seed: int) -> list[list[Span]]:
    rastir.configure(service="exporter-bench", push_url=None, enabled=True)
    app, work = rastir_app(), Workload(seed)
    with capture_spans() as spans:
        for _ in range(n_batches * BATCH // 2):
            app(*work.params())
    return [list(spans[i : i + BATCH]) for i in range(0, len(spans), BATCH)]


def otel_batches(n_batches: int, seed: int, resource_attrs: dict[str, Any]) -> list[list[Any]]:
    """The same requests as OTel ReadableSpans, attributes set as its GenAI instrumentations do."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource_attrs))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("exporter-bench")
    work = Workload(seed)
    for _ in range(n_batches * BATCH // 2):
        attrs, model, response = work.params()
        with (
            tracer.start_as_current_span("handle_request", attributes=attrs),
            tracer.start_as_current_span("chat") as span,
        ):
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.response.model", response["model"])
            span.set_attribute("gen_ai.response.id", response["id"])
            span.set_attribute("gen_ai.usage.input_tokens", response["usage"]["prompt_tokens"])
            span.set_attribute("gen_ai.usage.output_tokens", response["usage"]["completion_tokens"])
            span.set_attribute(
                "gen_ai.response.finish_reasons", [c["finish_reason"] for c in response["choices"]]
            )
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]


# -- part 1: encoding ----------------------------------------------------------------------------
def gzip1(body: bytes) -> bytes:
    """What ``HttpTransport.send`` does to a body."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    return comp.compress(body) + comp.flush()


def cycling(items: Sequence[Any], work: Callable[[Any], object]) -> h.Runner:
    """A runner doing ``work`` on each item in turn (one item per iteration)."""

    def run(n: int) -> tuple[int, int]:
        k = len(items)
        w0, c0 = wall(), cpu()
        for i in range(n):
            work(items[i % k])
        return wall() - w0, cpu() - c0

    return run


def encoding(rounds: int, target_ns: float, n_batches: int) -> dict[str, Any]:
    resource_attrs = rastir.get_settings().resource()
    rb = rastir_batches(n_batches, seed=1)
    bodies = [encode_batch(b, resource_attrs, 0) for b in rb]
    check = msgspec.json.decode(bodies[0], type=WireBatch)
    attrs_per_span = sum(len(s.attributes) for s in check.spans) / len(check.spans)

    variants = [
        h.Variant(
            "rastir encode_batch (msgspec JSON)",
            cycling(rb, lambda b: encode_batch(b, resource_attrs, 0)),
        ),
        h.Variant("rastir gzip level 1", cycling(bodies, gzip1)),
        h.Variant(
            "rastir encode + gzip (exporter's work, remote)",
            cycling(rb, lambda b: gzip1(encode_batch(b, resource_attrs, 0))),
        ),
    ]
    peer: dict[str, Any] = {}
    try:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:
        print(
            "opentelemetry-exporter-otlp-proto-common is not installed: no OTLP peer",
            file=sys.stderr,
        )
    else:
        ob = otel_batches(n_batches, seed=1, resource_attrs=resource_attrs)
        obodies = [encode_spans(b).SerializePartialToString() for b in ob]
        peer = {
            "otlp_bytes_per_span": len(obodies[0]) / BATCH,
            "otlp_gzip_bytes_per_span": len(gzip1(obodies[0])) / BATCH,
        }
        variants += [
            h.Variant(
                "OTLP encode_spans + SerializePartialToString",
                cycling(ob, lambda b: encode_spans(b).SerializePartialToString()),
            ),
            h.Variant(
                "OTLP encode + gzip level 1",
                cycling(ob, lambda b: gzip1(encode_spans(b).SerializePartialToString())),
            ),
        ]
    h.interleave(variants, rounds=rounds, target_ns=target_ns)

    per_span = {v.name: h.median(v.samples["cpu"]) / BATCH for v in variants}
    peers = {
        "rastir encode_batch (msgspec JSON)": "OTLP encode_spans + SerializePartialToString",
        "rastir encode + gzip (exporter's work, remote)": "OTLP encode + gzip level 1",
    }
    rows: list[dict[str, Any]] = []
    for v in variants:
        lo, hi = h.spread(v.samples["cpu"])
        rec: dict[str, Any] = {
            "name": v.name,
            "batches_per_round": v.n,
            "us_per_span_cpu": per_span[v.name] / 1000,
            "us_per_span_cpu_iqr": [lo / BATCH / 1000, hi / BATCH / 1000],
            "us_per_span_wall": h.median(v.samples["wall"]) / BATCH / 1000,
            "us_per_batch_cpu": per_span[v.name] * BATCH / 1000,
        }
        p = peers.get(v.name)
        if p is not None and p in per_span:
            rec["peer"] = p
            rec["ratio_vs_peer"] = per_span[v.name] / per_span[p]
        rows.append(rec)
    return {
        "batch_size": BATCH,
        "distinct_batches": len(rb),
        "attributes_per_span": attrs_per_span,
        "json_bytes_per_span": len(bodies[0]) / BATCH,
        "gzip_bytes_per_span": len(gzip1(bodies[0])) / BATCH,
        **peer,
        "rows": rows,
    }


# -- part 2: end to end -----------------------------------------------------------------------------
class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0
    bytes_in = 0
    first_body: bytes | None = None

    def take_first_body(self) -> bytes | None:
        body, self.first_body = self.first_body, None
        return body


class SinkHandler(BaseHTTPRequestHandler):
    """Reads the body, discards it, answers 202, keeps the connection alive."""

    protocol_version = "HTTP/1.1"
    server: SinkServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv = self.server
        srv.requests += 1
        srv.bytes_in += len(body)
        if srv.first_body is None:
            srv.first_body = body
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _proc_ticks(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


# Each end-to-end variant is a ``configure()`` call: the default (gzip is automatic, so off
# for this loopback sink) and gzip forced on, which is what a remote collector gets.
E2E_VARIANTS: dict[str, dict[str, Any]] = {
    "default (loopback: no gzip)": {},
    "gzip=True (as to a remote collector)": {"gzip": True},
}


def end_to_end(rounds: int, spans_per_round: int) -> dict[str, Any]:
    """Rounds of ``spans_per_round`` spans through the real exporter, variants interleaved."""
    server = SinkServer(("127.0.0.1", 0), SinkHandler)
    sink = threading.Thread(target=server.serve_forever, name="bench-sink", daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    app, work = rastir_app(), Workload(seed=2)
    params = [work.params() for _ in range(spans_per_round // 2)]
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    names = list(E2E_VARIANTS)
    recs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    first: dict[str, bytes] = {}
    lost = 0
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in (*names[shift:], *names[:shift]):
                settings = rastir.configure(
                    service="exporter-bench",
                    push_url=url,
                    enabled=True,
                    max_queue=1 << 17,
                    **E2E_VARIANTS[name],
                )
                server.take_first_body()
                for p in params[:1024]:  # warm-up: starts the thread and the connection
                    app(*p)
                if not rastir.flush(60):
                    raise RuntimeError("warm-up flush timed out")
                body = server.take_first_body()
                if body is not None:
                    first.setdefault(name, body)
                exporter = _config._exporter_or_none()
                thread = exporter._thread
                assert thread is not None
                assert thread.ident is not None
                assert thread.native_id is not None
                clock = time.pthread_getcpuclockid(thread.ident)
                stats = exporter.stats
                sent0, batches0, bytes0 = stats.spans_sent, stats.batches_sent, server.bytes_in
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                t0, ticks0, w0 = time.clock_gettime_ns(clock), _proc_ticks(thread.native_id), wall()
                for p in params:
                    app(*p)
                if not rastir.flush(120):
                    raise RuntimeError("flush timed out")
                t1, ticks1, w1 = time.clock_gettime_ns(clock), _proc_ticks(thread.native_id), wall()
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                sent = stats.spans_sent - sent0
                proc_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e9
                lost += PIPELINE.dropped + stats.batches_failed
                recs[name].append(
                    {
                        "gzip": settings.gzip,
                        "spans_sent": sent,
                        "batches": stats.batches_sent - batches0,
                        "bytes_at_sink": server.bytes_in - bytes0,
                        "wall_s": (w1 - w0) / 1e9,
                        "exporter_thread_cpu_ns_per_span": (t1 - t0) / sent,
                        "exporter_thread_proc_stat_ns_per_span": (ticks1 - ticks0) * tick_ns / sent,
                        "process_cpu_ns_per_span": proc_cpu / sent,
                    }
                )
    finally:
        rastir.shutdown()
        server.shutdown()
        server.server_close()
    out: dict[str, Any] = {"spans_per_round": spans_per_round, "spans_lost": lost, "variants": []}
    for name in names:
        body = first[name]
        gzipped = body[:2] == b"\x1f\x8b"
        decoded = msgspec.json.decode(gzip.decompress(body) if gzipped else body, type=WireBatch)
        rs = recs[name]
        per_span = [r["exporter_thread_cpu_ns_per_span"] for r in rs]
        lo, hi = h.spread(per_span)
        total = sum(r["spans_sent"] for r in rs)
        out["variants"].append(
            {
                "name": name,
                "gzip": rs[0]["gzip"],
                "rounds": rs,
                "spans_total": total,
                "exporter_thread_cpu_us_per_span": h.median(per_span) / 1000,
                "exporter_thread_cpu_us_per_span_iqr": [lo / 1000, hi / 1000],
                "proc_stat_us_per_span": h.median(
                    r["exporter_thread_proc_stat_ns_per_span"] for r in rs
                )
                / 1000,
                "process_cpu_us_per_span": h.median(r["process_cpu_ns_per_span"] for r in rs)
                / 1000,
                "spans_per_batch": total / max(1, sum(r["batches"] for r in rs)),
                "bytes_per_span": sum(r["bytes_at_sink"] for r in rs) / max(1, total),
                "first_batch_spans": len(decoded.spans),
                "first_batch_gzipped": gzipped,
            }
        )
    default = out["variants"][0]
    out["goal_us"] = GOAL_NS_PER_SPAN / 1000
    out["status"] = h.verdict(default["exporter_thread_cpu_us_per_span"] * 1000, GOAL_NS_PER_SPAN)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = h.base_parser(__doc__)
    parser.add_argument(
        "--spans",
        type=int,
        default=None,
        help="end-to-end spans in all (default 200000, quick 12000)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (3 if quick else 15)
    e2e_rounds = 3 if quick else 8
    total = args.spans or (12_000 if quick else 200_000)
    target_ns = (10 if quick else 40) * 1e6

    t_start = time.monotonic()
    enc = encoding(rounds, target_ns, n_batches=2 if quick else 4)
    print(
        h.table(
            ["variant", "µs/span (cpu)", "IQR", "µs/batch", "(wall µs/span)", "ours/OTLP"],
            [
                [
                    r["name"],
                    f"{r['us_per_span_cpu']:.3f}",
                    f"{r['us_per_span_cpu_iqr'][0]:.3f}..{r['us_per_span_cpu_iqr'][1]:.3f}",
                    f"{r['us_per_batch_cpu']:.0f}",
                    f"{r['us_per_span_wall']:.3f}",
                    h.fmt_ratio(r["ratio_vs_peer"], 1.0) if "ratio_vs_peer" in r else "",
                ]
                for r in enc["rows"]
            ],
            title=f"[encoding] {BATCH}-span batches, {enc['attributes_per_span']:.1f} attributes/span, median of {rounds} interleaved rounds",
        )
    )
    print(
        f"bytes/span: JSON {enc['json_bytes_per_span']:.0f}, gzipped {enc['gzip_bytes_per_span']:.0f}"
        + (
            f"; OTLP protobuf {enc['otlp_bytes_per_span']:.0f}, gzipped {enc['otlp_gzip_bytes_per_span']:.0f}"
            if "otlp_bytes_per_span" in enc
            else ""
        )
        + "\n",
        flush=True,
    )

    e2e = end_to_end(e2e_rounds, total // e2e_rounds)
    rows: list[list[str]] = []
    for i, v in enumerate(e2e["variants"]):
        rows += [
            [
                f"{v['name']}: exporter thread CPU per span",
                f"{v['exporter_thread_cpu_us_per_span']:.3f} µs",
                f"≤{e2e['goal_us']:g} µs",
                e2e["status"] if i == 0 else "",
            ],
            [
                "  IQR over rounds",
                "{:.3f}..{:.3f} µs".format(*v["exporter_thread_cpu_us_per_span_iqr"]),
                "",
                "",
            ],
            ["  cross-check: /proc/self/task/<tid>/stat", f"{v['proc_stat_us_per_span']:.3f} µs"],
            [
                "  context: whole process (producer + exporter + sink)",
                f"{v['process_cpu_us_per_span']:.3f} µs",
            ],
            [
                "  spans sent; spans per POST; bytes per span on the wire",
                f"{v['spans_total']}; {v['spans_per_batch']:.0f}; {v['bytes_per_span']:.0f}",
            ],
        ]
    rows.append(["spans lost (all variants)", str(e2e["spans_lost"])])
    print(
        h.table(
            ["measure", "value", "goal", ""],
            [[*r, "", ""][:4] for r in rows],
            title=f"[end to end] {e2e_rounds} interleaved rounds per variant of "
            f"{total // e2e_rounds} spans to a local HTTP sink, rastir.flush() each round",
        )
    )
    elapsed = time.monotonic() - t_start
    print(f"\n{elapsed:.1f} s; {h.load_note()}")
    if not args.no_json:
        path = h.write_json(
            "exporter_bench",
            {
                "clock": "cpu",
                "encoding_rounds": rounds,
                "encoding": enc,
                "end_to_end": e2e,
                "summary": e2e["status"],
            },
            quick=quick,
        )
        print(f"wrote {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
