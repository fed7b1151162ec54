"""The embedded trace store: one SQLite file in WAL mode, written by one thread.

Writing
    :meth:`SQLiteStore.submit` puts a batch on a bounded queue (bounded in spans, not
    batches) and returns at once; when the queue is full it returns False and counts
    the spans as dropped, so the collector can answer 429. One writer thread drains
    the queue, taking many batches per transaction (up to ``batch_max_spans``), so a
    busy collector writes large transactions and an idle one writes small ones soon.
    The event loop never waits for SQLite. (The queue, the writer thread and the
    handling of failures below are shared with the PostgreSQL store: ``_writer``.)

Durability
    Transactions commit with ``synchronous`` as configured (``NORMAL`` by default: in
    WAL mode a committed transaction survives the process being killed, but not a
    power cut). :meth:`SQLiteStore.write` is the committed mode: its spans go through
    the same queue, ``write`` returns only once the transaction holding them has
    committed, and that transaction runs with ``synchronous=FULL``, so the WAL is
    fsynced first (which covers every earlier transaction too). Pass
    ``synchronous="FULL"`` to fsync every transaction. :meth:`SQLiteStore.flush`
    waits for everything submitted so far to commit, without the fsync.

Schema
    ``traces`` holds one row per trace with its aggregates, kept up to date in the
    same transaction as its spans. Its row number ``seq`` is given in the order
    traces are first seen, and the other tables refer to a trace by it: trace ids
    are random, and an index keyed by them would take each span's write to a random
    page (measured: a third of the write time went to committing those pages).
    Keyed by ``seq``, a batch's writes land on the last few pages of each index;
    only ``traces.trace_id``'s index is written at random, once per new trace.

    ``span_data`` holds one row per span: the span as JSON, its service, and its key
    ``(trace_seq, span_id)``, which is unique: a span written again replaces the
    earlier copy (last write wins). The view ``spans`` shows each span with the
    columns worth querying by hand (``trace_id``, ``name``, ``kind``, ``start_ns``,
    ``status``, ``error_type``, ``agent``, ``model``...), read out of the JSON.
    Storing those columns cost about a quarter of the write time (binding them on
    each insert, or computing them as generated columns, which SQLite does on insert
    even when they are VIRTUAL), and nothing the collector runs reads them.

    ``trace_tags`` indexes traces by service, agent, model, error type and "has an
    error", keyed by the trace's start, so a filtered listing walks one index
    range, newest first. Without a tag, ``traces_ok_by_start`` serves
    ``status=ok`` and ``traces_by_duration_digits`` a minimum duration: no filter
    of ``GET /v1/traces`` walks every trace to find a few. These two indexes came
    after schema version 1's first release; ``CREATE INDEX IF NOT EXISTS`` adds
    them to an older file when it is opened (a file they were added to still
    opens with the release before), so the version stays 1.

Failures
    A transaction that fails because of the database's surroundings (locked by
    another connection past ``busy_timeout``, the disk full, read-only or failing:
    SQLite's BUSY, LOCKED, FULL, READONLY, IOERR, CANTOPEN, PROTOCOL) proves nothing
    about the spans: they are already acknowledged (queued mode), so the writer puts
    them back at the head of the queue and tries again, backing off from 50 ms to
    2 s, for as long as the store runs. Meanwhile the queue fills and ingest answers
    429, so senders hold their spans instead of the collector losing them. Each
    failed attempt is counted (``extra["write_errors"]``). A ``write`` (committed
    mode) fails at once instead: its sender is waiting and retries on the 503. Any
    other error is the spans' own: each batch of the transaction is tried alone,
    and the ones that still fail are dropped and counted (``failed_spans``).

Reading
    Reads run in worker threads on their own connections (WAL readers never wait for
    the writer): a small pool, bounded by a capacity limiter.

Retention
    Every ``maintenance_interval`` seconds the writer deletes traces that ended more
    than ``retention_seconds`` ago, then, while the database uses more than
    ``max_bytes``, the traces that started first. Freed pages are reused, so the file
    stops growing near ``max_bytes`` rather than shrinking.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import msgspec

from rastir.collector.store._aggregate import Tag, query_tags
from rastir.collector.store._readers import ReaderPool
from rastir.collector.store._rows import (
    MAX_INT64,
    TRACE_FIELDS,
    SpanDecoder,
    StoredTrace,
    json_encoder,
    range_filters,
    stored,
    tag_changes,
    trace_page,
    trace_row,
)
from rastir.collector.store._writer import QueuedWriter
from rastir.collector.store.assemble import summarize
from rastir.collector.store.base import (
    SpanRow,
    TraceDetail,
    TracePage,
    TraceQuery,
)
from rastir.collector.store.errors import StoreClosedError, StoreError

__all__ = ["SQLiteStore"]

_log = logging.getLogger("rastir.collector.store")

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
_SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA_VERSION: Final = 1
# SQLite primary result codes that say the database's surroundings failed, not the
# spans (https://sqlite.org/rescode.html; stable values, spelled out because typeshed
# lacks the sqlite3 constants): BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
# A later attempt may well succeed.
_TRANSIENT_CODES: Final = frozenset((5, 6, 8, 10, 13, 14, 15))
# The messages SQLite gives those codes (sqlite3ErrStr), for Python 3.10's sqlite3,
# whose exceptions carry no code.
_TRANSIENT_MESSAGES: Final = (
    "database is locked",
    "database table is locked",
    "readonly database",
    "disk i/o error",
    "database or disk is full",
    "unable to open database file",
    "locking protocol",
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL UNIQUE,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    error_count INTEGER NOT NULL,
    root_rank INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL,
    root_span_id TEXT NOT NULL,
    root_name TEXT NOT NULL,
    tags BLOB NOT NULL  -- msgpack: [services, agents, models, error types]
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns, seq);
-- Listing without a tag: traces without errors (status=ok), newest first; and
-- traces by the decimal digits of their duration (min_duration_ms), newest first
-- within each (see _listing_sql). Both are built when an older file is opened.
CREATE INDEX IF NOT EXISTS traces_ok_by_start ON traces (start_ns, seq) WHERE error_count = 0;
CREATE INDEX IF NOT EXISTS traces_by_duration_digits
    ON traces (length(max(end_ns - start_ns, 0)), start_ns, seq);
CREATE TABLE IF NOT EXISTS span_data (
    trace_seq INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    service TEXT NOT NULL,
    data BLOB NOT NULL  -- the WireSpan as JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS span_data_by_trace ON span_data (trace_seq, span_id);
CREATE VIEW IF NOT EXISTS spans AS SELECT
    trace_seq,
    CAST(data AS TEXT) ->> '$.trace_id' AS trace_id,
    span_id,
    CAST(data AS TEXT) ->> '$.parent_span_id' AS parent_span_id,
    service,
    CAST(data AS TEXT) ->> '$.name' AS name,
    CAST(data AS TEXT) ->> '$.kind' AS kind,
    CAST(data AS TEXT) ->> '$.start_time_unix_nano' AS start_ns,
    CAST(data AS TEXT) ->> '$.end_time_unix_nano' AS end_ns,
    coalesce(CAST(data AS TEXT) ->> '$.status', 'ok') AS status,
    CAST(data AS TEXT) ->> '$.error.type' AS error_type,
    CAST(data AS TEXT) ->> '$.attributes."gen_ai.agent.name"' AS agent,
    coalesce(
        CAST(data AS TEXT) ->> '$.attributes."gen_ai.response.model"',
        CAST(data AS TEXT) ->> '$.attributes."gen_ai.request.model"'
    ) AS model,
    data
FROM span_data;
CREATE TABLE IF NOT EXISTS trace_tags (
    tag INTEGER NOT NULL,
    value TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tag, value, start_ns, seq)
) WITHOUT ROWID;
"""

