"""The shared trace store: one PostgreSQL database, written by several collectors.

``rastir collector --store postgresql://user:password@host/db`` lets replicas of
the collector behind one load balancer share their traces: spans of one trace
may reach different replicas, in any order, twice, children before parents, and
every replica answers every query from the same tables.

Writing
    As in the SQLite store (:mod:`._writer`): :meth:`PostgresStore.submit` puts a
    batch on a queue bounded in spans and returns at once; one writer thread per
    store drains it over its own connection (psycopg 3, synchronous API), many
    batches per transaction. The event loop never waits for PostgreSQL.

Acknowledgement and durability
    Queued mode (``submit``): the 202 means the spans are in this replica's queue;
    they are lost only if the process dies before its writer commits them (the
    same contract as SQLite's queued mode). Committed mode (``write``): the call
    returns once the transaction holding the spans has committed with
    ``synchronous_commit = on`` (set for that transaction whatever the server's
    default), so the commit record is flushed to the server's disk (and to a
    synchronous standby, when the server has one). :meth:`PostgresStore.flush`
    waits for everything submitted so far to commit, under the server's own
    ``synchronous_commit``.

Several writers
    ``rastir_spans`` is keyed by ``(trace_id, span_id)``: a span written again
    replaces the earlier copy (last write wins). ``rastir_traces`` holds one row
    per trace with its aggregate (:mod:`._aggregate`). A transaction first creates
    the rows of its traces that are missing (``INSERT ... ON CONFLICT DO
    NOTHING``) and locks them all (``SELECT ... FOR UPDATE``), both in trace-id
    order so that two writers lock in the same order; only then does it read the
    aggregates, add its spans, and write them back. A replaced span cannot be
    subtracted, so a trace with one is recounted from its stored spans: no span is
    ever counted twice. Totals (spans and traces stored) are kept per writer in
    ``rastir_counts`` (no row all writers update) and summed on read.

Failures
    Errors of the database's surroundings are transient: a lost or refused
    connection, the server shutting down (57P01), a deadlock (40P01), a
    serialization failure (40001), the disk full (53100), and the other
    ``OperationalError`` s but class 54 (a limit the spans exceed). The writer
    reconnects and retries, backing off from 50 ms to 2 s, for as long as the
    store runs; acknowledged spans (queued mode) are never dropped, and ingest
    answers 429 once the queue is full. A committed-mode ``write`` fails at once
    instead (503; its sender retries). Any other error is the spans' own: each
    batch of the transaction is tried alone, and those that fail again are
    dropped and counted (``failed_spans``).

Schema
    Created at start with ``CREATE ... IF NOT EXISTS`` under a transaction-level
    advisory lock, so replicas starting together do not race; the version is in
    ``rastir_schema``. Times are ``bigint`` nanoseconds. A span is stored as the
    JSON of its :class:`~rastir._wire.WireSpan` in a ``bytea``, exactly the bytes
    the SQLite store keeps (``jsonb`` would refuse ``\\u0000`` in a string and
    reparse every span; ``convert_from(data, 'UTF8')::jsonb`` reads it by hand).
    ``rastir_trace_tags`` indexes traces by service, agent, model, error type and
    "has an error", keyed by ``(tag, md5(value), start_ns, seq)``: a tag's listing
    walks one index range newest first, and a value of any length fits the key.
    ``status=ok`` walks a partial index of traces without errors, a minimum
    duration an index on the duration.

Retention
    Every ``maintenance_interval`` seconds one replica at a time (the one that
    gets ``pg_try_advisory_lock``) deletes the traces that ended more than
    ``retention_seconds`` ago, then, while the store's tables
    (``pg_total_relation_size``) use more than ``max_bytes``, the traces that
    started first. PostgreSQL keeps freed space for reuse rather than giving it
    back, so the size that counts is the part holding live spans: the tables'
    size times the share of the span slots they were seen to hold that live spans
    fill. Deleting stops near 90% of ``max_bytes``; the tables then stop growing
    near ``max_bytes`` as new spans reuse the space.

Secrets
    The DSN's password is never logged, shown in errors or ``repr``: the store
    shows ``postgresql://user:***@host/db``.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
import msgspec

from rastir.collector.store._aggregate import Tag, query_tags
from rastir.collector.store._dsn import redact_dsn, scrub
from rastir.collector.store._readers import ReaderPool
from rastir.collector.store._rows import (
    MAX_INT64,
    TRACE_FIELDS,
    SpanDecoder,
    StoredTrace,
    TagRow,
    range_filters,
    stored,
    tag_changes,
    trace_page,
    trace_row,
)
from rastir.collector.store._writer import QueuedWriter
from rastir.collector.store.assemble import summarize
from rastir.collector.store.base import SpanRow, TraceDetail, TracePage, TraceQuery
from rastir.collector.store.errors import StoreClosedError, StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

_log = logging.getLogger("rastir.collector.store")

_SCHEMA_VERSION: Final = 1
# Advisory lock keys (64-bit, any value no other program is likely to pick).
_SCHEMA_LOCK: Final = 0x7261_7374_6972_0001
_MAINTENANCE_LOCK: Final = 0x7261_7374_6972_0002
_CONNECT_TIMEOUT: Final = 5  # seconds; libpq's connect_timeout is whole seconds
_SIZE_EVERY: Final = 1.0  # seconds between size samples after writes

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rastir_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS rastir_traces (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id text NOT NULL UNIQUE,
    start_ns bigint NOT NULL DEFAULT 0,
    end_ns bigint NOT NULL DEFAULT 0,
    span_count bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    error_count bigint NOT NULL DEFAULT 0,
    root_rank smallint NOT NULL DEFAULT 2,
    root_start_ns bigint NOT NULL DEFAULT 0,
    root_span_id text NOT NULL DEFAULT '',
    root_name text NOT NULL DEFAULT '',
    tags bytea NOT NULL DEFAULT ''::bytea  -- msgpack: [services, agents, models, error types]
);
CREATE INDEX IF NOT EXISTS rastir_traces_by_start ON rastir_traces (start_ns, seq);
CREATE INDEX IF NOT EXISTS rastir_traces_ok_by_start
    ON rastir_traces (start_ns, seq) WHERE error_count = 0;
CREATE INDEX IF NOT EXISTS rastir_traces_by_duration
    ON rastir_traces ((greatest(end_ns - start_ns, 0)), start_ns, seq);
CREATE TABLE IF NOT EXISTS rastir_spans (
    trace_id text NOT NULL,
    span_id text NOT NULL,
    service text NOT NULL,
    data bytea NOT NULL,  -- the WireSpan as JSON
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS rastir_trace_tags (
    tag smallint NOT NULL,
    value text NOT NULL,
    start_ns bigint NOT NULL,
    seq bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rastir_trace_tags_key
    ON rastir_trace_tags (tag, md5(value), start_ns, seq);
CREATE TABLE IF NOT EXISTS rastir_counts (
    writer text PRIMARY KEY,
    spans bigint NOT NULL,
    traces bigint NOT NULL
);
"""
_TABLES: Final = ("rastir_traces", "rastir_spans", "rastir_trace_tags")

