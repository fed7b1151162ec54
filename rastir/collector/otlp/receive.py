"""``POST /v1/traces``: OTLP/HTTP in, rastir spans out (OTLP spec, "OTLP/HTTP").

Any OpenTelemetry SDK can send here, as protobuf (``application/x-protobuf``) or
OTLP/JSON (``application/json``), gzipped or not. The endpoint is the ingest endpoint
with another decoder: the same bearer token, body limit, 429-before-decode rule,
checks, metrics, store and sinks (:class:`rastir.collector.ingest.IngestEndpoint`).

Decoding maps OpenTelemetry spans back to rastir spans, so the same metrics move:

* a span exported by rastir (:mod:`rastir.export.otlp`) carries ``rastir.span.kind``
  and, where needed, ``rastir.span.name``, ``rastir.status`` and
  ``rastir.error.category``: it is rebuilt exactly;
* any other span gets its kind from the semantic conventions: ``mcp.method.name``
  (mcp.server for a SERVER span, else mcp.client), then ``gen_ai.operation.name``
  (chat, text_completion, generate_content, embeddings: llm; invoke_agent: agent;
  execute_tool: tool; retrieval; without it, OpenLLMetry's ``llm.request.type`` chat,
  completion or embedding: llm), then ``http.request.method`` with a SERVER or
  CLIENT span (http.server, http.client), else ``trace``. Its own OTel kind is kept
  in ``rastir.otel.kind`` and an explicit status OK in ``rastir.otel.status``, so
  that the collector's OTLP export sends it on as it came (name, kind, status, events).

Deprecated attribute names (``gen_ai.system``, ``http.method``, ...) are read under
their current names. A span that cannot be a rastir span (ids of the wrong length,
an all-zero id, end before start, a time beyond int64) is rejected alone and reported
in the reply's ``partial_success``; the others are accepted. A protobuf string that is
not UTF-8 is read with U+FFFD instead of failing the whole request (see
:func:`_lenient_request`); OTLP/JSON ``null`` is a field's default (proto3 JSON).

Replies follow OTLP/HTTP: 200 with an ``ExportTraceServiceResponse`` in the request's
encoding; on failure a ``google.rpc.Status`` (in the request's encoding), with
``Retry-After`` on 429 and 503.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Final, get_args

import anyio.to_thread
import msgspec

from rastir._wire import (
    ERROR_CATEGORIES,
    INT64_MAX,
    INT64_MIN,
    AttrValue,
    Kind,
    WireError,
    WireEvent,
    WireLink,
    WireSpan,
)
from rastir.collector.ingest import IngestEndpoint, Receive, Rejection, Scope, Send, SpanGroup
from rastir.collector.metrics import Metrics, counter
from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState
from rastir.errors import classify_status
from rastir.export.otlp import (
    CLIENT,
    OTEL_KIND_ATTR,
    OTEL_KIND_NAMES,
    OTEL_STATUS_ATTR,
    RENAMED,
    SERVER,
    STATUS_ERROR,
    STATUS_OK,
    split_target,
)

try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
except ImportError as e:  # pragma: no cover - the collector extra installs it
    raise ImportError(
        "OTLP receive needs opentelemetry-proto: pip install 'rastir[collector]'"
    ) from e

__all__ = [
    "Decoded",
    "OtlpDecodeError",
    "OtlpReceiveEndpoint",
    "decode_json",
    "decode_protobuf",
    "infer_kind",
    "to_wire",
]

PROTOBUF: Final = "protobuf"
JSON: Final = "json"

# What ``gen_ai.operation.name`` says about the kind (GenAI semconv operation names).
logger = logging.getLogger("rastir.collector")
_OPERATION_KIND: Final[Mapping[str, str]] = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "llm",
    "invoke_agent": "agent",
    "execute_tool": "tool",
    "retrieval": "retrieval",
}
# OpenLLMetry's ``llm.request.type`` values that are LLM calls.
_LLM_REQUEST_TYPES: Final = frozenset(("chat", "completion", "embedding"))
_KINDS: Final = frozenset(get_args(Kind))
_CATEGORIES: Final = frozenset(ERROR_CATEGORIES)
_EXCEPTION_KEYS: Final = frozenset(("exception.type", "exception.message"))
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16

# google.rpc.Code, for the Status of a failed request (OTLP/HTTP "Failures").
_GRPC_CODE: Final[Mapping[int, int]] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,
    429: 8,
    503: 14,  # UNAVAILABLE
}


class OtlpDecodeError(ValueError):
    """The body is not a valid ``ExportTraceServiceRequest`` in the declared encoding."""


class Decoded:
    """One request decoded: ``(resource, spans)`` groups and the spans refused."""

    __slots__ = ("groups", "reason", "rejected")

    def __init__(self) -> None:
        self.groups: list[tuple[dict[str, Any], list[WireSpan]]] = []
        self.rejected = 0
        self.reason = ""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if not self.reason:
            self.reason = reason

    @property
    def span_count(self) -> int:
        return sum(len(spans) for _, spans in self.groups)


# -- from OpenTelemetry terms back to rastir's ------------------------------------------


def _scalar(value: Any) -> AttrValue:
    if value.__class__ is float and not math.isfinite(value):
        return str(value)  # the wire format (JSON) has no literal for it
    return value  # type: ignore[no-any-return]


def infer_kind(otel_kind: int, attrs: Mapping[str, Any]) -> str:
    """The rastir kind of a span that does not say it: from its semconv attributes."""
    if attrs.get("mcp.method.name"):
        return "mcp.server" if otel_kind == SERVER else "mcp.client"
    op = attrs.get("gen_ai.operation.name")
    if op.__class__ is str:
        kind = _OPERATION_KIND.get(op)
        if kind is not None:
            return kind
    elif op is None:
        # Instrumentations older than gen_ai.operation.name (OpenLLMetry writes
        # llm.request.type, with gen_ai.system and gen_ai.usage.prompt_tokens).
        request_type = attrs.get("llm.request.type")
        if request_type.__class__ is str and request_type in _LLM_REQUEST_TYPES:
            return "llm"
    if attrs.get("http.request.method"):
        if otel_kind == SERVER:
            return "http.server"
        if otel_kind == CLIENT:
            return "http.client"
    return "trace"


def _error_category(attrs: dict[str, Any]) -> str:
    category = attrs.pop("rastir.error.category", None)
    if category.__class__ is str and category in _CATEGORIES:
        if attrs.get("error.type") == category:
            del attrs["error.type"]  # rastir's exporter wrote it from the category
        return category
    current = attrs.get("error.type")
    if current.__class__ is str and current in _CATEGORIES:
        return current
    status = attrs.get("http.response.status_code")
    if status.__class__ is int and status >= 400:
        return classify_status(status)
    return "unknown"


# The pricing registry's int-count entry point once enable_foreign_pricing() has
# loaded the price data; False when there is none (the pricing extra is missing).
_price: Any = None


def enable_foreign_pricing() -> bool:
    """Load what pricing other SDKs' LLM spans needs; False if pricing is broken.

    genai-prices' tables take a few hundred milliseconds and about 30 MB: the
    endpoint calls this in a worker thread, the first time a request holds such a
    span, so a collector that never receives one never pays for them. Without the
    price data (no ``pricing`` extra) the spans are still looked up, in the overrides
    alone, so they end up ``rastir.cost.unknown`` rather than silently costing $0.
    """
    global _price
    if _price is None:
        try:
            from rastir.pricing import get_pricing

            registry = get_pricing()
            if registry.has_price_data:
                registry.preload()
            else:
                logger.warning(
                    "no price data (install rastir[pricing]): LLM spans received over "
                    "OTLP are marked rastir.cost.unknown"
                )
            _price = registry.price_counts
        except Exception:
            logger.warning("pricing received LLM spans is off: no price data", exc_info=True)
            _price = False
    return _price is not False


def _unpriced(decoded: Decoded) -> list[dict[str, Any]]:
    """The attributes of other SDKs' LLM spans that carry no cost."""
    return [
        a
        for _, spans in decoded.groups
        for span in spans
        if span.kind == "llm"
        and OTEL_KIND_ATTR in (a := span.attributes)
        and "rastir.cost.usd" not in a
        and "rastir.cost.unknown" not in a
    ]


