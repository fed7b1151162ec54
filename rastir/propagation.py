"""W3C Trace Context and W3C Baggage propagation over any mapping carrier.

The same three keys travel in HTTP headers and in MCP ``params._meta`` (SEP-414):
``traceparent``, ``tracestate`` and ``baggage``. :func:`inject` writes them from the
current rastir span; :func:`extract` reads them back into a remote
:class:`~rastir.spans.SpanContext`; :func:`continue_trace` makes that context current.

Inbound values come from other processes and are untrusted, so :func:`extract` and the
``parse_*`` functions never raise: anything that does not follow the specifications is
treated as absent.

Specifications:

* W3C Trace Context, Level 1 (https://www.w3.org/TR/trace-context/), cited as "TC".
* W3C Baggage (https://www.w3.org/TR/baggage/), cited as "Baggage".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, ClassVar, Final

from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.spans import Span, SpanContext

__all__ = [
    "BAGGAGE",
    "TRACEPARENT",
    "TRACESTATE",
    "RefusedContextStats",
    "continue_trace",
    "extract",
    "format_baggage",
    "format_traceparent",
    "inject",
    "merge_baggage",
    "parse_baggage",
    "parse_traceparent",
    "parse_tracestate",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
BAGGAGE: Final = "baggage"

_Baggage = tuple[tuple[str, str], ...]


class RefusedContextStats:
    """Process-wide counts of inbound trace context refused (``rastir.middleware.stats``
    for HTTP headers, ``rastir.mcp_bridge.stats`` for MCP ``_meta``).

    Counting happens on refusal paths only, so the lock costs the common case nothing
    and keeps the counts exact across threads. The module-level instances are event
    sources of the export pipeline: each batch to a rastir collector carries their
    increase in ``sdk_events``, under the wire names of :attr:`EVENT_NAMES`, and the
    collector exports it as ``rastir_collector_client_events_total{service,event}``.
    """

    #: The counters, in the order :meth:`as_dict` gives them.
    FIELDS: ClassVar[tuple[str, ...]] = (
        "invalid_traceparent",
        "invalid_tracestate",
        "invalid_baggage",
    )
    __slots__ = ("_lock", "invalid_baggage", "invalid_traceparent", "invalid_tracestate")
    invalid_traceparent: int
    invalid_tracestate: int
    invalid_baggage: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        for name in self.FIELDS:
            setattr(self, name, 0)

    #: The wire name (``rastir._wire.SDK_EVENTS``) of each counter sent to the
    #: collector; a counter without one stays in the process.
    EVENT_NAMES: ClassVar[dict[str, str]] = {}

    def count(self, name: str) -> None:
        """Add one to the counter ``name`` (one of :attr:`FIELDS`)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        """The counts, read together."""
        with self._lock:
            return {name: getattr(self, name) for name in self.FIELDS}

    def event_counts(self) -> dict[str, int]:
        """The counts by wire name, read together (for the exporter, once per batch)."""
        names = self.EVENT_NAMES
        with self._lock:
            return {names[f]: getattr(self, f) for f in self.FIELDS if f in names}

    def _reset_after_fork(self) -> None:
        # Only the forking thread exists in the child; the lock may have been held by
        # another thread of the parent, and would then stay locked for ever.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()})"


# -- limits ---------------------------------------------------------------------------
# TC §3.2.4: pass-through services "should only disallow prohibitively large headers".
# A version-00 traceparent is 55 characters; anything over 512 is not worth reading.
_MAX_TRACEPARENT: Final = 512
# TC §3.3.1.5: vendors SHOULD propagate at least 512 characters of combined tracestate.
# We propagate exactly that much and drop the whole header beyond it.
_MAX_TRACESTATE: Final = 512
# TC §3.3.1.1, and the list grammar of §3.3.1.2: at most 32 list-members.
_MAX_TRACESTATE_MEMBERS: Final = 32
# A raw tracestate longer than this cannot normalise to 512 characters unless it is
# padding; refuse it before splitting so a hostile header costs nothing.
_MAX_TRACESTATE_INPUT: Final = 8192
# Baggage §3.2.1.1: baggage-string = list-member 0*179( OWS "," OWS list-member ).
_MAX_BAGGAGE_MEMBERS: Final = 180
# Baggage, section Limits: a baggage-string of at least 8192 bytes must be propagated;
# that is also the most we keep or send.
_MAX_BAGGAGE_BYTES: Final = 8192
# Properties and whitespace can make a legitimate raw header longer than 8192 bytes,
# but not by this much; the rest of a longer header is cut at a list-member boundary.
_MAX_BAGGAGE_INPUT: Final = 65536

