"""Structured logs: one line per event, logfmt or JSON, and one line per request.

uvicorn's access log is switched off; :class:`AccessLogMiddleware`, a pure ASGI
wrapper, writes the request line instead, with the fields an operator filters on
(status, duration, spans accepted, reason refused).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, TextIO

import msgspec

__all__ = [
    "ACCESS_LOGGER",
    "AccessLogMiddleware",
    "JsonFormatter",
    "LogfmtFormatter",
    "configure_logging",
]

ACCESS_LOGGER: Final = "rastir.collector.access"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# LogRecord attributes that are not user fields.
_RESERVED: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message"}
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _RESERVED and key[0] != "_":
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


_last_second: list[Any] = [-1, ""]


def _timestamp(created: float) -> str:
    # RFC 3339, UTC, milliseconds. The seconds part is formatted once per second:
    # at a thousand request lines a second, strftime would cost more than the line.
    second = int(created)
    if second != _last_second[0]:
        _last_second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_last_second[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return msgspec.json.encode(_fields(record)).decode()


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs, values quoted when they hold spaces, quotes or ``=``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


_NEEDS_QUOTES: Final = re.compile(r'[\s="\\]')


def _logfmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text) is not None:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def configure_logging(
    level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None
) -> None:
    """Send every log line of the process (ours and uvicorn's) through one formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The logging HOWTO's optimizations: records need no caller frame, thread or
    # process names here, and collecting them costs more than formatting the line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


class AccessLogMiddleware:
    """One structured line per HTTP request, written when the response is complete.

    Pure ASGI (CONVENTIONS): per-request state lives in the closure, ``lifespan``
    and other scope types pass straight through, and bodies are never buffered.
    """

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = scope.get("client")
            extra: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": (time.perf_counter() - start) * 1000.0,
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            accepted = scope.get("rastir.accepted")
            if accepted is not None:
                extra["spans"] = accepted
            reason = scope.get("rastir.reason")
            if reason is not None:
                extra["reason"] = reason
            self.logger.info("request", extra=extra)