def _count(attrs: Mapping[str, Any], key: str) -> int | None:
    value = attrs.get(key)
    return value if value.__class__ is int and value >= 0 else None


def _price_foreign(attrs: dict[str, Any]) -> None:
    """``rastir.cost.usd`` for another SDK's LLM span, from its model and token counts,
    as rastir's SDK prices its own calls; ``rastir.cost.unknown`` when the model has no
    price. Counts are read as the provider reports them (OpenAI's input includes cache
    reads, Anthropic's does not); an input smaller than its cache counts is taken as
    excluding them, whatever the provider."""
    tin = _count(attrs, "gen_ai.usage.input_tokens")
    tout = _count(attrs, "gen_ai.usage.output_tokens")
    if tin is None and tout is None:
        return
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    if model.__class__ is not str or not model:
        attrs["rastir.cost.unknown"] = True
        return
    provider = attrs.get("gen_ai.provider.name")
    if provider.__class__ is not str:
        provider = None
    read = _count(attrs, "gen_ai.usage.cache_read.input_tokens") or 0
    write = _count(attrs, "gen_ai.usage.cache_creation.input_tokens") or 0
    try:
        try:
            cost = _price(provider, model, tin or 0, tout or 0, read, write)
        except ValueError:  # cache counts beyond the input: they are not inside it
            cost = _price(provider, model, tin or 0, tout or 0, read, write, False)
    except Exception:
        logger.debug("pricing a received LLM span failed", exc_info=True)
        cost = None
    if cost is None:
        attrs["rastir.cost.unknown"] = True
    else:
        attrs["rastir.cost.usd"] = float(cost)


