"""``rastir.wrap``: the generic proxy, on our own classes, sqlite3 and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator, Iterator
from typing import Any

import anyio
import pytest

import rastir
from rastir.errors import classify
from rastir.testing import CapturedSpans
from tests._servers import require_binary

pytestmark = pytest.mark.anyio

wrap_module = importlib.import_module("rastir.wrap")


class Service:
    """A stand-in client with every kind of member."""

    limit = 10

    def __init__(self) -> None:
        self.calls = 0

    def double(self, x: int) -> int:
        self.calls += 1
        return x * 2

    async def fetch(self, x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x + 1

    async def hang(self, started: anyio.Event) -> None:
        started.set()
        await anyio.sleep_forever()

    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    async def stream(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await anyio.lowlevel.checkpoint()
            yield i

    def lazy(self, x: int) -> Any:
        # A sync method handing back a coroutine, as redis.asyncio's commands do.
        return self.fetch(x)

    def fail(self) -> None:
        raise KeyError("missing")

    def me(self) -> Service:
        return self

    @property
    def answer(self) -> int:
        return 42

    def _internal(self) -> int:
        return 1

    def __len__(self) -> int:
        return 3

    def __iter__(self) -> Iterator[int]:
        return iter((1, 2, 3))

    def __getitem__(self, key: str) -> str:
        return key.upper()

    def __contains__(self, item: object) -> bool:
        return item == "here"

    def __call__(self, x: int, *, y: int = 0) -> int:
        return x + y

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "<Service>"


# -- spans ------------------------------------------------------------------------------
def test_each_public_method_call_is_a_span_named_after_the_class(
    rastir_spans: CapturedSpans,
) -> None:
    svc = rastir.wrap(Service())
    assert svc.double(2) == 4
    span = rastir_spans.one("Service.double")
    assert span.kind == "custom"
    assert span.status == "ok"
    assert span.attributes["code.function.name"] == f"{__name__}.Service.double"


def test_kind_and_name_prefix_are_options(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service(), kind="retrieval", name="store")
    svc.double(1)
    assert rastir_spans.one("store.double").kind == "retrieval"


def test_spans_are_children_of_the_current_span(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())

    @rastir.trace
    def outer() -> None:
        svc.double(1)
        svc.double(2)

    outer()
    parent = rastir_spans.one("outer")
    kids = rastir_spans.children(parent)
    assert [k.name for k in kids] == ["Service.double", "Service.double"]


async def test_async_methods_are_spans_until_they_complete(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    assert await svc.fetch(1) == 2
    assert rastir_spans.one("Service.fetch").duration_ns > 0


async def test_a_sync_method_returning_a_coroutine_keeps_its_span_until_awaited(
    rastir_spans: CapturedSpans,
) -> None:
    svc = rastir.wrap(Service())
    pending = svc.lazy(1)
    assert rastir_spans.find("Service.lazy") == []
    assert await pending == 2
    span = rastir_spans.one("Service.lazy")
    assert span.status == "ok"


async def test_the_awaited_coroutine_records_its_failure(rastir_spans: CapturedSpans) -> None:
    class Failing:
        async def _go(self) -> None:
            raise TimeoutError("slow")

        def go(self) -> Any:
            return self._go()

    obj = rastir.wrap(Failing())
    with pytest.raises(TimeoutError):
        await obj.go()
    assert rastir_spans.one("Failing.go").error == {
        "type": "timeout",
        "exception_type": "TimeoutError",
        "message": "slow",
    }


def test_generator_methods_are_spans_until_exhausted(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    items = svc.count(3)
    assert rastir_spans.find("Service.count") == []
    assert list(items) == [0, 1, 2]
    assert rastir_spans.one("Service.count").attributes["rastir.generator.items"] == 3


async def test_async_generator_methods_are_spans_until_exhausted(
    rastir_spans: CapturedSpans,
) -> None:
    svc = rastir.wrap(Service())
    assert [i async for i in svc.stream(2)] == [0, 1]
    assert rastir_spans.one("Service.stream").attributes["rastir.generator.items"] == 2


def test_exceptions_are_recorded_and_reraised_unchanged(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    with pytest.raises(KeyError) as info:
        svc.fail()
    span = rastir_spans.one("Service.fail")
    assert span.status == "error"
    assert span.error == {
        "type": classify(info.value),
        "exception_type": "KeyError",
        "message": "'missing'",
    }
    assert info.value.__traceback__ is not None


async def test_cancellation_is_recorded_as_cancelled(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.hang, started)
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    span = rastir_spans.one("Service.hang")
    assert span.status == "cancelled"
    assert span.error is None


def test_include_and_exclude_choose_the_traced_methods(rastir_spans: CapturedSpans) -> None:
    only = rastir.wrap(Service(), include={"double"})
    only.double(1)
    list(only.count(1))
    without = rastir.wrap(Service(), exclude=["double"])
    without.double(1)
    list(without.count(1))
    assert [s.name for s in rastir_spans] == ["Service.double", "Service.count"]


def test_private_members_properties_and_data_are_not_traced(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    assert svc._internal() == 1
    assert svc.answer == 42
    assert svc.limit == 10
    assert svc.calls == 0
    assert list(rastir_spans) == []


def test_nothing_is_recorded_when_rastir_is_disabled(rastir_spans: CapturedSpans) -> None:
    rastir.configure(enabled=False)
    svc = rastir.wrap(Service())
    assert svc.double(3) == 6
    assert list(svc.count(2)) == [0, 1]
    assert list(rastir_spans) == []


# -- transparency -----------------------------------------------------------------------
def test_attributes_read_and_write_through_to_the_object() -> None:
    obj = Service()
    svc = rastir.wrap(obj)
    svc.double(1)
    assert svc.calls == 1
    svc.limit = 99
    assert obj.limit == 99
    setattr(svc, "extra", "x")  # noqa: B010 - Service declares no such attribute
    assert getattr(obj, "extra") == "x"  # noqa: B009
    delattr(svc, "extra")
    assert not hasattr(obj, "extra")
    assert "double" in dir(svc)


def test_isinstance_repr_str_equality_and_hash_follow_the_object() -> None:
    obj = Service()
    svc = rastir.wrap(obj)
    assert isinstance(svc, Service)
    assert svc.__class__ is Service
    assert repr(svc) == str(svc) == "<Service>"
    assert svc == obj
    assert hash(svc) == hash(obj)
    assert {svc: 1}[obj] == 1
    assert type(svc) is not Service


def test_special_methods_are_forwarded() -> None:
    svc = rastir.wrap(Service())
    assert len(svc) == 3
    assert list(svc) == [1, 2, 3]
    assert svc["k"] == "K"
    assert "here" in svc
    assert svc(1, y=2) == 3


def test_special_methods_the_object_lacks_stay_missing() -> None:
    conn = rastir.wrap(sqlite3.connect(":memory:"))
    try:
        assert not hasattr(conn, "__len__")
        with pytest.raises(TypeError):
            len(conn)  # type: ignore[arg-type]
    finally:
        conn.close()


def test_with_gives_back_the_proxy_when_the_object_gives_itself(
    rastir_spans: CapturedSpans,
) -> None:
    svc = rastir.wrap(Service())
    with svc as inside:
        assert inside is svc
        inside.double(1)
    assert svc.me() is not svc  # ordinary methods return what the object returns
    assert len(rastir_spans.find("Service.double")) == 1


async def test_async_with_gives_back_the_proxy(rastir_spans: CapturedSpans) -> None:
    svc = rastir.wrap(Service())
    async with svc as inside:
        assert inside is svc
        await inside.fetch(1)
    rastir_spans.one("Service.fetch")


def test_method_wrappers_are_made_once_and_kept() -> None:
    svc = rastir.wrap(Service())
    assert svc.double is svc.double


def test_a_method_rebound_on_the_instance_is_traced_without_being_kept(
    rastir_spans: CapturedSpans,
) -> None:
    obj = Service()
    svc = rastir.wrap(obj)
    obj.double = lambda x: x  # type: ignore[method-assign]
    assert svc.double(5) == 5
    assert svc.double is not svc.double
    # Assigning through the proxy drops any kept wrapper.
    svc.double = lambda x: -x  # type: ignore[method-assign]
    assert svc.double(5) == -5
    assert len(rastir_spans.find("Service.double")) == 2


def test_an_object_is_never_wrapped_twice() -> None:
    obj = Service()
    first = rastir.wrap(obj)
    assert rastir.wrap(obj) is first
    assert rastir.wrap(first) is first
    assert rastir.wrap(obj, kind="tool") is first  # the first options stay


def test_concurrent_wraps_of_one_object_give_one_proxy() -> None:
    obj = Service()
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def run() -> None:
        barrier.wait()
        seen.append(rastir.wrap(obj))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in seen}) == 1


def test_a_dropped_proxy_leaves_nothing_behind() -> None:
    obj = Service()
    proxy = rastir.wrap(obj)
    key = id(obj)
    assert key in wrap_module._registry
    del proxy
    gc.collect()
    assert key not in wrap_module._registry
    assert wrap_module.is_proxy(rastir.wrap(obj))


def test_unwrap_gives_the_object_back() -> None:
    obj = Service()
    assert wrap_module.unwrap(rastir.wrap(obj)) is obj
    assert wrap_module.unwrap(obj) is obj


def test_a_module_can_be_wrapped(rastir_spans: CapturedSpans) -> None:
    traced = rastir.wrap(json)
    assert traced.dumps([1]) == "[1]"
    assert rastir_spans.one("json.dumps").attributes["code.function.name"].endswith(".dumps")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kind": "nope"}, ValueError),
        ({"name": ""}, ValueError),
        ({"include": "double"}, TypeError),
        ({"exclude": [1]}, TypeError),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        rastir.wrap(Service(), **kwargs)


def test_none_is_refused() -> None:
    with pytest.raises(TypeError):
        rastir.wrap(None)


# -- sqlite3: C-level methods ---------------------------------------------------------------
def test_a_sqlite3_connection_is_traced_through_its_c_methods(
    rastir_spans: CapturedSpans,
) -> None:
    conn = rastir.wrap(sqlite3.connect(":memory:"), kind="retrieval")
    try:
        assert isinstance(conn, sqlite3.Connection)
        conn.row_factory = sqlite3.Row  # written through to the connection
        with conn as inside:  # commits, and hands back the proxy
            assert inside is conn
            conn.execute("create table t (id integer primary key, name text)")
            conn.executemany("insert into t values (?, ?)", [(1, "a"), (2, "b")])
        row = conn.execute("select name from t where id = ?", (2,)).fetchone()
        assert row["name"] == "b"
        assert conn.total_changes == 2
        assert conn.in_transaction is False
    finally:
        conn.close()
    names = [s.name for s in rastir_spans]
    assert names == [
        "Connection.execute",
        "Connection.executemany",
        "Connection.execute",
        "Connection.close",
    ]
    assert {s.kind for s in rastir_spans} == {"retrieval"}
    assert rastir_spans[0].attributes["code.function.name"] == "sqlite3.Connection.execute"


def test_sqlite3_errors_are_recorded_with_their_category(rastir_spans: CapturedSpans) -> None:
    conn = rastir.wrap(sqlite3.connect(":memory:"))
    try:
        conn.execute("create table t (id integer primary key)")
        conn.execute("insert into t values (1)")
        with pytest.raises(sqlite3.IntegrityError) as dup:
            conn.execute("insert into t values (1)")
        with pytest.raises(sqlite3.OperationalError) as missing:
            conn.execute("select * from nowhere")
    finally:
        conn.close()
    failed = [s for s in rastir_spans if s.status == "error"]
    assert [s.error for s in failed] == [
        {
            "type": classify(dup.value),
            "exception_type": "sqlite3.IntegrityError",
            "message": "UNIQUE constraint failed: t.id",
        },
        {
            "type": classify(missing.value),
            "exception_type": "sqlite3.OperationalError",
            "message": "no such table: nowhere",
        },
    ]


def test_sqlite3_exception_classes_on_the_connection_are_not_wrapped() -> None:
    conn = rastir.wrap(sqlite3.connect(":memory:"))
    try:
        assert conn.Error is sqlite3.Error
    finally:
        conn.close()


# -- Redis: a real server ---------------------------------------------------------------------
redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A throwaway redis-server on loopback, no persistence, stopped by its pid."""
    binary = require_binary("redis-server", "redis-server")
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def watch(p: subprocess.Popen[str] = proc, ev: threading.Event = ready) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                if "Ready to accept connections" in line:
                    ev.set()

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        if ready.wait(10):
            break
        _stop(proc, reader)
    else:
        pytest.fail("redis-server did not start")
    try:
        yield port
    finally:
        _stop(proc, reader)


