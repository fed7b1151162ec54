"""What only the PostgreSQL store does: several replicas on one database, lost
connections, an unreachable server, retention, and secrets kept out of sight.

Every test runs against a real PostgreSQL server (``tests/_postgres.py``), each on a
fresh database.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import psycopg
import pytest

from rastir.collector.store import (
    PostgresStore,
    SpanRow,
    StoreClosedError,
    StoreError,
    StoreFullError,
    TraceQuery,
    summarize,
)
from rastir.collector.store.postgres import _MAINTENANCE_LOCK
from tests._python import run_python
from tests.collector.conftest import RunCollector
from tests.collector.spans import batch, encode, span
from tests.collector.test_store import MS, T0, tid
from tests.collector.test_store import span as wire_span
from tests.collector.test_store_sqlite import fill_past_the_size_limit, trace

pytestmark = pytest.mark.anyio

PASSWORD = "Sekr1t-7f3a"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def one(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    (row,) = query(dsn, sql, params)
    return row[0]


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- several replicas ------------------------------------------------------------------------


def workload(seed: int) -> tuple[list[SpanRow], dict[str, list[SpanRow]]]:
    """Spans of 30 traces from two services, and the unique spans of each trace.

    Each trace is a root, three children and six grandchildren, with tokens, costs
    (exact in binary, so any order of addition agrees), errors and both services.
    """
    rng = random.Random(seed)
    unique: dict[str, list[SpanRow]] = {}
    for n in range(1, 31):
        rows: list[SpanRow] = []
        for i in range(10):
            parent = None if i == 0 else (1 if i <= 3 else 2 + (i - 4) // 2)
            failed = (n + i) % 7 == 0
            rows.append(
                SpanRow(
                    "web" if i % 2 else "api",
                    wire_span(
                        n,
                        i + 1,
                        parent=parent,
                        name=f"op{i}",
                        kind="llm" if i >= 4 else "agent",
                        start=T0 + n * 1000 * MS + i * MS,
                        duration=(10 - i) * MS,
                        status="error" if failed else "ok",
                        error="timeout" if failed else None,
                        attributes={
                            "gen_ai.usage.input_tokens": 10 + i,
                            "gen_ai.usage.output_tokens": n,
                            "rastir.cost.usd": 0.125 * i,
                            "gen_ai.request.model": f"m{i % 3}",
                        },
                    ),
                )
            )
        unique[tid(n)] = rows
    # Every span once, a third of them twice; shuffled (children before parents).
    sent = [row for rows in unique.values() for row in rows]
    sent += rng.sample(sent, len(sent) // 3)
    rng.shuffle(sent)
    return sent, unique


async def test_two_replicas_writing_the_same_traces_agree_exactly(postgres_dsn: str) -> None:
    sent, unique = workload(seed=7)
    # Small transactions, so that the two writers interleave on the same traces.
    stores = [PostgresStore(postgres_dsn, batch_max_spans=15) for _ in range(2)]
    async with anyio.create_task_group() as tg:
        for s in stores:
            tg.start_soon(s.start)
    try:
        rng = random.Random(1)

        async def send(store: PostgresStore, rows: list[SpanRow]) -> None:
            for at in range(0, len(rows), 7):
                assert store.submit(rows[at : at + 7])
                if rng.random() < 0.3:
                    await anyio.lowlevel.checkpoint()

        # Each replica gets a random share; both write at once.
        shares: list[list[SpanRow]] = [[], []]
        for row in sent:
            shares[rng.randrange(2)].append(row)
        async with anyio.create_task_group() as tg:
            for s, share in zip(stores, shares, strict=True):
                tg.start_soon(send, s, share)
        with anyio.fail_after(30):
            for s in stores:
                await s.flush()

        for trace_id, rows in unique.items():
            expected = summarize(trace_id, rows)
            for s in stores:
                detail = await s.get_trace(trace_id)
                assert detail is not None
                assert detail.summary == expected
                got = sorted((r.service, r.span.span_id) for r in detail.spans)
                assert got == sorted((r.service, r.span.span_id) for r in rows)
        listings = [await s.list_traces(TraceQuery(limit=100)) for s in stores]
        assert listings[0] == listings[1]
        assert {t.trace_id: t for t in listings[0].traces} == {
            trace_id: summarize(trace_id, rows) for trace_id, rows in unique.items()
        }
        errors = await stores[1].list_traces(TraceQuery(error_type="timeout", limit=100))
        assert {t.trace_id for t in errors.traces} == {
            trace_id for trace_id, rows in unique.items() if any(r.span.error for r in rows)
        }
        # A span written again (a replacement) refreshes each replica's totals.
        for s in stores:
            await s.write(unique[tid(1)][:1])
            stats = s.stats()
            assert (stats.spans_stored, stats.traces_stored) == (300, 30)
            assert stats.extra["failed_spans"] == 0
    finally:
        for s in stores:
            await s.close()
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_spans") == 300
    assert one(postgres_dsn, "SELECT sum(span_count) FROM rastir_traces") == 300
    assert one(postgres_dsn, "SELECT sum(spans) FROM rastir_counts") == 300


async def test_a_span_sent_again_replaces_the_first_copy_without_counting_twice(
    postgres_dsn: str,
) -> None:
    a, b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    await a.start()
    await b.start()
    try:
        first = wire_span(1, 1, name="draft", attributes={"gen_ai.usage.input_tokens": 5})
        second = msgspec.structs.replace(first, name="final", status="error")
        await a.write([SpanRow("svc", first), SpanRow("svc", wire_span(1, 2, parent=1))])
        await b.write([SpanRow("svc", second), SpanRow("svc", second)])
        for s in (a, b):
            detail = await s.get_trace(tid(1))
            assert detail is not None
            summary = detail.summary
            assert (summary.span_count, summary.input_tokens, summary.error_count) == (2, 5, 1)
            assert summary.root_name == "final"
            (listed,) = (await s.list_traces(TraceQuery(status="error"))).traces
            assert listed == summary
        assert (await a.list_traces(TraceQuery(status="ok"))).traces == []
    finally:
        await a.close()
        await b.close()


async def test_replicas_starting_together_on_an_empty_database_all_start(
    postgres_dsn: str,
) -> None:
    stores = [PostgresStore(postgres_dsn) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for s in stores:
            tg.start_soon(s.start)
    try:
        for n, s in enumerate(stores, 1):
            await s.write(trace(n, 2))
        assert (await stores[0].list_traces(TraceQuery())).traces[0].trace_id == tid(4)
    finally:
        for s in stores:
            await s.close()
    assert query(postgres_dsn, "SELECT version FROM rastir_schema") == [(1,)]


async def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    s = PostgresStore(postgres_dsn)
    await s.start()
    await s.close()
    query(postgres_dsn, "UPDATE rastir_schema SET version = 99 RETURNING version")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        await PostgresStore(postgres_dsn).start()


# -- failures --------------------------------------------------------------------------------


def writer_pids(dsn: str) -> list[int]:
    return [
        row[0]
        for row in query(
            dsn,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'rastir-collector-writer'",
        )
    ]


async def test_a_killed_connection_loses_no_queued_span(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    await store.start()
    try:
        assert store.submit(trace(1, 3))
        await store.flush()
        (pid,) = writer_pids(postgres_dsn)
        assert one(postgres_dsn, "SELECT pg_terminate_backend(%s)", (pid,)) is True
        for n in range(2, 6):
            assert store.submit(trace(n, 3))  # acknowledged: must not be lost
        with anyio.fail_after(30):
            await store.flush()
        for n in range(1, 6):
            detail = await store.get_trace(tid(n))
            assert detail is not None
            assert detail.summary.span_count == 3
        stats = store.stats()
        assert stats.extra["write_errors"] >= 1
        assert (stats.extra["failed_spans"], stats.extra["lost_spans"]) == (0, 0)
        assert stats.spans_stored == 15
        assert writer_pids(postgres_dsn) != [pid]  # it reconnected
    finally:
        await store.close()


async def test_a_read_on_a_pooled_connection_the_server_closed_is_retried(
    postgres_dsn: str,
) -> None:
    store = PostgresStore(postgres_dsn, readers=2)
    await store.start()
    try:
        await store.write(trace(1, 2))
        assert await store.get_trace(tid(1)) is not None  # a reader is pooled now
        killed = query(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database()"
            " AND application_name = 'rastir-collector-reader'",
        )
        assert killed == [(True,)]
        detail = await store.get_trace(tid(1))
        assert detail is not None
        assert detail.summary.span_count == 2
        assert len((await store.list_traces(TraceQuery())).traces) == 1
    finally:
        await store.close()


class Proxy:
    """A loopback TCP relay to the server that can be cut: a network outage."""

    def __init__(self, port: int) -> None:
        self._upstream = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += (client, upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        try:  # wakes the thread blocked in accept() (closing alone does not, on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._thread.join(5)


@contextmanager
def proxy_to(dsn: str) -> Iterator[tuple[Proxy, str]]:
    """A proxy to the server of ``dsn``, and the DSN that goes through it."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    proxy = Proxy(int(str(info["port"])))
    try:
        yield proxy, dsn.replace(f":{info['port']}/", f":{proxy.port}/")
    finally:
        proxy.cut()


