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
``rastir.status=cancelled`` for a cancelled span (OTLP status UNSET), and for a
failed span ``rastir.error.category`` unless the span's own ``error.type`` is the
category (``error.type`` is set to the category when the span has none). When an
exception was raised, its class and message go in an ``exception`` event at the
span's end, as the exception semantic conventions put them (not for an HTTP status
error without one, nor when the span has an ``exception`` event already).

A span a rastir collector received from another OpenTelemetry SDK carries
``rastir.otel.kind`` (and ``rastir.otel.status`` for status OK): it is sent on as it
came, with its own kind, name, status and attributes and none of rastir's additions.
Deprecated attribute names (``gen_ai.system``, ``http.method``, ...) are written under
their current names.

Protobuf field numbers: opentelemetry/proto/trace/v1/trace.proto,
common/v1/common.proto, resource/v1/resource.proto and
collector/trace/v1/trace_service.proto (OTLP 1.x).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from rastir._wire import AttrValue, WireSpan

if TYPE_CHECKING:
    from rastir.spans import Span

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "OTEL_KIND",
    "OTEL_KIND_ATTR",
    "OTEL_KIND_NAMES",
    "OTEL_STATUS_ATTR",
    "RENAMED",
    "encode_batch_otlp",
    "encode_request",
    "encode_request_json",
    "otel_view",
    "split_target",
]

CONTENT_TYPE_PROTOBUF: Final = "application/x-protobuf"
CONTENT_TYPE_JSON: Final = "application/json"

# opentelemetry.proto.trace.v1.Span.SpanKind
UNSPECIFIED: Final = 0
INTERNAL: Final = 1
SERVER: Final = 2
CLIENT: Final = 3
PRODUCER: Final = 4
CONSUMER: Final = 5

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
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2

#: On a span received over OTLP from another SDK (no ``rastir.span.kind``): its own
#: OTel span kind, by name. rastir's kinds cannot say PRODUCER, or a SERVER span that
#: is neither HTTP nor MCP, so the receiver keeps the original here, and the exporter
#: sends the span with that kind, its own name, its status and its attributes as they
#: came (the marker itself is not sent). Its presence means "a foreign span".
OTEL_KIND_ATTR: Final = "rastir.otel.kind"
#: ``"ok"`` on a foreign span whose sender set status OK (rastir's ``ok`` is UNSET).
OTEL_STATUS_ATTR: Final = "rastir.otel.status"
OTEL_KIND_NAMES: Final = ("unspecified", "internal", "server", "client", "producer", "consumer")
_OTEL_KIND_CODES: Final[Mapping[str, int]] = {n: i for i, n in enumerate(OTEL_KIND_NAMES)}
_FOREIGN_KEYS: Final = frozenset((OTEL_KIND_ATTR, OTEL_STATUS_ATTR))

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
# rastir's decorators set it on these kinds already; spans from elsewhere may not.
# (Not ``retrieval`` for retrievals: rastir's own do not carry it, and adding it would
# make a rastir-to-rastir round trip add an attribute.)
_IMPLIED_OPERATION: Final[Mapping[str, str]] = {
    "agent": "invoke_agent",
    "tool": "execute_tool",
    "llm": "chat",
}

# The attribute naming what an MCP request is about, in order of preference.
_MCP_TARGETS: Final = ("gen_ai.tool.name", "gen_ai.prompt.name", "mcp.resource.uri")

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


# -- the semantic-convention view of a span ---------------------------------------------


