"""How the SQL stores keep a trace's aggregate and spans in rows.

The SQLite and the PostgreSQL store share one layout of the ``traces`` row
(:data:`TRACE_FIELDS`): the aggregate of :mod:`._aggregate` plus the trace's row
number ``seq`` (the cursor's tiebreak), the tags packed in msgpack. A span is
stored as the JSON of its :class:`~rastir._wire.WireSpan`, read back by
:class:`SpanDecoder`.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from rastir._wire import WireSpan
from rastir.collector.store._aggregate import Tag, TraceAggregate
from rastir.collector.store._cursor import encode_cursor
from rastir.collector.store.base import TracePage, TraceQuery, TraceSummary

__all__ = [
    "MAX_INT64",
    "TRACE_FIELDS",
    "SpanDecoder",
    "StoredTrace",
    "TagRow",
    "json_encoder",
    "range_filters",
    "stored",
    "summary",
    "tag_changes",
    "trace_page",
    "trace_row",
]

MAX_INT64: Final = (1 << 63) - 1

TRACE_FIELDS: Final = (
    "seq",
    "trace_id",
    "start_ns",
    "end_ns",
    "span_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "error_count",
    "root_rank",
    "root_start_ns",
    "root_span_id",
    "root_name",
    "tags",
)

#: A row of ``trace_tags``: (tag, value, the trace's start, its seq).
TagRow = tuple[int, str, int, int]

_TagLists = tuple[list[str], list[str], list[str], list[str]]
_tags_encoder = msgspec.msgpack.Encoder()
_tags_decoder = msgspec.msgpack.Decoder(_TagLists)
json_encoder = msgspec.json.Encoder()


class SpanDecoder:
    """Reads a stored span back.

    JSON has no inf or NaN, so msgspec writes such a float as null, which WireSpan
    refuses. The wire cannot carry them (msgspec refuses them when decoding), but
    spans handed over in-process can: those are read back with NaN in their place.
    """

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder(WireSpan).decode

    def __call__(self, data: bytes) -> WireSpan:
        try:
            return self._decode(data)
        except msgspec.ValidationError:
            raw = msgspec.json.decode(data)
            for holder in (raw, *raw.get("events", ()), *raw.get("links", ())):
                attributes = holder.get("attributes")
                if attributes:
                    holder["attributes"] = {k: _null_to_nan(v) for k, v in attributes.items()}
            return msgspec.convert(raw, WireSpan)


def _null_to_nan(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, list):
        return [math.nan if item is None else item for item in value]
    return value


class StoredTrace(TraceAggregate):
    """A trace's aggregate and its row number."""

    __slots__ = ("seq",)

    def __init__(self, seq: int = 0) -> None:
        super().__init__()
        self.seq = seq


def trace_row(trace_id: str, trace: StoredTrace) -> tuple[Any, ...]:
    """The ``traces`` row (:data:`TRACE_FIELDS`) of an aggregate."""
    tags = (list(trace.services), list(trace.agents), list(trace.models), list(trace.error_types))
    return (
        trace.seq,
        trace_id,
        trace.start_ns,
        trace.end_ns,
        trace.span_count,
        min(trace.input_tokens, MAX_INT64),  # only ~2**23 spans of MAX_TOKENS get there
        min(trace.output_tokens, MAX_INT64),
        trace.cost_usd,
        trace.error_count,
        trace.root_rank,
        trace.root_start,
        trace.root_span_id,
        trace.root_name,
        _tags_encoder.encode(tags),
    )


def stored(row: tuple[Any, ...]) -> StoredTrace:
    """A ``traces`` row (:data:`TRACE_FIELDS`) back into an aggregate."""
    trace = StoredTrace(row[0])
    (
        trace.start_ns,
        trace.end_ns,
        trace.span_count,
        trace.input_tokens,
        trace.output_tokens,
        trace.cost_usd,
        trace.error_count,
        trace.root_rank,
        trace.root_start,
        trace.root_span_id,
        trace.root_name,
        tags,
    ) = row[2:]
    services, agents, models, error_types = _tags_decoder.decode(tags)
    trace.services, trace.agents = set(services), set(agents)
    trace.models, trace.error_types = set(models), set(error_types)
    return trace


def summary(row: tuple[Any, ...]) -> TraceSummary:
    """The summary in a ``traces`` row (:data:`TRACE_FIELDS`)."""
    error_count = row[8]
    return TraceSummary(
        trace_id=row[1],
        root_name=row[12],
        services=sorted(_tags_decoder.decode(row[13])[0]),
        span_count=row[4],
        start_time_unix_nano=row[2],
        duration_ns=max(0, row[3] - row[2]),
        input_tokens=row[5],
        output_tokens=row[6],
        cost_usd=row[7],
        error_count=error_count,
        status="error" if error_count else "ok",
    )


def trace_page(fetched: list[tuple[Any, ...]], query: TraceQuery) -> TracePage:
    """The page of ``traces`` rows fetched for ``query`` (at most one row beyond it)."""
    next_cursor = None
    if len(fetched) > query.limit:
        del fetched[query.limit :]
        last = fetched[-1]
        next_cursor = encode_cursor(last[2], last[0], query)  # (start_ns, seq)
    return TracePage([summary(row) for row in fetched], next_cursor)


def range_filters(
    sql: str,
    params: list[Any],
    start: str,
    seq: str,
    query: TraceQuery,
    cursor: tuple[int, int] | None,
    min_duration: int | None,
    *,
    mark: str = "?",
    greatest: str = "max",
) -> tuple[str, list[Any]]:
    """``sql`` with the cursor, time range, status and duration checks, newest first.

    ``start`` and ``seq`` name the columns the listing walks; ``mark`` is the
    driver's placeholder and ``greatest`` the SQL function of two values' larger.
    """
    params = list(params)
    if cursor is not None:
        sql += f" AND ({start}, {seq}) < ({mark}, {mark})"
        params += cursor
    if query.start_ns is not None:
        sql += f" AND {start} >= {mark}"
        params.append(query.start_ns)
    if query.end_ns is not None:
        sql += f" AND {start} < {mark}"
        params.append(query.end_ns)
    if query.status == "ok":
        sql += " AND t.error_count = 0"
    if min_duration is not None:
        sql += f" AND {greatest}(t.end_ns - t.start_ns, 0) >= {mark}"
        params.append(min_duration)
    sql += f" ORDER BY {start} DESC, {seq} DESC LIMIT {mark}"
    params.append(query.limit + 1)
    return sql, params


def tag_changes(
    before: dict[str, tuple[int, set[Tag], int]], traces: dict[str, StoredTrace]
) -> tuple[list[TagRow], list[TagRow]]:
    """The ``trace_tags`` rows to drop and to add, once ``traces`` were updated.

    ``before`` holds the (start, tags, span count) each trace had when it was read,
    and no entry for a trace that is new.
    """
    dropped: list[TagRow] = []
    added: list[TagRow] = []
    for trace_id, trace in traces.items():
        tags = trace.tags()
        start, seq = trace.start_ns, trace.seq
        old = before.get(trace_id)
        if old is None:
            added.extend((tag, value, start, seq) for tag, value in tags)
            continue
        old_start, old_tags, _ = old
        if old_start != start:  # every tag row's key moves
            dropped.extend((tag, value, old_start, seq) for tag, value in old_tags)
            added.extend((tag, value, start, seq) for tag, value in tags)
        elif old_tags != tags:
            dropped.extend((tag, value, start, seq) for tag, value in old_tags - tags)
            added.extend((tag, value, start, seq) for tag, value in tags - old_tags)
    return dropped, added
