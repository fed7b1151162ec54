"""Context audit: adversarial but realistic ways of running decorated code.

Beyond ``test_context.py``: coroutines destroyed while pending, generators closed
from other threads, task-group exception groups, iterator protocols, timeouts,
shields, pools reusing threads, deep recursion, method flavours and shared proxies.
Each test checks that every span ends exactly once, under the right parent, with the
right status, and that no context leaks into the code around it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import sys
import threading
import types
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rastir
from rastir.spans import Span
from rastir.testing import CapturedSpans, capture_spans


def _sound(spans: CapturedSpans, count: int) -> None:
    """``count`` spans, each recorded once, ended, with a duration that is not negative."""
    assert len(spans) == count, spans.tree()
    assert len({s.sid for s in spans}) == count
    for s in spans:
        assert s.ended, s
        assert s.duration_ns >= 0, s


def _raise(exc: BaseException) -> None:
    raise exc


def _parent(spans: CapturedSpans, span: Span) -> str | None:
    if span.parent_span_id is None:
        return None
    return next(s.name for s in spans if s.span_id == span.parent_span_id)


class _Unraisable:
    """Collects what Python reports through ``sys.unraisablehook`` (errors in ``__del__``,
    in a coroutine closed by the garbage collector, ...)."""

    def __init__(self) -> None:
        self.seen: list[BaseException | None] = []

    def __enter__(self) -> _Unraisable:
        self._old = sys.unraisablehook
        sys.unraisablehook = lambda u: self.seen.append(u.exc_value)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.unraisablehook = self._old


# -- coroutines and generators finalised from somewhere else ---------------------------
def test_a_task_destroyed_while_pending_ends_its_spans_as_cancelled() -> None:
    """A loop closed without cancelling its tasks: the garbage collector closes their
    coroutines later, in whatever context is current. The spans end (cancelled) and
    that context keeps its own span and labels."""

    @rastir.trace
    async def waits() -> None:
        await asyncio.Event().wait()

    @rastir.agent(agent_name="bg")
    async def background() -> None:
        await waits()

    @rastir.llm(model="m", provider="p")
    async def model_call() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(background()), loop.create_task(model_call())]
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(task.done() for task in tasks)  # left pending on purpose

    with capture_spans() as spans, _Unraisable() as unraisable:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        with rastir.span("collector") as here:
            gc.collect()
            assert rastir.current_span() is here
            assert rastir.current_agent() is None
            assert rastir.current_model() is None
    assert unraisable.seen == []
    _sound(spans, 4)
    for name in ("waits", "bg", "model_call"):
        span = spans.one(name)
        assert span.status == "cancelled"
        assert span.attributes["rastir.cancelled.by"] == "GeneratorExit"
    assert _parent(spans, spans.one("waits")) == "bg"
    assert rastir.current_span() is None


def test_a_coroutine_dropped_half_way_in_another_context_ends_its_span() -> None:
    @types.coroutine
    def suspend() -> Generator[None, None, None]:
        yield

    @rastir.trace
    async def step() -> None:
        await suspend()

    with capture_spans() as spans, _Unraisable() as unraisable:
        coro = step()
        contextvars.copy_context().run(coro.send, None)
        with rastir.span("here") as here:
            del coro  # closed now, in this context
            assert rastir.current_span() is here
    assert unraisable.seen == []
    _sound(spans, 2)
    assert spans.one("step").status == "cancelled"
    assert spans.one("step").parent_span_id is None


def test_closing_a_block_span_generator_from_another_thread_leaves_that_thread_alone() -> None:
    def held() -> Generator[int, None, None]:
        with rastir.span("held"):
            yield 1
            yield 2

    gen = held()
    seen: dict[str, Any] = {}

    def other() -> None:
        with rastir.span("other") as mine:
            gen.close()
            seen["current"] = rastir.current_span() is mine
            with rastir.span("child"):
                pass

    with capture_spans() as spans:
        with rastir.span("main"):
            assert next(gen) == 1
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["current"] is True
    _sound(spans, 4)
    assert _parent(spans, spans.one("child")) == "other"
    assert _parent(spans, spans.one("held")) == "main"


def test_a_generator_started_in_one_thread_consumed_in_another_and_collected_in_a_third() -> None:
    @rastir.tool
    def stream() -> Iterator[tuple[str | None, str | None]]:
        for _ in range(10):
            span = rastir.current_span()
            yield (span.name if span else None, rastir.current_agent())

    @rastir.agent(agent_name="starter")
    def start() -> Iterator[tuple[str | None, str | None]]:
        gen = stream()
        assert next(gen) == ("stream", "starter")
        return gen

    box: dict[str, Any] = {}

    def consume() -> None:
        with rastir.span("consumer"):
            box["item"] = next(box["gen"])
            box["current"] = rastir.current_span().name  # type: ignore[union-attr]

    def collect() -> None:
        with rastir.span("collector") as here:
            del box["gen"]
            gc.collect()
            box["after"] = rastir.current_span() is here

    with capture_spans() as spans:
        box["gen"] = start()
        for target in (consume, collect):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
    # The span is current in every step; inherited labels are the stepping context's
    # (here none), while the span's own agent attribute is fixed at the first step.
    assert box["item"] == ("stream", None)
    assert box["current"] == "consumer"
    assert box["after"] is True
    _sound(spans, 4)
    tool = spans.one("stream")
    assert _parent(spans, tool) == "starter"
    assert tool.attributes["rastir.generator.closed_early"] is True
    assert tool.attributes["rastir.generator.items"] == 2
    assert tool.attributes["gen_ai.agent.name"] == "starter"


def test_async_generators_left_open_at_shutdown_end_their_spans() -> None:
    """``asyncio.run`` (``shutdown_asyncgens``) and trio close them at the end. (Both
    close every open async generator, the user's inside the wrapper included, in an
    order of their own: the user's cleanup may run outside the span then.)"""
    cleaned: list[bool] = []

    @rastir.agent(agent_name="gen")
    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(5):
                yield i
                await anyio.lowlevel.checkpoint()
        finally:
            cleaned.append(True)

    kept: list[Any] = []

    async def main() -> None:
        gen = numbers()
        async for i in gen:
            if i == 1:
                break
        assert rastir.current_span() is None
        kept.append(gen)  # alive until the runner closes it

    for backend in ("asyncio", "trio"):
        with capture_spans() as spans:
            anyio.run(main, backend=backend)
        _sound(spans, 1)
        span = spans.one("gen")
        assert span.status == "ok"
        assert span.attributes["rastir.generator.closed_early"] is True
        assert span.attributes["rastir.generator.items"] == 2
        assert cleaned.pop() is True
        kept.clear()


def test_an_async_generator_its_loop_never_finalized_still_ends_its_span() -> None:
    """A loop closed without ``shutdown_asyncgens()`` cannot run ``aclose()``: the
    generator is destroyed without its ``finally``. Its span ends anyway, marked."""

    @rastir.llm(model="gpt-4o", provider="openai")
    async def tokens() -> AsyncIterator[str]:
        for word in ("a", "b", "c"):
            yield word

    async def start() -> AsyncIterator[str]:
        gen = tokens()
        assert await gen.__anext__() == "a"
        assert await gen.__anext__() == "b"
        return gen

    with capture_spans() as spans:
        loop = asyncio.new_event_loop()
        gen: Any = loop.run_until_complete(start())
        loop.close()  # no loop.shutdown_asyncgens()
        del gen
        gc.collect()
        span = spans.one("tokens")
        assert span.status == "ok"
        assert span.attributes["rastir.generator.closed_early"] is True
        assert span.attributes["rastir.generator.finalized"] is False
        assert span.attributes["rastir.generator.items"] == 2
        assert span.attributes["gen_ai.request.model"] == "gpt-4o"
        assert span.duration_ns > 0
    # A generator finalized normally is not marked.
    with capture_spans() as spans:
        asyncio.run(start())
    assert "rastir.generator.finalized" not in spans.one("tokens").attributes


# -- exceptions -------------------------------------------------------------------------
# asyncio.TaskGroup and asyncio.timeout are new in Python 3.11 (anyio's task groups,
# which 3.10 has, are tested on every version).
_NEEDS_311 = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.TaskGroup and asyncio.timeout are 3.11+"
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_task_group_failure_is_described_by_the_first_real_error(backend: str) -> None:
    @rastir.tool
    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyError("missing")

    @rastir.trace
    async def sleeps() -> None:
        await anyio.sleep(10)

    @rastir.agent(agent_name="group")
    async def group() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeps)
            tg.start_soon(fails)

    async def main() -> None:
        with pytest.raises(Exception) as info:
            await group()
        assert type(info.value).__name__ == "ExceptionGroup"

    with capture_spans() as spans:
        anyio.run(main, backend=backend)
    _sound(spans, 3)
    agent = spans.one("group")
    assert agent.status == "error"
    assert agent.error == {
        "type": "internal_error",
        "exception_type": "KeyError",
        "message": "'missing'",
    }
    assert spans.one("sleeps").status == "cancelled"
    assert all(_parent(spans, spans.one(n)) == "group" for n in ("fails", "sleeps"))