def otel_view(
    span: WireSpan,
) -> tuple[
    str, int, Mapping[str, Any], list[tuple[str, AttrValue]], int, str, tuple[str, str, int] | None
]:
    """How a wire span reads in OpenTelemetry terms.

    Returns:
        ``(name, otel_kind, attributes, extra, status_code, status_message, exception)``:
        ``attributes`` are the span's own under their current semconv names (the
        span's dict itself when no name is deprecated), ``extra`` the attributes the
        mapping adds (implied ``gen_ai.operation.name``, ``error.type``, the
        ``rastir.*`` fidelity attributes); ``exception`` is ``(type, message,
        time_unix_nano)`` for the ``exception`` event of a failed span, or None.
    """
    kind = span.kind
    a: Mapping[str, Any] = span.attributes
    foreign = a.get(OTEL_KIND_ATTR)
    if foreign is not None and foreign.__class__ is str and foreign in _OTEL_KIND_CODES:
        return _foreign_view(span, _OTEL_KIND_CODES[foreign])
    if not _RENAMED_KEYS.isdisjoint(a):
        a = _renamed(a)
    extra: list[tuple[str, AttrValue]] = []
    op = a.get("gen_ai.operation.name")
    if op is None:
        op = _IMPLIED_OPERATION.get(kind)
        if op is not None:
            extra.append(("gen_ai.operation.name", op))
    okind = OTEL_KIND.get(kind, INTERNAL)
    name = span.name
    if kind == "llm":
        model = a.get("gen_ai.request.model") or a.get("gen_ai.response.model")
        name = f"{op} {model}" if model else str(op)
    elif kind == "agent":
        name = f"invoke_agent {a.get('gen_ai.agent.name') or span.name}"
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
        method = a.get("http.request.method")
        if method:
            # HTTP semconv: "{method} {target}"; "_OTHER" (unknown method) reads "HTTP".
            method = "HTTP" if method == "_OTHER" else str(method)
            route = a.get("http.route") if kind == "http.server" else None
            name = f"{method} {route}" if route else method
    extra.append(("rastir.span.kind", kind))
    if name != span.name:
        extra.append(("rastir.span.name", span.name))
    status = span.status
    if status == "ok":
        return name, okind, a, extra, STATUS_UNSET, "", None
    if status == "cancelled":
        extra.append(("rastir.status", "cancelled"))
        return name, okind, a, extra, STATUS_UNSET, "", None
    err = span.error
    message = ""
    exception: tuple[str, str, int] | None = None
    if err is not None:
        message = err.message
        # error.type is the category unless the span already says something else.
        # rastir.error.category tells a receiver which it was, so it can rebuild the
        # span exactly: absent when the span's own error.type is the category.
        current = a.get("error.type")
        if current is None:
            extra.append(("error.type", err.type))
            extra.append(("rastir.error.category", err.type))
        elif current != err.type:
            extra.append(("rastir.error.category", err.type))
        exception = _exception_event(span)
    return name, okind, a, extra, STATUS_ERROR, message, exception


def _foreign_view(
    span: WireSpan, okind: int
) -> tuple[
    str, int, Mapping[str, Any], list[tuple[str, AttrValue]], int, str, tuple[str, str, int] | None
]:
    """:func:`otel_view` of a span another SDK made (it carries ``rastir.otel.kind``).

    It leaves as it came: its own kind, name and attributes, OK when it said OK, and
    none of rastir's additions (no ``rastir.span.kind``, no implied operation, no
    ``error.type`` or category rastir derived for it). A rastir receiver infers the
    same kind and category from the same attributes, so nothing is lost.
    """
    a: Mapping[str, Any] = {k: v for k, v in span.attributes.items() if k not in _FOREIGN_KEYS}
    if not _RENAMED_KEYS.isdisjoint(a):
        a = _renamed(a)
    extra: list[tuple[str, AttrValue]] = []
    status = span.status
    if status == "ok":
        ok = span.attributes.get(OTEL_STATUS_ATTR) == "ok"
        return span.name, okind, a, extra, STATUS_OK if ok else STATUS_UNSET, "", None
    if status == "cancelled":
        extra.append(("rastir.status", "cancelled"))
        return span.name, okind, a, extra, STATUS_UNSET, "", None
    err = span.error
    if err is None:
        return span.name, okind, a, extra, STATUS_ERROR, "", None
    return span.name, okind, a, extra, STATUS_ERROR, err.message, _exception_event(span)


def _exception_event(span: WireSpan) -> tuple[str, str, int] | None:
    """``(type, message, time)`` of the ``exception`` event a failed span gets, or None.

    Only for an exception that was really raised: not when the span already has an
    ``exception`` event (an OTel SDK's ``record_exception``, kept as it came), and not
    for an error without one, such as an HTTP response with a 4xx/5xx status, whose
    status code the HTTP middleware may hold as ``exception_type`` (all digits).
    Exception semantic conventions: the event records an exception, nothing else.
    """
    err = span.error
    if err is None:
        return None
    exc_type = err.exception_type
    if not exc_type or exc_type.isdigit():
        return None
    for ev in span.events:
        if ev.name == "exception":
            return None
    return exc_type, err.message, span.end_time_unix_nano


_RENAMED_KEYS: Final = frozenset(RENAMED)


