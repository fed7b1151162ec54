"""Span records to wire bytes, on the exporter's thread.

Attribute values are whatever user code put there. The collector rejects a batch
whose values are not JSON scalars or lists of scalars, so each value is checked here
and anything else becomes a string (None is dropped; NaN and infinities become
strings, since JSON has no literal for them).

This is the exporter's hot loop (PERFORMANCE.md: at most 2 µs of exporter CPU per
span, HTTP included), so it is written for CPython's specialising interpreter rather
than for elegance (measurements in BENCHMARKS.md; decisions EXP-1 to EXP-3):

* one plain loop over the batch, no helper call per span: every call costs as much
  as checking a few attribute values;
* ``WireSpan`` is built positionally (keywords cost about twice as much), with shared
  empty lists for ``events`` and ``links``; the encoder omits them as defaults, so
  the JSON is byte for byte what keyword construction gives;
* ids are hex-formatted with ``int.to_bytes(...).hex()``, about 3x cheaper than
  ``f"{tid:032x}"``, and the last trace id and parent id are reused: spans of a
  trace arrive together;
* the attribute check is inlined and accepts lists of scalars, so the common span
  (strings, numbers, a tuple like ``gen_ai.response.finish_reasons``) costs one type
  test per value and is sent as it is, without a copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from rastir._wire import AttrValue, WireBatch, WireError, WireEvent, WireLink, WireSpan
from rastir.sampling import _MASK, HEAD
from rastir.spans import Span, _clock

__all__ = ["encode_batch", "sanitize_attributes", "to_wire", "wire_spans"]

_MAX_STR = 8192
# Integers travel as JSON numbers the collector reads as int64 (as OTLP's intValue):
# one outside that range is sent as its decimal string instead.
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_isfinite = math.isfinite
# Shared, never mutated: the encoder omits an empty list as the field's default.
_NO_ITEMS: list[Any] = []
_NO_ATTRS: dict[str, Any] = {}  # shared by spans without attributes: never mutated


def _clean(value: Any) -> AttrValue | None:
    t = type(value)
    if t is str:
        s: str = value
        return s if len(s) <= _MAX_STR else s[:_MAX_STR]
    if t is int:
        n: int = value
        return n if _I64_MIN <= n <= _I64_MAX else str(n)
    if t is bool:
        return bool(value)
    if t is float:
        x: float = value
        return x if _isfinite(x) else str(x)
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
        return _clean(int(value))
    if isinstance(value, float):
        return _clean(float(value))
    if isinstance(value, str):
        return _clean(str.__str__(value))
    try:
        text = str(value)
    except Exception:
        text = f"<unprintable {t.__name__}>"
    return text[:_MAX_STR]


def _scalars_ok(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list or tuple attribute is wire-safe: scalars only, finite, not too long."""
    for x in items:
        t = type(x)
        if t is str:
            if len(x) > _MAX_STR:
                return False
        elif t is int:
            if not _I64_MIN <= x <= _I64_MAX:
                return False
        elif t is not bool and (t is not float or x - x != 0.0):
            return False
    return True


