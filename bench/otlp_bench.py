"""OTLP encoding: rastir's hand-written encoder against the OpenTelemetry SDK's, per span.

Run: ``python bench/otlp_bench.py [--quick] [--rounds N]``. Prints a table and writes
``bench/results/otlp_bench.json``.

The spans are made once by the OpenTelemetry SDK (``TracerProvider`` with an
in-memory exporter), shaped like an agent application: per request an agent span,
two LLM calls with the GenAI attributes (model, provider, tokens, finish reasons,
response id) and a first-token event, a tool call, an MCP client call, and an HTTP
server span around it all; one LLM call in ten fails. The very same spans (ids,
times, attributes, events) are converted to rastir ``WireSpan`` records, which is what
the collector holds when it exports. Both encoders then turn 512-span batches into
``ExportTraceServiceRequest`` bytes, interleaved in one thread:

* OTel: ``encode_spans(batch).SerializePartialToString()``, as the SDK's OTLP/HTTP
  exporter calls it (protobuf objects, then the upb serializer);
* rastir: ``rastir.export.otlp.encode_request`` (protobuf, hand-written) and
  ``encode_request_json`` (OTLP/JSON via msgspec).

Our encoder does strictly more per span than the peer: it maps names and kinds to the
semantic conventions and adds the ``rastir.span.*`` fidelity attributes.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h
import msgspec

from rastir._wire import WireError, WireEvent, WireLink, WireSpan
from rastir.export.otlp import encode_request, encode_request_json

BATCH = 512
RESOURCE: dict[str, str | int | float | bool] = {
    "service.name": "support-bot",
    "service.version": "1.4.2",
    "deployment.environment.name": "prod",
    "telemetry.sdk.name": "rastir",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.version": "0.1.0",
    "process.pid": 4242,
}
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.0-flash")
TOOLS = ("search_kb", "lookup_order", "refund", "escalate")


def otel_spans(requests: int, seed: int) -> list[tuple[Any, str]]:
    """ReadableSpans of ``requests`` agent requests, each with the rastir kind it stands for."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    rng = random.Random(seed)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("otlp-bench")
    kinds: dict[int, str] = {}
    for _ in range(requests):
        route = rng.choice(("/chat", "/tickets/{id}"))
        with tracer.start_as_current_span(
            f"POST {route}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "POST",
                "http.route": route,
                "url.path": route.replace("{id}", str(rng.randrange(10**6))),
                "url.scheme": "http",
                "server.address": "bot.internal",
                "server.port": 8080,
                "http.response.status_code": 200,
            },
        ) as http_span:
            kinds[http_span.get_span_context().span_id] = "http.server"
            with tracer.start_as_current_span(
                "invoke_agent triage",
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage"},
            ) as agent:
                kinds[agent.get_span_context().span_id] = "agent"
                for _call in range(2):
                    model = rng.choice(MODELS)
                    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as llm:
                        kinds[llm.get_span_context().span_id] = "llm"
                        llm.set_attribute("gen_ai.operation.name", "chat")
                        llm.set_attribute("gen_ai.provider.name", "openai")
                        llm.set_attribute("gen_ai.request.model", model)
                        llm.set_attribute("gen_ai.response.model", model + "-2025-01-01")
                        llm.set_attribute("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):x}")
                        llm.set_attribute("gen_ai.agent.name", "triage")
                        llm.set_attribute("gen_ai.usage.input_tokens", rng.randrange(50, 4000))
                        llm.set_attribute("gen_ai.usage.output_tokens", rng.randrange(5, 800))
                        llm.set_attribute("gen_ai.response.finish_reasons", ["stop"])
                        llm.set_attribute("rastir.cost.usd", rng.random() / 100)
                        llm.add_event("gen_ai.first_token", {"rastir.ttft_ms": rng.random() * 900})
                        if rng.random() < 0.1:
                            llm.set_attribute("error.type", "rate_limit")
                            llm.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
                tool = rng.choice(TOOLS)
                with tracer.start_as_current_span(
                    f"execute_tool {tool}",
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": tool,
                        "gen_ai.agent.name": "triage",
                    },
                ) as t:
                    kinds[t.get_span_context().span_id] = "tool"
                with tracer.start_as_current_span(
                    f"tools/call {tool}",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "mcp.method.name": "tools/call",
                        "gen_ai.tool.name": tool,
                        "gen_ai.operation.name": "execute_tool",
                        "jsonrpc.request.id": str(rng.randrange(1000)),
                        "mcp.protocol.version": "2025-06-18",
                        "network.transport": "tcp",
                    },
                ) as m:
                    kinds[m.get_span_context().span_id] = "mcp.client"
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return [(s, kinds[s.context.span_id]) for s in spans if s.context is not None]


def to_wire(span: Any, kind: str) -> WireSpan:
    """The same span as the rastir collector would hold it."""
    ctx = span.get_span_context()
    parent = span.parent
    error = None
    status = "ok"
    if not span.status.is_ok:
        status = "error"
        error = WireError(type="rate_limit", exception_type="RateLimitError", message="429")
    attrs = dict(span.attributes or {})
    for key, value in attrs.items():
        if isinstance(value, tuple):
            attrs[key] = list(value)
    return WireSpan(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=span.start_time,
        end_time_unix_nano=span.end_time,
        status=status,  # type: ignore[arg-type]
        error=error,
        attributes=attrs,
        events=[
            WireEvent(name=e.name, time_unix_nano=e.timestamp, attributes=dict(e.attributes or {}))
            for e in span.events
        ],
        links=[
            WireLink(
                trace_id=f"{ln.context.trace_id:032x}",
                span_id=f"{ln.context.span_id:016x}",
                attributes=dict(ln.attributes or {}),
            )
            for ln in span.links
        ],
    )