def _renamed(a: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in a.items():
        new = RENAMED.get(key)
        if new is not None:
            if new in a:
                continue  # the current name wins over the deprecated one
            if key == "http.target":
                value = split_target(value, a, out)
            key = new
        out[key] = value
    return out


def split_target(value: Any, attrs: Mapping[str, Any], out: dict[str, Any]) -> Any:
    """``http.target`` as ``url.path``: its query, if any, goes to ``url.query``.

    The HTTP conventions split the deprecated ``http.target`` (``/items?id=1``) in
    two; ``url.query`` is set only when ``attrs`` has none of its own.
    """
    if value.__class__ is str and "?" in value:
        value, _, query = value.partition("?")
        if "url.query" not in attrs:
            out["url.query"] = query
    return value


# -- protobuf --------------------------------------------------------------------------

_ONE_BYTE: Final = [bytes((i,)) for i in range(128)]
_pack_times = struct.Struct("<BQBQ").pack  # Span fields 7 and 8, fixed64
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_fromhex = bytes.fromhex


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
        b: bytes = value.encode("utf-8", "replace")
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


class _AttrCache:
    """Framed ``KeyValue`` fields for one field tag, cached.

    Keys repeat on every span and so do most string values (models, operations,
    routes, agent names): their encoded bytes are kept, up to a bound, past which the
    cache starts over, so ids and free text cannot make it grow.
    """

    __slots__ = ("keys", "pairs", "tag")

    MAX_PAIRS: Final = 8192
    MAX_VALUE: Final = 256

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.keys: dict[str, bytes] = {}
        self.pairs: dict[tuple[str, str], bytes] = {}

    def key(self, key: str) -> bytes:
        kb = key.encode("utf-8", "replace")
        prefix = self.keys[key] = b"\x0a" + _varint(len(kb)) + kb + b"\x12"
        if len(self.keys) > self.MAX_PAIRS:
            self.keys.clear()
        return prefix

    def field(self, key: str, value: Any) -> bytes:
        """The whole field: tag, length, ``KeyValue``."""
        if value.__class__ is str:
            pairs = self.pairs
            ck = (key, value)
            framed = pairs.get(ck)
            if framed is not None:
                return framed
            prefix = self.keys.get(key) or self.key(key)
            vb = value.encode("utf-8", "replace")
            av = b"\x0a" + _varint(len(vb)) + vb
            kv = prefix + _varint(len(av)) + av
            framed = self.tag + _varint(len(kv)) + kv
            if len(vb) <= self.MAX_VALUE:
                if len(pairs) >= self.MAX_PAIRS:
                    pairs.clear()
                pairs[ck] = framed
            return framed
        prefix = self.keys.get(key) or self.key(key)
        if value.__class__ is int and 0 <= value <= _INT64_MAX:
            vb = _ONE_BYTE[value] if value < 128 else _varint(value)
            kv = prefix + _ONE_BYTE[len(vb) + 1] + b"\x18" + vb
        else:
            av = _any_value(value)
            kv = prefix + _varint(len(av)) + av
        n = len(kv)
        return self.tag + (_ONE_BYTE[n] if n < 128 else _varint(n)) + kv

    def extend(self, attrs: Iterable[tuple[str, Any]], out: list[bytes]) -> None:
        field = self.field
        for key, value in attrs:
            out.append(field(key, value))


_SPAN_ATTRS: Final = _AttrCache(b"\x4a")  # Span.attributes = 9
_EVENT_ATTRS: Final = _AttrCache(b"\x1a")  # Span.Event.attributes = 3
_LINK_ATTRS: Final = _AttrCache(b"\x22")  # Span.Link.attributes = 4
_RESOURCE_ATTRS: Final = _AttrCache(b"\x0a")  # Resource.attributes = 1

_FLAGS_SAMPLED: Final = b"\x85\x01\x01\x00\x00\x00"  # Span.flags = 16, fixed32: sampled
_LINK_FLAGS_SAMPLED: Final = b"\x35\x01\x00\x00\x00"  # Link.flags = 6, fixed32
_KIND_FIELD: Final = [b"\x30" + _ONE_BYTE[k] for k in range(6)]  # Span.kind = 6


def _span(span: WireSpan) -> bytes:
    name, okind, attrs, extra, code, message, exception = otel_view(span)
    nb = name.encode("utf-8", "replace")
    parent = span.parent_span_id
    parts: list[bytes] = [
        b"\x0a\x10" + _fromhex(span.trace_id) + b"\x12\x08" + _fromhex(span.span_id)
        if parent is None
        else b"\x0a\x10"
        + _fromhex(span.trace_id)
        + b"\x12\x08"
        + _fromhex(span.span_id)
        + b"\x22\x08"
        + _fromhex(parent),
        b"\x2a" + _varint(len(nb)) + nb + _KIND_FIELD[okind],
        _pack_times(0x39, span.start_time_unix_nano, 0x41, span.end_time_unix_nano),
    ]
    field = _SPAN_ATTRS.field
    for key, value in attrs.items():
        parts.append(field(key, value))
    for key, value in extra:
        parts.append(field(key, value))
    if span.events:
        for ev in span.events:
            parts.append(_frame(b"\x5a", _event(ev.name, ev.time_unix_nano, ev.attributes.items())))
    if exception is not None:
        exc_type, exc_message, at = exception
        ev_attrs: list[tuple[str, str]] = []
        if exc_type:
            ev_attrs.append(("exception.type", exc_type))
        if exc_message:
            ev_attrs.append(("exception.message", exc_message))
        parts.append(_frame(b"\x5a", _event("exception", at, ev_attrs)))
    if span.links:
        for ln in span.links:
            lp: list[bytes] = [
                b"\x0a\x10" + _fromhex(ln.trace_id) + b"\x12\x08" + _fromhex(ln.span_id)
            ]
            _LINK_ATTRS.extend(ln.attributes.items(), lp)
            lp.append(_LINK_FLAGS_SAMPLED)
            parts.append(_frame(b"\x6a", b"".join(lp)))
    if code:
        st = b"\x18" + _ONE_BYTE[code]
        if message:
            mb = message.encode("utf-8", "replace")
            st = b"\x12" + _varint(len(mb)) + mb + st
        parts.append(b"\x7a" + _varint(len(st)) + st)
    if span.sampled:
        parts.append(_FLAGS_SAMPLED)  # else 0, the default: not written
    body = b"".join(parts)
    # ScopeSpans.spans = 2
    return b"\x12" + _varint(len(body)) + body


def _event(name: str, at: int, attrs: Iterable[tuple[str, Any]]) -> bytes:
    nb = name.encode("utf-8", "replace")
    ep: list[bytes] = [b"\x09" + _pack_fixed64(at) + b"\x12" + _varint(len(nb)) + nb]
    _EVENT_ATTRS.extend(attrs, ep)
    return b"".join(ep)


_scope_field: bytes | None = None


def _scope() -> bytes:
    """ScopeSpans.scope = 1: InstrumentationScope(name="rastir", version=...)."""
    global _scope_field
    if _scope_field is None:
        from rastir import __version__

        name = b"rastir"
        version = __version__.encode()
        scope = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(version)) + version
        _scope_field = _frame(b"\x0a", scope)
    return _scope_field


