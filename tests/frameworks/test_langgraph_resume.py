"""LangGraph ``interrupt()`` and ``Command(resume=...)``: two calls, linked by thread.

Real LangGraph graphs with an ``InMemorySaver`` checkpointer. The call whose graph
stops at ``interrupt()`` and the call that resumes the same ``thread_id`` are separate
traces; the resuming call's agent span links to the interrupted one's
(``rastir.link.type=resume``), and both carry ``gen_ai.conversation.id``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from rastir import framework_agent, langgraph_agent
from rastir.frameworks import _langchain
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.frameworks import NEEDS_ASYNC_CONTEXT


class Review(TypedDict):
    draft: str
    verdict: str


def review(state: Review) -> dict[str, Any]:
    verdict = interrupt(f"approve {state['draft']}?")
    return {"verdict": str(verdict)}


def two_reviews(state: Review) -> dict[str, Any]:
    first = interrupt("first reviewer?")
    second = interrupt("second reviewer?")
    return {"verdict": f"{first}+{second}"}


def build(node: Any = review) -> Any:
    builder = StateGraph(Review)
    builder.add_node("review", node)
    builder.add_edge(START, "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=InMemorySaver())


GRAPH = build()


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def start_input(draft: str = "v1") -> Any:
    return {"draft": draft, "verdict": ""}


@langgraph_agent(agent_name="reviewer")
def run(graph: Any, payload: Any, thread: str) -> Any:
    return graph.invoke(payload, config(thread))


def agents(spans: CapturedSpans, thread: str) -> list[Span]:
    """The agent spans of one thread, in start order."""
    found = [
        s for s in spans.find(kind="agent") if s.attributes.get("gen_ai.conversation.id") == thread
    ]
    return sorted(found, key=lambda s: s.start_time_unix_nano)


def resume_links(span: Span) -> list[tuple[int, int]]:
    return [
        (ln.context.tid, ln.context.sid)
        for ln in span.links or ()
        if (ln.attributes or {}).get("rastir.link.type") == "resume"
    ]


def check_pair(spans: CapturedSpans, thread: str) -> tuple[Span, Span]:
    """One interrupted call and the one that resumed it, linked."""
    interrupted, resumed = agents(spans, thread)
    assert interrupted.attributes["langgraph.interrupted"] is True
    assert "langgraph.interrupted" not in resumed.attributes
    assert interrupted.trace_id != resumed.trace_id
    assert resume_links(interrupted) == []
    assert resume_links(resumed) == [(interrupted.tid, interrupted.sid)]
    link = (resumed.links or [])[0]
    assert link.attributes == {"rastir.link.type": "resume", "gen_ai.conversation.id": thread}
    for agent in (interrupted, resumed):
        assert agent.status == "ok"
        node = next(c for c in spans.children(agent) if c.name == "node:review")
        assert node.status == "ok"
    return interrupted, resumed


# -- sync ----------------------------------------------------------------------------------------
def test_a_resume_links_to_the_interrupted_call(rastir_spans: CapturedSpans) -> None:
    paused = run(GRAPH, start_input(), "sync-1")
    assert "__interrupt__" in paused
    done = run(GRAPH, Command(resume="yes"), "sync-1")
    assert done["verdict"] == "yes"
    interrupted, _ = check_pair(rastir_spans, "sync-1")
    node = next(c for c in rastir_spans.children(interrupted) if c.name == "node:review")
    assert node.attributes["langgraph.control_flow"] == "GraphInterrupt"


def test_each_resume_links_to_the_latest_interrupt_of_its_thread(
    rastir_spans: CapturedSpans,
) -> None:
    graph = build(two_reviews)
    run(graph, start_input(), "twice")
    run(graph, Command(resume="alice"), "twice")  # stops at the second interrupt
    done = run(graph, Command(resume="bob"), "twice")
    assert done["verdict"] == "alice+bob"
    first, second, third = agents(rastir_spans, "twice")
    assert first.attributes["langgraph.interrupted"] is True
    assert second.attributes["langgraph.interrupted"] is True
    assert "langgraph.interrupted" not in third.attributes
    assert resume_links(first) == []
    assert resume_links(second) == [(first.tid, first.sid)]
    assert resume_links(third) == [(second.tid, second.sid)]


def test_a_resume_of_a_thread_never_seen_interrupted_has_no_link(
    rastir_spans: CapturedSpans,
) -> None:
    # The interrupt happens outside any decorated call: nothing is remembered for it.
    GRAPH.invoke(start_input(), config("untraced"))
    done = run(GRAPH, Command(resume="ok"), "untraced")
    assert done["verdict"] == "ok"
    (resumed,) = agents(rastir_spans, "untraced")
    assert resumed.attributes["gen_ai.conversation.id"] == "untraced"
    assert resumed.links is None


def test_interrupted_and_resumed_within_one_call_links_to_nothing(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="loop")
    def until_done(thread: str) -> Any:
        state = GRAPH.invoke(start_input(), config(thread))
        while "__interrupt__" in state:
            state = GRAPH.invoke(Command(resume="auto"), config(thread))
        return state

    assert until_done("inside")["verdict"] == "auto"
    agent = rastir_spans.one("loop", kind="agent")
    assert agent.attributes["gen_ai.conversation.id"] == "inside"
    assert agent.attributes["langgraph.interrupted"] is True
    assert agent.links is None
    assert len(rastir_spans.find("node:review", kind="trace")) == 2


def test_framework_agent_links_a_resume_too(rastir_spans: CapturedSpans) -> None:
    @framework_agent(agent_name="detected")
    def detected(graph: Any, payload: Any, thread: str) -> Any:
        return graph.invoke(payload, config(thread))

    detected(GRAPH, start_input(), "detected")
    detected(GRAPH, Command(resume="fine"), "detected")
    check_pair(rastir_spans, "detected")


# -- streams -------------------------------------------------------------------------------------
def test_sync_streams_returned_or_yielded_are_linked(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="streamer")
    def returned(payload: Any, thread: str) -> Iterator[Any]:
        return GRAPH.stream(payload, config(thread))  # type: ignore[no-any-return]

    @langgraph_agent(agent_name="streamer")
    def yielded(payload: Any, thread: str) -> Iterator[Any]:
        yield from GRAPH.stream(payload, config(thread), stream_mode="updates")

    chunks = list(returned(start_input(), "stream-1"))
    assert "__interrupt__" in chunks[-1]
    chunks = list(yielded(Command(resume="streamed"), "stream-1"))
    assert chunks[-1] == {"review": {"verdict": "streamed"}}
    check_pair(rastir_spans, "stream-1")


@pytest.mark.anyio
@NEEDS_ASYNC_CONTEXT
async def test_ainvoke_and_astream_are_linked(rastir_spans: CapturedSpans) -> None:
    @langgraph_agent(agent_name="async_reviewer")
    async def ainvoke(payload: Any, thread: str) -> Any:
        return await GRAPH.ainvoke(payload, config(thread))

    @langgraph_agent(agent_name="async_reviewer")
    async def astream(payload: Any, thread: str) -> AsyncIterator[Any]:
        async for chunk in GRAPH.astream(payload, config(thread)):
            yield chunk

    assert "__interrupt__" in await ainvoke(start_input(), "async-1")
    chunks = [c async for c in astream(Command(resume="async"), "async-1")]
    assert chunks[-1] == {"review": {"verdict": "async"}}
    # And the other way round: interrupted in a stream, resumed by ainvoke.
    paused = [c async for c in astream(start_input(), "async-2")]
    assert "__interrupt__" in paused[-1]
    assert (await ainvoke(Command(resume="back"), "async-2"))["verdict"] == "back"
    check_pair(rastir_spans, "async-1")
    check_pair(rastir_spans, "async-2")


# -- concurrency ---------------------------------------------------------------------------------
def test_concurrent_threads_link_each_resume_to_its_own_interrupt(
    rastir_spans: CapturedSpans,
) -> None:
    barrier = threading.Barrier(8)

    def session(i: int) -> str:
        thread = f"pool-{i}"
        run(GRAPH, start_input(f"d{i}"), thread)
        barrier.wait(timeout=30)  # every thread interrupted before any resumes
        return str(run(GRAPH, Command(resume=f"ok{i}"), thread)["verdict"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(session, range(8)))
    assert verdicts == [f"ok{i}" for i in range(8)]
    for i in range(8):
        check_pair(rastir_spans, f"pool-{i}")


@pytest.mark.anyio
@NEEDS_ASYNC_CONTEXT
async def test_concurrent_tasks_link_each_resume_to_its_own_interrupt(
    rastir_spans: CapturedSpans,
) -> None:
    @langgraph_agent(agent_name="task_reviewer")
    async def ainvoke(payload: Any, thread: str) -> Any:
        return await GRAPH.ainvoke(payload, config(thread))

    interrupted = anyio.Event()
    count = 0

    async def session(i: int) -> None:
        nonlocal count
        await ainvoke(start_input(f"d{i}"), f"task-{i}")
        count += 1
        if count == 10:
            interrupted.set()
        await interrupted.wait()
        await ainvoke(Command(resume=f"ok{i}"), f"task-{i}")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(session, i)
    for i in range(10):
        check_pair(rastir_spans, f"task-{i}")


# -- the bound -----------------------------------------------------------------------------------
def test_the_remembered_threads_are_bounded_least_recent_first(
    rastir_spans: CapturedSpans,
) -> None:
    run(GRAPH, start_input(), "oldest")
    run(GRAPH, start_input(), "newest")
    before = _langchain.interrupted_stats()
    # As many other threads as the LRU holds are interrupted after these two, which
    # pushes "oldest" out; "newest" is interrupted again half way, so it stays.
    filler = Span("filler", "agent", None, {})
    half = _langchain.MAX_INTERRUPTED_THREADS // 2
    for i in range(_langchain.MAX_INTERRUPTED_THREADS):
        if i == half:
            run(GRAPH, start_input("v2"), "newest")
        _langchain._remember_interrupt(f"filler-{i}", filler)
    after = _langchain.interrupted_stats()
    assert after["remembered"] == _langchain.MAX_INTERRUPTED_THREADS
    assert after["forgotten"] >= before["forgotten"] + 2
    run(GRAPH, Command(resume="late"), "oldest")
    run(GRAPH, Command(resume="kept"), "newest")
    _, oldest_resumed = agents(rastir_spans, "oldest")
    assert oldest_resumed.links is None  # forgotten: traced, but not linked
    _, again, newest_resumed = agents(rastir_spans, "newest")
    assert resume_links(newest_resumed) == [(again.tid, again.sid)]