def to_wire(
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    otel_kind: int,
    start: int,
    end: int,
    attrs: dict[str, Any],
    events: list[WireEvent],
    links: list[WireLink],
    status_code: int,
    status_message: str,
) -> WireSpan:
    """A rastir span from the parts of an OpenTelemetry span (ids already checked)."""
    if not _RENAMED_KEYS.isdisjoint(attrs):
        for old in _RENAMED_KEYS.intersection(attrs):
            value = attrs.pop(old)
            if old == "http.target":
                value = split_target(value, attrs, attrs)
            attrs.setdefault(RENAMED[old], value)
    kind = attrs.pop("rastir.span.kind", None)
    ours = kind.__class__ is str and kind in _KINDS
    if not ours:
        # Another SDK's span: rastir's kind is inferred, and what it cannot say is kept
        # for export (rastir.export.otlp sends the span back out as it came).
        kind = infer_kind(otel_kind, attrs)
        attrs[OTEL_KIND_ATTR] = (
            OTEL_KIND_NAMES[otel_kind] if 0 <= otel_kind < len(OTEL_KIND_NAMES) else "unspecified"
        )
        if status_code == STATUS_OK:
            attrs[OTEL_STATUS_ATTR] = "ok"
    original = attrs.pop("rastir.span.name", None)
    if original.__class__ is str:
        name = original
    marker = attrs.pop("rastir.status", None)
    status = "ok"
    error = None
    if status_code == STATUS_ERROR:
        status = "error"
        exc_type = ""
        message = status_message
        for i in range(len(events) - 1, -1, -1):
            ev = events[i]
            if ev.name == "exception":
                exc_type = str(ev.attributes.get("exception.type", ""))
                if not message:
                    message = str(ev.attributes.get("exception.message", ""))
                if (
                    ours
                    and i == len(events) - 1
                    and ev.time_unix_nano == end
                    and _EXCEPTION_KEYS.issuperset(ev.attributes)
                ):
                    # The event rastir's exporter makes from the error: it is the error.
                    # (Another SDK's exception event is the sender's own: kept.)
                    del events[i]
                break
        error = WireError(
            type=_error_category(attrs),  # type: ignore[arg-type]
            exception_type=exc_type,
            message=message,
        )
    elif marker == "cancelled":
        status = "cancelled"
    return WireSpan(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        parent_span_id=parent_span_id,
        status=status,  # type: ignore[arg-type]
        error=error,
        attributes=attrs,
        events=events,
        links=links,
    )


_RENAMED_KEYS: Final = frozenset(RENAMED)


