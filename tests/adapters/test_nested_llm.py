"""One LLM call seen by two nested LLM spans is counted once (rastir.adapters._nested).

The outer span keeps what it read and gets ``rastir.llm.counted_in``, the id of the
inner span that reported the same usage; the collector counts only the inner one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import rastir
from rastir.testing import capture_spans
from tests.adapters import objects
from tests.adapters.test_streaming import _ParsedEventStream as ParsedEventStream

COUNTED_IN = "rastir.llm.counted_in"


def _usage(prompt: int, completion: int, rid: str = "chatcmpl-1") -> Any:
    return objects.openai_chat(
        id=rid,
        usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0},
    )


@rastir.llm
def provider_call(prompt: int = 10, completion: int = 2, rid: str = "chatcmpl-1") -> Any:
    return _usage(prompt, completion, rid)


def test_an_llm_returning_an_inner_llms_response_is_counted_in_the_inner_span() -> None:
    @rastir.llm(name="ask")
    def ask() -> Any:
        return provider_call()

    with capture_spans() as spans:
        ask()
    outer, inner = spans.one("ask"), spans.one("provider_call")
    assert outer.attributes[COUNTED_IN] == inner.span_id
    assert COUNTED_IN not in inner.attributes
    # The outer span keeps what it read: nothing is hidden, only counted once.
    assert outer.attributes["gen_ai.usage.input_tokens"] == 10
    assert outer.attributes["rastir.cost.usd"] == inner.attributes["rastir.cost.usd"]


def test_an_llm_making_its_own_call_besides_an_inner_one_is_counted_too() -> None:
    @rastir.llm(name="answer")
    def answer() -> Any:
        provider_call(prompt=40, completion=1)  # a moderation check: another call
        return _usage(500, 80, rid="chatcmpl-2")

    with capture_spans() as spans:
        answer()
    assert COUNTED_IN not in spans.one("answer").attributes
    assert COUNTED_IN not in spans.one("provider_call").attributes


def test_equal_counts_with_different_response_ids_are_two_calls() -> None:
    @rastir.llm(name="answer")
    def answer() -> Any:
        provider_call(rid="chatcmpl-inner")
        return _usage(10, 2, rid="chatcmpl-outer")

    with capture_spans() as spans:
        answer()
    assert COUNTED_IN not in spans.one("answer").attributes


def test_an_inner_span_without_usage_leaves_the_outer_counted() -> None:
    @rastir.llm(name="inner_text")
    def inner_text() -> str:
        return "plain text, no usage"

    @rastir.llm(name="answer")
    def answer() -> Any:
        inner_text()
        return _usage(10, 2)

    with capture_spans() as spans:
        answer()
    assert COUNTED_IN not in spans.one("answer").attributes


def test_a_chain_points_at_the_span_where_the_call_is_counted() -> None:
    @rastir.llm(name="middle")
    def middle() -> Any:
        return provider_call()

    @rastir.llm(name="outer")
    def outer() -> Any:
        return middle()

    with capture_spans() as spans:
        outer()
    inner = spans.one("provider_call")
    assert spans.one("middle").attributes[COUNTED_IN] == inner.span_id
    assert spans.one("outer").attributes[COUNTED_IN] == inner.span_id


def test_retries_inside_one_outer_call_are_each_counted_and_the_outer_is_not() -> None:
    @rastir.llm(name="with_retry")
    def with_retry() -> Any:
        provider_call(prompt=10, completion=0, rid="chatcmpl-failed-attempt")
        return provider_call(prompt=10, completion=2, rid="chatcmpl-1")

    with capture_spans() as spans:
        with_retry()
    attempts = spans.find("provider_call")
    assert len(attempts) == 2
    assert spans.one("with_retry").attributes[COUNTED_IN] == attempts[1].span_id


def test_async_nesting_is_recognised() -> None:
    @rastir.llm(name="inner")
    async def inner() -> Any:
        await asyncio.sleep(0)
        return _usage(7, 3)

    @rastir.llm(name="outer")
    async def outer() -> Any:
        return await inner()

    with capture_spans() as spans:
        asyncio.run(outer())
    assert spans.one("outer").attributes[COUNTED_IN] == spans.one("inner").span_id


class _ModelOverProvider(GenericFakeChatModel):
    """A LangChain chat model whose ``_generate`` calls a function the user traces
    with ``@llm`` (as ChatOpenAI does over an instrumented client)."""

    messages: Any = iter(())
    model_name: str = "gpt-4o-mini"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        r = provider_call(prompt=10, completion=2)
        usage = r.usage
        message = AIMessage(
            content="hi",
            usage_metadata={
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            response_metadata={"model_name": "gpt-4o-mini"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_a_langchain_model_over_an_llm_function_is_counted_once() -> None:
    model = _ModelOverProvider()

    @rastir.langgraph_agent(agent_name="a")
    def run() -> Any:
        return model.invoke("hello")

    with capture_spans() as spans:
        run()
    llms = spans.find(kind="llm")
    assert len(llms) == 2
    inner = spans.one("provider_call")
    (outer,) = [s for s in llms if s is not inner]
    assert outer.attributes[COUNTED_IN] == inner.span_id
    assert COUNTED_IN not in inner.attributes


def test_an_llm_around_a_langchain_model_is_counted_in_the_langchain_span() -> None:
    ai = AIMessage(
        content="Paris",
        usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        response_metadata={"model_name": "gpt-4o-mini", "model_provider": "openai"},
    )
    model = GenericFakeChatModel(messages=iter([ai]))

    @rastir.llm(name="ask")
    def ask() -> Any:
        return model.invoke("capital of France?")

    @rastir.langgraph_agent(agent_name="a")
    def run() -> Any:
        return ask()

    with capture_spans() as spans:
        run()
    ask_span = spans.one("ask")
    (inner,) = [s for s in spans.find(kind="llm") if s is not ask_span]
    assert inner.attributes["gen_ai.usage.input_tokens"] == 12
    assert ask_span.attributes[COUNTED_IN] == inner.span_id


def test_a_stream_passed_through_an_outer_llm_is_followed_to_its_end_and_counted_once() -> None:
    @rastir.llm(name="inner")
    def inner() -> Any:
        return objects.openai_stream()

    @rastir.llm(name="outer")
    def outer() -> Any:
        return inner()

    with capture_spans() as spans:
        stream = outer()
        assert spans.find(name="outer") == []  # open while the stream is
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello"
    inner_span, outer_span = spans.one("inner"), spans.one("outer")
    # Both read the whole stream; the call is counted on the inner span only.
    assert inner_span.attributes["gen_ai.usage.input_tokens"] == 9
    assert outer_span.attributes["gen_ai.usage.input_tokens"] == 9
    assert outer_span.attributes[COUNTED_IN] == inner_span.span_id
    assert COUNTED_IN not in inner_span.attributes
    assert 0 < outer_span.attributes["rastir.ttft_ms"] * 1e6 <= outer_span.duration_ns
    assert outer_span.end_time_unix_nano >= inner_span.end_time_unix_nano


def test_an_async_stream_passed_through_an_outer_llm_is_counted_once() -> None:
    @rastir.llm(name="inner")
    async def inner() -> Any:
        return objects.openai_async_stream()

    @rastir.llm(name="outer")
    async def outer() -> Any:
        return await inner()

    async def consume() -> int:
        return len([c async for c in await outer()])

    with capture_spans() as spans:
        assert asyncio.run(consume()) == 5
    inner_span, outer_span = spans.one("inner"), spans.one("outer")
    assert outer_span.attributes[COUNTED_IN] == inner_span.span_id
    assert (
        outer_span.attributes["gen_ai.usage.output_tokens"]
        == (inner_span.attributes["gen_ai.usage.output_tokens"])
    )


def test_a_bedrock_stream_passed_through_an_outer_llm_is_counted_once() -> None:
    @rastir.llm(name="inner")
    def inner() -> Any:
        return {"stream": ParsedEventStream(objects.bedrock_stream_events())}

    @rastir.llm(name="outer")
    def outer(modelId: str) -> Any:
        return inner()

    with capture_spans() as spans:
        response = outer(modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0")
        events = list(response["stream"])
    assert events
    inner_span, outer_span = spans.one("inner"), spans.one("outer")
    assert inner_span.attributes["gen_ai.usage.input_tokens"] > 0
    assert outer_span.attributes[COUNTED_IN] == inner_span.span_id


def test_a_generator_re_yielding_an_inner_stream_is_counted_in_the_inner_span() -> None:
    @rastir.llm(name="inner")
    def inner() -> Any:
        return objects.openai_stream()

    @rastir.llm(name="outer")
    def outer() -> Any:
        yield from inner()

    with capture_spans() as spans:
        chunks = list(outer())
    assert len(chunks) == 5
    assert spans.one("outer").attributes[COUNTED_IN] == spans.one("inner").span_id