def _stop(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)
    reader.join(5)
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_redis_client_is_traced_call_by_call(
    redis_port: int, rastir_spans: CapturedSpans
) -> None:
    with rastir.wrap(redis.Redis(port=redis_port), kind="retrieval") as r:
        assert isinstance(r, redis.Redis)
        r.set("greeting", "hello")
        assert r.get("greeting") == b"hello"
        with pytest.raises(redis.ResponseError) as info:
            r.incr("greeting")
        r.delete("greeting")
    assert [s.name for s in rastir_spans] == [
        "Redis.set",
        "Redis.get",
        "Redis.incr",
        "Redis.delete",
    ]
    assert {s.kind for s in rastir_spans} == {"retrieval"}
    error = rastir_spans.one("Redis.incr").error
    assert error is not None
    assert error["type"] == classify(info.value)
    assert error["exception_type"] == "redis.exceptions.ResponseError"
    assert "not an integer" in error["message"]


def test_a_refused_redis_connection_is_recorded(rastir_spans: CapturedSpans) -> None:
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    r = rastir.wrap(redis.Redis(port=_free_port(), socket_connect_timeout=2, retry=no_retry))
    with pytest.raises(redis.ConnectionError) as info:
        r.ping()
    r.close()
    span = rastir_spans.one("Redis.ping")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["type"] == classify(info.value)