_COLUMNS: Final = ", ".join(TRACE_FIELDS)
_NEW_TRACES: Final = (
    "INSERT INTO rastir_traces (trace_id) SELECT id FROM unnest(%s::text[]) AS id ORDER BY id"
    " ON CONFLICT (trace_id) DO NOTHING RETURNING trace_id"
)
_LOCK_TRACES: Final = (
    f"SELECT {_COLUMNS} FROM rastir_traces WHERE trace_id = ANY(%s::text[])"
    " ORDER BY trace_id FOR UPDATE"
)
# xmax is 0 on a row this statement inserted, the transaction's id on one it updated.
_PUT_SPANS: Final = """
WITH put AS (
    INSERT INTO rastir_spans (trace_id, span_id, service, data)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[])
    ON CONFLICT (trace_id, span_id) DO UPDATE
        SET service = excluded.service, data = excluded.data
    RETURNING trace_id, xmax = 0 AS fresh
)
SELECT coalesce(array_agg(DISTINCT trace_id) FILTER (WHERE NOT fresh), '{}') FROM put
"""
_PUT_TRACE: Final = (
    "UPDATE rastir_traces SET "
    + ", ".join(f"{name} = %s" for name in TRACE_FIELDS[2:])
    + " WHERE seq = %s"
)
_GET_SPANS: Final = "SELECT service, data FROM rastir_spans WHERE trace_id = %s"
_ADD_TAG: Final = (
    "INSERT INTO rastir_trace_tags (tag, value, start_ns, seq) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (tag, md5(value), start_ns, seq) DO NOTHING"
)
_DROP_TAG: Final = (
    "DELETE FROM rastir_trace_tags"
    " WHERE tag = %s AND md5(value) = md5(%s::text) AND start_ns = %s AND seq = %s"
)
_COUNT: Final = (
    "INSERT INTO rastir_counts (writer, spans, traces) VALUES (%s, %s, %s)"
    " ON CONFLICT (writer) DO UPDATE SET spans = rastir_counts.spans + excluded.spans,"
    " traces = rastir_counts.traces + excluded.traces"
)
_TOTALS: Final = (
    "SELECT coalesce(sum(spans), 0)::bigint, coalesce(sum(traces), 0)::bigint FROM rastir_counts"
)
_SIZE: Final = "SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in _TABLES)