def _check_ids(
    trace_id: str, span_id: str, parent: str, out: Decoded
) -> tuple[str, str, str | None] | None:
    """The ids as rastir holds them, or None (and the span counted as rejected)."""
    if len(trace_id) != 32 or trace_id == _ZERO_TRACE:
        out.reject(f"span {span_id or '?'}: trace_id must be 16 bytes, not all zero")
        return None
    if len(span_id) != 16 or span_id == _ZERO_SPAN:
        out.reject(f"span in trace {trace_id}: span_id must be 8 bytes, not all zero")
        return None
    if not parent or parent == _ZERO_SPAN:
        return trace_id, span_id, None  # empty (or zero, as some senders write): a root
    if len(parent) != 16:
        out.reject(f"span {span_id}: parent_span_id must be empty or 8 bytes")
        return None
    return trace_id, span_id, parent


def _bad_times(span_id: str, start: int, end: int, events: list[WireEvent], out: Decoded) -> bool:
    """Whether the span's times cannot be rastir's; if so it is counted as rejected.

    Callers test ``end < start or end > INT64_MAX or events`` first, the common case.
    """
    if end < start or start < 0:
        out.reject(f"span {span_id}: end_time_unix_nano is before start_time_unix_nano")
        return True
    if end > INT64_MAX or any(not 0 <= ev.time_unix_nano <= INT64_MAX for ev in events):
        # fixed64 reaches 2**64, rastir's nanoseconds (and its stores) int64: year 2262.
        out.reject(f"span {span_id}: a time is beyond 2262 (int64 nanoseconds)")
        return True
    return False


# -- protobuf ----------------------------------------------------------------------------

_lenient_class: Any = None


def _lenient_request(body: bytes) -> ExportTraceServiceRequest | None:
    """``body`` read with every string field taken as bytes, converted back; or None.

    The fallback for a request a proto3 parser refuses: when it fails only because a
    string is not valid UTF-8, the strings are decoded with U+FFFD for the bad bytes.
    Built on first use from the installed protos' descriptors, in a pool of its own.
    """
    global _lenient_class
    if _lenient_class is None:
        from google.protobuf import (  # type: ignore[import-untyped]
            descriptor_pb2,
            descriptor_pool,
            message_factory,
        )

        pool = descriptor_pool.DescriptorPool()
        todo = [ExportTraceServiceRequest.DESCRIPTOR.file]
        files: list[Any] = []
        while todo:  # the file and its dependencies, dependencies first
            f = todo.pop()
            if f not in files:
                files.insert(0, f)
                todo.extend(f.dependencies)
        for f in files:
            proto = descriptor_pb2.FileDescriptorProto()
            f.CopyToProto(proto)
            messages = list(proto.message_type)
            while messages:
                m = messages.pop()
                messages.extend(m.nested_type)
                for fd in m.field:
                    if fd.type == fd.TYPE_STRING:
                        fd.type = fd.TYPE_BYTES
            pool.Add(proto)
        descriptor = pool.FindMessageTypeByName(ExportTraceServiceRequest.DESCRIPTOR.full_name)
        get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
        if get_class is not None:
            _lenient_class = get_class(descriptor)
        else:  # pragma: no cover - older protobuf
            _lenient_class = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    try:
        lenient = _lenient_class.FromString(body)
    except Exception:
        return None
    request = ExportTraceServiceRequest()
    _copy_decoding(lenient, request)
    return request


def _is_repeated(fd: Any) -> bool:
    repeated = getattr(fd, "is_repeated", None)  # protobuf >= 5.29; label before
    return bool(repeated) if repeated is not None else fd.label == fd.LABEL_REPEATED


def _copy_decoding(src: Any, dst: Any) -> None:
    """Copy a lenient message into its strict twin, decoding the bytes of string fields."""
    fields = dst.DESCRIPTOR.fields_by_name
    for fd, value in src.ListFields():
        name = fd.name
        target = fields[name]
        repeated = _is_repeated(fd)
        if fd.type == fd.TYPE_MESSAGE:
            if repeated:
                items = getattr(dst, name)
                for item in value:
                    _copy_decoding(item, items.add())
            else:
                sub = getattr(dst, name)
                sub.SetInParent()  # an empty message in a oneof is still the one set
                _copy_decoding(value, sub)
        elif target.type == target.TYPE_STRING:
            if repeated:
                getattr(dst, name).extend(v.decode("utf-8", "replace") for v in value)
            else:
                setattr(dst, name, value.decode("utf-8", "replace"))
        elif repeated:
            getattr(dst, name).extend(value)
        else:
            setattr(dst, name, value)


_STRING = "string_value"