async def test_an_asyncio_redis_client_keeps_each_span_until_the_reply(
    redis_port: int, rastir_spans: CapturedSpans
) -> None:
    @rastir.trace
    async def job() -> None:
        async with rastir.wrap(redis_asyncio.Redis(port=redis_port)) as r:
            await r.set("n", 1)
            values = await asyncio.gather(r.incr("n"), r.incr("n"))
            assert sorted(values) == [2, 3]

    await job()
    parent = rastir_spans.one("job")
    calls = [s for s in rastir_spans if s.name.startswith("Redis.")]
    assert sorted(s.name for s in calls) == ["Redis.incr", "Redis.incr", "Redis.set"]
    assert all(s.psid == parent.sid and s.status == "ok" for s in calls)


class _Cyclic:
    def ping(self) -> str:
        return "pong"


def test_a_collection_inside_the_registry_lock_cannot_deadlock_wrap() -> None:
    # A proxy kept alive only by a cycle (target -> proxy -> target) dies in the next
    # collection, and its weakref callback takes the registry lock. A collection can
    # start at any allocation, including inside proxy_for's locked block: here the
    # factory, which proxy_for calls under the lock, collects on purpose.
    from rastir.wrap import proxy_for

    def churn() -> None:
        for _ in range(3):
            target = _Cyclic()
            target.proxy = rastir.wrap(target)  # type: ignore[attr-defined]
            del target

            def factory(obj: Any) -> Any:
                gc.collect()
                return lambda proxy, name, value: (value, False)

            assert proxy_for(_Cyclic(), factory).ping() == "pong"

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "wrap() deadlocked on its own registry lock"


