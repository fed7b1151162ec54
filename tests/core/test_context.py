"""The context matrix: every way Python runs code concurrently keeps parents right."""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import gc
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

import rastir
from rastir.testing import CapturedSpans, capture_spans


def _parent_of(spans: CapturedSpans, name: str) -> str | None:
    parent = spans.one(name).parent_span_id
    if parent is None:
        return None
    return next(s.name for s in spans if s.span_id == parent)


def test_nested_decorators_form_a_chain_with_one_trace_id() -> None:
    @rastir.tool
    def lookup() -> int:
        return 1

    @rastir.llm(model="m")
    def think() -> int:
        return lookup()

    @rastir.agent(agent_name="a")
    def run() -> int:
        return think()

    with capture_spans() as spans:
        assert run() == 1
    assert len(spans.trace_ids()) == 1
    assert _parent_of(spans, "a") is None
    assert _parent_of(spans, "think") == "a"
    assert _parent_of(spans, "lookup") == "think"
    assert rastir.current_span() is None


def test_recursion_nests_each_level_under_the_one_before() -> None:
    @rastir.trace
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    with capture_spans() as spans:
        assert fact(5) == 120
    assert len(spans) == 5
    by_id = {s.span_id: s for s in spans}
    depths = []
    for s in spans:
        depth, cur = 0, s
        while cur.parent_span_id is not None:
            cur = by_id[cur.parent_span_id]
            depth += 1
        depths.append(depth)
    assert sorted(depths) == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_asyncio_gather_children_all_have_the_caller_as_parent() -> None:
    @rastir.tool
    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @rastir.agent(agent_name="boss")
    async def boss() -> list[int]:
        return list(await asyncio.gather(*(work(i) for i in range(5))))

    with capture_spans() as spans:
        assert await boss() == [0, 1, 2, 3, 4]
    root = spans.one("boss")
    kids = spans.find("work")
    assert len(kids) == 5
    assert all(k.parent_span_id == root.span_id for k in kids)
    assert all(k.attributes["gen_ai.agent.name"] == "boss" for k in kids)


@pytest.mark.anyio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is new in 3.11")
async def test_asyncio_taskgroup_children_have_the_caller_as_parent() -> None:
    @rastir.trace
    async def child() -> None:
        await asyncio.sleep(0)

    @rastir.trace
    async def parent() -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            for _ in range(3):
                tg.create_task(child())

    with capture_spans() as spans:
        await parent()
    p = spans.one("parent")
    assert [k.parent_span_id for k in spans.find("child")] == [p.span_id] * 3


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_task_groups_keep_parents_on_asyncio_and_trio(backend: str) -> None:
    @rastir.tool(tool_name="leaf")
    async def leaf() -> None:
        await anyio.lowlevel.checkpoint()

    @rastir.agent(agent_name="group")
    async def group() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(leaf)

    with capture_spans() as spans:
        anyio.run(group, backend=backend)
    root = spans.one("group")
    leaves = spans.find("leaf")
    assert len(leaves) == 4
    assert {s.parent_span_id for s in leaves} == {root.span_id}
    assert {s.trace_id for s in spans} == {root.trace_id}


@pytest.mark.anyio
async def test_to_thread_copies_the_context() -> None:
    @rastir.trace("in-thread")
    def blocking() -> str | None:
        return rastir.current_agent()

    @rastir.agent(agent_name="threads")
    async def run() -> str | None:
        return await asyncio.to_thread(blocking)

    with capture_spans() as spans:
        assert await run() == "threads"
    assert _parent_of(spans, "in-thread") == "threads"


@pytest.mark.anyio
async def test_run_in_executor_with_a_copied_context_keeps_the_parent() -> None:
    @rastir.trace("pooled")
    def blocking() -> int:
        return 7

    @rastir.trace("caller")
    async def run() -> int:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            return await loop.run_in_executor(pool, ctx.run, blocking)

    with capture_spans() as spans:
        assert await run() == 7
    assert _parent_of(spans, "pooled") == "caller"


def test_a_plain_thread_without_a_copied_context_starts_a_new_trace() -> None:
    # Documented behaviour: threading.Thread starts with an empty context.
    @rastir.trace("worker")
    def worker() -> None:
        pass

    @rastir.trace("main")
    def main() -> None:
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    with capture_spans() as spans:
        main()
    assert spans.one("worker").parent_span_id is None
    assert spans.one("worker").trace_id != spans.one("main").trace_id


def test_a_thread_running_a_copied_context_stays_in_the_trace() -> None:
    @rastir.trace("worker")
    def worker() -> None:
        pass

    @rastir.trace("main")
    def main() -> None:
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(worker,))
        t.start()
        t.join()

    with capture_spans() as spans:
        main()
    assert _parent_of(spans, "worker") == "main"