_MASK64: Final = (1 << 64) - 1
_MASK128: Final = (1 << 128) - 1
# The shape of a traceparent once every lowercase hex digit is mapped to "0" and
# every other byte except "-" to "x" (see _parse_traceparent).
_SHAPE: Final = bytes(
    48 if byte in b"0123456789abcdef" else 45 if byte == 45 else 120 for byte in range(256)
)
_TEMPLATE: Final = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-00"
# printf-style formatting of the three ints is ~40% faster than the f-string with
# format specs on CPython 3.11, and inject runs on every outbound call.
_TRACEPARENT_FORMAT: Final = "00-%032x-%016x-%02x"
# RFC 7230 §3.2.3: OWS = *( SP / HTAB ).
_OWS: Final = " \t"
# The names still to look for, by which of the three exact-key lookups came back empty.
_MISSING: Final = {
    (tp, ts, bg): frozenset(
        name for name, gone in ((TRACEPARENT, tp), (TRACESTATE, ts), (BAGGAGE, bg)) if gone
    )
    for tp in (False, True)
    for ts in (False, True)
    for bg in (False, True)
}

# TC §3.3.1.3.1 (key) and §3.3.1.3.2 (value), Level 1 grammar:
#   simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
#   multi-tenant-key = tenant-id "@" system-id
#   tenant-id        = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
#   system-id        = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
#   value            = 0*255(chr) nblk-chr
#   nblk-chr         = %x21-2B / %x2D-3C / %x3E-7E
#   chr              = %x20 / nblk-chr
_TRACESTATE_MEMBER: Final = (
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
# Baggage §3.2.1.2: key = token (RFC 7230 §3.2.6).
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Baggage §3.2.1.3: value = *baggage-octet
#   baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
_BAGGAGE_VALUE: Final = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_Patterns = tuple["re.Pattern[str]", "re.Pattern[str]", "re.Pattern[str]"]
_patterns: _Patterns | None = None


def _compiled() -> _Patterns:
    """(tracestate member, baggage key, baggage value), compiled on first use.

    Compiling them costs about 0.5 ms, which ``import rastir`` need not pay: only
    ``tracestate`` and ``baggage`` headers use them.
    """
    global _patterns
    if _patterns is None:
        _patterns = (re.compile(_TRACESTATE_MEMBER), re.compile(_TOKEN), re.compile(_BAGGAGE_VALUE))
    return _patterns


# Baggage §3.2.1.3: code points outside baggage-octet MUST be percent-encoded, and so
# must "%" itself, or decoding would not give the value back. The rest of
# baggage-octet is sent as is.
_BAGGAGE_PLAIN: Final = bytes(byte for byte in range(0x21, 0x7F) if byte not in b'"%,;\\')
_BAGGAGE_SAFE: Final = _BAGGAGE_PLAIN.decode()


# -- traceparent ----------------------------------------------------------------------
def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """Parse a ``traceparent`` value into its integer fields.

    Follows W3C Trace Context §3.2.2 and the forward-compatibility rules of §3.2.4:
    lowercase hex only, version ``ff`` refused, version ``00`` exactly 55 characters,
    a higher version possibly longer with a dash after the flags. Leading and trailing
    spaces or tabs are ignored, as RFC 7230 §3.2.4 excludes them from a field value.

    Args:
        value: The header value.

    Returns:
        ``(trace_id, span_id, flags)`` as integers, or None when the value is invalid.
        Never raises.
    """
    # Typed str, but callers pass untrusted values: a str subclass or latin-1 bytes
    # is read as text, anything else is invalid.
    text = _as_str(value)
    return None if text is None else _parse_traceparent(text)


def _parse_traceparent(value: str) -> tuple[int, int, int] | None:
    # The hot path: a well-formed 55-character header costs one bytes.translate to
    # check it and one unhexlify for all four fields.
    if len(value) != 55:
        if len(value) > _MAX_TRACEPARENT:
            return None
        value = value.strip(_OWS)
        if len(value) < 55:
            # TC §3.2.4: shorter than 55 characters cannot be parsed by any version.
            return None
        if len(value) > 55:
            # TC §3.2.2.2: version 00 is exactly 55 characters. TC §3.2.4: a higher
            # version may append fields, but the flags must then be followed by "-";
            # only the first four fields are read.
            if value[55] != "-" or value.startswith("00"):
                return None
            value = value[:55]
    # TC §3.2.2: version "-" trace-id "-" parent-id "-" trace-flags, each field
    # HEXDIGLC only. One bytes.translate maps every lowercase hex digit to "0", keeps
    # "-" and maps anything else to "x", so comparing with the template checks every
    # character and every dash position at once. (int(x, 16) and unhexlify would
    # accept uppercase, and int() also "_", "0x", signs and whitespace.)
    if not value.isascii():
        return None
    raw = value.encode()
    if raw.translate(_SHAPE) != _TEMPLATE:
        return None
    # 26 bytes: version, 16 of trace id, 8 of parent id, flags.
    fields = (_unhexlify or _load_unhexlify())(raw.replace(b"-", b""))
    # TC §3.2.2.1: version ff is invalid.
    if fields[0] == 0xFF:
        return None
    tid = int.from_bytes(fields[1:17], "big")
    sid = int.from_bytes(fields[17:25], "big")
    # TC §3.2.2.3 and §3.2.2.4: all-zero trace and parent ids are invalid.
    if not tid or not sid:
        return None
    return tid, sid, fields[25]


# binascii is a shared library (about 0.6 ms to load): loaded by the first parse, not
# by ``import rastir``. bytes.fromhex would need no import but is twice as slow.
_unhexlify: Callable[[bytes], bytes] | None = None


def _load_unhexlify() -> Callable[[bytes], bytes]:
    global _unhexlify
    from binascii import unhexlify

    _unhexlify = unhexlify
    return unhexlify


def format_traceparent(tid: int, sid: int, flags: int) -> str:
    """Format a version-00 ``traceparent`` value (W3C Trace Context §3.2.2).

    Args:
        tid: The 128-bit trace id.
        sid: The 64-bit parent (span) id.
        flags: The trace flags; only the low 8 bits are sent.

    Returns:
        ``00-<32 hex>-<16 hex>-<2 hex>``, lowercase.
    """
    return _TRACEPARENT_FORMAT % (tid & _MASK128, sid & _MASK64, flags & 0xFF)


# -- tracestate -----------------------------------------------------------------------
def parse_tracestate(value: str) -> str | None:
    """Validate a ``tracestate`` value and return it normalised.

    Every list-member must follow W3C Trace Context §3.3.1.3 (a simple or multi-tenant
    key, ``=``, a printable-ASCII value without ``,`` or ``=``). Empty members and the
    optional whitespace around members are dropped (§3.3.1.1). The whole value is
    refused, rather than partly kept, when a member is invalid, a key repeats
    (§3.3.1.4), there are more than 32 members (§3.3.1.1) or the normalised value is
    longer than 512 characters (§3.3.1.5).

    Args:
        value: The header value; several header lines may be joined with ``,``.

    Returns:
        The members joined with ``,`` and no whitespace, or None when the value is
        invalid or has no members. Never raises.
    """
    text = _as_str(value)
    if not text or len(text) > _MAX_TRACESTATE_INPUT:
        return None
    member_re = (_patterns or _compiled())[0]
    members: list[str] = []
    keys: set[str] = set()
    size = -1  # no comma before the first member
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        if len(members) == _MAX_TRACESTATE_MEMBERS:
            return None
        if member_re.fullmatch(member) is None:
            return None
        # Neither keys nor values may contain "=", so the first one separates them.
        key = member[: member.index("=")]
        if key in keys:
            return None
        size += len(member) + 1
        if size > _MAX_TRACESTATE:
            return None
        keys.add(key)
        members.append(member)
    return ",".join(members) if members else None


# -- baggage --------------------------------------------------------------------------
def parse_baggage(value: str) -> _Baggage:
    """Parse a W3C ``baggage`` value into ``(key, value)`` pairs.

    Keys are RFC 7230 tokens and values are percent-decoded as UTF-8, with invalid
    byte sequences replaced by U+FFFD (Baggage §3.2.1.3). Properties are discarded.
    Invalid list-members are skipped. At most 180 entries are kept, and only entries
    that fit in 8192 bytes once formatted again; the rest are dropped. Duplicate keys
    are kept, in order (Baggage §3.2.1.1).

    Args:
        value: The header value; several header lines may be joined with ``,``.

    Returns:
        The entries in header order. Never raises.
    """
    text = _as_str(value)
    if text is None:
        return ()
    if len(text) > _MAX_BAGGAGE_INPUT:
        cut = text.rfind(",", 0, _MAX_BAGGAGE_INPUT + 1)
        text = text[: max(cut, 0)]
    _, token_re, value_re = _patterns or _compiled()
    entries: list[tuple[str, str]] = []
    size = -1  # no comma before the first entry
    for raw in text.split(","):
        # Baggage §3.2.1.4: properties follow the first ";"; we do not keep them.
        member = raw.partition(";")[0]
        key, eq, encoded = member.partition("=")
        if not eq:
            continue
        # Baggage §3.2.1.2 and §3.2.1.3: surrounding OWS is not part of key or value.
        key = key.strip(_OWS)
        encoded = encoded.strip(_OWS)
        if token_re.fullmatch(key) is None or value_re.fullmatch(encoded) is None:
            continue
        if "%" in encoded:
            # Imported here: urllib.parse (with ipaddress) is ~3 ms of `import rastir`.
            from urllib.parse import unquote

            decoded = unquote(encoded, encoding="utf-8", errors="replace")
            # Count the bytes format_baggage would send, not the ones received, so
            # that parse then format keeps every entry: each UTF-8 byte outside the
            # plain set becomes three ("%XX"). U+FFFD from a bad escape grows 3 to 9.
            utf8 = decoded.encode()
            value_size = len(utf8) + 2 * len(utf8.translate(None, _BAGGAGE_PLAIN))
        else:
            decoded = encoded
            value_size = len(encoded)
        entry_size = len(key) + 1 + value_size + 1
        if size + entry_size > _MAX_BAGGAGE_BYTES:
            continue
        size += entry_size
        entries.append((key, decoded))
        if len(entries) == _MAX_BAGGAGE_MEMBERS:
            break
    return tuple(entries)


def format_baggage(items: Iterable[tuple[str, str]]) -> str:
    """Format ``(key, value)`` pairs as a W3C ``baggage`` value.

    Values are UTF-8 percent-encoded wherever Baggage §3.2.1.3 requires it (outside
    baggage-octet, and ``%`` itself). Entries whose key is not an RFC 7230 token, or
    that are not pairs of strings, are skipped. At most 180 entries and 8192 bytes are
    written; entries that do not fit are dropped whole.

    Args:
        items: The entries, in order.

    Returns:
        The header value, or ``""`` when nothing is left to send.
    """
    token_re = (_patterns or _compiled())[1]
    parts: list[str] = []
    size = -1
    pair: Any
    for pair in items:
        # Typed pairs of str, but baggage may come from user code: skip anything else
        # (a 2-character string would otherwise unpack as a pair).
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            continue
        key, val = pair
        if not isinstance(key, str) or not isinstance(val, str):
            continue
        if token_re.fullmatch(key) is None:
            continue
        if val.isascii() and not val.encode().translate(None, _BAGGAGE_PLAIN):
            encoded = val  # nothing to encode: the common case, and 5x cheaper than quote
        else:
            from urllib.parse import quote  # not at import: see parse_baggage

            try:
                encoded = quote(val, safe=_BAGGAGE_SAFE)
            except UnicodeEncodeError:
                # A lone surrogate has no UTF-8 form; the entry cannot be sent.
                continue
        part = f"{key}={encoded}"
        if size + len(part) + 1 > _MAX_BAGGAGE_BYTES:
            continue
        size += len(part) + 1
        parts.append(part)
        if len(parts) == _MAX_BAGGAGE_MEMBERS:
            break
    return ",".join(parts)


# -- carriers -------------------------------------------------------------------------
def _as_str(value: Any) -> str | None:
    """A str, or bytes read as latin-1 (RFC 7230 §3.2.4: header octets), else None."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        # A str subclass may override any method; read the plain string under it.
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1")
    return None


def _text(value: Any) -> str | None:
    """One header value as a string; several lines (a list or tuple) joined by ","."""
    if isinstance(value, (list, tuple)):
        lines = [line for line in map(_as_str, value) if line]
        return ",".join(lines) if lines else None
    return _as_str(value)


def _traceparent_text(value: Any) -> str | None:
    """The traceparent value; several lines must all carry the same one."""
    if not isinstance(value, (list, tuple)):
        return _as_str(value)
    found: str | None = None
    for item in value:
        line = _as_str(item)
        if line is None:
            continue
        line = line.strip(_OWS)
        if not line:
            continue
        if found is None:
            found = line
        elif line != found:
            # More than one distinct traceparent: nothing says which one is ours.
            return None
    return found


def _scan(carrier: Any, want: frozenset[str]) -> dict[str, Any]:
    """Find the ``want`` names in any case, in one pass over the carrier.

    TC §3.2.1 and §3.3.1: vendors MUST expect the header name in any case. A name found
    under several keys ("Baggage" and "BAGGAGE") gives a list, read as header lines.
    """
    try:
        # Usually none of the names is there in any case. Finding that out in C, with
        # str.lower over the keys, is three times faster than the loop below.
        if want.isdisjoint(map(str.lower, carrier)):
            return {}
    except TypeError:
        pass  # a key that is not a str, or a carrier that cannot be iterated
    found: dict[str, list[Any]] = {}
    for raw_key, value in carrier.items():
        key = raw_key if type(raw_key) is str else _as_str(raw_key)
        # The three names are 7, 10 and 11 characters long: most keys stop here.
        if key is None or len(key) not in (7, 10, 11) or value is None:
            continue
        name = key.lower()
        if name in want:
            found.setdefault(name, []).append(value)
    merged: dict[str, Any] = {}
    for name, values in found.items():
        if len(values) == 1:
            merged[name] = values[0]
            continue
        lines: list[Any] = []
        for value in values:
            if isinstance(value, (list, tuple)):
                lines.extend(value)
            else:
                lines.append(value)
        merged[name] = lines
    return merged


def extract(carrier: Mapping[str, Any]) -> SpanContext | None:
    """Read the remote context from ``traceparent``, ``tracestate`` and ``baggage``.

    Keys are matched in any case: the exact lowercase key first, then a scan of the
    carrier. A value may be a ``str``, ``bytes`` (latin-1) or a list or tuple of
    those (several header lines). An invalid ``tracestate`` or ``baggage`` is dropped
    without affecting the ``traceparent`` (TC §3.3).

    Args:
        carrier: HTTP headers, an MCP ``_meta`` dict, or any mapping.

    Returns:
        A remote :class:`~rastir.spans.SpanContext` carrying the tracestate and
        baggage, or None when ``traceparent`` is missing or invalid. Never raises,
        whatever the carrier holds.
    """
    try:
        get = carrier.get
        traceparent = get(TRACEPARENT)
        tracestate = get(TRACESTATE)
        baggage = get(BAGGAGE)
        missing = (traceparent is None) + (tracestate is None) + (baggage is None)
        if missing:
            # When the carrier holds nothing but the keys already found, no other case
            # is left to look for: a traceparent-only dict never pays for a scan.
            try:
                scan = len(carrier) > 3 - missing
            except TypeError:
                scan = True  # has get and items but no len
            if scan:
                found = _scan(
                    carrier, _MISSING[traceparent is None, tracestate is None, baggage is None]
                )
                # Only missing names were looked for: an exact lowercase key wins.
                traceparent = found.get(TRACEPARENT, traceparent)
                tracestate = found.get(TRACESTATE, tracestate)
                baggage = found.get(BAGGAGE, baggage)
        if type(traceparent) is str:
            ids = _parse_traceparent(traceparent)
        elif traceparent is None:
            return None
        else:
            text = _traceparent_text(traceparent)
            ids = None if text is None else _parse_traceparent(text)
        if ids is None:
            # TC §3.3: without a valid traceparent, tracestate is not even parsed.
            return None
        tid, sid, flags = ids
        state = None
        if tracestate is not None:
            text = _text(tracestate)
            if text is not None:
                state = parse_tracestate(text)
        if baggage is not None:
            text = _text(baggage)
            entries = parse_baggage(text) if text is not None else ()
            if entries:
                return SpanContext(tid, sid, flags, state, baggage=entries)
        return SpanContext(tid, sid, flags, state)
    except Exception:
        # Telemetry never breaks the host: a carrier whose get, len, items or keys
        # misbehave is the same as a carrier without a trace.
        return None


def inject(carrier: MutableMapping[str, Any], context: Span | SpanContext | None = None) -> None:
    """Write ``traceparent``, and ``tracestate`` and ``baggage`` when non-empty.

    The exact lowercase keys are overwritten; keys in other cases are left alone. A
    ``baggage`` already in the carrier is merged with the context's (see
    :func:`merge_baggage`): the context's entries first, winning on a duplicate key.

    Args:
        carrier: HTTP headers, an MCP ``_meta`` dict, or any mutable mapping.
        context: The span or remote context to propagate. Defaults to the current
            one; with no current span nothing is written.

    Raises:
        Exception: Whatever ``carrier.__setitem__`` raises, for example ``TypeError``
            for a read-only mapping.
    """
    if context is None:
        context = _current_span.get()
        if context is None:
            return
    tid = context.tid
    sid = context.sid
    # TC §3.2.2.3 and §3.2.2.4: never send an id the receiver must reject.
    if not (0 < tid <= _MASK128 and 0 < sid <= _MASK64):
        return
    carrier[TRACEPARENT] = _TRACEPARENT_FORMAT % (tid, sid, context.flags & 0xFF)
    tracestate = context.tracestate
    if tracestate:
        carrier[TRACESTATE] = tracestate
    entries = context.baggage if isinstance(context, SpanContext) else None
    if not entries:
        entries = _current_baggage.get()
    if entries:
        # A baggage header the caller set by hand is merged, not replaced: the
        # context's entries first and winning on a duplicate key.
        mine = carrier.get(BAGGAGE)
        if mine:
            entries = merge_baggage(entries, mine)
        header = format_baggage(entries)
        if header:
            carrier[BAGGAGE] = header


def merge_baggage(ours: _Baggage, theirs: Any) -> _Baggage:
    """``ours``, then the entries of the ``baggage`` value ``theirs`` whose keys ours
    lacks. ``format_baggage`` then applies the W3C limits, so what does not fit is
    dropped from the end: theirs first. Never raises."""
    extra = parse_baggage(theirs)  # anything but text gives ()
    if not extra:
        return ours
    if not ours:
        return extra
    keys = {key for key, _ in ours}
    return (*ours, *(entry for entry in extra if entry[0] not in keys))


@contextmanager
def continue_trace(carrier: Mapping[str, Any]) -> Iterator[SpanContext | None]:
    """Continue the trace a carrier came with, for the body of a ``with`` block.

    The extracted remote context becomes the current span context, so spans started
    inside are its children, and its baggage becomes the current baggage. Both are
    restored on exit. When the carrier holds no valid ``traceparent`` the current
    context is left as it is.

    Args:
        carrier: HTTP headers, an MCP ``_meta`` dict, or any mapping.

    Yields:
        The extracted :class:`~rastir.spans.SpanContext`, or None.
    """
    context = extract(carrier)
    if context is None:
        yield None
        return
    span_token = _current_span.set(context)
    baggage_token = _current_baggage.set(context.baggage)
    bridge = PIPELINE.bridge
    otel = None if bridge is None else bridge.attach(context)
    try:
        yield context
    finally:
        if bridge is not None:
            bridge.detach(otel)
        _current_baggage.reset(baggage_token)
        _current_span.reset(span_token)