class _Switch:
    def __init__(self) -> None:
        self.state = "a"

    def ping(self) -> str:
        return "real"

    def handle_a(self) -> str:
        return "a"

    def handle_b(self) -> str:
        return "b"

    @property
    def handler(self) -> Any:
        return self.handle_a if self.state == "a" else self.handle_b


def test_the_proxy_calls_the_method_the_object_has_now(rastir_spans: CapturedSpans) -> None:
    obj = _Switch()
    proxy = rastir.wrap(obj, name="sw")
    assert proxy.ping() == "real"
    assert proxy.handler() == "a"
    obj.state = "b"  # a property now returns another bound method
    assert proxy.handler() == "b"
    from unittest import mock

    def patched(self: _Switch) -> str:
        return "patched on the class"

    with mock.patch.object(_Switch, "ping", patched):
        assert proxy.ping() == "patched on the class"
    obj.ping = lambda: "rebound on the object"  # type: ignore[method-assign]
    assert proxy.ping() == "rebound on the object"
    names = [s.name for s in rastir_spans]
    assert names[:3] == ["sw.ping", "sw.handler", "sw.handler"]
    assert names.count("sw.ping") == 3


def test_a_proxy_copies_as_a_proxy_and_pickles_as_its_object() -> None:
    import copy
    import pickle

    proxy = rastir.wrap(_Switch(), name="sw")
    for duplicate in (copy.copy(proxy), copy.deepcopy(proxy)):
        assert isinstance(duplicate, _Switch)
        assert type(duplicate) is type(proxy)  # still traced
        assert duplicate.ping() == "real"
    loaded = pickle.loads(pickle.dumps(proxy))
    assert type(loaded) is _Switch  # the object itself: wrap it again to trace it
    assert loaded.state == "a"