def cycling(items: Sequence[Any], work: Callable[[Any], object]) -> h.Runner:
    def run(n: int) -> tuple[int, int]:
        k = len(items)
        w0, c0 = h.wall_ns(), h.cpu_ns()
        for i in range(n):
            work(items[i % k])
        return h.wall_ns() - w0, h.cpu_ns() - c0

    return run


def report(
    variants: list[h.Variant], peer_name: str, what: str, attrs_per_span: float, rounds: int
) -> list[dict[str, Any]]:
    per_span = {v.name: h.median(v.samples["cpu"]) / BATCH for v in variants}
    peer = per_span[peer_name]
    rows = []
    records = []
    for v in variants:
        ns = per_span[v.name]
        lo, hi = h.spread(v.samples["cpu"])
        rows.append(
            (
                v.name,
                f"{ns / 1000:.2f}",
                f"{lo / BATCH / 1000:.2f}-{hi / BATCH / 1000:.2f}",
                f"{1e9 / ns:,.0f}",
                h.fmt_ratio(ns, peer),
            )
        )
        records.append(
            {
                "name": v.name,
                "us_per_span_cpu": ns / 1000,
                "us_per_span_cpu_iqr": [lo / BATCH / 1000, hi / BATCH / 1000],
                "spans_per_s_cpu": 1e9 / ns,
                "peer": peer_name,
                "ratio_vs_peer": ns / peer,
            }
        )
    print(
        h.table(
            (what, "µs/span (CPU)", "IQR", "spans/s per core", "vs first row"),
            rows,
            title=(
                f"OTLP {what}s, {BATCH}-span batches, {attrs_per_span:.1f} attributes/span, "
                f"{rounds} rounds; {h.load_note()}"
            ),
        )
    )
    print()
    return records


def main() -> None:
    parser = h.base_parser(__doc__)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    target_ns = 5e7 if args.quick else 2.5e8
    requests = (BATCH * 8) // 6 + 1

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    pairs = otel_spans(requests, seed=7)
    sdk = [s for s, _ in pairs]
    wire = [to_wire(s, k) for s, k in pairs]
    sdk_batches = [sdk[i : i + BATCH] for i in range(0, len(sdk) - BATCH + 1, BATCH)]
    wire_batches = [wire[i : i + BATCH] for i in range(0, len(wire) - BATCH + 1, BATCH)]

    # Same content: both bodies decode to the same number of spans and attributes.
    ours = ExportTraceServiceRequest.FromString(encode_request([(RESOURCE, wire_batches[0])]))
    theirs = ExportTraceServiceRequest.FromString(
        encode_spans(sdk_batches[0]).SerializePartialToString()
    )
    n_ours = [s for rs in ours.resource_spans for ss in rs.scope_spans for s in ss.spans]
    n_theirs = [s for rs in theirs.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(n_ours) == len(n_theirs) == BATCH, (len(n_ours), len(n_theirs))
    attrs_per_span = sum(len(s.attributes) for s in n_theirs) / BATCH

    otel_name = "OTel encode_spans + SerializePartialToString"
    encoding = [
        h.Variant(
            otel_name, cycling(sdk_batches, lambda b: encode_spans(b).SerializePartialToString())
        ),
        h.Variant(
            "rastir encode_request (protobuf)",
            cycling(wire_batches, lambda b: encode_request([(RESOURCE, b)])),
        ),
        h.Variant(
            "rastir encode_request_json (OTLP/JSON)",
            cycling(wire_batches, lambda b: encode_request_json([(RESOURCE, b)])),
        ),
    ]
    # Receive: the SDK's own protobuf bodies, and ours in OTLP/JSON, decoded into
    # WireSpans; against the collector's native decode of the same spans.
    from rastir._wire import WireBatch, batch_decoder
    from rastir.collector.otlp.receive import decode_json, decode_protobuf

    native = [msgspec.json.encode(WireBatch(spans=b, resource=RESOURCE)) for b in wire_batches]
    sdk_bodies = [encode_spans(b).SerializePartialToString() for b in sdk_batches]
    json_bodies = [encode_request_json([(RESOURCE, b)]) for b in wire_batches]
    decoder = batch_decoder()
    native_name = "rastir /v1/telemetry: msgspec WireBatch decode"
    decoding = [
        h.Variant(native_name, cycling(native, decoder.decode)),
        h.Variant(
            "OTLP receive: decode_protobuf (SDK bodies)", cycling(sdk_bodies, decode_protobuf)
        ),
        h.Variant("OTLP receive: decode_json (OTLP/JSON)", cycling(json_bodies, decode_json)),
    ]
    h.interleave([*encoding, *decoding], rounds=rounds, target_ns=target_ns)
    records = [
        *report(encoding, otel_name, "encoder", attrs_per_span, rounds),
        *report(decoding, native_name, "decoder", attrs_per_span, rounds),
    ]
    if not args.no_json:
        path = h.write_json(
            "otlp_bench",
            {
                "batch_size": BATCH,
                "attributes_per_span": attrs_per_span,
                "protobuf_bytes_per_span_ours": len(encode_request([(RESOURCE, wire_batches[0])]))
                / BATCH,
                "protobuf_bytes_per_span_otel": len(
                    encode_spans(sdk_batches[0]).SerializePartialToString()
                )
                / BATCH,
                "rows": records,
            },
            quick=args.quick,
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