async def test_committed_mode_fails_at_once_with_503_while_the_server_is_unreachable(
    postgres_dsn: str, run_collector: RunCollector
) -> None:
    with proxy_to(postgres_dsn) as (proxy, dsn):
        store = PostgresStore(dsn)
        async with run_collector(trace_store=store, ack="committed") as c:
            ok = span()
            assert (await c.post(encode(batch([ok])))).status_code == 202
            proxy.cut()
            with anyio.fail_after(30):  # refused connections: no waiting for a timeout
                with pytest.raises(StoreError) as raised:
                    await store.write(trace(9, 2))
                r = await c.post(encode(batch([span()])))
            assert not isinstance(raised.value, StoreFullError | StoreClosedError)
            assert (r.status_code, r.json().get("error")) == (503, "store_error"), r.text
            assert r.headers["retry-after"] == "1"
            stats = store.stats()
            assert stats.extra["write_errors"] >= 2
            assert stats.extra["failed_spans"] == 0  # their senders kept them
            assert stats.queue_depth == 0
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_spans") == 1


async def test_a_store_whose_server_is_unreachable_fails_to_start_naming_it_without_password() -> (
    None
):
    port = closed_port()
    store = PostgresStore(f"postgresql://rastir:{PASSWORD}@127.0.0.1:{port}/traces")
    with anyio.fail_after(30), pytest.raises(StoreError) as raised:
        await store.start()
    message = str(raised.value)
    assert message.startswith(
        f"cannot open the PostgreSQL store at postgresql://rastir:***@127.0.0.1:{port}/traces: "
    )
    assert PASSWORD not in message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