@pytest.mark.anyio
@_NEEDS_311
async def test_an_asyncio_task_group_error_group_records_its_first_member() -> None:
    @rastir.trace
    async def bad(i: int) -> None:
        await asyncio.sleep(0)
        raise ValueError(f"bad {i}")

    @rastir.trace
    async def parent() -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            tg.create_task(bad(1))

    with capture_spans() as spans, pytest.raises(Exception) as info:
        await parent()
    assert type(info.value).__name__ == "ExceptionGroup"
    _sound(spans, 2)
    assert spans.one("parent").error == {
        "type": "validation_error",
        "exception_type": "ValueError",
        "message": "bad 1",
    }


def test_a_decorated_next_ending_its_iteration_is_not_an_error() -> None:
    class Countdown:
        def __init__(self) -> None:
            self.n = 2

        def __iter__(self) -> Countdown:
            return self

        @rastir.trace
        def __next__(self) -> int:
            if not self.n:
                raise StopIteration
            self.n -= 1
            return self.n

    class ACountdown:
        def __init__(self) -> None:
            self.n = 2

        def __aiter__(self) -> ACountdown:
            return self

        @rastir.trace
        async def __anext__(self) -> int:
            if not self.n:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    async def drain() -> list[int]:
        return [i async for i in ACountdown()]

    with capture_spans() as spans:
        assert list(Countdown()) == [1, 0]
        assert asyncio.run(drain()) == [1, 0]
    _sound(spans, 6)
    assert {s.status for s in spans} == {"ok"}
    assert all(s.error is None for s in spans)