def test_wrapping_a_module_names_its_functions_by_module(rastir_spans: CapturedSpans) -> None:
    rastir.wrap(json, name="json").dumps({"a": 1})
    span = rastir_spans.one("json.dumps")
    assert span.attributes["code.function.name"] == "json.dumps"


# -- lazy results: a sync method returning a generator or a context manager -------------
@rastir.trace(name="work")
def _work(i: int) -> int:
    return i


class _Lazy:
    """Sync methods that hand back objects whose work runs after the method returns."""

    def __init__(self) -> None:
        self.kept = self._rows(2)
        self.cleaned = 0
        self.failure = KeyError("row 1")

    def _rows(self, n: int) -> Generator[int, None, None]:
        try:
            for i in range(n):
                yield _work(i)
        finally:
            self.cleaned += 1
            _work(-1)

    def rows(self, n: int) -> Generator[int, None, None]:
        return self._rows(n)

    async def _arows(self, n: int) -> AsyncGenerator[int, None]:
        try:
            for i in range(n):
                await asyncio.sleep(0)
                yield _work(i)
        finally:
            self.cleaned += 1
            _work(-1)

    def arows(self, n: int) -> AsyncGenerator[int, None]:
        return self._arows(n)

    def _broken(self) -> Iterator[int]:
        yield 0
        raise self.failure

    def broken(self) -> Iterator[int]:
        return self._broken()

    def _echo(self) -> Generator[str, Any, str]:
        got = yield "ready"
        while got != "stop":
            try:
                got = yield f"echo {got}"
            except ValueError as exc:
                got = yield f"caught {exc}"
        return "done"

    def echo(self) -> Generator[str, Any, str]:
        return self._echo()

    async def _aecho(self) -> AsyncGenerator[str, Any]:
        got = yield "ready"
        while True:
            try:
                got = yield f"echo {got}"
            except ValueError as exc:
                got = yield f"caught {exc}"

    def aecho(self) -> AsyncGenerator[str, Any]:
        return self._aecho()

    def kept_rows(self) -> Iterator[int]:
        return self.kept  # handed out again and again: not the caller's alone

    @contextlib.contextmanager
    def session(self, suppress: bool = False) -> Iterator[_Lazy]:
        _work(10)  # setup
        try:
            yield self
        except ValueError:
            if not suppress:
                raise
        finally:
            _work(11)  # teardown

    @contextlib.asynccontextmanager
    async def asession(self) -> AsyncIterator[_Lazy]:
        _work(10)
        try:
            await asyncio.sleep(0)
            yield self
        finally:
            _work(11)

    async def open_rows(self, n: int) -> Generator[int, None, None]:
        await asyncio.sleep(0)  # e.g. a connection first, then the rows
        return self._rows(n)

    async def open_arows(self, n: int) -> AsyncGenerator[int, None]:
        await asyncio.sleep(0)
        return self._arows(n)

    async def open_session(self) -> contextlib.AbstractAsyncContextManager[_Lazy]:
        await asyncio.sleep(0)
        return self.asession()

    async def open_kept(self) -> Iterator[int]:
        return self.kept

    async def later(self) -> Coroutine[Any, Any, int]:
        async def value() -> int:
            return _work(5)

        return value()

    def values(self) -> Iterator[int]:
        return iter([1, 2])

    def number(self) -> int:
        return 7

    def handle(self) -> Service:
        return Service()  # a context manager that may never be entered