async def test_one_bad_batch_does_not_sink_those_written_with_it(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    bad = [SpanRow(["not", "a", "name"], trace(2, 1)[0].span)]  # type: ignore[arg-type]
    await store.start()
    blocker = psycopg.connect(postgres_dsn)
    # The writer waits on this lock, so the three batches queue up behind it.
    blocker.execute("LOCK TABLE rastir_traces IN SHARE MODE")
    try:
        assert store.submit(trace(1, 3))
        assert store.submit(bad)
        assert store.submit(trace(3, 2))
        blocker.rollback()
        with anyio.fail_after(30):
            await store.flush()
        assert await store.get_trace(tid(1)) is not None
        assert await store.get_trace(tid(2)) is None
        assert await store.get_trace(tid(3)) is not None
        stats = store.stats()
        assert (stats.extra["failed_spans"], stats.spans_stored) == (1, 5)
        assert stats.extra["write_errors"] >= 1
    finally:
        blocker.close()
        await store.close()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.errors.DeadlockDetected("40P01"), True),
        (psycopg.errors.SerializationFailure("40001"), True),
        (psycopg.errors.AdminShutdown("57P01"), True),
        (psycopg.errors.DiskFull("53100"), True),
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), False),
        (psycopg.errors.NumericValueOutOfRange("out of range"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (TypeError("a span's own bug"), False),
    ],
)
def test_which_errors_are_the_databases_and_which_the_spans(
    error: BaseException, transient: bool
) -> None:
    assert PostgresStore("postgresql://h/db")._transient(error) is transient


# -- retention -------------------------------------------------------------------------------


async def test_retention_deletes_traces_that_ended_long_ago(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, retention_seconds=3600, maintenance_interval=0)
    await store.start()
    try:
        now = time.time_ns()
        hour = 3600 * 10**9
        old = trace(1, 3, start=now - 3 * hour, service="old")
        # Started as long ago, but its last span ended just now: kept.
        running = trace(2, 2, start=now - 3 * hour) + trace(2, 3, start=now - 60 * MS)[2:]
        fresh = trace(3, 4, start=now)
        await store.write(old + running + fresh)
        await store.flush()  # the pass that follows a transaction has run

        assert await store.get_trace(tid(1)) is None
        assert await store.get_trace(tid(2)) is not None
        assert await store.get_trace(tid(3)) is not None
        assert (await store.list_traces(TraceQuery(service="old"))).traces == []
        stats = store.stats()
        assert (stats.spans_stored, stats.traces_stored) == (7, 2)
        assert (
            stats.extra["retention_deleted_spans"],
            stats.extra["retention_deleted_traces"],
        ) == (3, 1)
    finally:
        await store.close()
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_spans") == 7
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_trace_tags") == 2  # "api", twice