def _psycopg() -> ModuleType:
    """psycopg, or an ImportError that says how to install it."""
    try:
        import psycopg
    except ImportError as e:
        raise ImportError(
            "the PostgreSQL trace store needs psycopg 3: pip install 'rastir[postgres]'"
        ) from e
    return psycopg


def _text(value: str) -> str:
    """``value`` as a PostgreSQL text can hold it (no NUL character)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class _Vanished(Exception):
    """A trace row was deleted (retention) between its creation and its lock: retry."""


class _Reader:
    __slots__ = ("connection", "decode")

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.decode = SpanDecoder()


class PostgresStore(QueuedWriter):
    """The shared :class:`~rastir.collector.store.base.TraceStore` (see the module doc).

    Args:
        dsn: a libpq connection string, ``postgresql://user:password@host:5432/db``
            (``postgres://`` too) or ``host=... dbname=...``. The tables are created
            in the database when missing; other data in it is left alone.
        queue_max_spans: spans that may wait for the writer (queued or being written).
        batch_max_spans: the most spans the writer puts in one transaction (a single
            larger batch still goes in whole).
        retention_seconds: delete traces that ended longer ago than this.
        max_bytes: delete the oldest traces while the tables use more than this.
        maintenance_interval: seconds between retention passes (and refreshes of the
            totals other replicas wrote). With 0, a pass follows every transaction.
        readers: the most read connections used at once.

    Raises:
        ValueError: an argument is out of range.
        ImportError: psycopg is not installed (``pip install 'rastir[postgres]'``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        queue_max_spans: int = 200_000,
        batch_max_spans: int = 5_000,
        retention_seconds: float | None = None,
        max_bytes: int | None = None,
        maintenance_interval: float = 10.0,
        readers: int = 4,
    ) -> None:
        if retention_seconds is not None and not retention_seconds > 0:
            raise ValueError(f"retention_seconds must be positive, not {retention_seconds}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if readers < 1:
            raise ValueError(f"readers must be at least 1, not {readers}")
        self._pg = _psycopg()
        # Every pass refreshes the totals, so an idle replica sees the others' spans.
        super().__init__(
            queue_max_spans=queue_max_spans,
            batch_max_spans=batch_max_spans,
            maintenance_interval=maintenance_interval,
            maintains=True,
        )
        self._dsn = dsn
        self._shown = redact_dsn(dsn)
        self._retention_ns = (
            None if retention_seconds is None else math.ceil(retention_seconds * 1e9)
        )
        self._max_bytes = max_bytes
        self._readers = readers
        # This store's row of rastir_counts.
        self._writer_id = uuid.uuid4().hex
        self._connection: psycopg.Connection[Any] | None = None
        self._encode = msgspec.json.Encoder().encode
        self._decode = SpanDecoder()
        # Span slots the tables were seen to hold (see Retention in the module doc).
        self._slots = 0
        self._next_size = 0.0

    def __repr__(self) -> str:
        return f"PostgresStore({self._shown!r})"

    @property
    def dsn(self) -> str:
        """The DSN with its password masked, fit to show."""
        return self._shown

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the tables when missing, and start the writer thread.

        Raises:
            StoreError: the database cannot be reached or used (the message names
                it, without its password, and why).
            StoreClosedError: the store was closed.
        """
        if self._closed:
            raise StoreClosedError("the trace store is closed")
        if self._started:
            return
        try:
            self._connection = await anyio.to_thread.run_sync(self._open)
        except self._pg.Error as e:
            raise StoreError(
                f"cannot open the PostgreSQL store at {self._shown}: {self._describe(e)}"
            ) from None
        self._start_writer(
            ReaderPool(self._open_reader, _close_reader, self._readers), self._readers
        )

    def _connect(self, role: str) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] = self._pg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT,
            application_name=f"rastir-collector-{role}",
            # A server that vanished without closing the connection (a cut network)
            # is noticed within a minute, not after the kernel's two hours.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        return connection

    def _open(self) -> psycopg.Connection[Any]:
        connection = self._connect("writer")
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                connection.execute(_SCHEMA)
                row = connection.execute("SELECT max(version) FROM rastir_schema").fetchone()
                version = None if row is None else row[0]
                if version is None:
                    connection.execute(
                        "INSERT INTO rastir_schema (version) VALUES (%s)", (_SCHEMA_VERSION,)
                    )
                elif version > _SCHEMA_VERSION:
                    raise StoreError(
                        f"{self._shown}: schema version {version} is newer than this "
                        f"rastir's ({_SCHEMA_VERSION})"
                    )
            self._refresh(connection)
        except BaseException:
            connection.close()
            raise
        self._slots = self._spans_stored
        return connection

    def _open_reader(self) -> _Reader:
        return _Reader(self._connect("reader"))

    def _writer(self) -> psycopg.Connection[Any]:
        """The writer's connection, reconnecting after a lost one."""
        connection = self._connection
        if connection is None or connection.closed:
            self._connection = connection = self._connect("writer")
        return connection

    def _drop_broken(self) -> None:
        connection = self._connection
        if connection is not None and (connection.broken or connection.closed):
            connection.close()
            self._connection = None

    def _close_writer(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _describe(self, error: BaseException) -> str:
        return scrub(f"{type(error).__name__}: {error}".strip(), self._dsn)

    def _transient(self, error: BaseException) -> bool:
        if isinstance(error, _Vanished | self._pg.InterfaceError):
            return True
        if isinstance(error, self._pg.OperationalError):
            # Class 54: a program limit (an index row too large...) the spans exceed.
            return not (error.sqlstate or "").startswith("54")
        return False

    # -- reading -------------------------------------------------------------------

    def _read(
        self, sql: str, params: tuple[Any, ...] | list[Any], *, spans: bool = False
    ) -> list[Any]:
        """Rows of one query on a pooled connection (retried once on a fresh one).

        With ``spans``, the query's rows are (service, data): they come back as
        :class:`SpanRow`, decoded with the reader's decoder while it is held.
        """
        pool = self._pool
        if pool is None:
            raise StoreClosedError("the trace store is not running")
        for attempt in (1, 2):
            try:
                reader: _Reader = pool.acquire()
            except self._pg.Error as e:  # no connection: the server is down or refusing
                raise StoreError(f"could not read traces: {self._describe(e)}") from None
            try:
                rows = reader.connection.execute(sql, params).fetchall()
                if spans:
                    decode = reader.decode
                    rows = [SpanRow(service, decode(data)) for service, data in rows]
            except self._pg.Error as e:
                if reader.connection.broken or reader.connection.closed:
                    pool.discard(reader)
                    if attempt == 1 and isinstance(e, self._pg.OperationalError):
                        continue  # a pooled connection the server closed meanwhile
                else:
                    pool.release(reader)
                raise StoreError(f"could not read traces: {self._describe(e)}") from None
            except BaseException:
                pool.discard(reader)
                raise
            pool.release(reader)
            return rows
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_trace(self, trace_id: str) -> TraceDetail | None:
        rows: list[SpanRow] = self._read(_GET_SPANS, (trace_id,), spans=True)
        if not rows:
            return None
        return TraceDetail(summarize(trace_id, rows), rows)

    def _read_traces(self, query: TraceQuery, cursor: tuple[int, int] | None) -> TracePage:
        sql, params = _listing_sql(query, cursor)
        fetched = self._read(sql, params)
        return trace_page(fetched, query)

    # -- the writer thread -------------------------------------------------------

    def _write_rows(self, rows: list[SpanRow], durable: bool) -> None:
        try:
            connection = self._writer()
            with connection.transaction():
                if durable:
                    connection.execute("SET LOCAL synchronous_commit = on")
                invalid = self._apply(connection, rows)
        except BaseException:
            self._drop_broken()
            raise
        self._counts["transactions"] += 1
        if invalid:
            self._counts["invalid_spans"] += invalid
        if time.monotonic() >= self._next_size:
            self._sample_size(connection)

    def _apply(self, connection: psycopg.Connection[Any], rows: list[SpanRow]) -> int:
        """Write spans, their traces' aggregates and tags, in the caller's transaction.

        Returns how many spans were refused as invalid.
        """
        # Last write wins, within the batch too (one statement cannot touch a row twice).
        latest: dict[tuple[str, str], SpanRow] = {}
        invalid = 0
        for row in rows:
            span = row.span
            if span.start_time_unix_nano > MAX_INT64 or span.end_time_unix_nano > MAX_INT64:
                invalid += 1  # bigint columns; no real clock gets there
            else:
                latest[span.trace_id, span.span_id] = row
        if not latest:
            return invalid
        by_trace: dict[str, list[SpanRow]] = {}
        for (trace_id, _), row in latest.items():
            by_trace.setdefault(trace_id, []).append(row)
        trace_ids = sorted(by_trace)

        cursor = connection.cursor()
        created = {row[0] for row in cursor.execute(_NEW_TRACES, (trace_ids,))}
        locked = cursor.execute(_LOCK_TRACES, (trace_ids,)).fetchall()
        if len(locked) != len(trace_ids):
            raise _Vanished("a trace was deleted while its spans were written")
        traces: dict[str, StoredTrace] = {}
        before: dict[str, tuple[int, set[Tag], int]] = {}
        for row in locked:
            trace_id = row[1]
            if trace_id in created:
                traces[trace_id] = StoredTrace(row[0])
            else:
                traces[trace_id] = trace = stored(row)
                before[trace_id] = (trace.start_ns, trace.tags(), trace.span_count)

        # Count every span as new while encoding it; the traces where some replaced
        # a stored copy are recounted below.
        encode = self._encode
        ids: list[str] = []
        span_ids: list[str] = []
        services: list[str] = []
        data: list[bytes] = []
        for trace_id in trace_ids:
            trace = traces[trace_id]
            for row in by_trace[trace_id]:
                span = row.span
                trace.add(row.service, span)
                ids.append(trace_id)
                span_ids.append(span.span_id)
                services.append(_text(row.service))
                data.append(encode(span))
        result = cursor.execute(_PUT_SPANS, (ids, span_ids, services, data)).fetchone()
        replaced: list[str] = [] if result is None else result[0]
        for trace_id in replaced:
            traces[trace_id] = self._recount(cursor, trace_id, traces[trace_id].seq)

        new_spans = sum(trace.span_count for trace in traces.values())
        new_spans -= sum(old[2] for old in before.values())
        cursor.executemany(
            _PUT_TRACE, [_trace_params(trace_id, trace) for trace_id, trace in traces.items()]
        )
        dropped, added = tag_changes(before, traces)
        if dropped:
            cursor.executemany(_DROP_TAG, _tag_params(dropped))
        if added:
            cursor.executemany(_ADD_TAG, _tag_params(added))
        self._count(cursor, new_spans, len(created))
        return invalid

    def _recount(self, cursor: psycopg.Cursor[Any], trace_id: str, seq: int) -> StoredTrace:
        decode = self._decode
        trace = StoredTrace(seq)
        for service, data in cursor.execute(_GET_SPANS, (trace_id,)).fetchall():
            trace.add(service, decode(data))
        return trace

    def _count(self, cursor: psycopg.Cursor[Any], spans: int, traces: int) -> None:
        """Add to this writer's totals, and read everyone's (in the caller's transaction)."""
        if spans or traces:
            cursor.execute(_COUNT, (self._writer_id, spans, traces))
        self._read_totals(cursor)

    def _read_totals(self, cursor: psycopg.Cursor[Any] | psycopg.Connection[Any]) -> None:
        row = cursor.execute(_TOTALS).fetchone()
        if row is not None:
            self._spans_stored, self._traces_stored = row

    def _refresh(self, connection: psycopg.Connection[Any]) -> None:
        """Totals and size as the database has them now (other writers included)."""
        self._read_totals(connection)
        self._sample_size(connection)

    def _sample_size(self, connection: psycopg.Connection[Any]) -> None:
        row = connection.execute(_SIZE).fetchone()
        size = 0 if row is None else int(row[0])
        self._slots = max(self._slots, self._spans_stored)
        self._size_bytes = size
        self._used_bytes = round(size * self._spans_stored / self._slots) if self._slots else size
        self._next_size = time.monotonic() + _SIZE_EVERY

    # -- retention ---------------------------------------------------------------

    def _maintain(self) -> None:
        super()._maintain()
        try:
            connection = self._writer()
            self._refresh(connection)
            if self._retention_ns is None and self._max_bytes is None:
                return
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (_MAINTENANCE_LOCK,)
            ).fetchone()
            if row is None or not row[0]:
                return  # another replica is at it
            try:
                self._retain(connection)
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (_MAINTENANCE_LOCK,))
        except self._pg.Error as e:
            _log.error("trace store maintenance failed: %s", self._describe(e))
            self._drop_broken()

    def _retain(self, connection: psycopg.Connection[Any]) -> None:
        if self._retention_ns is not None:
            cutoff = time.time_ns() - self._retention_ns
            # Traces ended before the cutoff also started before it: walk the start
            # index and skip the few long ones still running.
            while True:
                seqs = [
                    row[0]
                    for row in connection.execute(
                        "SELECT seq FROM rastir_traces WHERE start_ns < %s AND end_ns < %s"
                        " ORDER BY start_ns LIMIT 1000",
                        (cutoff, cutoff),
                    )
                ]
                if seqs:
                    self._delete(connection, seqs, "retention", cutoff)
                if len(seqs) < 1000:
                    break
        if self._max_bytes is not None:
            self._shrink(self._max_bytes)

    def _measure(self) -> None:
        self._sample_size(self._writer())

    def _oldest(self, limit: int) -> Iterator[tuple[Any, int]]:
        yield from self._writer().execute(
            "SELECT seq, span_count FROM rastir_traces ORDER BY start_ns, seq LIMIT %s", (limit,)
        )

    def _delete_oldest(self, traces: list[Any]) -> None:
        self._delete(self._writer(), traces, "size")

    def _delete(
        self,
        connection: psycopg.Connection[Any],
        seqs: list[int],
        why: str,
        cutoff: int | None = None,
    ) -> None:
        """Delete whole traces, by ``seq`` (those still ended before ``cutoff``)."""
        sql = f"SELECT {_COLUMNS} FROM rastir_traces WHERE seq = ANY(%s)"
        params: list[Any] = [seqs]
        if cutoff is not None:  # checked again under the lock: a span may have come
            sql += " AND start_ns < %s AND end_ns < %s"
            params += (cutoff, cutoff)
        with connection.transaction():
            cursor = connection.cursor()
            rows = cursor.execute(sql + " ORDER BY trace_id FOR UPDATE", params).fetchall()
            if not rows:
                return
            spans = 0
            tags: list[TagRow] = []
            for row in rows:
                trace = stored(row)
                spans += trace.span_count
                tags.extend((tag, value, trace.start_ns, trace.seq) for tag, value in trace.tags())
            cursor.execute(
                "DELETE FROM rastir_spans WHERE trace_id = ANY(%s::text[])", ([r[1] for r in rows],)
            )
            if tags:
                cursor.executemany(_DROP_TAG, _tag_params(tags))
            cursor.execute("DELETE FROM rastir_traces WHERE seq = ANY(%s)", ([r[0] for r in rows],))
            self._count(cursor, -spans, -len(rows))
        self._counts[f"{why}_deleted_spans"] += spans
        self._counts[f"{why}_deleted_traces"] += len(rows)


def _close_reader(reader: _Reader) -> None:
    reader.connection.close()


def _trace_params(trace_id: str, trace: StoredTrace) -> tuple[Any, ...]:
    """:data:`_PUT_TRACE`'s parameters: the row's fields but seq and trace_id, then seq."""
    row = trace_row(trace_id, trace)
    return (*row[2:12], _text(row[12]), row[13], row[0])


def _tag_params(rows: list[TagRow]) -> list[TagRow]:
    return [(tag, _text(value), start, seq) for tag, value, start, seq in rows]


def _listing_sql(query: TraceQuery, cursor: tuple[int, int] | None) -> tuple[str, list[Any]]:
    """The listing's query, newest first, on an index range (see the module doc).

    With a tag: the first tag's range of ``rastir_trace_tags``; further tags, the
    time range, ``status=ok`` and the minimum duration are checked per trace.
    Without one, PostgreSQL picks among the start, ok-by-start and duration indexes.
    """
    tags = query_tags(query)
    params: list[Any] = []
    columns = ", ".join(f"t.{name}" for name in TRACE_FIELDS)
    tagged = (
        " AND EXISTS (SELECT 1 FROM rastir_trace_tags h WHERE h.tag = %s"
        " AND md5(h.value) = md5(%s::text) AND h.value = %s"
        " AND h.start_ns = {start} AND h.seq = {seq})"
    )
    if tags:
        tag, value = tags[0]
        sql = (
            f"SELECT {columns} FROM rastir_trace_tags g JOIN rastir_traces t ON t.seq = g.seq"
            " WHERE g.tag = %s AND md5(g.value) = md5(%s::text) AND g.value = %s"
        )
        params += (tag, _text(value), _text(value))
        start, seq = "g.start_ns", "g.seq"
    else:
        sql = f"SELECT {columns} FROM rastir_traces t WHERE true"
        start, seq = "t.start_ns", "t.seq"
    for tag, value in tags[1:]:
        sql += tagged.format(start=start, seq=seq)
        params += (tag, _text(value), _text(value))
    # The summary's duration is never below 0 (a trace of evaluation spans alone
    # has no end, _aggregate), so min_duration_ms=0 keeps every trace.
    min_duration = query.min_duration_ns or None
    return range_filters(
        sql, params, start, seq, query, cursor, min_duration, mark="%s", greatest="greatest"
    )
