"""What the ASGI and WSGI middleware share: parents, names, statuses, captured headers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from rastir.propagation import parse_baggage, parse_traceparent, parse_tracestate
from rastir.spans import Span, SpanContext

__all__ = [
    "DEFAULT_EXCLUDED",
    "SENSITIVE_HEADERS",
    "HeaderCapture",
    "MiddlewareStats",
    "call_hook",
    "end_status",
    "method_attr",
    "remote_parent",
    "stats",
]

DEFAULT_EXCLUDED = ("/health", "/metrics")
# Headers whose values are replaced when captured, whatever the user asks for.
SENSITIVE_HEADERS = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
    )
)
_REDACTED = "[redacted]"
# HTTP semantic conventions: http.request.method is one of the known methods, else
# "_OTHER" with the original in http.request.method_original.
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)


class MiddlewareStats:
    """Process-wide counts of inbound context the middleware refused."""

    __slots__ = ("_lock", "hook_errors", "invalid_traceparent")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.invalid_traceparent = 0
        self.hook_errors = 0

    def count_invalid(self) -> None:
        with self._lock:
            self.invalid_traceparent += 1

    def count_hook_error(self) -> None:
        with self._lock:
            self.hook_errors += 1


stats = MiddlewareStats()


def remote_parent(
    traceparent: str | None, tracestate: str | None, baggage: str | None
) -> SpanContext | None:
    """The caller's context from raw header values; invalid ones are counted and ignored."""
    if traceparent is None:
        return None
    ids = parse_traceparent(traceparent)
    if ids is None:
        stats.count_invalid()
        return None
    state = parse_tracestate(tracestate) if tracestate else None
    entries = parse_baggage(baggage) if baggage else ()
    return SpanContext(ids[0], ids[1], ids[2], state, baggage=entries)


def method_attr(method: str, attrs: dict[str, Any]) -> str:
    """Set ``http.request.method`` (and ``_original`` for unknown methods); give the name."""
    if method in _METHODS:
        attrs["http.request.method"] = method
        return method
    attrs["http.request.method"] = "_OTHER"
    attrs["http.request.method_original"] = method
    return "HTTP"


def end_status(span: Span, status: int | None) -> None:
    """Record the response status; a 5xx makes the server span an error."""
    if status is None:
        return
    span.attributes["http.response.status_code"] = status
    if status >= 500 and span.status == "ok":
        span.set_error("internal_error", str(status), f"HTTP {status}")


def call_hook(hook: Callable[..., Any] | None, *args: Any) -> None:
    """Run a user hook; its failure is counted, never raised (hooks are failsafe)."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        stats.count_hook_error()


class HeaderCapture:
    """Opt-in capture of named headers as ``http.{request|response}.header.<name>``.

    Values of sensitive headers (authorization, cookies, API keys, and any the user
    adds to ``sanitize``) are replaced by ``[redacted]``.
    """

    __slots__ = ("prefix", "sanitize", "wanted")

    def __init__(self, names: Iterable[str], sanitize: Iterable[str], prefix: str) -> None:
        self.wanted = frozenset(n.lower() for n in names)
        self.sanitize = SENSITIVE_HEADERS | frozenset(n.lower() for n in sanitize)
        self.prefix = prefix

    def __bool__(self) -> bool:
        return bool(self.wanted)

    def capture(self, pairs: Iterable[tuple[str, str]], attrs: dict[str, Any]) -> None:
        found: dict[str, list[str]] = {}
        for name, value in pairs:
            name = name.lower()
            if name in self.wanted:
                found.setdefault(name, []).append(_REDACTED if name in self.sanitize else value)
        for name, values in found.items():
            attrs[f"{self.prefix}{name}"] = values