# An attribute value is a scalar or a list of scalars; anything nested deeper (an
# array of arrays, a key-value list) is kept as the JSON text of its native value,
# encoded once. Levels below this depth are replaced by _TOO_DEEP: a value is never
# refused, and its text stays linear in the size of what was sent.
_MAX_VALUE_DEPTH: Final = 32
_TOO_DEEP: Final = f"[nested deeper than {_MAX_VALUE_DEPTH} levels]"
_SCALARS: Final = (str, int, float, bool)


def _attribute(native: Any) -> Any:
    """An attribute value from the native value of an OTLP ``AnyValue``: a scalar or a
    list of scalars as it is; a list of key-value lists (GenAI messages) as a list of
    their JSON texts; anything else nested as its JSON text."""
    if native.__class__ is dict:
        return msgspec.json.encode(native).decode()
    if native.__class__ is list:
        if all(x.__class__ in _SCALARS for x in native):
            return native
        if all(x.__class__ in _SCALARS or x.__class__ is dict for x in native):
            return [
                x if x.__class__ is not dict else msgspec.json.encode(x).decode() for x in native
            ]
        return msgspec.json.encode(native).decode()
    return native


def _pb_value(v: AnyValue) -> Any:
    return _attribute(_pb_native(v, 0))


def _pb_native(v: AnyValue, depth: int) -> Any:
    which = v.WhichOneof("value")
    if which == _STRING:
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "bool_value":
        return v.bool_value
    if which == "double_value":
        return _scalar(v.double_value)
    if which == "array_value" or which == "kvlist_value":
        if depth >= _MAX_VALUE_DEPTH:
            return _TOO_DEEP
        if which == "array_value":
            return [_pb_native(x, depth + 1) for x in v.array_value.values]
        return {kv.key: _pb_native(kv.value, depth + 1) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _pb_attrs(kvs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        # The common case first: a string, without building the oneof's name twice.
        value = v.string_value if v.WhichOneof("value") == _STRING else _pb_value(v)
        if value is not None:
            out[kv.key] = value
    return out


def decode_protobuf(body: bytes) -> Decoded:
    """An ``ExportTraceServiceRequest`` in protobuf, as rastir spans per resource.

    Raises:
        OtlpDecodeError: the body is not a valid message.
    """
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except Exception as e:  # google.protobuf.message.DecodeError, and upb's RuntimeError
        # proto3 parsers refuse a string that is not UTF-8, and with it the whole
        # request; SDKs that do not check (C++, Rust, hand-built senders) send such
        # names and values, and an OpenTelemetry Collector accepts them. Read the
        # strings as bytes instead, and decode them with replacement characters.
        request = _lenient_request(body)
        if request is None:
            raise OtlpDecodeError(f"not an ExportTraceServiceRequest in protobuf: {e}") from None
    out = Decoded()
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        spans: list[WireSpan] = []
        for ss in rs.scope_spans:
            for s in ss.spans:
                span = _pb_span(s, out)
                if span is not None:
                    spans.append(span)
        out.groups.append((resource, spans))
    return out


def _pb_span(s: PbSpan, out: Decoded) -> WireSpan | None:
    ids = _check_ids(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), out)
    if ids is None:
        return None
    start = s.start_time_unix_nano
    end = s.end_time_unix_nano
    events = [
        WireEvent(
            name=ev.name, time_unix_nano=ev.time_unix_nano, attributes=_pb_attrs(ev.attributes)
        )
        for ev in s.events
    ]
    if (end < start or end > INT64_MAX or events) and _bad_times(ids[1], start, end, events, out):
        return None
    links: list[WireLink] = []
    for ln in s.links:
        tid = ln.trace_id.hex()
        sid = ln.span_id.hex()
        if len(tid) == 32 and len(sid) == 16 and tid != _ZERO_TRACE and sid != _ZERO_SPAN:
            links.append(WireLink(trace_id=tid, span_id=sid, attributes=_pb_attrs(ln.attributes)))
    return to_wire(
        ids[0],
        ids[1],
        ids[2],
        s.name,
        s.kind,
        start,
        end,
        _pb_attrs(s.attributes),
        events,
        links,
        s.status.code,
        s.status.message,
    )


# -- OTLP/JSON ---------------------------------------------------------------------------
# Field names in lowerCamelCase, ids in hex, enums as integers, 64-bit integers as
# decimal strings or numbers (OTLP spec, "JSON Protobuf Encoding").

# A 64-bit integer, signed (intValue) or not (fixed64 times), as protobuf carries:
# msgspec checks the lower bound (it cannot bound above int64), _int64 the rest.
_UINT64_MAX: Final = (1 << 64) - 1
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN)] | str


