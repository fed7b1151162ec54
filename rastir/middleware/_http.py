"""What the ASGI and WSGI middleware share: remote parents, hosts, statuses, hooks, headers.

Everything here runs on the request path, so it is written for the common case (one
well-formed ``traceparent`` or none, a ``Host`` header seen a thousand times before)
and never raises: telemetry never breaks the host (CONVENTIONS).
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final

from rastir.export._pipeline import PIPELINE
from rastir.propagation import (
    _SHAPE,
    _TEMPLATE,
    RefusedContextStats,
    _parse_traceparent,
    parse_baggage,
    parse_tracestate,
)
from rastir.spans import Span, SpanContext

__all__ = [
    "DEFAULT_EXCLUDED",
    "KNOWN_METHODS",
    "SENSITIVE_HEADERS",
    "SPAN_NAMES",
    "HeaderCapture",
    "MiddlewareStats",
    "call_hook",
    "header_names",
    "remote_parent",
    "server_error",
    "split_host",
    "stats",
    "traceparent_ids",
]

DEFAULT_EXCLUDED: Final = ("/health", "/metrics")
# Captured values of these headers are always replaced, whatever the user asks for.
SENSITIVE_HEADERS: Final = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-csrf-token",
    )
)
_REDACTED: Final = "[redacted]"
# HTTP semantic conventions: http.request.method is one of the known methods, else
# "_OTHER" with the original in http.request.method_original.
KNOWN_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
# The names a server span starts with. The route is appended to these only: a name a
# hook chose is the user's, and stays as it is.
SPAN_NAMES: Final = KNOWN_METHODS | {"HTTP", "WEBSOCKET"}
# Baggage, section Limits: 8192 bytes is what a receiver must accept; a longer header
# is oversized, and parse_baggage keeps only the entries that fit.
_MAX_BAGGAGE_BYTES: Final = 8192
_MAX_BAGGAGE_MEMBERS: Final = 180  # W3C Baggage §3.3.1, as in rastir.propagation


class MiddlewareStats(RefusedContextStats):
    """Process-wide counts of what the middleware refused or survived.

    Attributes:
        invalid_traceparent: inbound ``traceparent`` values rejected (W3C Trace
            Context §3.2: malformed, uppercase, version ``ff``, all-zero ids, or
            several different values); the request started a new trace instead.
        invalid_tracestate: inbound ``tracestate`` values dropped (bad members, more
            than 32 members, longer than 512 characters) with a valid parent kept.
        invalid_baggage: inbound ``baggage`` values that were oversized or held no
            valid entry; whatever fitted the W3C limits was still kept.
        hook_errors: request or response hooks that raised.

    Each batch sent to a rastir collector carries their increase (``http.*`` in
    ``sdk_events``), exported as ``rastir_collector_client_events_total``.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (*RefusedContextStats.FIELDS, "hook_errors")
    EVENT_NAMES: ClassVar[dict[str, str]] = {
        "invalid_traceparent": "http.invalid_traceparent",
        "invalid_tracestate": "http.invalid_tracestate",
        "invalid_baggage": "http.invalid_baggage",
        "hook_errors": "http.hook_error",
    }
    __slots__ = ("hook_errors",)
    hook_errors: int

    def count_invalid(self) -> None:
        self.count("invalid_traceparent")

    def count_invalid_tracestate(self) -> None:
        self.count("invalid_tracestate")

    def count_invalid_baggage(self) -> None:
        self.count("invalid_baggage")

    def count_hook_error(self) -> None:
        self.count("hook_errors")


stats = MiddlewareStats()
PIPELINE.add_event_source(stats)


_unhexlify = binascii.unhexlify
_FIELDS = struct.Struct(">BQQQB").unpack