def test_keyboard_interrupt_and_system_exit_are_cancelled_and_leak_nothing() -> None:
    @rastir.agent(agent_name="stop")
    def stop(exc: BaseException) -> None:
        raise exc

    with capture_spans() as spans:
        for exc in (KeyboardInterrupt(), SystemExit(3)):
            with pytest.raises(type(exc)):
                stop(exc)
            assert rastir.current_span() is None
            assert rastir.current_agent() is None
    _sound(spans, 2)
    assert [s.attributes["rastir.cancelled.by"] for s in spans] == [
        "KeyboardInterrupt",
        "SystemExit",
    ]
    assert {s.status for s in spans} == {"cancelled"}


def test_an_exception_in_a_generators_finally_while_closing_is_an_error() -> None:
    @rastir.trace
    def leaky() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            raise RuntimeError("cleanup failed")

    with capture_spans() as spans:
        gen = leaky()
        next(gen)
        with pytest.raises(RuntimeError, match="cleanup failed"):
            gen.close()
    _sound(spans, 1)
    span = spans.one("leaky")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "RuntimeError"
    assert span.attributes["rastir.generator.closed_early"] is True


def test_recursion_until_recursion_error_ends_every_span_and_leaks_nothing() -> None:
    @rastir.trace
    def forever(n: int) -> int:
        return forever(n + 1)

    @rastir.trace
    async def aforever(n: int) -> int:
        return await aforever(n + 1)

    with capture_spans() as spans:
        with pytest.raises(RecursionError):
            forever(0)
        assert rastir.current_span() is None
    assert len(spans) > 100
    _sound(spans, len(spans))
    assert {s.status for s in spans} == {"error"}
    assert len(spans.roots()) == 1

    with capture_spans() as spans:
        with pytest.raises(RecursionError):
            asyncio.run(aforever(0))
        assert rastir.current_span() is None
    assert len(spans) > 100
    _sound(spans, len(spans))
    assert len(spans.roots()) == 1


