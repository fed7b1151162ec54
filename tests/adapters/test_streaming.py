"""Streaming ``@llm`` calls: generators, async generators, and functions returning an
SDK stream (openai ``Stream``/``AsyncStream``, anthropic ``Stream`` and
``MessageStreamManager``, Bedrock ``converse_stream``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import botocore.eventstream  # type: ignore[import-untyped]  # botocore ships no types
import pytest

import rastir
from rastir.spans import Span
from rastir.testing import CapturedSpans, capture_spans
from tests.adapters import objects


def _check_ttft(span: Span) -> float:
    ttft = span.attributes["rastir.ttft_ms"]
    assert isinstance(ttft, float)
    assert 0 < ttft <= span.duration_ns / 1e6
    assert span.events is not None
    assert [e.name for e in span.events] == ["rastir.first_token"]
    assert span.events[0].attributes == {"rastir.ttft_ms": ttft}
    return ttft


def _check_openai(span: Span) -> None:
    attrs = span.attributes
    _check_ttft(span)
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 9
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.stream.chunks"] == 5
    assert attrs["rastir.cost.usd"] > 0
    assert "rastir.stream.partial" not in attrs
    assert span.status == "ok"


def test_function_returning_an_openai_stream() -> None:
    @rastir.llm
    def chat(model: str) -> Any:
        return objects.openai_stream()

    with capture_spans() as spans:
        stream = chat(model="gpt-4o-mini")
        assert not spans  # the span lives as long as the stream
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Hello"
    _check_openai(spans.one(kind="llm"))


def test_openai_stream_used_as_a_context_manager() -> None:
    @rastir.llm
    def chat() -> Any:
        return objects.openai_stream()

    with capture_spans() as spans, chat() as stream:
        chunks = list(stream)
    assert len(chunks) == 5
    _check_openai(spans.one(kind="llm"))


@pytest.mark.anyio
async def test_async_function_returning_an_openai_async_stream() -> None:
    @rastir.llm
    async def chat(model: str) -> Any:
        return objects.openai_async_stream()

    with capture_spans() as spans:
        stream = await chat(model="gpt-4o-mini")
        chunks = [c async for c in stream]
    assert len(chunks) == 5
    _check_openai(spans.one(kind="llm"))


def test_generator_yielding_openai_chunks() -> None:
    @rastir.llm
    def chat() -> Iterator[Any]:
        yield from objects.openai_stream()

    with capture_spans() as spans:
        assert len(list(chat())) == 5
    _check_openai(spans.one(kind="llm"))


def test_anthropic_stream_events() -> None:
    @rastir.llm
    def chat() -> Any:
        return objects.anthropic_stream()

    with capture_spans() as spans:
        events = list(chat())
    assert len(events) == 7
    span = spans.one(kind="llm")
    _check_ttft(span)
    attrs = span.attributes
    assert attrs["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.usage.input_tokens"] == 50
    assert attrs["gen_ai.usage.output_tokens"] == 15
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 10
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.response.id"] == "msg_s"


def test_anthropic_message_stream_manager_text_stream() -> None:
    from anthropic import NOT_GIVEN
    from anthropic.lib.streaming import MessageStreamManager

    @rastir.llm
    def chat() -> Any:
        return MessageStreamManager(objects.anthropic_stream, output_format=NOT_GIVEN)

    rastir.configure(push_url=None, capture_content=True)
    with capture_spans() as spans, chat() as stream:
        assert "".join(stream.text_stream) == "Bonjour"
    span = spans.one(kind="llm")
    _check_ttft(span)
    attrs = span.attributes
    assert attrs["gen_ai.usage.input_tokens"] == 50
    assert attrs["gen_ai.usage.output_tokens"] == 15
    assert attrs["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert '"Bonjour"' in attrs["gen_ai.output.messages"]


class _ParsedEventStream(botocore.eventstream.EventStream):  # type: ignore[misc]
    """botocore's ``EventStream`` over already-decoded events: decoding the binary
    ``application/vnd.amazon.eventstream`` framing is botocore's job, not ours."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self._events

    def close(self) -> None:
        self.closed = True