def encode_request(batches: Iterable[tuple[Mapping[str, Any], Sequence[WireSpan]]]) -> bytes:
    """A serialized ``ExportTraceServiceRequest``: one ``ResourceSpans`` per batch.

    Args:
        batches: ``(resource attributes, spans)`` pairs, typically one per service.

    Returns:
        The protobuf bytes, ready for ``POST /v1/traces`` with
        ``Content-Type: application/x-protobuf``.
    """
    scope = _scope()
    out: list[bytes] = []
    for resource, spans in batches:
        rp: list[bytes] = []
        _RESOURCE_ATTRS.extend(resource.items(), rp)
        res = b"".join(rp)
        scope_spans = b"".join([scope, *map(_span, spans)])
        # ResourceSpans: resource = 1, scope_spans = 2
        rs = b"\x0a" + _varint(len(res)) + res + b"\x12" + _varint(len(scope_spans)) + scope_spans
        # ExportTraceServiceRequest.resource_spans = 1
        out.append(b"\x0a" + _varint(len(rs)) + rs)
    return b"".join(out)


def encode_batch_otlp(
    spans: Iterable[Span], resource: Mapping[str, Any], dropped: int = 0
) -> bytes:
    """Direct mode (``configure(exporter="otlp")``): finished spans as one request.

    Spans of traces that head sampling dropped are left out: an OpenTelemetry
    collector has no use for them (a rastir collector still counts them in its
    metrics). ``dropped`` is accepted for the exporter's sake; OTLP has no field for
    it, so the exporter counts drops itself.
    """
    from rastir.export._encode import wire_spans

    # The encoder only reads the records, so the shared empty lists are safe here.
    wire = [w for w in wire_spans(spans) if w.sampled]
    return encode_request([(resource, wire)])


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
    name, okind, attrs, extra, code, message, exception = otel_view(span)
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "flags": 1 if span.sampled else 0,
        "name": name,
        "kind": okind,
        "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": _json_attrs(attrs.items()) + _json_attrs(extra),
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
