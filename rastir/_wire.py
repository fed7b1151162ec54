"""The wire format between SDKs and the collector: ``POST /v1/telemetry``.

These msgspec Structs are the single definition. The SDK's exporter encodes them;
the collector decodes and validates with them and publishes their JSON Schema at
``GET /v1/schema``. Changing a field here changes the protocol: add optional fields
only, and bump ``WIRE_VERSION`` for anything else.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = [
    "ERROR_CATEGORIES",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_SDK_EVENTS",
    "MAX_SDK_EVENT_NAME",
    "SDK_EVENTS",
    "WIRE_VERSION",
    "AttrValue",
    "WireBatch",
    "WireError",
    "WireEvent",
    "WireLink",
    "WireSpan",
    "batch_decoder",
    "json_schema",
]

WIRE_VERSION: Final = 1

#: Bounds of the typed integers (times, ``dropped``, ``version``): SQLite's integers.
#: msgspec checks them in C while decoding, so a larger value is a 400 naming its
#: path, never an overflow later. Attribute values are not bounded: the SDK sends an
#: integer beyond 64 bits as it is, and the collector copes where it reads one.
INT64_MAX: Final = (1 << 63) - 1
INT64_MIN: Final = -(1 << 63)

ErrorCategory = Literal[
    "timeout",
    "rate_limit",
    "validation_error",
    "provider_error",
    "internal_error",
    "unknown",
    "tool_error",
]
ERROR_CATEGORIES: Final[tuple[str, ...]] = (
    "timeout",
    "rate_limit",
    "validation_error",
    "provider_error",
    "internal_error",
    "unknown",
    "tool_error",
)

Kind = Literal[
    "agent",
    "llm",
    "tool",
    "retrieval",
    "trace",
    "http.server",
    "http.client",
    "mcp.client",
    "mcp.server",
    "custom",
    "evaluation",
]

#: The closed set of names a sender counts in ``WireBatch.sdk_events``: what the SDK
#: refused or survived inside the application, which no span records. ``http.*`` are
#: inbound HTTP requests (``rastir.middleware.stats``), ``mcp.*`` inbound MCP
#: ``params._meta`` (``rastir.mcp_bridge.stats``). The collector counts a name outside
#: this set under one fold value, so a newer sender never creates an unbounded label.
SDK_EVENTS: Final[tuple[str, ...]] = (
    "http.invalid_traceparent",
    "http.invalid_tracestate",
    "http.invalid_baggage",
    "http.hook_error",
    "mcp.invalid_traceparent",
    "mcp.invalid_tracestate",
    "mcp.invalid_baggage",
)
#: At most this many ``sdk_events`` entries per batch, each name at most
#: ``MAX_SDK_EVENT_NAME`` characters: room for names added later, still a bounded map.
MAX_SDK_EVENTS: Final = 64
MAX_SDK_EVENT_NAME: Final = 64

# Lowercase hex of a fixed width. The W3C rule that ids are never all zeros is
# checked by the collector after decoding: a regex for it would double decode time.
TraceId = Annotated[str, msgspec.Meta(min_length=32, max_length=32)]
SpanId = Annotated[str, msgspec.Meta(min_length=16, max_length=16)]
Scalar = str | int | float | bool
AttrValue = Scalar | list[Scalar]
# Unix nanoseconds fit int64 until 2262.
UnixNano = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]

# The span Structs are not tracked by the garbage collector (gc=False): they hold
# scalars, attribute maps and lists of other Structs, and nothing can point back at
# them, so they cannot be part of a cycle. A collector decoding 50,000 spans tracks
# 2 objects per span instead of 4, which shortens its collections.


class WireError(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False, gc=False):
    """Why a span failed. ``type`` is one of the fixed categories."""

    type: ErrorCategory
    exception_type: str = ""
    message: str = ""


class WireEvent(msgspec.Struct, omit_defaults=True, gc=False):
    name: str
    time_unix_nano: UnixNano
    attributes: dict[str, AttrValue] = {}


class WireLink(msgspec.Struct, omit_defaults=True, gc=False):
    trace_id: TraceId
    span_id: SpanId
    attributes: dict[str, AttrValue] = {}


class WireSpan(msgspec.Struct, omit_defaults=True, gc=False):
    trace_id: TraceId
    span_id: SpanId
    name: str
    kind: Kind
    start_time_unix_nano: UnixNano
    end_time_unix_nano: UnixNano
    parent_span_id: SpanId | None = None
    status: Literal["ok", "error", "cancelled"] = "ok"
    error: WireError | None = None
    attributes: dict[str, AttrValue] = {}
    events: list[WireEvent] = []
    links: list[WireLink] = []
    #: False: head sampling dropped the trace (``rastir.sampling``). The collector
    #: still derives metrics from the span, then neither stores nor exports it.
    #: Absent means true, so older senders and receivers are unaffected.
    sampled: bool = True


Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
SdkEventName = Annotated[str, msgspec.Meta(max_length=MAX_SDK_EVENT_NAME)]


class WireBatch(msgspec.Struct, omit_defaults=True):
    """One POST body. ``dropped`` counts spans the sender lost since its last batch."""

    spans: list[WireSpan]
    resource: dict[str, Scalar] = {}
    dropped: Count = 0
    #: Only ``WIRE_VERSION`` is accepted; the collector answers 400 to any other.
    version: Count = WIRE_VERSION
    #: How many times each of the sender's health events (names from ``SDK_EVENTS``)
    #: happened since its last batch that got through; absent when none did. Added
    #: in version 1 as an optional field: a collector that predates it ignores it
    #: (the Structs do not forbid unknown fields), and a batch without it is read
    #: as an empty map.
    sdk_events: Annotated[dict[SdkEventName, Count], msgspec.Meta(max_length=MAX_SDK_EVENTS)] = {}


def batch_decoder() -> msgspec.json.Decoder[WireBatch]:
    """A reusable decoder for request bodies; keep one per process."""
    return msgspec.json.Decoder(WireBatch)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a request body."""
    return msgspec.json.schema(WireBatch)
