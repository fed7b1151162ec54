"""Wire spans to OTLP: ``ExportTraceServiceRequest`` as protobuf or as OTLP/JSON.

The protobuf encoder is written by hand: the core depends on msgspec and the standard
library only, and the OpenTelemetry SDK's encoder costs tens of microseconds per span
(it builds a tree of protobuf objects first). Here each message is written straight to
bytes, innermost first, since a length-delimited field needs its length up front.

The mapping to the OpenTelemetry semantic conventions (GenAI, MCP, HTTP) lives here
too, shared by both encodings:

==============  ========  ===========================================
rastir kind     OTel kind  span name
==============  ========  ===========================================
agent           INTERNAL  ``invoke_agent {gen_ai.agent.name}``
llm             CLIENT    ``{gen_ai.operation.name} {model}``
tool            INTERNAL  ``execute_tool {gen_ai.tool.name}``
mcp.client      CLIENT    ``{mcp.method.name} {target}``
mcp.server      SERVER    ``{mcp.method.name} {target}``
http.server     SERVER    ``{method} {http.route}``
http.client     CLIENT    ``{method}``
anything else   INTERNAL  the span's own name
==============  ========  ===========================================

What OTLP has no field for travels in ``rastir.*`` attributes, so that a rastir
collector receiving these spans (``POST /v1/traces``) rebuilds them exactly:
``rastir.span.kind`` always, ``rastir.span.name`` when the OTel name differs,
``rastir.status=cancelled`` for a cancelled span (OTLP status UNSET) and
``rastir.error.category`` when ``error.type`` already holds something else.
Deprecated attribute names (``gen_ai.system``, ``http.method``, ...) are written under
their current names.

Protobuf field numbers: opentelemetry/proto/trace/v1/trace.proto,
common/v1/common.proto, resource/v1/resource.proto and
collector/trace/v1/trace_service.proto (OTLP 1.x).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from rastir._wire import AttrValue, WireSpan

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "OTEL_KIND",
    "RENAMED",
    "encode_request",
    "encode_request_json",
    "otel_view",
]

CONTENT_TYPE_PROTOBUF: Final = "application/x-protobuf"
CONTENT_TYPE_JSON: Final = "application/json"

# opentelemetry.proto.trace.v1.Span.SpanKind
INTERNAL: Final = 1
SERVER: Final = 2
CLIENT: Final = 3

OTEL_KIND: Final[Mapping[str, int]] = {
    "agent": INTERNAL,
    "llm": CLIENT,
    "tool": INTERNAL,
    "retrieval": INTERNAL,
    "trace": INTERNAL,
    "custom": INTERNAL,
    "evaluation": INTERNAL,
    "http.server": SERVER,
    "http.client": CLIENT,
    "mcp.client": CLIENT,
    "mcp.server": SERVER,
}

# Status.StatusCode
STATUS_UNSET: Final = 0
STATUS_ERROR: Final = 2

# Deprecated semantic-convention names and the names that replaced them. A span that
# carries the old name is exported under the new one (unless it carries both).
RENAMED: Final[Mapping[str, str]] = {
    "gen_ai.system": "gen_ai.provider.name",
    "gen_ai.usage.prompt_tokens": "gen_ai.usage.input_tokens",
    "gen_ai.usage.completion_tokens": "gen_ai.usage.output_tokens",
    "http.method": "http.request.method",
    "http.status_code": "http.response.status_code",
    "http.url": "url.full",
    "http.scheme": "url.scheme",
    "http.target": "url.path",
    "http.user_agent": "user_agent.original",
    "http.client_ip": "client.address",
    "net.peer.name": "server.address",
    "net.peer.port": "server.port",
    "net.host.name": "server.address",
    "net.host.port": "server.port",
    "net.transport": "network.transport",
    "net.protocol.name": "network.protocol.name",
    "net.protocol.version": "network.protocol.version",
}

# The operation a rastir kind implies (GenAI semconv ``gen_ai.operation.name``).
_IMPLIED_OPERATION: Final[Mapping[str, str]] = {
    "agent": "invoke_agent",
    "tool": "execute_tool",
    "llm": "chat",
    "retrieval": "retrieval",
}

# The attribute naming what an MCP request is about, in order of preference.
_MCP_TARGETS: Final = ("gen_ai.tool.name", "gen_ai.prompt.name", "mcp.resource.uri")

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


# -- the semantic-convention view of a span ---------------------------------------------


def otel_view(
    span: WireSpan,
) -> tuple[str, int, list[tuple[str, AttrValue]], int, str, tuple[str, str, int] | None]:
    """How a wire span reads in OpenTelemetry terms.

    Returns:
        ``(name, otel_kind, attributes, status_code, status_message, exception)``:
        the attributes as (name, value) pairs with current semconv names and the
        ``rastir.*`` fidelity attributes; ``exception`` is ``(type, message,
        time_unix_nano)`` for the ``exception`` event of a failed span, or None.
    """
    kind = span.kind
    a: Mapping[str, Any] = span.attributes
    items: list[tuple[str, AttrValue]] = []
    renames = RENAMED
    for key, value in a.items():
        new = renames.get(key)
        if new is not None:
            if new in a:
                continue  # the current name wins over the deprecated one
            key = new
        items.append((key, value))
    op = a.get("gen_ai.operation.name")
    if op is None:
        op = _IMPLIED_OPERATION.get(kind)
        if op is not None:
            items.append(("gen_ai.operation.name", op))
    okind = OTEL_KIND.get(kind, INTERNAL)
    name = span.name
    if kind == "agent":
        name = f"invoke_agent {a.get('gen_ai.agent.name') or span.name}"
    elif kind == "llm":
        model = a.get("gen_ai.request.model") or a.get("gen_ai.response.model")
        name = f"{op} {model}" if model else str(op)
    elif kind == "tool":
        name = f"execute_tool {a.get('gen_ai.tool.name') or span.name}"
    elif kind == "mcp.client" or kind == "mcp.server":
        method = a.get("mcp.method.name")
        if method:
            target = None
            for t in _MCP_TARGETS:
                target = a.get(t)
                if target:
                    break
            name = f"{method} {target}" if target else str(method)
    elif kind == "http.server" or kind == "http.client":
        method = a.get("http.request.method") or a.get("http.method")
        if method:
            # HTTP semconv: "{method} {target}"; "_OTHER" (unknown method) reads "HTTP".
            method = "HTTP" if method == "_OTHER" else str(method)
            route = a.get("http.route") if kind == "http.server" else None
            name = f"{method} {route}" if route else method
    items.append(("rastir.span.kind", kind))
    if name != span.name:
        items.append(("rastir.span.name", span.name))
    status = span.status
    exception: tuple[str, str, int] | None = None
    if status == "ok":
        return name, okind, items, STATUS_UNSET, "", None
    if status == "cancelled":
        items.append(("rastir.status", "cancelled"))
        return name, okind, items, STATUS_UNSET, "", None
    err = span.error
    message = ""
    if err is not None:
        message = err.message
        current = a.get("error.type")
        if current is None:
            items.append(("error.type", err.type))
        elif current != err.type:
            items.append(("rastir.error.category", err.type))
        if err.exception_type or err.message:
            exception = (err.exception_type, err.message, span.end_time_unix_nano)
    return name, okind, items, STATUS_ERROR, message, exception


# -- protobuf --------------------------------------------------------------------------

_ONE_BYTE: Final = [bytes((i,)) for i in range(128)]
_pack_times = struct.Struct("<BQBQ").pack  # Span fields 7 and 8, fixed64
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack


def _varint(n: int) -> bytes:
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _any_value(value: Any) -> bytes:
    """An AnyValue message."""
    t = type(value)
    if t is str:
        b: bytes = value.encode("utf-8", "surrogatepass")
        return b"\x0a" + _varint(len(b)) + b
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if t is int:
        if 0 <= value <= _INT64_MAX:
            return b"\x18" + _varint(value)
        if _INT64_MIN <= value < 0:
            return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
        return _any_value(str(value))  # beyond int64: kept readable, not wrapped
    if t is float:
        return b"\x21" + _pack_double(value)
    if t is list or t is tuple:
        inner = b"".join([_frame(b"\x0a", _any_value(v)) for v in value])
        return b"\x2a" + _varint(len(inner)) + inner
    if isinstance(value, bool):
        return _any_value(bool(value))
    if isinstance(value, int):
        return _any_value(int(value))
    if isinstance(value, float):
        return _any_value(float(value))
    return _any_value(str(value))


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


_KV_CACHE_MAX: Final = 8192
_kv_cache: dict[tuple[str, str], bytes] = {}


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message. String pairs repeat a lot (models, operations, routes): cached."""
    if type(value) is str:
        ck = (key, value)
        kv = _kv_cache.get(ck)
        if kv is not None:
            return kv
        kb = key.encode("utf-8", "surrogatepass")
        vb = value.encode("utf-8", "surrogatepass")
        av = b"\x0a" + _varint(len(vb)) + vb
        kv = b"\x0a" + _varint(len(kb)) + kb + b"\x12" + _varint(len(av)) + av
        if len(vb) <= 256:
            if len(_kv_cache) >= _KV_CACHE_MAX:
                _kv_cache.clear()  # bounded: ids or free text would otherwise pile up
            _kv_cache[ck] = kv
        return kv
    kb = key.encode("utf-8", "surrogatepass")
    av = _any_value(value)
    return b"\x0a" + _varint(len(kb)) + kb + b"\x12" + _varint(len(av)) + av