def traceparent_ids(value: str | bytes) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` from a ``traceparent`` header, or None. Never raises.

    The same rules as :func:`rastir.propagation.parse_traceparent`, which decides
    every case but one: a value of exactly 55 bytes is the only length a version-00
    header has, and it is checked here on the raw bytes, without decoding, by the
    same method (W3C Trace Context §3.2.2: lowercase hex fields at fixed positions;
    §3.2.2.1: version ``ff`` invalid; §3.2.2.3-4: all-zero ids invalid).
    """
    if type(value) is str:
        if len(value) != 55 or not value.isascii():
            return _parse_traceparent(value)
        value = value.encode()
    elif not isinstance(value, (bytes, bytearray)):
        return None
    elif len(value) != 55:
        return _parse_traceparent(bytes(value).decode("latin-1"))
    if value.translate(_SHAPE) != _TEMPLATE:
        return None
    # The shape is checked, so the 52 digits are lowercase hex: unhexlify cannot fail,
    # and one unpack reads version, trace id (two halves), parent id and flags.
    version, high, low, sid, flags = _FIELDS(_unhexlify(value.replace(b"-", b"")))
    if version == 0xFF:
        return None
    tid = high << 64 | low
    if not tid or not sid:
        return None
    return tid, sid, flags


def remote_parent(
    traceparent: str | bytes, tracestate: str | bytes | None, baggage: str | bytes | None
) -> SpanContext | None:
    """The caller's context from raw header values (str, or latin-1 bytes). Never raises.

    An invalid ``traceparent`` is counted and ignored, and then ``tracestate`` is not
    even read (W3C Trace Context §3.3: it is only meaningful with a valid parent). An
    invalid ``tracestate`` or an oversized ``baggage`` is counted, and the parent is
    kept: the ``tracestate`` is dropped whole, the baggage cut to the W3C limits.
    """
    ids = traceparent_ids(traceparent)
    if ids is None:
        stats.count_invalid()
        return None
    if tracestate is None and baggage is None:
        return SpanContext(ids[0], ids[1], ids[2], None)
    state = None
    if tracestate:
        if isinstance(tracestate, bytes):
            tracestate = tracestate.decode("latin-1")
        state = parse_tracestate(tracestate)
        if state is None:
            stats.count_invalid_tracestate()
    if baggage:
        if isinstance(baggage, bytes):
            baggage = baggage.decode("latin-1")
        entries = parse_baggage(baggage)
        if (
            not entries
            or len(baggage) > _MAX_BAGGAGE_BYTES
            # Cut to 180 members, the rest dropped: counted as the docs promise.
            or (len(entries) == _MAX_BAGGAGE_MEMBERS and baggage.count(",") >= len(entries))
        ):
            stats.count_invalid_baggage()
        if entries:
            return SpanContext(ids[0], ids[1], ids[2], state, baggage=entries)
    return SpanContext(ids[0], ids[1], ids[2], state)


# Host header -> (server.address, server.port). The header is client-controlled, so the
# cache is small and simply emptied when full; a server sees few distinct hosts.
_HOSTS: dict[Any, tuple[str, int | None]] = {}
_MAX_HOSTS: Final = 256


def _split_host(host: str) -> tuple[str, int | None]:
    # RFC 9110 §7.2: Host = uri-host [ ":" port ]; an IPv6 literal is in brackets.
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        address, rest = host[1:end], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        address, sep, port = host.rpartition(":")
        if not sep or not address:
            return host, None
    # Only plain ASCII digits, and few of them: int() accepts other digits and
    # raises on very long strings.
    if port and len(port) <= 5 and port.isascii() and port.isdigit():
        return address, int(port)
    return (address or host), None


def split_host(host: str | bytes) -> tuple[str, int | None]:
    """``(server.address, server.port)`` from a ``Host`` header value, cached."""
    found = _HOSTS.get(host)
    if found is None:
        text = host.decode("latin-1") if isinstance(host, bytes) else host
        found = _split_host(text)
        if len(_HOSTS) >= _MAX_HOSTS:
            _HOSTS.clear()
        _HOSTS[host] = found
    return found


def server_error(span: Span, status: int) -> None:
    """HTTP semconv: a 5xx answer makes a server span an error (4xx does not).

    ``error.type`` is the status code unless an exception already named it.
    """
    span.attributes.setdefault("error.type", str(status))
    if span.status == "ok":
        span.set_error("internal_error", str(status), f"HTTP {status}")


def call_hook(hook: Callable[..., Any], *args: Any) -> None:
    """Run a user hook; its failure is counted, never raised (hooks are failsafe)."""
    try:
        hook(*args)
    except Exception:
        stats.count_hook_error()


class HeaderCapture:
    """Opt-in capture of named headers as ``http.{request|response}.header.<name>``.

    Values are lists of strings, one per header line, as the HTTP semantic conventions
    ask. Values of sensitive headers (authorization, cookies, API keys, and any named
    in ``sanitize``) are replaced by ``[redacted]``.
    """

    __slots__ = ("_keys", "prefix", "sanitize", "wanted")

    def __init__(self, names: Iterable[str], sanitize: Iterable[str], prefix: str) -> None:
        self.wanted = frozenset(n.strip().lower() for n in names)
        self.sanitize = SENSITIVE_HEADERS | frozenset(n.strip().lower() for n in sanitize)
        self.prefix = prefix
        # Attribute keys, built once.
        self._keys = {n: f"{prefix}{n}" for n in self.wanted}

    def __bool__(self) -> bool:
        return bool(self.wanted)

    def capture(self, pairs: Iterable[tuple[Any, Any]], attrs: dict[str, Any]) -> None:
        """Record the wanted headers from ``(name, value)`` pairs (str or latin-1 bytes).

        Never raises: headers this code cannot read are simply not captured.
        """
        found: dict[str, list[str]] = {}
        wanted = self.wanted
        try:
            for raw_name, raw_value in pairs:
                name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else str(raw_name)
                name = name.lower()
                if name not in wanted:
                    continue
                if name in self.sanitize:
                    value = _REDACTED
                elif isinstance(raw_value, bytes):
                    value = raw_value.decode("latin-1")
                else:
                    value = str(raw_value)
                found.setdefault(name, []).append(value)
        except Exception:
            pass
        for name, values in found.items():
            attrs[self._keys[name]] = values


def header_names(names: Iterable[str], option: str) -> tuple[str, ...]:
    """Validate a header-name option at construction time.

    Raises:
        ValueError: ``names`` is a single string (a common slip for a one-item list)
            or holds something other than strings.
    """
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{option} must be a list of header names, not a string")
    out = tuple(names)
    for name in out:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{option} must hold non-empty strings, got {name!r}")
    return out