def _work_inside(spans: CapturedSpans, parent: rastir.Span) -> int:
    """How many ``work`` spans are children of ``parent``; each must have ended before
    it (the span covers the work, whatever the clock says about durations)."""
    kids = spans.children(parent)
    assert all(k.name == "work" for k in kids)
    assert all(
        parent.start_time_unix_nano <= k.start_time_unix_nano
        and k.end_time_unix_nano <= parent.end_time_unix_nano
        for k in kids
    )
    return len(kids)


def test_a_returned_generator_keeps_its_span_until_exhausted(rastir_spans: CapturedSpans) -> None:
    import inspect

    store = rastir.wrap(_Lazy())

    @rastir.trace
    def consume() -> list[int]:
        rows = store.rows(2)
        is_generator = inspect.isgenerator(rows)
        assert is_generator
        assert "generator object _Lazy._rows at" in repr(rows)
        assert rastir_spans.find("_Lazy.rows") == []  # still open: nothing ran yet
        out = []
        for row in rows:
            out.append(row)
            _work(100 + row)  # the consumer's own code: not under the generator's span
        return out

    assert consume() == [0, 1]
    span = rastir_spans.one("_Lazy.rows")
    assert span.status == "ok"
    assert span.attributes["rastir.generator.items"] == 2
    assert "rastir.generator.closed_early" not in span.attributes
    # The rows and the cleanup ran inside the span, with it current; the loop body not.
    assert _work_inside(rastir_spans, span) == 3
    outer = rastir_spans.one("consume")
    assert span.psid == outer.sid
    assert [s.name for s in rastir_spans.children(outer)] == ["_Lazy.rows", "work", "work"]


async def test_a_returned_async_generator_keeps_its_span_until_exhausted(
    rastir_spans: CapturedSpans,
) -> None:
    import inspect

    store = rastir.wrap(_Lazy())
    rows = store.arows(2)
    is_async_generator = inspect.isasyncgen(rows)
    assert is_async_generator
    assert rastir_spans.find("_Lazy.arows") == []
    assert [row async for row in rows] == [0, 1]
    span = rastir_spans.one("_Lazy.arows")
    assert span.status == "ok"
    assert span.attributes["rastir.generator.items"] == 2
    assert _work_inside(rastir_spans, span) == 3