def _attributes(tag: bytes, attrs: Iterable[tuple[str, Any]], out: list[bytes]) -> None:
    for key, value in attrs:
        kv = _key_value(key, value)
        out.append(tag)
        out.append(_varint(len(kv)))
        out.append(kv)


_fromhex = bytes.fromhex
_FLAGS_SAMPLED: Final = b"\x85\x01\x01\x00\x00\x00"  # Span field 16 (fixed32): sampled
_LINK_FLAGS_SAMPLED: Final = b"\x35\x01\x00\x00\x00"  # Link field 6 (fixed32)


def _span(span: WireSpan) -> bytes:
    name, okind, items, code, message, exception = otel_view(span)
    parts: list[bytes] = [b"\x0a\x10", _fromhex(span.trace_id), b"\x12\x08", _fromhex(span.span_id)]
    if span.parent_span_id is not None:
        parts.append(b"\x22\x08")
        parts.append(_fromhex(span.parent_span_id))
    nb = name.encode("utf-8", "surrogatepass")
    parts.append(b"\x2a")
    parts.append(_varint(len(nb)))
    parts.append(nb)
    parts.append(b"\x30" + _ONE_BYTE[okind])
    parts.append(_pack_times(0x39, span.start_time_unix_nano, 0x41, span.end_time_unix_nano))
    _attributes(b"\x4a", items, parts)
    for ev in span.events:
        eb = _event(ev.name, ev.time_unix_nano, ev.attributes.items())
        parts.append(b"\x5a")
        parts.append(_varint(len(eb)))
        parts.append(eb)
    if exception is not None:
        exc_type, exc_message, at = exception
        ev_attrs: list[tuple[str, str]] = []
        if exc_type:
            ev_attrs.append(("exception.type", exc_type))
        if exc_message:
            ev_attrs.append(("exception.message", exc_message))
        eb = _event("exception", at, ev_attrs)
        parts.append(b"\x5a")
        parts.append(_varint(len(eb)))
        parts.append(eb)
    for ln in span.links:
        lp: list[bytes] = [
            b"\x0a\x10",
            _fromhex(ln.trace_id),
            b"\x12\x08",
            _fromhex(ln.span_id),
        ]
        _attributes(b"\x22", ln.attributes.items(), lp)
        lp.append(_LINK_FLAGS_SAMPLED)
        lb = b"".join(lp)
        parts.append(b"\x6a")
        parts.append(_varint(len(lb)))
        parts.append(lb)
    if code:
        st = b"\x18" + _ONE_BYTE[code]
        if message:
            mb = message.encode("utf-8", "surrogatepass")
            st = b"\x12" + _varint(len(mb)) + mb + st
        parts.append(b"\x7a")
        parts.append(_varint(len(st)))
        parts.append(st)
    parts.append(_FLAGS_SAMPLED)
    return b"".join(parts)