def test_generator_closed_early_ends_its_span_without_error() -> None:
    @rastir.trace("gen")
    def numbers() -> Generator[int, None, None]:
        yield from range(100)

    with capture_spans() as spans:
        gen = numbers()
        assert next(gen) == 0
        assert next(gen) == 1
        assert spans.find("gen") == []  # still open
        gen.close()
    s = spans.one("gen")
    assert s.status == "ok"
    assert s.attributes["rastir.generator.closed_early"] is True
    assert s.attributes["rastir.generator.items"] == 2
    assert rastir.current_span() is None


def test_generator_span_is_not_current_between_items() -> None:
    seen: list[str | None] = []

    @rastir.trace("gen")
    def numbers() -> Iterator[int]:
        for i in range(3):
            seen.append(rastir.current_span_id())
            yield i

    @rastir.trace("consumer")
    def consume() -> list[str | None]:
        outside = []
        for _ in numbers():
            outside.append(rastir.current_span_id())
        return outside

    with capture_spans() as spans:
        outside = consume()
    gen_id = spans.one("gen").span_id
    consumer_id = spans.one("consumer").span_id
    assert seen == [gen_id] * 3
    assert outside == [consumer_id] * 3
    assert spans.one("gen").parent_span_id == consumer_id


def test_spans_opened_inside_a_generator_step_are_its_children() -> None:
    @rastir.tool(tool_name="fetch")
    def fetch(i: int) -> int:
        return i * 2

    @rastir.trace("stream")
    def stream() -> Iterator[int]:
        for i in range(3):
            yield fetch(i)

    with capture_spans() as spans:
        assert list(stream()) == [0, 2, 4]
    gen = spans.one("stream")
    assert [f.parent_span_id for f in spans.find("fetch")] == [gen.span_id] * 3
    assert gen.attributes["rastir.generator.items"] == 3


@pytest.mark.anyio
async def test_async_generator_closed_with_aclose_ends_its_span() -> None:
    @rastir.trace("agen")
    async def numbers() -> AsyncIterator[int]:
        for i in range(100):
            await asyncio.sleep(0)
            yield i

    with capture_spans() as spans:
        agen = numbers()
        assert await agen.__anext__() == 0
        await agen.aclose()  # type: ignore[attr-defined]
    s = spans.one("agen")
    assert s.status == "ok"
    assert s.attributes["rastir.generator.closed_early"] is True
    assert rastir.current_span() is None


@pytest.mark.anyio
async def test_async_generator_items_and_inner_spans_have_the_right_parents() -> None:
    @rastir.tool(tool_name="chunk")
    async def chunk(i: int) -> str:
        return f"c{i}"

    @rastir.llm(model="m")
    async def stream() -> AsyncIterator[str]:
        for i in range(3):
            yield await chunk(i)

    @rastir.agent(agent_name="chat")
    async def chat() -> list[str]:
        return [c async for c in stream()]

    with capture_spans() as spans:
        assert await chat() == ["c0", "c1", "c2"]
    llm_span = spans.one(kind="llm")
    assert llm_span.parent_span_id == spans.one("chat").span_id
    assert {c.parent_span_id for c in spans.find("chunk")} == {llm_span.span_id}
    assert {c.attributes["gen_ai.agent.name"] for c in spans.find("chunk")} == {"chat"}


@pytest.mark.anyio
async def test_cancellation_mid_span_is_recorded_as_cancelled_not_error() -> None:
    started = asyncio.Event()

    @rastir.trace("slow")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    @rastir.trace("outer")
    async def outer() -> None:
        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with capture_spans() as spans:
        await outer()
    s = spans.one("slow")
    assert s.status == "cancelled"
    assert s.error is None
    assert s.parent_span_id == spans.one("outer").span_id
    assert spans.one("outer").status == "ok"


def test_anyio_cancel_scope_on_trio_records_cancelled() -> None:
    @rastir.trace("sleeper")
    async def sleeper() -> None:
        await anyio.sleep(60)

    async def main() -> None:
        with anyio.move_on_after(0.01):
            await sleeper()

    with capture_spans() as spans:
        anyio.run(main, backend="trio")
    assert spans.one("sleeper").status == "cancelled"


def test_no_span_leaks_into_the_context_after_an_exception() -> None:
    @rastir.trace("boom")
    def boom() -> None:
        raise KeyError("x")

    with capture_spans() as spans, pytest.raises(KeyError):
        boom()
    assert rastir.current_span() is None
    assert rastir.current_trace_id() is None
    assert spans.one("boom").status == "error"


def test_labels_do_not_leak_out_of_the_agent() -> None:
    @rastir.agent(agent_name="inner")
    def inner() -> str | None:
        return rastir.current_agent()

    assert inner() == "inner"
    assert rastir.current_agent() is None


