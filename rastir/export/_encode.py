"""Span records to wire bytes, on the exporter's thread.

Attribute values are whatever user code put there. The collector rejects a batch
whose values are not JSON scalars or lists of scalars, so each value is checked here
and anything else becomes a string (None is dropped; NaN and infinities become
strings, since JSON has no literal for them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import msgspec

from rastir._wire import AttrValue, WireBatch, WireError, WireEvent, WireLink, WireSpan
from rastir.sampling import HEAD
from rastir.spans import Span

__all__ = ["encode_batch", "sanitize_attributes", "to_wire"]

_MAX_STR = 8192


def _clean(value: Any) -> AttrValue | None:
    t = type(value)
    if t is str:
        return cast(str, value) if len(value) <= _MAX_STR else cast(str, value[:_MAX_STR])
    if t is int or t is bool:
        return cast(int, value)
    if t is float:
        return cast(float, value) if math.isfinite(value) else str(value)
    if value is None:
        return None
    if t is list or t is tuple:
        out: list[str | int | float | bool] = []
        for item in value:
            c = _clean(item)
            if c is None or isinstance(c, list):
                c = str(item)[:_MAX_STR]
            out.append(c)
        return out
    # Subclasses of the scalars (IntEnum, StrEnum, numpy-free wrappers): their base value.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _clean(float(value))
    if isinstance(value, str):
        return _clean(str.__str__(value))
    try:
        text = str(value)
    except Exception:
        text = f"<unprintable {t.__name__}>"
    return text[:_MAX_STR]


def sanitize_attributes(attrs: dict[str, Any]) -> dict[str, AttrValue]:
    """Wire-safe attribute values; returns ``attrs`` itself when nothing needs changing."""
    for value in attrs.values():
        t = type(value)
        if t is not str and t is not int and t is not bool and t is not float:
            break
        if t is float and not math.isfinite(value):
            break
        if t is str and len(value) > _MAX_STR:
            break
    else:
        return attrs
    out: dict[str, AttrValue] = {}
    for key, value in attrs.items():
        c = _clean(value)
        if c is not None:
            out[str(key)] = c
    return out


def to_wire(span: Span) -> WireSpan:
    """One span record as its wire Struct."""
    error = span.error
    events = span.events
    links = span.links
    # The head-sampling decision (rastir.sampling): the remote parent's flag, else
    # the trace id against the ratio. Read here, on the exporter thread, so the
    # decorators pay nothing for it.
    ctx = span._ctx
    sampled = bool(ctx.flags & 1) if ctx is not None else HEAD.sampled(span.tid)
    return WireSpan(
        trace_id=f"{span.tid:032x}",
        span_id=f"{span.sid:016x}",
        name=span.name,
        kind=span.kind,  # type: ignore[arg-type]
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        parent_span_id=f"{span.psid:016x}" if span.psid else None,
        status=span.status,  # type: ignore[arg-type]
        error=None
        if error is None
        else WireError(
            type=error["type"],  # type: ignore[arg-type]
            exception_type=error["exception_type"],
            message=error["message"],
        ),
        attributes=sanitize_attributes(span.attributes) if span.attributes else {},
        events=[]
        if events is None
        else [
            WireEvent(
                name=e.name,
                time_unix_nano=e.time_unix_nano,
                attributes=sanitize_attributes(e.attributes) if e.attributes else {},
            )
            for e in events
        ],
        links=[]
        if links is None
        else [
            WireLink(
                trace_id=f"{ln.context.tid:032x}",
                span_id=f"{ln.context.sid:016x}",
                attributes=sanitize_attributes(ln.attributes) if ln.attributes else {},
            )
            for ln in links
        ],
        sampled=sampled,
    )


_encoder = msgspec.json.Encoder()


def encode_batch(spans: Iterable[Span], resource: dict[str, Any], dropped: int) -> bytes:
    """The JSON body of one ``POST /v1/telemetry``."""
    batch = WireBatch(spans=[to_wire(s) for s in spans], resource=resource, dropped=dropped)
    return _encoder.encode(batch)