_INSERT_SPAN: Final = (
    "INSERT INTO span_data (trace_seq, span_id, service, data) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
_UPSERT_SPAN: Final = (
    "INSERT INTO span_data (trace_seq, span_id, service, data) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (trace_seq, span_id) DO UPDATE SET"
    " service = excluded.service, data = excluded.data"
)
_TRACE_FIELDS: Final = TRACE_FIELDS
_TRACE_COLUMNS: Final = ", ".join(_TRACE_FIELDS)
# An update leaves trace_id alone, so its (random) index is not written again.
_PUT_TRACE: Final = (
    f"INSERT INTO traces ({_TRACE_COLUMNS}) VALUES ({', '.join('?' * len(_TRACE_FIELDS))})"
    " ON CONFLICT (seq) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _TRACE_FIELDS[2:])
)
_GET_TRACES: Final = (
    f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id IN (SELECT value FROM json_each(?))"
)
_GET_SPANS: Final = (
    "SELECT s.service, s.data FROM traces t JOIN span_data s ON s.trace_seq = t.seq"
    " WHERE t.trace_id = ?"
)
_ADD_TAG: Final = "INSERT OR IGNORE INTO trace_tags VALUES (?, ?, ?, ?)"
_DROP_TAG: Final = "DELETE FROM trace_tags WHERE tag = ? AND value = ? AND start_ns = ? AND seq = ?"


class _Reader:
    __slots__ = ("connection", "decode")

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA query_only = ON")
        self.connection.execute("PRAGMA busy_timeout = 5000")
        self.connection.execute("PRAGMA cache_size = -8192")
        self.decode = SpanDecoder()


def _close_reader(reader: _Reader) -> None:
    reader.connection.close()


class SQLiteStore(QueuedWriter):
    """The embedded :class:`~rastir.collector.store.base.TraceStore` (see the module doc).

    Args:
        path: the database file; its directory is created when missing. An existing
            database is reopened, counters included.
        queue_max_spans: spans that may wait for the writer (queued or being written).
        batch_max_spans: the most spans the writer puts in one transaction (a single
            larger batch still goes in whole).
        retention_seconds: delete traces that ended longer ago than this.
        max_bytes: delete the oldest traces while the database uses more than this.
        synchronous: SQLite's ``synchronous`` for ordinary transactions; ``write``
            always commits with ``FULL``.
        maintenance_interval: seconds between retention passes. With 0, a pass follows
            every transaction (for tests).
        readers: the most read connections used at once.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_max_spans: int = 200_000,
        batch_max_spans: int = 5_000,
        retention_seconds: float | None = None,
        max_bytes: int | None = None,
        synchronous: Synchronous = "NORMAL",
        maintenance_interval: float = 10.0,
        readers: int = 4,
    ) -> None:
        if retention_seconds is not None and not retention_seconds > 0:
            raise ValueError(f"retention_seconds must be positive, not {retention_seconds}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        if readers < 1:
            raise ValueError(f"readers must be at least 1, not {readers}")
        super().__init__(
            queue_max_spans=queue_max_spans,
            batch_max_spans=batch_max_spans,
            maintenance_interval=maintenance_interval,
            maintains=retention_seconds is not None or max_bytes is not None,
        )
        self._path = Path(path)
        self._retention_ns = (
            None if retention_seconds is None else math.ceil(retention_seconds * 1e9)
        )
        self._max_bytes = max_bytes
        self._synchronous = synchronous.upper()
        self._always_full = self._synchronous in ("FULL", "EXTRA")
        self._readers = readers

        # Writer-thread state.
        self._connection: sqlite3.Connection | None = None
        self._encode = msgspec.json.Encoder().encode
        self._decode = SpanDecoder()
        # Aggregates of recently written traces, so most writes need no read.
        # Insertion order is recency; entries are taken out while a transaction
        # uses them and put back only once it has committed.
        self._cache: dict[str, StoredTrace] = {}
        self._cache_max = 20_000
        self._next_seq = 1

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the database and start the writer thread.

        Raises:
            StoreError: the file is not a database this version can use, or it cannot
                be opened or created (the message names the path and why).
            StoreClosedError: the store was closed.
        """
        if self._closed:
            raise StoreClosedError("the trace store is closed")
        if self._started:
            return
        try:
            self._connection = await anyio.to_thread.run_sync(self._open)
        except (OSError, sqlite3.Error) as e:
            # A data dir that is a file, unwritable, or on a vanished mount: one
            # readable line (the collector logs it and exits), not a traceback.
            raise StoreError(f"cannot open the SQLite store at {self._path}: {e}") from None
        path = self._path
        self._start_writer(
            ReaderPool(lambda: _Reader(path), _close_reader, self._readers), self._readers
        )

    # -- reading -------------------------------------------------------------------

    def _reader(self) -> _Reader:
        if self._pool is None:
            raise StoreClosedError("the trace store is not running")
        reader: _Reader = self._pool.acquire()
        return reader

    def _read_trace(self, trace_id: str) -> TraceDetail | None:
        pool = self._pool
        reader = self._reader()
        try:
            decode = reader.decode
            # Row by row, not fetchall(): a big trace's stored JSON is never all held
            # next to its decoded spans.
            cursor = reader.connection.execute(_GET_SPANS, (trace_id,))
            rows = [SpanRow(service, decode(data)) for service, data in cursor]
        finally:
            assert pool is not None
            pool.release(reader)
        if not rows:
            return None
        return TraceDetail(summarize(trace_id, rows), rows)

    def _read_traces(self, query: TraceQuery, cursor: tuple[int, int] | None) -> TracePage:
        pool = self._pool
        reader = self._reader()
        try:
            connection = reader.connection
            tags = query_tags(query)
            slow_first = bool(tags and query.min_duration_ns) and _slow_are_fewer(
                connection, tags[0], query.min_duration_ns or 0
            )
            sql, params = _listing_sql(query, cursor, slow_first=slow_first)
            fetched = connection.execute(sql, params).fetchall()
        finally:
            assert pool is not None
            pool.release(reader)
        return trace_page(fetched, query)

    # -- the writer thread -------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < (3, 38):  # the ->> operator
            raise StoreError(f"SQLite 3.38 or newer is needed, not {sqlite3.sqlite_version}")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            # For a new file only: 8 KiB pages wrote 10% faster than 4 KiB here.
            connection.execute("PRAGMA page_size = 8192")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self._path}: cannot use WAL mode (got {mode!r})")
            connection.execute(f"PRAGMA synchronous = {self._synchronous}")
            connection.execute("PRAGMA busy_timeout = 5000")
            connection.execute("PRAGMA cache_size = -32768")
            connection.execute("PRAGMA temp_store = MEMORY")
            # Bound the WAL file once a checkpoint has emptied it.
            connection.execute("PRAGMA journal_size_limit = 67108864")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreError(
                    f"{self._path}: schema version {version} is newer than this "
                    f"rastir's ({_SCHEMA_VERSION})"
                )
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            traces, spans, last_seq = connection.execute(
                "SELECT count(*), coalesce(sum(span_count), 0), coalesce(max(seq), 0) FROM traces"
            ).fetchone()
        except sqlite3.Error as e:
            connection.close()
            raise StoreError(f"{self._path}: cannot open the trace store: {e}")
        except BaseException:
            connection.close()
            raise
        self._traces_stored = traces
        self._spans_stored = spans
        self._next_seq = last_seq + 1
        self._sample_size(connection)
        return connection

    def _transient(self, error: BaseException) -> bool:
        return _transient(error)

    def _write_rows(self, rows: list[SpanRow], durable: bool) -> None:
        connection = self._connection
        assert connection is not None
        durable = durable and not self._always_full
        try:
            if durable:
                connection.execute("PRAGMA synchronous = FULL")
            connection.execute("BEGIN IMMEDIATE")
            new_spans, new_traces, invalid, aggregates = self._apply(connection, rows)
            connection.execute("COMMIT")
        except Exception:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    _log.exception("trace store rollback failed")
            self._cache.clear()  # it may hold aggregates the rollback undid
            raise
        finally:
            if durable:
                try:
                    connection.execute(f"PRAGMA synchronous = {self._synchronous}")
                except sqlite3.Error:
                    _log.exception("trace store could not restore synchronous")
        self._spans_stored += new_spans
        self._traces_stored += new_traces
        self._counts["transactions"] += 1
        if invalid:
            self._counts["invalid_spans"] += invalid
        cache = self._cache
        cache.update(aggregates)
        if len(cache) > self._cache_max:
            # Keep the newer half. (Deleting one by one from the front of a dict
            # rescans its deleted slots on every call.)
            keep = self._cache_max // 2
            self._cache = dict(itertools.islice(cache.items(), len(cache) - keep, None))
        self._sample_size(connection)

    def _apply(
        self, connection: sqlite3.Connection, rows: list[SpanRow]
    ) -> tuple[int, int, int, dict[str, StoredTrace]]:
        """Write spans, then their traces' aggregates and tags; in the caller's transaction.

        Returns the new spans, the new traces, the spans refused as invalid, and the
        aggregates to cache once the transaction has committed.
        """
        trace_ids: dict[str, None] = {}
        invalid = 0
        for row in rows:
            span = row.span
            if span.start_time_unix_nano > MAX_INT64 or span.end_time_unix_nano > MAX_INT64:
                invalid += 1  # SQLite integers are 64-bit; no real clock gets there
            else:
                trace_ids[span.trace_id] = None
        if invalid:
            rows = [
                row
                for row in rows
                if row.span.start_time_unix_nano <= MAX_INT64
                and row.span.end_time_unix_nano <= MAX_INT64
            ]
            if not rows:
                return 0, 0, invalid, {}

        cursor = connection.cursor()
        traces = self._load(cursor, trace_ids)
        before = {
            trace_id: (trace.start_ns, trace.tags(), trace.span_count)
            for trace_id, trace in traces.items()
        }
        for trace_id in trace_ids:
            if trace_id not in traces:
                traces[trace_id] = StoredTrace(self._next_seq)
                self._next_seq += 1

        # Count every span as new while encoding it; if some turn out to be stored
        # already, their traces are recounted below.
        encode = self._encode
        params: list[tuple[Any, ...]] = []
        append = params.append
        for row in rows:
            span = row.span
            trace = traces[span.trace_id]
            trace.add(row.service, span)
            append((trace.seq, span.span_id, row.service, encode(span)))
        cursor.executemany(_INSERT_SPAN, params)
        if cursor.rowcount == len(params):
            new_spans = len(params)
        else:
            # Some spans were stored already: replace them (last write wins) and
            # recount their traces (a replaced span cannot be subtracted).
            cursor.executemany(_UPSERT_SPAN, params)
            new_spans = 0
            for trace_id, trace in traces.items():
                traces[trace_id] = trace = self._recount(cursor, trace.seq)
                new_spans += trace.span_count - before.get(trace_id, (0, set(), 0))[2]

        cursor.executemany(_PUT_TRACE, [trace_row(t, trace) for t, trace in traces.items()])
        dropped, added = tag_changes(before, traces)
        if dropped:
            cursor.executemany(_DROP_TAG, dropped)
        if added:
            cursor.executemany(_ADD_TAG, added)
        return new_spans, len(traces) - len(before), invalid, traces

    def _load(self, cursor: sqlite3.Cursor, trace_ids: Iterable[str]) -> dict[str, StoredTrace]:
        """The stored traces among these (from the cache, else the database)."""
        cache = self._cache
        found: dict[str, StoredTrace] = {}
        missing: list[str] = []
        for trace_id in trace_ids:
            trace = cache.pop(trace_id, None)
            if trace is None:
                missing.append(trace_id)
            else:
                found[trace_id] = trace
        if missing:
            for row in cursor.execute(_GET_TRACES, (json_encoder.encode(missing),)):
                found[row[1]] = stored(row)
        return found

    def _recount(self, cursor: sqlite3.Cursor, seq: int) -> StoredTrace:
        decode = self._decode
        trace = StoredTrace(seq)
        for service, data in cursor.execute(
            "SELECT service, data FROM span_data WHERE trace_seq = ?", (seq,)
        ):
            trace.add(service, decode(data))
        return trace

    def _sample_size(self, connection: sqlite3.Connection) -> None:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        self._size_bytes = pages * page_size
        self._used_bytes = (pages - free) * page_size

    # -- retention ---------------------------------------------------------------

    def _maintain(self) -> None:
        self._next_maintenance = time.monotonic() + self._maintenance_interval
        connection = self._connection
        assert connection is not None
        try:
            if self._retention_ns is not None:
                cutoff = time.time_ns() - self._retention_ns
                # Traces ended before the cutoff also started before it: walk the
                # start index and skip the few long ones still running.
                while True:
                    rows = connection.execute(
                        f"SELECT {_TRACE_COLUMNS} FROM traces"
                        " WHERE start_ns < ? AND end_ns < ? ORDER BY start_ns LIMIT 1000",
                        (cutoff, cutoff),  # not ?1 twice: Python 3.14 refuses a sequence for it
                    ).fetchall()
                    if rows:
                        self._delete(connection, rows, "retention")
                    if len(rows) < 1000:
                        break
            if self._max_bytes is not None:
                self._shrink(self._max_bytes)
        except sqlite3.Error:
            _log.exception("trace store retention failed")

    def _measure(self) -> None:
        assert self._connection is not None
        self._sample_size(self._connection)

    def _oldest(self, limit: int) -> Iterator[tuple[Any, int]]:
        assert self._connection is not None
        for row in self._connection.execute(
            f"SELECT {_TRACE_COLUMNS} FROM traces ORDER BY start_ns, seq LIMIT ?", (limit,)
        ):
            yield row, row[4]

    def _delete_oldest(self, traces: list[Any]) -> None:
        assert self._connection is not None
        self._delete(self._connection, traces, "size")

    def _delete(
        self, connection: sqlite3.Connection, rows: list[tuple[Any, ...]], why: str
    ) -> None:
        """Delete whole traces, given as ``traces`` rows."""
        spans = 0
        seqs: list[tuple[int]] = []
        tags: list[tuple[int, str, int, int]] = []
        for row in rows:
            trace = stored(row)
            spans += trace.span_count
            seqs.append((trace.seq,))
            tags.extend((tag, value, trace.start_ns, trace.seq) for tag, value in trace.tags())
            self._cache.pop(row[1], None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany("DELETE FROM span_data WHERE trace_seq = ?", seqs)
            connection.executemany(_DROP_TAG, tags)
            connection.executemany("DELETE FROM traces WHERE seq = ?", seqs)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self._spans_stored -= spans
        self._traces_stored -= len(rows)
        self._counts[f"{why}_deleted_spans"] += spans
        self._counts[f"{why}_deleted_traces"] += len(rows)
        self._sample_size(connection)

    def _close_writer(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            _log.exception("trace store checkpoint failed")
        connection.close()


def _transient(error: BaseException) -> bool:
    """Whether a failed transaction may succeed later with the same spans."""
    if not isinstance(error, sqlite3.Error):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _TRANSIENT_CODES
    # Python 3.10's sqlite3 gives no error code: SQLite's own text for those codes.
    message = str(error).lower()
    return any(text in message for text in _TRANSIENT_MESSAGES)


# The duration classes: a trace's duration's decimal digits, as the index has them.
_DIGITS: Final = "length(max(t.end_ns - t.start_ns, 0))"
_MOST_DIGITS: Final = len(str(MAX_INT64))


# A tag and a minimum duration: which index to walk is chosen by counting, up to
# this many, the traces long enough (see _slow_are_fewer).
_SLOW_COUNT_MAX: Final = 4096
_COUNT_SLOW: Final = (
    "SELECT count(*) FROM (SELECT 1 FROM traces t INDEXED BY traces_by_duration_digits"
    f" WHERE {_DIGITS} >= ? LIMIT {_SLOW_COUNT_MAX})"
)
_COUNT_TAGGED: Final = (
    "SELECT count(*) FROM (SELECT 1 FROM trace_tags WHERE tag = ? AND value = ? LIMIT ?)"
)


def _slow_are_fewer(connection: sqlite3.Connection, tag: Tag, min_duration: int) -> bool:
    """Whether fewer traces may last ``min_duration`` than carry ``tag``.

    A listing by a tag walks that tag's range and checks each trace's duration: for
    ``service=X`` (often every trace) and a minimum only a few traces reach, that
    was a walk of every trace (200,000 traces: 66 ms). When the traces in the
    duration classes that can reach the minimum are fewer than the tag's (both
    counted on their indexes, the tag's up to the first count), the listing walks
    those classes and checks the tags instead. Both counts read index entries only,
    at most ``_SLOW_COUNT_MAX`` and one more than the first count.
    """
    if not min_duration:
        return False
    (slow,) = connection.execute(_COUNT_SLOW, (len(str(min_duration)),)).fetchone()
    if slow >= _SLOW_COUNT_MAX:
        return False
    (tagged,) = connection.execute(_COUNT_TAGGED, (*tag, slow + 1)).fetchone()
    return bool(slow < tagged)


def _listing_sql(
    query: TraceQuery, cursor: tuple[int, int] | None, *, slow_first: bool = False
) -> tuple[str, list[Any]]:
    """The listing's query: index ranges walked newest first, none of them every trace.

    With a tag: the first tag's range of ``trace_tags``; further tags are checked by
    primary key, ``status="ok"`` and the minimum duration on the trace row. Without
    one, or with ``slow_first`` (:func:`_slow_are_fewer`), a minimum duration walks
    ``traces_by_duration_digits``: one range per number of digits a long enough
    duration can have, each newest first and cut at the page size, merged; tags are
    then checked by primary key. Only the range of the minimum's own digit count
    holds traces too short (checked on the row). Else ``status="ok"`` walks
    ``traces_ok_by_start``, and no filter (or a time range) ``traces_by_start``.
    """
    tags = query_tags(query)
    params: list[Any] = []
    columns = ", ".join(f"t.{name}" for name in _TRACE_FIELDS)
    # The summary's duration is never below 0 (a trace of evaluation spans alone
    # has no end, _aggregate), so min_duration_ms=0 keeps every trace, as in memory.
    min_duration = query.min_duration_ns or None
    if tags and not (slow_first and min_duration is not None):
        tag, value = tags[0]
        # CROSS JOIN fixes the join order: walk the tag index, look traces up.
        sql = (
            f"SELECT {columns} FROM trace_tags g CROSS JOIN traces t ON t.seq = g.seq"
            " WHERE g.tag = ? AND g.value = ?"
        )
        params += (tag, value)
        start, seq = "g.start_ns", "g.seq"
        for tag, value in tags[1:]:
            sql += (
                " AND EXISTS (SELECT 1 FROM trace_tags h WHERE h.tag = ? AND h.value = ?"
                " AND h.start_ns = g.start_ns AND h.seq = g.seq)"
            )
            params += (tag, value)
    elif min_duration is not None:
        tagged = "".join(
            " AND EXISTS (SELECT 1 FROM trace_tags h WHERE h.tag = ? AND h.value = ?"
            " AND h.start_ns = t.start_ns AND h.seq = t.seq)"
            for _ in tags
        )
        arms: list[str] = []
        for digits in range(len(str(min_duration)), _MOST_DIGITS + 1):
            arm_sql, arm_params = range_filters(
                f"SELECT {columns} FROM traces t INDEXED BY traces_by_duration_digits"
                f" WHERE {_DIGITS} = ?{tagged}",
                [digits, *(part for tag in tags for part in tag)],
                "t.start_ns",
                "t.seq",
                query,
                cursor,
                min_duration,
            )
            arms.append(f"SELECT * FROM ({arm_sql})")
            params += arm_params
        names = ", ".join(_TRACE_FIELDS)
        sql = f"SELECT {names} FROM ({' UNION ALL '.join(arms)}) ORDER BY start_ns DESC, seq DESC"
        sql += " LIMIT ?"
        params.append(query.limit + 1)
        return sql, params
    else:
        index = "traces_ok_by_start" if query.status == "ok" else "traces_by_start"
        sql = f"SELECT {columns} FROM traces t INDEXED BY {index} WHERE 1"
        start, seq = "t.start_ns", "t.seq"
    return range_filters(sql, params, start, seq, query, cursor, min_duration)