_ParsedEventStream.__name__ = "EventStream"


@pytest.mark.parametrize("guardrail", [False, True])
def test_bedrock_converse_stream(guardrail: bool) -> None:
    @rastir.llm
    def converse(**request: Any) -> Any:
        return {
            "ResponseMetadata": {"RequestId": "r-1", "HTTPStatusCode": 200},
            "stream": _ParsedEventStream(objects.bedrock_stream_events(guardrail)),
        }

    with capture_spans() as spans:
        response = converse(modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0")
        text = "".join(
            e["contentBlockDelta"]["delta"]["text"]
            for e in response["stream"]
            if "contentBlockDelta" in e
        )
    assert text == "Hello"
    span = spans.one(kind="llm")
    _check_ttft(span)
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == "claude-3-5-haiku-20241022-v1:0"
    assert attrs["gen_ai.usage.input_tokens"] == 25
    assert attrs["gen_ai.usage.output_tokens"] == 2
    if guardrail:
        assert attrs["gen_ai.response.finish_reasons"] == ("guardrail_intervened",)
        assert attrs["rastir.guardrail.intervened"] is True
        assert attrs["rastir.guardrail.id"] == "gr-xyz"
        assert attrs["rastir.guardrail.action"] == "ANONYMIZED"
        assert attrs["rastir.guardrail.category"] == "sensitive_information"
    else:
        assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert "rastir.guardrail.intervened" not in attrs


@pytest.mark.anyio
async def test_async_generator_of_bedrock_events() -> None:
    @rastir.llm
    async def converse(modelId: str) -> AsyncIterator[dict[str, Any]]:
        for event in objects.bedrock_stream_events():
            yield event

    with capture_spans() as spans:
        events = [e async for e in converse(modelId="amazon.nova-micro-v1:0")]
    assert len(events) == 6
    span = spans.one(kind="llm")
    _check_ttft(span)
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.attributes["gen_ai.request.model"] == "nova-micro-v1:0"


def _partial(spans: CapturedSpans) -> dict[str, Any]:
    span = spans.one(kind="llm")
    assert span.ended
    attrs = span.attributes
    assert attrs["rastir.stream.partial"] is True
    _check_ttft(span)
    return attrs


def test_returned_stream_closed_part_way_is_partial() -> None:
    @rastir.llm
    def chat() -> Any:
        return objects.openai_stream()

    with capture_spans() as spans:
        stream = chat()
        next(stream)
        next(stream)
        stream.close()
    attrs = _partial(spans)
    assert attrs["rastir.stream.chunks"] == 2
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini"


def test_returned_stream_dropped_part_way_is_still_recorded_as_partial() -> None:
    @rastir.llm
    def chat() -> Any:
        return objects.openai_stream()

    with capture_spans() as spans:
        stream = chat()
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        del stream, chunk
        gc.collect()
    assert _partial(spans)["rastir.stream.chunks"] == 2


def test_generator_abandoned_part_way_is_partial() -> None:
    @rastir.llm
    def chat() -> Generator[Any, None, None]:
        yield from objects.openai_stream()

    with capture_spans() as spans:
        gen = chat()
        next(gen)
        next(gen)
        gen.close()
    attrs = _partial(spans)
    assert attrs["rastir.generator.closed_early"] is True


@pytest.mark.anyio
async def test_async_stream_closed_part_way_is_partial() -> None:
    @rastir.llm
    async def chat() -> Any:
        return objects.openai_async_stream()

    with capture_spans() as spans:
        stream = await chat()
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
    assert _partial(spans)["rastir.stream.chunks"] == 2


@pytest.mark.anyio
async def test_async_stream_closed_with_its_own_async_close_is_partial() -> None:
    @rastir.llm
    async def chat() -> Any:
        return objects.openai_async_stream()

    with capture_spans() as spans:
        stream = await chat()
        await stream.__anext__()
        await stream.__anext__()
        await stream.close()  # openai's AsyncStream.close is a coroutine
    assert _partial(spans)["rastir.stream.chunks"] == 2


@pytest.mark.anyio
async def test_async_generator_abandoned_part_way_is_partial() -> None:
    @rastir.llm
    async def chat() -> AsyncGenerator[str, None]:
        for piece in ("a", "b", "c"):
            yield piece

    with capture_spans() as spans:
        agen = chat()
        assert await agen.__anext__() == "a"
        await agen.aclose()
    _partial(spans)


def test_stream_failing_part_way_records_the_error_and_what_came_before() -> None:
    def broken() -> Iterator[Any]:
        stream = objects.openai_stream()
        yield next(stream)
        yield next(stream)
        raise ConnectionResetError("peer reset")

    @rastir.llm(model="gpt-4o-mini")
    def chat() -> Any:
        return broken()

    with capture_spans() as spans, pytest.raises(ConnectionResetError):
        list(chat())
    attrs = _partial(spans)
    span = spans.one(kind="llm")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "ConnectionResetError"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"


def test_plain_text_generator_records_ttft_and_output_with_capture() -> None:
    rastir.configure(push_url=None, capture_content=True)

    @rastir.llm(model="local-model")
    def chat(prompt: str) -> Iterator[str]:
        yield ""
        yield "Hi "
        yield "there"

    with capture_spans() as spans:
        assert "".join(chat("hello")) == "Hi there"
    span = spans.one(kind="llm")
    _check_ttft(span)
    assert '"Hi there"' in span.attributes["gen_ai.output.messages"]
    assert '"hello"' in span.attributes["gen_ai.input.messages"]


def test_a_disabled_rastir_returns_the_stream_untouched() -> None:
    rastir.configure(push_url=None, enabled=False)
    stream = objects.openai_stream()

    @rastir.llm
    def chat() -> Any:
        return stream

    with capture_spans() as spans:
        assert chat() is stream
        list(stream)
    assert not spans


# -- Responses API streams -----------------------------------------------------------------------
def test_openai_responses_stream_records_model_tokens_finish_and_cost() -> None:
    client = objects.openai_client_streaming(objects.response_events())

    @rastir.llm
    def ask() -> Any:
        return client.responses.create(model="gpt-4o", input="hi", stream=True)

    rastir.configure(push_url=None, capture_content=True)
    with capture_spans() as spans:
        events = [e.type for e in ask()]
    assert events[4] == "response.output_text.delta"
    span = spans.one(kind="llm")
    _check_ttft(span)
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.id"] == "resp_1"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 40
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert attrs["gen_ai.response.finish_reasons"] == ("completed",)
    assert attrs["rastir.stream.chunks"] == 10
    assert "rastir.stream.partial" not in attrs
    assert '"Hello"' in attrs["gen_ai.output.messages"]
    # Priced like the same response returned whole.
    with capture_spans() as whole:
        rastir.llm(lambda: _openai_response())()
    assert attrs["rastir.cost.usd"] == whole.one(kind="llm").attributes["rastir.cost.usd"] > 0


def _openai_response() -> Any:
    from openai.types.responses import Response

    return Response.model_validate(objects.RESPONSE)


def test_openai_responses_stream_lifecycle_events_are_not_content() -> None:
    # No delta: no first token, however many events arrived.
    client = objects.openai_client_streaming(objects.response_events(deltas=()))

    @rastir.llm
    def ask() -> Any:
        return client.responses.create(model="gpt-4o", input="hi", stream=True)

    with capture_spans() as spans:
        assert len(list(ask())) == 8
    attrs = spans.one(kind="llm").attributes
    assert "rastir.ttft_ms" not in attrs
    assert attrs["gen_ai.usage.output_tokens"] == 40


@pytest.mark.parametrize(
    ("end", "reason"), [("incomplete", "max_output_tokens"), ("failed", "failed")]
)
def test_openai_responses_stream_that_does_not_complete_says_why(end: str, reason: str) -> None:
    client = objects.openai_client_streaming(objects.response_events(end=end))

    @rastir.llm
    def ask() -> Any:
        return client.responses.create(model="gpt-4o", input="hi", stream=True)

    with capture_spans() as spans:
        list(ask())
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.response.finish_reasons"] == (reason,)
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize("read", ["iterate", "get_final_response", "until_done"])
def test_openai_responses_stream_manager(read: str) -> None:
    client = objects.openai_client_streaming(objects.response_events())

    @rastir.llm
    def ask() -> Any:
        return client.responses.stream(model="gpt-4o", input="hi")

    with capture_spans() as spans, ask() as stream:
        if read == "iterate":
            assert [e.type for e in stream][-1] == "response.completed"
        else:
            getattr(stream, read)()
    span = spans.one(kind="llm")
    attrs = span.attributes
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 40
    assert attrs["gen_ai.response.finish_reasons"] == ("completed",)
    assert attrs["rastir.cost.usd"] > 0
    assert "rastir.stream.partial" not in attrs
    if read == "iterate":
        _check_ttft(span)


# -- anthropic's MessageStream read by its own helpers -----------------------------------------
def _anthropic_manager(cache_write: int) -> Any:
    from anthropic import NOT_GIVEN
    from anthropic.lib.streaming import MessageStreamManager

    return MessageStreamManager(
        lambda: objects.anthropic_stream(cache_write), output_format=NOT_GIVEN
    )


def _check_complete_anthropic(attrs: dict[str, Any]) -> None:
    from rastir.pricing import get_pricing

    assert attrs["gen_ai.usage.input_tokens"] == 50
    assert attrs["gen_ai.usage.output_tokens"] == 15
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 10
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert "rastir.stream.partial" not in attrs
    expected = get_pricing().price_counts("anthropic", "claude-3-5-haiku-20241022", 50, 15, 10, 300)
    assert expected is not None
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


@pytest.mark.parametrize("helper", ["get_final_message", "get_final_text", "until_done"])
def test_anthropic_message_stream_read_by_its_helpers_is_complete(helper: str) -> None:
    @rastir.llm
    def chat() -> Any:
        return _anthropic_manager(cache_write=300)

    with capture_spans() as spans, chat() as stream:
        getattr(stream, helper)()
    _check_complete_anthropic(spans.one(kind="llm").attributes)


@pytest.mark.anyio
@pytest.mark.parametrize("helper", ["get_final_message", "until_done"])
async def test_anthropic_async_message_stream_read_by_its_helpers_is_complete(
    helper: str,
) -> None:
    from anthropic import NOT_GIVEN
    from anthropic.lib.streaming import AsyncMessageStreamManager

    async def request() -> Any:
        return objects.anthropic_async_stream(cache_write=300)

    @rastir.llm
    def chat() -> Any:
        return AsyncMessageStreamManager(request(), output_format=NOT_GIVEN)

    with capture_spans() as spans:
        async with chat() as stream:
            await getattr(stream, helper)()
    _check_complete_anthropic(spans.one(kind="llm").attributes)


def test_anthropic_message_stream_left_part_way_is_still_partial() -> None:
    @rastir.llm
    def chat() -> Any:
        return _anthropic_manager(cache_write=300)

    with capture_spans() as spans, chat() as stream:
        next(iter(stream))  # message_start only: no stop reason yet
    attrs = spans.one(kind="llm").attributes
    assert attrs["rastir.stream.partial"] is True
    assert "gen_ai.response.finish_reasons" not in attrs


# -- Gemini thinking ------------------------------------------------------------------------------
def test_gemini_stream_counts_thinking_tokens_as_output() -> None:
    from google.genai import types

    def chunk(text: str, candidates: int, finish: str | None = None) -> Any:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish:
            cand["finish_reason"] = finish
        return types.GenerateContentResponse.model_validate(
            {
                "candidates": [cand],
                "model_version": "gemini-2.5-flash",
                "usage_metadata": {
                    "prompt_token_count": 1000,
                    "candidates_token_count": candidates,
                    "thoughts_token_count": 900,
                },
            }
        )

    @rastir.llm
    def chat(model: str) -> Any:
        return (c for c in [chunk("Hel", 1), chunk("lo", 100, "STOP")])

    with capture_spans() as spans:
        list(chat(model="gemini-2.5-flash"))
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.usage.output_tokens"] == 1000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 900