def test_a_returned_generator_closed_early_or_dropped_is_partial(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    store = rastir.wrap(obj)
    rows = store.rows(5)
    assert next(rows) == 0
    rows.close()
    span = rastir_spans.one("_Lazy.rows")
    assert span.attributes["rastir.generator.closed_early"] is True
    assert span.attributes["rastir.generator.items"] == 1
    assert span.status == "ok"
    assert obj.cleaned == 1
    # The original's cleanup ran with the span current.
    assert _work_inside(rastir_spans, span) == 2

    unused = store.rows(5)  # never iterated, then dropped
    del unused
    gc.collect()
    spans = rastir_spans.find("_Lazy.rows")
    assert len(spans) == 2
    assert spans[1].attributes["rastir.generator.closed_early"] is True
    assert spans[1].attributes["rastir.generator.items"] == 0


async def test_a_returned_async_generator_closed_early_or_abandoned_is_partial(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    store = rastir.wrap(obj)
    rows = store.arows(5)
    assert await rows.__anext__() == 0
    await rows.aclose()
    span = rastir_spans.one("_Lazy.arows")
    assert span.attributes["rastir.generator.closed_early"] is True
    assert obj.cleaned == 1
    assert _work_inside(rastir_spans, span) == 2

    async for _ in store.arows(5):
        break  # abandoned: the event loop's finaliser closes it
    for _ in range(10):
        gc.collect()
        await asyncio.sleep(0)
        if len(rastir_spans.find("_Lazy.arows")) == 2:
            break
    spans = rastir_spans.find("_Lazy.arows")
    assert len(spans) == 2
    assert spans[1].attributes["rastir.generator.closed_early"] is True
    assert obj.cleaned == 2


def test_a_returned_generator_failure_is_recorded_and_reraised_unchanged(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    rows = rastir.wrap(obj).broken()
    assert next(rows) == 0
    assert rastir_spans.find("_Lazy.broken") == []
    with pytest.raises(KeyError) as info:
        next(rows)
    assert info.value is obj.failure
    span = rastir_spans.one("_Lazy.broken")
    assert span.status == "error"
    assert span.error == {
        "type": classify(obj.failure),
        "exception_type": "KeyError",
        "message": "'row 1'",
    }


def test_send_throw_and_the_return_value_reach_the_returned_generator(
    rastir_spans: CapturedSpans,
) -> None:
    echo = rastir.wrap(_Lazy()).echo()
    assert next(echo) == "ready"
    assert echo.send("a") == "echo a"
    assert echo.throw(ValueError("b")) == "caught b"

    def delegate() -> Generator[str, Any, str]:
        return (yield from echo)

    outer = delegate()
    assert outer.send(None) == "echo None"
    with pytest.raises(StopIteration) as stop:
        outer.send("stop")
    assert stop.value.value == "done"
    span = rastir_spans.one("_Lazy.echo")
    assert span.status == "ok"
    assert span.attributes["rastir.generator.items"] == 4


async def test_asend_athrow_and_aclose_reach_the_returned_async_generator(
    rastir_spans: CapturedSpans,
) -> None:
    echo = rastir.wrap(_Lazy()).aecho()
    assert await echo.asend(None) == "ready"
    assert await echo.asend("a") == "echo a"
    assert await echo.athrow(ValueError("b")) == "caught b"
    assert rastir_spans.find("_Lazy.aecho") == []
    await echo.aclose()
    span = rastir_spans.one("_Lazy.aecho")
    assert span.attributes["rastir.generator.closed_early"] is True
    assert span.attributes["rastir.generator.items"] == 3


def test_a_returned_context_manager_keeps_its_span_over_the_with_block(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    store = rastir.wrap(obj)
    cm = store.session()
    assert type(cm) is contextlib._GeneratorContextManager  # the object the method made
    with cm as got:
        assert got is obj
        _work(1)  # the block runs inside the span, as in rastir.span()
        assert rastir_spans.find("_Lazy.session") == []
    span = rastir_spans.one("_Lazy.session")
    assert span.status == "ok"
    # setup, the block's call, teardown: all children, all before the span's end
    assert _work_inside(rastir_spans, span) == 3
    assert rastir.current_span() is None


async def test_a_returned_async_context_manager_keeps_its_span_over_the_block(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    async with rastir.wrap(obj).asession() as got:
        assert got is obj
        _work(1)
        assert rastir_spans.find("_Lazy.asession") == []
    span = rastir_spans.one("_Lazy.asession")
    assert _work_inside(rastir_spans, span) == 3
    assert rastir.current_span() is None


async def test_an_async_method_returning_work_keeps_its_span_until_that_work_is_done(
    rastir_spans: CapturedSpans,
) -> None:
    import inspect

    obj = _Lazy()
    store = rastir.wrap(obj)
    assert inspect.iscoroutinefunction(store.open_rows)
    rows = await store.open_rows(2)
    assert rastir_spans.find("_Lazy.open_rows") == []  # open while the rows are
    assert list(rows) == [0, 1]
    span = rastir_spans.one("_Lazy.open_rows")
    assert span.attributes["rastir.generator.items"] == 2
    assert _work_inside(rastir_spans, span) == 3  # two rows and the cleanup

    arows = await store.open_arows(2)
    assert rastir_spans.find("_Lazy.open_arows") == []
    assert [row async for row in arows] == [0, 1]
    assert _work_inside(rastir_spans, rastir_spans.one("_Lazy.open_arows")) == 3

    async with await store.open_session() as got:
        assert got is obj
        _work(1)
        assert rastir_spans.find("_Lazy.open_session") == []
    assert _work_inside(rastir_spans, rastir_spans.one("_Lazy.open_session")) == 3

    pending = await store.later()
    assert rastir_spans.find("_Lazy.later") == []
    assert await pending == 5
    assert _work_inside(rastir_spans, rastir_spans.one("_Lazy.later")) == 1
    assert rastir.current_span() is None


async def test_an_async_method_returning_a_generator_the_object_keeps_ends_at_the_return(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    kept = await rastir.wrap(obj).open_kept()
    assert kept is obj.kept  # handed back unchanged: others hold it
    assert rastir_spans.one("_Lazy.open_kept").status == "ok"
    assert list(kept) == [0, 1]
    # Its rows ran after the span ended: not inside it.
    assert _work_inside(rastir_spans, rastir_spans.one("_Lazy.open_kept")) == 0


def test_an_exception_leaving_the_with_block_is_recorded(rastir_spans: CapturedSpans) -> None:
    store = rastir.wrap(_Lazy())
    failure = ValueError("bad row")
    with pytest.raises(ValueError) as info, store.session():
        raise failure
    assert info.value is failure
    span = rastir_spans.one("_Lazy.session")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "ValueError"
    assert _work_inside(rastir_spans, span) == 2  # setup and teardown

    # An exception the context manager suppresses does not leave the block.
    def handled() -> None:
        raise ValueError("handled")

    with store.session(suppress=True):
        handled()
    assert rastir_spans.find("_Lazy.session")[1].status == "ok"
    assert rastir.current_span() is None


def test_a_returned_context_manager_never_entered_ends_its_span_when_dropped(
    rastir_spans: CapturedSpans,
) -> None:
    cm = rastir.wrap(_Lazy()).session()
    assert rastir.current_span() is None  # not current outside its with block
    del cm
    gc.collect()
    span = rastir_spans.one("_Lazy.session")
    assert span.attributes["rastir.generator.closed_early"] is True
    assert rastir_spans.children(span) == []  # its setup never ran


def test_only_generators_and_contextlib_managers_keep_the_span_open(
    rastir_spans: CapturedSpans,
) -> None:
    obj = _Lazy()
    store = rastir.wrap(obj)
    rows = store.rows(1)
    cm = store.session()
    values = store.values()
    assert type(values) is type(iter([]))
    assert store.number() == 7
    handle = store.handle()  # another context manager: may never be entered
    assert store.kept_rows() is obj.kept  # a generator the object keeps: left alone
    # All of these ended at their return; the generator and the session are open.
    assert [s.name for s in rastir_spans] == [
        "_Lazy.values",
        "_Lazy.number",
        "_Lazy.handle",
        "_Lazy.kept_rows",
    ]
    for row in store.kept_rows():
        assert row == 0
        break
    assert next(obj.kept) == 1  # breaking out of the loop did not close it
    assert list(values) == [1, 2]
    with handle:
        pass
    assert list(rows) == [0]
    with cm:
        pass
    # Closed here: left to the garbage collector (obj and it form a cycle), its finally
    # block would trace work under whatever span a later test has open.
    obj.kept.close()
    assert {s.name for s in rastir_spans if s.name.startswith("_Lazy.")} == {
        "_Lazy.values",
        "_Lazy.number",
        "_Lazy.handle",
        "_Lazy.kept_rows",
        "_Lazy.rows",
        "_Lazy.session",
    }