def test_recursion_depth_200_keeps_one_chain() -> None:
    @rastir.trace
    def down(n: int) -> int:
        return 0 if n == 0 else 1 + down(n - 1)

    with capture_spans() as spans:
        assert down(199) == 199
    _sound(spans, 200)
    by_id = {s.span_id: s for s in spans}
    deepest = next(s for s in spans if not any(o.parent_span_id == s.span_id for o in spans))
    depth = 0
    while deepest.parent_span_id is not None:
        deepest = by_id[deepest.parent_span_id]
        depth += 1
    assert depth == 199


# -- asyncio ------------------------------------------------------------------------------
@pytest.mark.anyio
@_NEEDS_311
async def test_timeouts_shields_and_late_tasks_keep_status_and_parents() -> None:
    @rastir.trace
    async def slow() -> None:
        await asyncio.Event().wait()

    @rastir.trace
    async def quick() -> str | None:
        await asyncio.sleep(0)
        return rastir.current_agent()

    @rastir.trace
    async def survivor() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()  # type: ignore[attr-defined,unused-ignore]
        return "recovered"

    @rastir.agent(agent_name="boss")
    async def boss() -> asyncio.Task[str | None]:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.001):  # type: ignore[attr-defined,unused-ignore]
                await slow()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow(), 0.001)
        shielded = asyncio.ensure_future(quick())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(shielded), 0)
        assert await shielded == "boss"
        for done in asyncio.as_completed([quick() for _ in range(3)]):
            assert await done == "boss"
        task = asyncio.create_task(survivor())
        await asyncio.sleep(0)
        task.cancel()
        assert await task == "recovered"
        return asyncio.create_task(quick())  # outlives this span

    with capture_spans() as spans:
        late = await boss()
        assert rastir.current_span() is None
        assert rastir.current_agent() is None
        assert await late == "boss"
    _sound(spans, 9)
    assert all(_parent(spans, s) == "boss" for s in spans if s.name != "boss")
    assert [s.status for s in spans.find("slow")] == ["cancelled", "cancelled"]
    assert spans.one("survivor").status == "ok"
    assert {s.status for s in spans.find("quick")} == {"ok"}


@pytest.mark.anyio
async def test_queue_consumers_nest_their_work_under_themselves() -> None:
    @rastir.trace
    async def handle(item: int) -> int:
        await asyncio.sleep(0)
        return item

    @rastir.agent(agent_name="worker")
    async def worker(queue: asyncio.Queue[int | None]) -> int:
        total = 0
        while (item := await queue.get()) is not None:
            total += await handle(item)
        return total

    queue: asyncio.Queue[int | None] = asyncio.Queue()
    with capture_spans() as spans:
        with rastir.span("producer"):
            consumers = [asyncio.create_task(worker(queue)) for _ in range(3)]
        for i in range(30):
            await queue.put(i)
        for _ in consumers:
            await queue.put(None)
        assert sum(await asyncio.gather(*consumers)) == sum(range(30))
    _sound(spans, 34)
    workers = {s.span_id for s in spans.find("worker")}
    assert all(s.parent_span_id in workers for s in spans.find("handle"))
    assert all(s.attributes["gen_ai.agent.name"] == "worker" for s in spans.find("worker"))
    assert {_parent(spans, s) for s in spans.find("worker")} == {"producer"}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cancel_scopes_inside_nested_async_generators(backend: str) -> None:
    seen: list[tuple[str | None, str | None]] = []

    @rastir.retrieval
    async def docs() -> AsyncIterator[int]:
        try:
            for i in range(3):
                await anyio.sleep(0 if i < 2 else 10)
                yield i
        finally:
            span = rastir.current_span()
            seen.append((span.name if span else None, rastir.current_agent()))

    @rastir.trace
    async def relay() -> AsyncIterator[int]:
        async for doc in docs():
            yield doc

    @rastir.agent(agent_name="reader")
    async def read() -> list[int]:
        out = []
        with anyio.move_on_after(0.05):
            async for doc in relay():
                out.append(doc)
                assert rastir.current_span().name == "reader"  # type: ignore[union-attr]
        return out

    async def main() -> None:
        assert await read() == [0, 1]
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await read()
        assert rastir.current_span() is None

    with capture_spans() as spans:
        anyio.run(main, backend=backend)
    _sound(spans, 6)
    assert seen == [("docs", "reader"), ("docs", "reader")]
    assert [s.status for s in spans.find("reader")] == ["ok", "cancelled"]
    assert {s.status for s in spans.find("docs") + spans.find("relay")} == {"cancelled"}
    assert {_parent(spans, s) for s in spans.find("docs")} == {"relay"}
    assert {_parent(spans, s) for s in spans.find("relay")} == {"reader"}


