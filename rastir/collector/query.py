"""The query API: ``GET /v1/traces`` (summaries, filtered and paged) and one trace's tree.

Parameters are checked strictly, and a bad one is answered 400 naming it: a typo in
a filter name must not silently return every trace.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from starlette.datastructures import QueryParams

from rastir._wire import ERROR_CATEGORIES, INT64_MAX
from rastir.collector.store.base import TraceQuery

__all__ = [
    "MAX_LIMIT",
    "QueryError",
    "parse_time",
    "parse_trace_id",
    "parse_trace_query",
]

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 50
_MAX_TEXT: Final = 256  # = ingest.MAX_SERVICE_LEN: every stored service can be asked for
# Agent and model names are attribute values, cut at --max-attr-value-len (4096 by
# default): every one stored with the default can be asked for.
_MAX_NAME: Final = 4096
_MAX_CURSOR: Final = 1024
_MOST: Final = {"service": _MAX_TEXT, "agent": _MAX_NAME, "model": _MAX_NAME, "cursor": _MAX_CURSOR}
# Stores keep Unix nanoseconds in 64-bit integers: nothing starts after 2262-04-11.
_MAX_MS: Final = INT64_MAX // 1_000_000

_PARAMS: Final = frozenset(
    (
        "service",
        "agent",
        "model",
        "status",
        "error_type",
        "min_duration_ms",
        "start",
        "end",
        "limit",
        "cursor",
    )
)
_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
# ASCII digits only: ``\d`` alone also matches other scripts' digits (U+0665,
# ARABIC-INDIC DIGIT FIVE), which int() reads as 5.
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_UNIX: Final = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?", re.ASCII)
_LIMIT: Final = re.compile(r"[0-9]{1,7}")
# A decimal or exponent number, as float() reads it, without float()'s extras:
# surrounding spaces, underscores between digits, non-ASCII digits.
_NUMBER: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


class QueryError(ValueError):
    """A query parameter is invalid; the message says which and why."""


def parse_trace_id(raw: str) -> str:
    """A trace id as stored: 32 lowercase hex digits, not all zero (uppercase is folded).

    Raises:
        QueryError: anything else.
    """
    tid = raw.lower()
    if _TRACE_ID.fullmatch(tid) is None:
        raise QueryError(f"malformed trace id {raw[:64]!r}: expected 32 hex digits")
    if tid == "0" * 32:
        raise QueryError("malformed trace id: all zeros (W3C trace-context §3.2.2.3)")
    return tid


def parse_time(name: str, raw: str) -> int:
    """Unix nanoseconds from RFC 3339 (``2025-01-31T12:00:00.5Z``) or Unix seconds.

    Raises:
        QueryError: neither form, or a date that does not exist.
    """
    text = raw
    m = _UNIX.fullmatch(text)
    if m is not None:
        frac = (m.group(2) or "").ljust(9, "0")
        return _in_range(name, raw, int(m.group(1)) * 1_000_000_000 + int(frac))
    m = _RFC3339.fullmatch(text)
    if m is None:
        # A '+' left unencoded in a query string arrives as a space: say so.
        head, space, offset = text.rpartition(" ")
        hint = ""
        if space and _RFC3339.fullmatch(f"{head}+{offset}"):
            hint = " (a '+' in a URL query string means a space: send the offset as %2B)"
        raise QueryError(
            f"{name}={raw[:64]!r} is not a time: use RFC 3339 with an offset "
            f"(2025-01-31T12:00:00Z) or Unix seconds{hint}"
        )
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    offset = m.group(8)
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:  # RFC 3339 §5.6: time-numoffset is a time of day
            raise QueryError(f"{name}={raw[:64]!r} has an invalid offset {offset!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        # RFC 3339 §5.6 allows a leap second (60); fold it into the next second.
        leap = second == 60
        when = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=tz)
    except ValueError as e:
        raise QueryError(f"{name}={raw[:64]!r} is not a valid time: {e}")
    delta = when - _EPOCH
    seconds = delta.days * 86400 + delta.seconds + (1 if leap else 0)
    if seconds < 0:
        raise QueryError(f"{name}={raw[:64]!r} is before 1970")
    return _in_range(name, raw, seconds * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0")))


def _in_range(name: str, raw: str, ns: int) -> int:
    if ns > INT64_MAX:
        raise QueryError(
            f"{name}={raw[:64]!r} is too late: times are 64-bit Unix nanoseconds, "
            "up to 2262-04-11T23:47:16Z"
        )
    return ns


def parse_trace_query(params: QueryParams) -> TraceQuery:
    """A :class:`TraceQuery` from ``GET /v1/traces`` parameters.

    Raises:
        QueryError: an unknown, repeated or invalid parameter.
    """
    keys = list(params.keys())
    unknown = sorted(set(keys) - _PARAMS)
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(_PARAMS))}")
    for key in set(keys):
        if len(params.getlist(key)) > 1:
            raise QueryError(f"parameter {key!r} is given more than once")
    values: dict[str, Any] = {}
    for key, most in _MOST.items():
        raw = params.get(key)
        if raw is None:
            continue
        if not raw or len(raw) > most:
            raise QueryError(f"{key} must be 1 to {most} characters")
        values[key] = raw
    status = params.get("status")
    if status is not None:
        if status not in ("ok", "error"):
            raise QueryError(f"status={status[:32]!r} must be ok or error")
        values["status"] = status
    error_type = params.get("error_type")
    if error_type is not None:
        if error_type not in ERROR_CATEGORIES:
            raise QueryError(
                f"error_type={error_type[:32]!r} must be one of {', '.join(ERROR_CATEGORIES)}"
            )
        values["error_type"] = error_type
    raw = params.get("min_duration_ms")
    if raw is not None:
        ms = float(raw) if _NUMBER.fullmatch(raw) else -1.0
        if not 0 <= ms <= _MAX_MS:  # also refuses nan and inf
            raise QueryError(
                f"min_duration_ms={raw[:32]!r} must be a number of milliseconds from 0 to {_MAX_MS}"
            )
        values["min_duration_ns"] = int(ms * 1_000_000)
    if "start" in params:
        values["start_ns"] = parse_time("start", params["start"])
    if "end" in params:
        values["end_ns"] = parse_time("end", params["end"])
    if "start_ns" in values and "end_ns" in values and values["end_ns"] <= values["start_ns"]:
        raise QueryError("end must be after start")
    raw = params.get("limit")
    if raw is not None:
        limit = int(raw) if _LIMIT.fullmatch(raw) else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit={raw[:32]!r} must be an integer from 1 to {MAX_LIMIT}")
        values["limit"] = limit
    else:
        values["limit"] = DEFAULT_LIMIT
    return TraceQuery(**values)