@pytest.mark.anyio
async def test_concurrent_agents_keep_their_own_labels() -> None:
    @rastir.tool(tool_name="t")
    async def t() -> str | None:
        await asyncio.sleep(0)
        return rastir.current_agent()

    def make(name: str):  # type: ignore[no-untyped-def]
        @rastir.agent(agent_name=name)
        async def run() -> list[str | None]:
            out = []
            for _ in range(5):
                out.append(await t())
            return out

        return run

    a, b = make("a"), make("b")
    with capture_spans() as spans:
        ra, rb = await asyncio.gather(a(), b())
    assert ra == ["a"] * 5
    assert rb == ["b"] * 5
    for s in spans.find("t"):
        parent = next(p for p in spans if p.span_id == s.parent_span_id)
        assert s.attributes["gen_ai.agent.name"] == parent.name


def test_a_generator_closed_early_runs_its_cleanup_with_its_labels() -> None:
    @rastir.tool
    def cleanup() -> str | None:
        return rastir.current_agent()

    @rastir.agent(agent_name="planner")
    def plan() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            cleanup()

    with capture_spans() as spans:
        steps = plan()
        next(steps)
        steps.close()
    tool = spans.one("cleanup")
    assert tool.attributes["gen_ai.agent.name"] == "planner"
    assert tool.parent_span_id == spans.one("planner").span_id


@pytest.mark.anyio
async def test_an_async_generator_closed_early_runs_its_cleanup_with_its_labels() -> None:
    @rastir.tool
    def cleanup() -> str | None:
        return rastir.current_agent()

    @rastir.agent(agent_name="planner")
    async def plan() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            cleanup()

    with capture_spans() as spans:
        steps = plan()
        await steps.__anext__()
        await steps.aclose()
    assert spans.one("cleanup").attributes["gen_ai.agent.name"] == "planner"


def test_a_block_span_held_across_a_yield_ends_when_closed_from_another_context() -> None:
    def lines() -> Generator[int, None, None]:
        with rastir.span("read"):
            yield 1
            yield 2

    def read_then_close_elsewhere() -> None:
        reader = lines()
        next(reader)  # "read" is now current here, as any `with` across a yield leaves it
        # The token belongs to this context; close() runs in a copy of it. No
        # ValueError reaches the caller, and the span still ends.
        contextvars.copy_context().run(reader.close)

    with capture_spans() as spans:
        # In a context of its own, so the span the generator left current stays there.
        contextvars.copy_context().run(read_then_close_elsewhere)
    assert spans.one("read").status == "ok"


@pytest.mark.anyio
async def test_a_block_span_in_an_abandoned_async_generator_ends_when_asyncio_finalises_it() -> (
    None
):
    async def lines() -> AsyncIterator[int]:
        with rastir.span("read"):
            for i in range(3):
                yield i

    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context.get("exception")))
    with capture_spans() as spans:
        async for _ in lines():
            break  # no aclose(): asyncio finalises the generator in a task of its own
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
    assert errors == []
    assert [s.name for s in spans] == ["read"]


def _group(message: str, members: list[BaseException]) -> BaseException:
    # BaseExceptionGroup is built in from Python 3.11 (the tests using it skip before).
    group: Any = getattr(builtins, "BaseExceptionGroup")  # noqa: B009
    return cast(BaseException, group(message, members))


@pytest.mark.parametrize(
    ("members", "status", "category"),
    [
        (lambda: [KeyboardInterrupt()], "cancelled", None),
        (lambda: [ValueError("bad"), SystemExit()], "error", "validation_error"),
        (
            lambda: [asyncio.CancelledError(), _group("inner", [TimeoutError()])],
            "error",
            "timeout",
        ),
    ],
    ids=["cancellations-only", "failure-and-exit", "nested-timeout"],
)
def test_a_base_exception_group_is_an_error_unless_it_holds_only_cancellations(
    members: Callable[[], list[BaseException]], status: str, category: str | None
) -> None:
    if not hasattr(builtins, "BaseExceptionGroup"):
        pytest.skip("BaseExceptionGroup is built in from Python 3.11")
    group = _group("tasks", members())

    @rastir.trace("group")
    def run() -> None:
        raise group

    with capture_spans() as spans, pytest.raises(type(group)):
        run()
    span = spans.one("group")
    assert span.status == status
    assert (span.error or {}).get("type") == category


def test_use_span_makes_the_baggage_of_an_extracted_context_current() -> None:
    incoming = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "baggage": "tenant=acme,user=42",
    }

    @rastir.tool
    def call() -> dict[str, str]:
        headers: dict[str, str] = {}
        rastir.inject(headers)
        return headers

    with rastir.use_span(rastir.extract(incoming)):
        assert rastir.current_baggage() == {"tenant": "acme", "user": "42"}
        sent = call()
    assert sent["baggage"] == "tenant=acme,user=42"
    assert sent["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert rastir.current_baggage() == {}