def _sanitize_all(attrs: dict[Any, Any]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for key, value in attrs.items():
        c = _clean(value)
        if c is not None:
            out[key if type(key) is str else str(key)] = c
    return out


def sanitize_attributes(attrs: dict[str, Any]) -> dict[str, AttrValue]:
    """Wire-safe attribute values; returns ``attrs`` itself when nothing needs changing."""
    for v in attrs.values():
        t = type(v)
        if t is str:
            if len(v) > _MAX_STR:
                break
        elif t is int:
            if not _I64_MIN <= v <= _I64_MAX:
                break
        elif t is bool:
            continue
        elif t is float:
            # Finite exactly when v - v is 0: inf - inf and nan - nan are nan.
            if v - v != 0.0:
                break
        elif t is list or t is tuple:
            if not _scalars_ok(v):
                break
        else:
            break
    else:
        return attrs
    return _sanitize_all(attrs)


def _events(events: list[Any]) -> list[WireEvent]:
    return [
        WireEvent(
            e.name, e.time_unix_nano, sanitize_attributes(e.attributes) if e.attributes else {}
        )
        for e in events
    ]


def _links(links: list[Any]) -> list[WireLink]:
    return [
        WireLink(
            ln.context.tid.to_bytes(16, "big").hex(),
            ln.context.sid.to_bytes(8, "big").hex(),
            sanitize_attributes(ln.attributes) if ln.attributes else {},
        )
        for ln in links
    ]


def wire_spans(spans: Iterable[Span], *, strict: bool = False) -> list[WireSpan]:
    """Span records as wire Structs, in order.

    ``strict`` sanitises every attribute dict, keys included, instead of sending the
    clean ones as they are: the fallback when a batch fails to encode (a key that is
    not a string, which the fast check does not look at).

    Spans without events or links share one empty list in those fields: do not
    mutate them (:func:`to_wire` gives a span lists of its own).

    The head-sampling decision (``rastir.sampling``) is read here, on the exporter
    thread, so the decorators pay nothing for it: the remote parent's flag, else the
    trace id against the ratio.
    """
    off = _clock.offset
    threshold = HEAD.threshold
    out: list[WireSpan] = []
    append = out.append
    # The last trace id and parent id formatted, with their hex: spans of one trace
    # arrive together, siblings share a parent, and a parent ends right after its
    # last child, so its own id is often the parent id just formatted.
    last_tid = last_psid = -1
    tid_hex = ""
    psid_hex: str | None = None
    for s in spans:
        attrs = s._attrs  # not .attributes: that would make a dict for a span without
        if attrs is None:
            attrs = _NO_ATTRS
        elif attrs:
            if strict:
                attrs = _sanitize_all(attrs)
            else:
                # sanitize_attributes' check, inlined: a call per span costs as much
                # as checking two or three values.
                for v in attrs.values():
                    t = type(v)
                    if t is str:
                        if len(v) > _MAX_STR:
                            break
                    elif t is int:
                        if not _I64_MIN <= v <= _I64_MAX:
                            break
                    elif t is bool:
                        continue
                    elif t is float:
                        if v - v != 0.0:
                            break
                    elif t is list or t is tuple:
                        if not _scalars_ok(v):
                            break
                    else:
                        break
                else:
                    t = None
                if t is not None:
                    attrs = _sanitize_all(attrs)
        tid = s.tid
        if tid != last_tid:
            last_tid = tid
            tid_hex = tid.to_bytes(16, "big").hex()
        sid = s.sid
        sid_hex = psid_hex if sid == last_psid else sid.to_bytes(8, "big").hex()
        psid = s.psid
        if psid != last_psid:
            last_psid = psid
            psid_hex = psid.to_bytes(8, "big").hex() if psid else None
        t1 = s._t1
        error = s.error
        events = s.events
        links = s.links
        ctx = s._ctx
        append(
            WireSpan(
                tid_hex,
                sid_hex,  # type: ignore[arg-type]
                s.name,
                s.kind,  # type: ignore[arg-type]
                s._t0 + off,
                t1 + off if t1 else 0,
                psid_hex,
                s.status,  # type: ignore[arg-type]
                None
                if error is None
                else WireError(
                    error["type"],  # type: ignore[arg-type]
                    error["exception_type"],
                    error["message"],
                ),
                attrs,
                _NO_ITEMS if events is None else _events(events),
                _NO_ITEMS if links is None else _links(links),
                ctx.flags & 1 == 1
                if ctx is not None
                else not threshold or (tid & _MASK) >= threshold,
            )
        )
    return out


def to_wire(span: Span) -> WireSpan:
    """One span record as its wire Struct (with a dict and lists of its own)."""
    w = wire_spans((span,))[0]
    if w.attributes is _NO_ATTRS:
        w.attributes = {}
    if w.events is _NO_ITEMS:
        w.events = []
    if w.links is _NO_ITEMS:
        w.links = []
    return w


_encoder = msgspec.json.Encoder()


def _utf8_safe(value: Any) -> Any:
    """``value`` with lone surrogates in its strings replaced by ``?``.

    ``os.fsdecode`` of a file name that is not UTF-8 gives such strings; no UTF-8
    encoder takes them. Parts that need no change are returned as they are (the
    same objects), and nothing is changed in place: attribute dicts may be the
    span's own, and the shared empty ones.
    """
    t = type(value)
    if t is str:
        s: str = value
        if s.isascii():
            return s
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return s.encode("utf-8", "replace").decode("utf-8")
        return s
    if t is list or t is tuple:
        items = [_utf8_safe(x) for x in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if t is dict:
        pairs = [(_utf8_safe(k), _utf8_safe(v)) for k, v in value.items()]
        if all(k2 is k and v2 is v for (k2, v2), (k, v) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    if isinstance(value, msgspec.Struct):
        changes = {}
        for name in value.__struct_fields__:
            old = getattr(value, name)
            new = _utf8_safe(old)
            if new is not old:
                changes[name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    return value


def encode_batch(spans: Iterable[Span], resource: dict[str, Any], dropped: int) -> bytes:
    """The JSON body of one ``POST /v1/telemetry``, encoded in one msgspec call.

    A batch the fast path cannot encode is encoded again, more carefully, rather than
    dropped (D12: one odd value must never cost the whole batch): every attribute
    dict sanitised, keys included; then, if a string is still not valid UTF-8, its
    lone surrogates become ``?`` (as the OTLP encoder does, decision OTLP-1).
    """
    spans = spans if isinstance(spans, (list, tuple)) else list(spans)
    try:
        return _encoder.encode(WireBatch(wire_spans(spans), resource, dropped))
    except (TypeError, UnicodeEncodeError):
        pass  # a key the fast check let through (None, a tuple), or a lone surrogate
    wire = wire_spans(spans, strict=True)
    try:
        return _encoder.encode(WireBatch(wire, resource, dropped))
    except UnicodeEncodeError:
        return _encoder.encode(WireBatch(_utf8_safe(wire), _utf8_safe(resource), dropped))
