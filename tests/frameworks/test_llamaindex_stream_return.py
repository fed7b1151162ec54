"""A LlamaIndex stream returned by a decorated call and read after it has ended.

Real llama-index-core: a query engine over a ``VectorStoreIndex`` built with
``streaming=True`` (its ``StreamingResponse`` calls the model only when ``response_gen``
is read) and a ``SimpleChatEngine`` (``stream_chat()`` starts the model call and a
thread of LlamaIndex's own reads it; ``astream_chat()`` does the same in a task), on
the ``CustomLLM`` of tests/frameworks/test_llamaindex_audit.py.
"""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.memory import ChatMemoryBuffer

from rastir import framework_agent, llamaindex_agent
from rastir.frameworks import _llamaindex
from rastir.spans import Span
from rastir.testing import CapturedSpans
from tests.frameworks.test_llamaindex_audit import ANSWER, LocalLLM, _index, tokens

pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
]

PARTS = ANSWER.split("\n")


def the_llm_span(spans: CapturedSpans, name: str, root: Span) -> Span:
    """The one model span, under the decorated call's agent span, in its trace."""
    llm = spans.one(kind="llm")
    assert llm.name == name
    assert llm.psid == root.sid
    assert llm.tid == root.tid
    assert llm.attributes["gen_ai.request.model"] == "local-7b"
    assert llm.attributes["gen_ai.agent.name"] == root.name
    assert "rastir.span.unfinished" not in llm.attributes
    assert llm.status == "ok"
    return llm


def chat_engine() -> SimpleChatEngine:
    # A plain buffer: the default SQL-backed memory leaves an event loop unclosed.
    return SimpleChatEngine.from_defaults(
        llm=LocalLLM(), memory=ChatMemoryBuffer.from_defaults(token_limit=4000)
    )


def query_engine() -> Any:
    return _index().as_query_engine(similarity_top_k=2, llm=LocalLLM(), streaming=True)


@llamaindex_agent(agent_name="rag")
def ask(engine: Any, question: str) -> Any:
    return engine.query(question)


def test_a_returned_streaming_response_read_afterwards_records_the_model_call(
    rastir_spans: CapturedSpans,
) -> None:
    response = ask(query_engine(), "what do cats do?")
    root = rastir_spans.one("rag", kind="agent")  # the call has ended
    assert not rastir_spans.find(kind="llm")  # the model has not been called yet
    assert "".join(response.response_gen) == ANSWER
    llm = the_llm_span(rastir_spans, "text_completion local-7b", root)
    assert tokens(llm) == (10, 2)
    assert llm.attributes["rastir.ttft_ms"] > 0
    assert "rastir.stream.partial" not in llm.attributes
    assert _llamaindex.stream_stats()["open"] == 0


def test_a_streaming_response_read_inside_the_call_is_unchanged(
    rastir_spans: CapturedSpans,
) -> None:
    @llamaindex_agent(agent_name="rag")
    def ask_and_read(engine: Any, question: str) -> str:
        return "".join(engine.query(question).response_gen)

    assert ask_and_read(query_engine(), "cats?") == ANSWER
    root = rastir_spans.one("rag", kind="agent")
    llm = the_llm_span(rastir_spans, "text_completion local-7b", root)
    assert tokens(llm) == (10, 2)
    assert llm.end_time_unix_nano <= root.end_time_unix_nano


def test_a_generic_agent_returning_a_streaming_response_is_followed_too(
    rastir_spans: CapturedSpans,
) -> None:
    @framework_agent(agent_name="plain")
    def plain(engine: Any) -> Any:  # the engine makes it a LlamaIndex call
        return engine.query("cats?")

    response = plain(query_engine())
    assert "".join(response.response_gen) == ANSWER
    root = rastir_spans.one("plain", kind="agent")
    assert tokens(the_llm_span(rastir_spans, "text_completion local-7b", root)) == (10, 2)


@pytest.mark.parametrize("how", ["close", "drop"])
def test_a_stream_abandoned_part_way_is_recorded_as_partial(
    rastir_spans: CapturedSpans, how: str
) -> None:
    response = ask(query_engine(), "cats?")
    gen = response.response_gen
    assert next(gen) == PARTS[0]
    if how == "close":
        gen.close()
    else:
        del gen, response
        gc.collect()
    root = rastir_spans.one("rag", kind="agent")
    llm = the_llm_span(rastir_spans, "text_completion local-7b", root)
    assert llm.attributes["rastir.stream.partial"] is True
    assert "gen_ai.usage.output_tokens" not in llm.attributes  # usage comes last
    assert _llamaindex.stream_stats()["open"] == 0


def test_a_streaming_response_never_read_records_no_model_call(
    rastir_spans: CapturedSpans,
) -> None:
    response = ask(query_engine(), "cats?")
    del response
    gc.collect()
    assert rastir_spans.one("rag", kind="agent").status == "ok"
    assert not rastir_spans.find(kind="llm")  # the model was never called