# -- threads ------------------------------------------------------------------------------
def test_a_pool_thread_starts_clean_and_stays_clean_for_its_next_task() -> None:
    @rastir.trace
    def work() -> tuple[str | None, str | None, str | None]:
        span = rastir.current_span()
        assert span is not None
        return span.parent_span_id, rastir.current_agent(), rastir.current_model()

    @rastir.trace
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    def half_consume() -> Iterator[int]:
        gen = numbers()
        next(gen)
        return gen  # left open, in the pool thread's context

    def look() -> tuple[Span | None, str | None, str | None]:
        return rastir.current_span(), rastir.current_agent(), rastir.current_model()

    @rastir.agent(agent_name="a")
    @rastir.llm(model="m", provider="p")
    def submit(pool: ThreadPoolExecutor) -> tuple[Any, ...]:
        return pool.submit(work).result(), pool.submit(half_consume).result()

    with capture_spans() as spans, ThreadPoolExecutor(1) as pool:
        first, gen = submit(pool)
        assert first == (None, None, None)  # D7: a new trace
        assert pool.submit(look).result() == (None, None, None)
        assert pool.submit(work).result() == (None, None, None)
        del gen
        gc.collect()
    _sound(spans, 5)
    assert len(spans.trace_ids()) == 4  # a/submit, and three roots in the pool
    assert spans.one("numbers").attributes["rastir.generator.closed_early"] is True


def test_twenty_threads_at_once_keep_their_own_parents_and_labels() -> None:
    @rastir.tool
    def step() -> tuple[str | None, str | None]:
        span = rastir.current_span()
        assert span is not None
        return span.parent_span_id, rastir.current_agent()

    @rastir.agent
    def agent_run(name: str) -> tuple[str, str | None, str | None]:
        span = rastir.current_span()
        assert span is not None
        return (span.span_id, *step())

    results: list[tuple[str, str | None, str | None]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def run() -> None:
        barrier.wait()
        for _ in range(25):
            result = agent_run(threading.current_thread().name)
            with lock:
                results.append(result)

    with capture_spans() as spans:
        threads = [threading.Thread(target=run) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    _sound(spans, 1000)
    assert len(results) == 500
    assert all(own == parent and agent == "agent_run" for own, parent, agent in results)
    assert len(spans.roots()) == 500


@pytest.mark.anyio
async def test_a_wrapped_object_shared_by_tasks_and_threads_nests_each_call() -> None:
    class Store:
        def get(self) -> str | None:
            span = rastir.current_span()
            return span.parent_span_id if span else None

        async def aget(self) -> str | None:
            await asyncio.sleep(0)
            span = rastir.current_span()
            return span.parent_span_id if span else None

    store = rastir.wrap(Store())

    @rastir.trace
    async def task() -> bool:
        me = rastir.current_span().span_id  # type: ignore[union-attr]
        return me == await store.aget() == await asyncio.to_thread(store.get)

    def in_thread() -> bool:
        with rastir.span("thread") as mine:
            return store.get() == mine.span_id

    with capture_spans() as spans:
        assert all(await asyncio.gather(*(task() for _ in range(40))))
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda _: in_thread(), range(100)))
    _sound(spans, 40 * 3 + 200)


# -- methods and other decorators ----------------------------------------------------------
def test_every_kind_of_method_and_partial_is_a_span_with_the_right_name() -> None:
    def name() -> str:
        return rastir.current_span().name  # type: ignore[union-attr]

    class Thing:
        @rastir.trace
        def method(self) -> str:
            return name()

        @rastir.tool
        @classmethod
        def klass(cls) -> str:
            return name()

        @rastir.trace
        @staticmethod
        def static() -> str:
            return name()

        @rastir.trace
        def __call__(self) -> str:
            return name()

        @functools.cached_property
        @rastir.trace
        def cached(self) -> str:
            return name()

    thing = Thing()
    calls: list[Callable[[], str]] = [
        thing.method,
        Thing.klass,
        thing.klass,
        Thing.static,
        thing.static,
        thing,
        functools.partial(Thing.method, thing),
        lambda: thing.cached,
        lambda: thing.cached,  # cached: no second span
    ]
    with capture_spans() as spans:
        names = [call() for call in calls]
    assert names == [
        "Thing.method",
        "klass",
        "klass",
        "Thing.static",
        "Thing.static",
        "Thing.__call__",
        "Thing.method",
        "Thing.cached",
        "Thing.cached",
    ]
    _sound(spans, 8)