# proto3 JSON: ``null`` is accepted for every field and means its default; hence the
# ``| None`` on every field (read through ``or`` below).


class _JArray(msgspec.Struct):
    values: list[_JValue | None] | None = None


class _JKeyValueList(msgspec.Struct):
    values: list[_JKeyValue | None] | None = None


class _JValue(msgspec.Struct, rename="camel"):
    string_value: str | None = None
    bool_value: bool | None = None
    int_value: Int64 | None = None
    double_value: float | str | None = None
    array_value: _JArray | None = None
    kvlist_value: _JKeyValueList | None = None
    bytes_value: str | None = None


class _JKeyValue(msgspec.Struct):
    key: str | None = None
    value: _JValue | None = None


class _JEvent(msgspec.Struct, rename="camel"):
    time_unix_nano: Int64 | None = None
    name: str | None = None
    attributes: list[_JKeyValue | None] | None = None


class _JLink(msgspec.Struct, rename="camel"):
    trace_id: str | None = None
    span_id: str | None = None
    attributes: list[_JKeyValue | None] | None = None


class _JStatus(msgspec.Struct):
    message: str | None = None
    code: int | str | None = None


class _JSpan(msgspec.Struct, rename="camel"):
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    name: str | None = None
    kind: int | str | None = None
    start_time_unix_nano: Int64 | None = None
    end_time_unix_nano: Int64 | None = None
    attributes: list[_JKeyValue | None] | None = None
    events: list[_JEvent | None] | None = None
    links: list[_JLink | None] | None = None
    status: _JStatus | None = None


class _JScopeSpans(msgspec.Struct):
    spans: list[_JSpan | None] | None = None


class _JResource(msgspec.Struct):
    attributes: list[_JKeyValue | None] | None = None


class _JResourceSpans(msgspec.Struct, rename="camel"):
    resource: _JResource | None = None
    scope_spans: list[_JScopeSpans | None] | None = None


class _JRequest(msgspec.Struct, rename="camel"):
    resource_spans: list[_JResourceSpans | None] | None = None


_json_decoder = msgspec.json.Decoder(_JRequest)

_SPAN_KINDS: Final[Mapping[str, int]] = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES: Final[Mapping[str, int]] = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}
_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def _int64(value: Int64 | None, where: str) -> int:
    if value is None:
        return 0
    if value.__class__ is int:
        if value > _UINT64_MAX:
            raise OtlpDecodeError(f"{where}: {str(value)[:64]}... is not a 64-bit integer")
        return value
    text = str(value)
    try:
        n = int(text)
    except ValueError:
        raise OtlpDecodeError(f"{where}: {text[:64]!r} is not an integer") from None
    if not INT64_MIN <= n <= _UINT64_MAX:
        raise OtlpDecodeError(f"{where}: {text[:64]!r} is not a 64-bit integer")
    return n


def _enum(value: int | str | None, names: Mapping[str, int], where: str) -> int:
    if value is None:
        return 0
    if value.__class__ is int:
        return value
    try:
        return names[value]  # type: ignore[index]
    except KeyError:
        raise OtlpDecodeError(f"{where}: unknown value {value!r}") from None


def _j_value(v: _JValue | None) -> Any:
    return _attribute(_j_native(v, 0))


def _j_native(v: _JValue | None, depth: int) -> Any:
    if v is None:
        return None
    if v.string_value is not None:
        return v.string_value
    if v.int_value is not None:
        return _int64(v.int_value, "intValue")
    if v.bool_value is not None:
        return v.bool_value
    if v.double_value is not None:
        d = v.double_value
        if d.__class__ is str:
            try:
                d = float(d)  # "NaN", "Infinity", "-Infinity" in proto3 JSON
            except ValueError:
                raise OtlpDecodeError(f"doubleValue: {d!r} is not a number") from None
        return _scalar(d)
    if v.array_value is not None or v.kvlist_value is not None:
        if depth >= _MAX_VALUE_DEPTH:
            return _TOO_DEEP
        if v.array_value is not None:
            return [_j_native(x, depth + 1) for x in v.array_value.values or ()]
        assert v.kvlist_value is not None
        return {
            kv.key or "": _j_native(kv.value, depth + 1) for kv in v.kvlist_value.values or () if kv
        }
    if v.bytes_value is not None:
        return v.bytes_value  # already base64 in OTLP/JSON
    return None