def _event(name: str, at: int, attrs: Iterable[tuple[str, Any]]) -> bytes:
    nb = name.encode("utf-8", "surrogatepass")
    ep: list[bytes] = [b"\x09", _pack_fixed64(at), b"\x12", _varint(len(nb)), nb]
    _attributes(b"\x1a", attrs, ep)
    return b"".join(ep)


def _scope() -> bytes:
    from rastir import __version__

    name = b"rastir"
    version = __version__.encode()
    return b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(version)) + version


_scope_bytes: bytes | None = None


def encode_request(batches: Iterable[tuple[Mapping[str, Any], Sequence[WireSpan]]]) -> bytes:
    """A serialized ``ExportTraceServiceRequest``: one ``ResourceSpans`` per batch.

    Args:
        batches: ``(resource attributes, spans)`` pairs, typically one per service.

    Returns:
        The protobuf bytes, ready for ``POST /v1/traces`` with
        ``Content-Type: application/x-protobuf``.
    """
    global _scope_bytes
    scope = _scope_bytes
    if scope is None:
        scope = _scope_bytes = _frame(b"\x0a", _scope())
    out: list[bytes] = []
    for resource, spans in batches:
        rp: list[bytes] = []
        _attributes(b"\x0a", resource.items(), rp)
        res = b"".join(rp)
        sp: list[bytes] = [scope]
        for s in spans:
            body = _span(s)
            sp.append(b"\x12")
            sp.append(_varint(len(body)))
            sp.append(body)
        scope_spans = b"".join(sp)
        rs = b"\x0a" + _varint(len(res)) + res + b"\x12" + _varint(len(scope_spans)) + scope_spans
        out.append(b"\x0a")
        out.append(_varint(len(rs)))
        out.append(rs)
    return b"".join(out)


