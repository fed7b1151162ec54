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