def _j_attrs(kvs: list[_JKeyValue | None] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kvs:
        for kv in kvs:
            if kv is not None and kv.key is not None:
                value = _j_value(kv.value)
                if value is not None:
                    out[kv.key] = value
    return out


def _hex_id(value: str | None) -> str:
    # OTLP/JSON ids are hex, case-insensitive; anything else cannot be an id.
    if not value:
        return ""
    low = value.lower()
    return low if _HEX_DIGITS.issuperset(low) else "!"


def decode_json(body: bytes) -> Decoded:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON, as rastir spans per resource.

    Raises:
        OtlpDecodeError: the body is not a valid OTLP/JSON request.
    """
    try:
        request = _json_decoder.decode(body)
    except msgspec.DecodeError as e:
        raise OtlpDecodeError(f"not an ExportTraceServiceRequest in OTLP/JSON: {e}") from None
    except RecursionError:  # nested beyond what the decoder follows (thousands deep)
        raise OtlpDecodeError(
            "not an ExportTraceServiceRequest in OTLP/JSON: nested too deeply"
        ) from None
    out = Decoded()
    for rs in request.resource_spans or ():
        if rs is None:
            continue
        resource = _j_attrs(rs.resource.attributes) if rs.resource is not None else {}
        spans: list[WireSpan] = []
        for ss in rs.scope_spans or ():
            for s in (ss.spans or ()) if ss is not None else ():
                span = _j_span(s, out) if s is not None else None
                if span is not None:
                    spans.append(span)
        out.groups.append((resource, spans))
    return out


def _j_span(s: _JSpan, out: Decoded) -> WireSpan | None:
    tid, sid, pid = _hex_id(s.trace_id), _hex_id(s.span_id), _hex_id(s.parent_span_id)
    if "!" in (tid, sid, pid):
        # The usual mistake: protobuf's own JSON mapping (json_format) writes base64.
        out.reject(
            f"span {s.span_id!r}: ids in OTLP/JSON are hex strings (not base64, as "
            "protobuf's JSON mapping writes them)"
        )
        return None
    ids = _check_ids(tid, sid, pid, out)
    if ids is None:
        return None
    start = _int64(s.start_time_unix_nano, "startTimeUnixNano")
    end = _int64(s.end_time_unix_nano, "endTimeUnixNano")
    events = [
        WireEvent(
            name=ev.name or "",
            time_unix_nano=_int64(ev.time_unix_nano, "timeUnixNano"),
            attributes=_j_attrs(ev.attributes),
        )
        for ev in s.events or ()
        if ev is not None
    ]
    if (start < 0 or end < start or end > INT64_MAX or events) and _bad_times(
        ids[1], start, end, events, out
    ):
        return None
    links: list[WireLink] = []
    for ln in s.links or ():
        if ln is None:
            continue
        ltid = _hex_id(ln.trace_id)
        lsid = _hex_id(ln.span_id)
        if len(ltid) == 32 and len(lsid) == 16 and ltid != _ZERO_TRACE and lsid != _ZERO_SPAN:
            links.append(WireLink(trace_id=ltid, span_id=lsid, attributes=_j_attrs(ln.attributes)))
    status = s.status
    return to_wire(
        ids[0],
        ids[1],
        ids[2],
        s.name or "",
        _enum(s.kind, _SPAN_KINDS, "kind"),
        start,
        end,
        _j_attrs(s.attributes),
        events,
        links,
        0 if status is None else _enum(status.code, _STATUS_CODES, "status.code"),
        "" if status is None else status.message or "",
    )


# -- replies -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _pb_string(field: int, text: str) -> bytes:
    b = text.encode()
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def response_body(fmt: str, rejected: int, message: str) -> bytes:
    """``ExportTraceServiceResponse``, with ``partial_success`` when spans were refused."""
    if fmt == PROTOBUF:
        if not rejected:
            return b""
        # ExportTracePartialSuccess: rejected_spans = 1 (int64), error_message = 2
        partial = b"\x08" + _varint(rejected) + (_pb_string(2, message) if message else b"")
        return b"\x0a" + _varint(len(partial)) + partial
    if not rejected:
        return b"{}"
    return msgspec.json.encode(
        {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
    )


def status_body(fmt: str, http_status: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (code = 1, message = 2) for a failed request."""
    code = _GRPC_CODE.get(http_status, 2 if http_status < 500 else 14)
    if fmt == PROTOBUF:
        return b"\x08" + _varint(code) + _pb_string(2, message)
    return msgspec.json.encode({"code": code, "message": message})


def _format_of(scope: Scope) -> str | None:
    """The request's OTLP encoding from its ``Content-Type``; None when neither."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media == b"application/x-protobuf":
                return PROTOBUF
            if media == b"application/json":
                return JSON
            return None
    return None


_CONTENT_TYPE: Final[Mapping[str, bytes]] = {
    PROTOBUF: b"application/x-protobuf",
    JSON: b"application/json",
}


class OtlpReceiveEndpoint(IngestEndpoint):
    """The ASGI app behind ``POST /v1/traces``: :class:`IngestEndpoint`, OTLP decoding."""

    def __init__(
        self, settings: CollectorSettings, metrics: Metrics, state: CollectorState
    ) -> None:
        super().__init__(settings, metrics, state)
        self.rejected_spans = 0
        metrics.add_source(self._own_metrics)

    def _own_metrics(self) -> Iterator[Any]:
        yield counter(
            "rastir_collector_otlp_rejected_spans_total",
            "Spans refused one by one from OTLP requests (reported in partial_success).",
            self.rejected_spans,
        )

    async def _handle(self, scope: Scope, receive: Receive, gzipped: bool) -> int:
        fmt = _format_of(scope)
        if fmt is None:
            raise Rejection(
                415,
                "unsupported_media_type",
                "Content-Type must be application/x-protobuf or application/json",
            )
        body = await self._read_body(receive)
        if gzipped:
            body = self._gunzip(body)
        try:
            decoded = decode_protobuf(body) if fmt == PROTOBUF else decode_json(body)
        except OtlpDecodeError as e:
            raise Rejection(400, "invalid", f"invalid body: {e}")
        total = decoded.span_count
        if total > self._max_spans:
            raise Rejection(
                413,  # as on /v1/telemetry: too big, not malformed
                "too_many_spans",
                f"request has {total} spans; the limit is {self._max_spans}",
            )
        if _price is not False:
            # Other SDKs' LLM spans carry tokens but no cost: priced as rastir's SDK
            # prices its own calls, with the price data loaded off the loop, once.
            unpriced = _unpriced(decoded)
            if unpriced and (
                _price is not None or await anyio.to_thread.run_sync(enable_foreign_pricing)
            ):
                for attributes in unpriced:
                    _price_foreign(attributes)
        groups: list[SpanGroup] = []
        for resource, spans in decoded.groups:
            if not spans:
                continue
            service = resource.get("service.name")
            if service.__class__ is not str or not service:
                service = "unknown_service"
            groups.append((service, resource, spans, 0))
        # One call for every resource: a refusal (429) after the first groups were
        # counted would have the sender's retry count them again.
        accepted = await self.accept_groups(groups) if groups else 0
        if decoded.rejected:
            self.rejected_spans += decoded.rejected
            scope["rastir.otlp.rejected"] = (decoded.rejected, decoded.reason)
        return accepted

    async def _reply_accepted(self, scope: Scope, send: Send, accepted: int) -> None:
        fmt = _format_of(scope) or JSON
        rejected, reason = scope.get("rastir.otlp.rejected", (0, ""))
        await _send(send, 200, fmt, response_body(fmt, rejected, reason))

    async def _reply_rejected(self, scope: Scope, send: Send, r: Rejection) -> None:
        fmt = _format_of(scope) or JSON
        await _send(send, r.status, fmt, status_body(fmt, r.status, r.message), r.headers)


async def _send(
    send: Send,
    status: int,
    fmt: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    h = [(b"content-type", _CONTENT_TYPE[fmt]), (b"content-length", b"%d" % len(body))]
    if headers:
        h.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": h})
    await send({"type": "http.response.body", "body": body})