def test_lru_cache_above_the_decorator_records_only_real_calls() -> None:
    @functools.cache
    @rastir.trace
    def square(x: int) -> int:
        return x * x

    with capture_spans() as spans:
        assert [square(3), square(3), square(4)] == [9, 9, 16]
    _sound(spans, 2)


# -- decorators above contextlib's managers ---------------------------------------------
def test_a_decorator_above_contextmanager_spans_the_with_block() -> None:
    import contextlib

    @rastir.tool
    def lookup() -> str | None:
        return rastir.current_agent()

    @rastir.trace(name="outer")
    @rastir.agent(agent_name="session")
    @contextlib.contextmanager
    def session(suppress: bool = False) -> Iterator[str]:
        try:
            yield "conn"
        except KeyError:
            if not suppress:
                raise

    with capture_spans() as spans:
        with session() as conn:
            assert conn == "conn"
            assert rastir.current_span().name == "session"  # type: ignore[union-attr]
            assert lookup() == "session"
        assert rastir.current_span() is None
        assert rastir.current_agent() is None
        with pytest.raises(KeyError), session():
            raise KeyError("in the block")
        with session(suppress=True):
            _raise(KeyError("suppressed"))
    _sound(spans, 7)
    agents = spans.find("session")
    assert {_parent(spans, s) for s in agents} == {"outer"}
    assert _parent(spans, spans.one("lookup")) == "session"
    assert spans.one("lookup").attributes["gen_ai.agent.name"] == "session"
    assert [s.status for s in agents] == ["ok", "error", "ok"]
    assert [s.status for s in spans.find("outer")] == ["ok", "error", "ok"]
    assert agents[1].error is not None
    assert agents[1].error["exception_type"] == "KeyError"
    assert rastir.current_span() is None


@pytest.mark.anyio
async def test_a_decorator_above_asynccontextmanager_spans_the_async_with_block() -> None:
    import contextlib

    @rastir.trace
    async def query() -> None:
        await asyncio.sleep(0)

    @rastir.agent(agent_name="pool")
    @contextlib.asynccontextmanager
    async def pool() -> AsyncIterator[int]:
        await asyncio.sleep(0)
        try:
            yield 7
        finally:
            await asyncio.sleep(0)

    with capture_spans() as spans:
        async with pool() as value:
            assert value == 7
            assert rastir.current_agent() == "pool"
            await query()
        with pytest.raises(ZeroDivisionError):
            async with pool():
                _ = 1 / 0
        assert rastir.current_span() is None
        assert rastir.current_agent() is None
    _sound(spans, 3)
    first, second = spans.find("pool")
    assert _parent(spans, spans.one("query")) == "pool"
    assert spans.one("query").parent_span_id == first.span_id
    assert (first.status, second.status) == ("ok", "error")


def test_a_decorated_contextmanager_does_nothing_extra_when_disabled() -> None:
    import contextlib

    @rastir.trace
    @contextlib.contextmanager
    def managed() -> Iterator[int]:
        yield 1

    rastir.configure(enabled=False)
    with capture_spans() as spans, managed() as value:
        assert value == 1
        assert rastir.current_span() is None
    assert list(spans) == []


def test_a_wrapped_objects_pending_calls_destroyed_with_their_loop_end_cancelled() -> None:
    class Client:
        async def fetch(self) -> None:
            await asyncio.Event().wait()

        def later(self) -> Any:  # a sync method handing back a coroutine
            return asyncio.Event().wait()

    client = rastir.wrap(Client())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(client.fetch()), loop.create_task(client.later())]
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(task.done() for task in tasks)

    with capture_spans() as spans, _Unraisable() as unraisable:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        with rastir.span("collector") as here:
            gc.collect()
            assert rastir.current_span() is here
    assert unraisable.seen == []
    _sound(spans, 3)
    for name in ("Client.fetch", "Client.later"):
        assert spans.one(name).status == "cancelled"
        assert spans.one(name).attributes["rastir.cancelled.by"] == "GeneratorExit"