async def test_retention_by_size_deletes_the_oldest_traces(postgres_dsn: str) -> None:
    limit = 1_500_000
    store = PostgresStore(postgres_dsn, max_bytes=limit, maintenance_interval=0)
    await store.start()
    try:
        kept = await fill_past_the_size_limit(store, limit)
    finally:
        await store.close()
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_spans") == 10 * kept
    assert one(postgres_dsn, "SELECT count(*) FROM rastir_traces") == kept
    # The oldest kept trace is newer than every deleted one.
    assert one(postgres_dsn, "SELECT min(trace_id) FROM rastir_traces") == tid(401 - kept)


async def test_only_one_replica_runs_retention_at_a_time(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, retention_seconds=3600, maintenance_interval=0)
    await store.start()
    try:
        old = trace(1, 2, start=time.time_ns() - 7200 * 10**9)
        # Another replica is in its pass: it holds the maintenance lock.
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            held = other.execute("SELECT pg_try_advisory_lock(%s)", (_MAINTENANCE_LOCK,))
            assert held.fetchone() == (True,)
            await store.write(old)
            await store.flush()
            assert await store.get_trace(tid(1)) is not None  # not this replica's turn
        await store.write(trace(2, 1, start=time.time_ns()))
        await store.flush()
        assert await store.get_trace(tid(1)) is None  # the lock is free again
    finally:
        await store.close()


# -- listing plans -------------------------------------------------------------------------

LISTINGS = [
    TraceQuery(),
    TraceQuery(status="ok"),
    TraceQuery(status="error"),
    TraceQuery(error_type="timeout"),
    TraceQuery(service="api"),
    TraceQuery(service="api", agent="planner", model="m1"),
    TraceQuery(service="api", status="ok", min_duration_ns=5 * MS),
    TraceQuery(min_duration_ns=50 * MS),
    TraceQuery(start_ns=T0, end_ns=T0 + 10**12),
]


@pytest.mark.parametrize("listing", LISTINGS, ids=repr)
def test_no_listing_scans_the_whole_traces_table(postgres_dsn: str, listing: TraceQuery) -> None:
    async def fill() -> None:
        store = PostgresStore(postgres_dsn)
        await store.start()
        try:
            rows: list[SpanRow] = []
            for n in range(1, 4001):
                attributes: dict[str, Any] = {"gen_ai.request.model": f"m{n % 5}"}
                if n % 50 == 0:
                    attributes["gen_ai.agent.name"] = "planner"
                rows.append(
                    SpanRow(
                        "api" if n % 3 else "web",
                        wire_span(
                            n,
                            1,
                            start=T0 + n * MS,
                            duration=(n % 97) * MS,
                            status="error" if n % 40 == 0 else "ok",
                            error="timeout" if n % 40 == 0 else None,
                            attributes=attributes,
                        ),
                    )
                )
            await store.write(rows)
        finally:
            await store.close()

    anyio.run(fill)
    from rastir.collector.store.postgres import _listing_sql

    sql, params = _listing_sql(listing, None)
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("ANALYZE")
        plan = "\n".join(row[0] for row in connection.execute("EXPLAIN " + sql, params))
    assert "Seq Scan on rastir_traces" not in plan, plan
    assert "Seq Scan on rastir_trace_tags" not in plan, plan


# -- secrets and the optional dependency -----------------------------------------------------


def test_the_password_is_masked_in_repr_and_the_dsn_property() -> None:
    store = PostgresStore(f"postgresql://rastir:{PASSWORD}@db.example:5432/traces?sslmode=require")
    assert repr(store) == (
        "PostgresStore('postgresql://rastir:***@db.example:5432/traces?sslmode=require')"
    )
    assert store.dsn == "postgresql://rastir:***@db.example:5432/traces?sslmode=require"
    keywords = PostgresStore(f"host=db.example password='{PASSWORD}' dbname=traces")
    assert PASSWORD not in repr(keywords)
    assert "password=***" in repr(keywords)


def test_importing_the_collector_does_not_import_psycopg() -> None:
    out = run_python(
        "import sys, rastir.collector, rastir.collector.store, rastir.collector.settings\n"
        "from rastir.collector.store import PostgresStore\n"
        "print('psycopg' in sys.modules)"
    )
    assert out.stdout.strip() == "False", out.stderr


def test_without_psycopg_the_store_says_how_to_install_it() -> None:
    out = run_python(
        "import sys; sys.modules['psycopg'] = None  # as if not installed\n"
        "from rastir.collector.store import open_store\n"
        "try:\n"
        f"    open_store('postgresql://u:{PASSWORD}@db.example/x', '.')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert out.stdout.strip() == (
        "the PostgreSQL trace store needs psycopg 3: pip install 'rastir[postgres]'"
    ), out.stderr