# -- OTLP/JSON -------------------------------------------------------------------------


def _json_value(value: Any) -> dict[str, Any]:
    """An AnyValue in OTLP/JSON: int64 as a decimal string (proto3 JSON mapping)."""
    t = type(value)
    if t is str:
        return {"stringValue": value}
    if t is bool:
        return {"boolValue": value}
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            # proto3 JSON spells non-finite doubles as strings.
            return {
                "doubleValue": "NaN" if value != value else repr(value).replace("inf", "Infinity")
            }
        return {"doubleValue": value}
    if t is list or t is tuple:
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    if isinstance(value, bool):
        return {"boolValue": bool(value)}
    if isinstance(value, int):
        return _json_value(int(value))
    if isinstance(value, float):
        return _json_value(float(value))
    return {"stringValue": str(value)}


def _json_attrs(attrs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attrs]


def _json_span(span: WireSpan) -> dict[str, Any]:
    name, okind, items, code, message, exception = otel_view(span)
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "flags": 1,
        "name": name,
        "kind": okind,
        "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": _json_attrs(items),
    }
    if span.parent_span_id is not None:
        out["parentSpanId"] = span.parent_span_id
    events = [
        {
            "timeUnixNano": str(ev.time_unix_nano),
            "name": ev.name,
            "attributes": _json_attrs(ev.attributes.items()),
        }
        for ev in span.events
    ]
    if exception is not None:
        exc_type, exc_message, at = exception
        ev_attrs = []
        if exc_type:
            ev_attrs.append(("exception.type", exc_type))
        if exc_message:
            ev_attrs.append(("exception.message", exc_message))
        events.append(
            {"timeUnixNano": str(at), "name": "exception", "attributes": _json_attrs(ev_attrs)}
        )
    if events:
        out["events"] = events
    if span.links:
        out["links"] = [
            {
                "traceId": ln.trace_id,
                "spanId": ln.span_id,
                "flags": 1,
                "attributes": _json_attrs(ln.attributes.items()),
            }
            for ln in span.links
        ]
    if code:
        status: dict[str, Any] = {"code": code}
        if message:
            status["message"] = message
        out["status"] = status
    return out


_json_encoder = msgspec.json.Encoder()


def encode_request_json(
    batches: Iterable[tuple[Mapping[str, Any], Sequence[WireSpan]]],
) -> bytes:
    """The same request as :func:`encode_request`, in OTLP/JSON.

    OTLP/JSON differs from the proto3 JSON mapping in two places (OTLP spec,
    "JSON Protobuf Encoding"): trace and span ids are hex strings, not base64, and
    enums are integers.
    """
    from rastir import __version__

    return _json_encoder.encode(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": _json_attrs(resource.items())},
                    "scopeSpans": [
                        {
                            "scope": {"name": "rastir", "version": __version__},
                            "spans": [_json_span(s) for s in spans],
                        }
                    ],
                }
                for resource, spans in batches
            ]
        }
    )