def test_a_returned_stream_chat_response_records_its_model_call(
    rastir_spans: CapturedSpans,
) -> None:
    engine = chat_engine()

    @llamaindex_agent(agent_name="chat")
    def chat(question: str) -> Any:
        return engine.stream_chat(question)

    response = chat("hi")
    assert "".join(response.response_gen) == ANSWER
    root = rastir_spans.one("chat", kind="agent")
    llm = the_llm_span(rastir_spans, "chat local-7b", root)
    assert tokens(llm) == (10, 2)
    assert "rastir.stream.partial" not in llm.attributes
    assert _llamaindex.stream_stats()["open"] == 0


@pytest.mark.anyio
async def test_a_returned_astream_chat_response_records_its_model_call(
    rastir_spans: CapturedSpans,
) -> None:
    engine = chat_engine()

    @llamaindex_agent(agent_name="achat")
    async def chat(question: str) -> Any:
        return await engine.astream_chat(question)

    response = await chat("hi")
    text = "".join([delta async for delta in response.async_response_gen()])
    assert text == ANSWER
    root = rastir_spans.one("achat", kind="agent")
    llm = the_llm_span(rastir_spans, "chat local-7b", root)
    assert tokens(llm) == (10, 2)


def test_the_followed_streams_are_bounded(
    rastir_spans: CapturedSpans, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_llamaindex, "MAX_OPEN_STREAMS", 2)
    llm = LocalLLM()

    @llamaindex_agent(agent_name="many")
    def many() -> list[Any]:
        return [llm.stream_complete(f"q{i}") for i in range(3)]

    before = _llamaindex.stream_stats()["evicted"]
    streams = many()
    assert _llamaindex.stream_stats()["open"] == 2
    assert _llamaindex.stream_stats()["evicted"] == before + 1
    spans = sorted(rastir_spans.find(kind="llm"), key=lambda s: s.start_time_unix_nano)
    assert len(spans) == 1  # the oldest, ended to make room
    assert spans[0].attributes["rastir.stream.partial"] is True
    for stream in streams[1:]:
        assert "".join(r.delta for r in stream) == ANSWER
    assert len(rastir_spans.find(kind="llm")) == 3
    assert _llamaindex.stream_stats()["open"] == 0


@pytest.mark.anyio
async def test_a_returned_async_streaming_response_records_the_model_call(
    rastir_spans: CapturedSpans,
) -> None:
    @llamaindex_agent(agent_name="arag")
    async def aask(engine: Any, question: str) -> Any:
        return await engine.aquery(question)

    response = await aask(query_engine(), "cats?")
    root = rastir_spans.one("arag", kind="agent")
    assert not rastir_spans.find(kind="llm")
    text = "".join([t async for t in response.async_response_gen()])
    assert text == ANSWER
    llm = the_llm_span(rastir_spans, "text_completion local-7b", root)
    assert tokens(llm) == (10, 2)
    assert "rastir.stream.partial" not in llm.attributes


def test_streams_returned_by_concurrent_calls_stay_with_their_own_call(
    rastir_spans: CapturedSpans,
) -> None:
    engine = query_engine()

    @llamaindex_agent(agent_name="chat")
    def chat(question: str) -> Any:
        return chat_engine().stream_chat(question)

    def one(i: int) -> str:
        # Returned by the call, read after it on this pool thread.
        response = ask(engine, f"cats {i}?") if i % 2 else chat(f"hi {i}")
        return "".join(response.response_gen)

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(one, range(12))) == [ANSWER] * 12
    roots = rastir_spans.find(kind="agent")
    assert len(roots) == 12
    for root in roots:
        (llm,) = [s for s in rastir_spans.children(root) if s.kind == "llm"]
        assert tokens(llm) == (10, 2)
        assert llm.attributes["gen_ai.agent.name"] == root.name
        assert "rastir.span.unfinished" not in llm.attributes
    assert len(rastir_spans.find(kind="llm")) == 12
    assert _llamaindex.stream_stats()["open"] == 0


def test_a_stream_collected_while_its_call_is_locked_is_ended_later_not_waited_for(
    rastir_spans: CapturedSpans,
) -> None:
    llm = LocalLLM()

    @llamaindex_agent(agent_name="held")
    def held() -> Any:
        return [llm.stream_complete("q")]  # a bare generator would keep the call open

    (stream,) = held()
    ((span_id, owner),) = list(_llamaindex._owners.items())
    with owner._lock:  # a collection can run while this thread holds the call's lock
        del stream
        gc.collect()
        assert not rastir_spans.find(kind="llm")  # deferred, not blocked on
    assert _llamaindex.stream_stats()["open"] == 0  # the next hook call ends it
    llm_span = the_llm_span(rastir_spans, "text_completion local-7b", rastir_spans.one("held"))
    assert llm_span.attributes["rastir.stream.partial"] is True
    assert span_id not in _llamaindex._owners
