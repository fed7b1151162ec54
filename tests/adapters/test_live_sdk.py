"""``@llm`` with the real provider SDK clients, over HTTP, against fake APIs on loopback.

Each SDK's own client (openai incl. AzureOpenAI, anthropic, groq, mistralai, cohere,
google-genai, botocore bedrock-runtime) is pointed at ``tests/adapters/live_api.py``,
which answers in that provider's wire format (JSON, SSE, AWS event-stream). The calls
are made inside ``@rastir.llm`` functions the way the README shows, and the spans are
checked: model, provider, tokens, cache tokens, finish reason, cost, time to first
token, the span's end with the stream's, partial streams, and the error category of
what each SDK raises (with the SDK's own exception re-raised unchanged).
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import botocore.session  # type: ignore[import-untyped]  # botocore ships no types
import cohere
import groq
import openai
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from google import genai
from google.genai import types as genai_types
from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

import rastir
from rastir.spans import Span
from rastir.testing import CapturedSpans, capture_spans
from tests.adapters.live_api import LONG_CHUNKS, USAGE, FakeAPI, serving

MESSAGES: Any = [{"role": "user", "content": "hi"}]  # typed per SDK: one list for all
BEDROCK_MESSAGES: Any = [{"role": "user", "content": [{"text": "hi"}]}]
BEDROCK_ID = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
TIMEOUT_S = 0.5  # the clients' timeout: the "hang" model outlasts it
NO_MISTRAL_RETRY = RetryConfig("none", BackoffStrategy(1, 1, 1, 1), False)


# -- the server and the clients, one of each per module ------------------------------------
@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with serving() as running:
        yield running


class Clients:
    def __init__(self, url: str) -> None:
        self.openai = openai.OpenAI(
            api_key="sk-test", base_url=url + "/v1", max_retries=0, timeout=TIMEOUT_S
        )
        self.azure = openai.AzureOpenAI(
            api_key="azure-test",
            azure_endpoint=url,
            api_version="2024-10-21",
            max_retries=0,
            timeout=TIMEOUT_S,
        )
        self.anthropic = anthropic.Anthropic(
            api_key="ant-test", base_url=url, max_retries=0, timeout=TIMEOUT_S
        )
        self.groq = groq.Groq(api_key="gsk-test", base_url=url, max_retries=0, timeout=TIMEOUT_S)
        self.mistral = Mistral(
            api_key="mistral-test",
            server_url=url + "/mistral",
            timeout_ms=int(TIMEOUT_S * 1000),
            retry_config=NO_MISTRAL_RETRY,
        )
        self.cohere = cohere.ClientV2(api_key="co-test", base_url=url, timeout=TIMEOUT_S)
        self.gemini = genai.Client(
            api_key="gemini-test",
            http_options=genai_types.HttpOptions(
                base_url=url,
                timeout=int(TIMEOUT_S * 1000),
                retry_options=genai_types.HttpRetryOptions(attempts=1),
            ),
        )
        self.bedrock = botocore.session.get_session().create_client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret-test",
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                read_timeout=TIMEOUT_S,
                connect_timeout=TIMEOUT_S,
            ),
        )

    def close(self) -> None:
        self.openai.close()
        self.azure.close()
        self.anthropic.close()
        self.groq.close()
        self.bedrock.close()
        self.gemini.close()
        self.cohere._client_wrapper.httpx_client.httpx_client.close()
        self.mistral.sdk_configuration.client.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def clients(api: FakeAPI) -> Iterator[Clients]:
    made = Clients(api.url)
    try:
        yield made
    finally:
        made.close()


# -- helpers -----------------------------------------------------------------------------------
def _llm_span(spans: CapturedSpans) -> Span:
    return spans.one(kind="llm")


def _check_usage(attrs: dict[str, Any], cache_write: bool = False) -> None:
    assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == USAGE["cache_read"]
    if cache_write:
        assert attrs["gen_ai.usage.cache_creation.input_tokens"] == USAGE["cache_write"]
    else:
        assert "gen_ai.usage.cache_creation.input_tokens" not in attrs


def _check_stream(span: Span, chunks: int) -> None:
    attrs = span.attributes
    ttft = attrs["rastir.ttft_ms"]
    assert isinstance(ttft, float)
    assert 0 < ttft <= span.duration_ns / 1e6
    assert span.events is not None
    assert [e.name for e in span.events] == ["rastir.first_token"]
    assert attrs["rastir.stream.chunks"] == chunks
    assert "rastir.stream.partial" not in attrs
    assert span.status == "ok"


# Each provider's plain call: (call(clients, model), model asked, model answered,
# provider, finish reason, cache writes reported, priced).
PLAIN: dict[str, tuple[Callable[[Clients, str], Any], str, str, str, str, bool, bool]] = {
    "openai": (
        lambda c, m: c.openai.chat.completions.create(model=m, messages=MESSAGES),
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "openai",
        "stop",
        False,
        True,
    ),
    "openai-responses": (
        lambda c, m: c.openai.responses.create(model=m, input="hi"),
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "openai",
        "completed",
        False,
        True,
    ),
    "azure": (
        lambda c, m: c.azure.chat.completions.create(model=m, messages=MESSAGES),
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "azure.ai.openai",
        "stop",
        False,
        True,
    ),
    "groq": (
        lambda c, m: c.groq.chat.completions.create(model=m, messages=MESSAGES),
        "llama-3.1-8b-instant",
        "llama-3.1-8b-instant",
        "groq",
        "stop",
        False,
        True,
    ),
    "anthropic": (
        lambda c, m: c.anthropic.messages.create(model=m, max_tokens=16, messages=MESSAGES),
        "claude-3-7-sonnet",
        "claude-3-7-sonnet-20250219",
        "anthropic",
        "end_turn",
        True,
        True,
    ),
    "mistral": (
        lambda c, m: c.mistral.chat.complete(model=m, messages=MESSAGES),
        "mistral-small-latest",
        "mistral-small-latest",
        "mistral_ai",
        "stop",
        False,
        True,
    ),
    "gemini": (
        lambda c, m: c.gemini.models.generate_content(model=m, contents="hi"),
        "gemini-2.5-flash",
        "gemini-2.5-flash",
        "gcp.gemini",
        "STOP",
        False,
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_call_records_model_provider_tokens_and_cost(clients: Clients, name: str) -> None:
    call, asked, answered, provider, finish, cache_write, _ = PLAIN[name]

    @rastir.llm
    def ask(model: str) -> Any:
        return call(clients, model)

    with capture_spans() as spans:
        response = ask(model=asked)
    assert response is not None
    assert type(response).__module__.split(".")[0] in (
        "openai",
        "anthropic",
        "groq",
        "mistralai",
        "google",
    )
    span = _llm_span(spans)
    attrs = span.attributes
    assert span.status == "ok"
    assert attrs["gen_ai.request.model"] == asked
    assert attrs["gen_ai.response.model"] == answered
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.operation.name"] == ("generate_content" if name == "gemini" else "chat")
    assert attrs["gen_ai.response.finish_reasons"] == (finish,)
    assert isinstance(attrs["gen_ai.response.id"], str)
    assert attrs["gen_ai.response.id"]
    _check_usage(attrs, cache_write)
    expected_out = USAGE["output"] + (5 if name == "gemini" else 0)  # + thinking tokens
    assert attrs["gen_ai.usage.output_tokens"] == expected_out
    assert attrs["rastir.cost.usd"] > 0
    assert "rastir.cost.unknown" not in attrs


def test_cohere_call_reads_billed_units_and_the_request_model(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.cohere.chat(model=model, messages=MESSAGES)

    with capture_spans() as spans:
        response = ask(model="command-r-plus")
    assert type(response).__name__ == "V2ChatResponse"
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.request.model"] == "command-r-plus"  # the response names none
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]  # billed, not template
    assert attrs["gen_ai.usage.output_tokens"] == USAGE["output"]
    assert attrs["gen_ai.response.finish_reasons"] == ("COMPLETE",)
    assert attrs["gen_ai.response.id"] == "cohere-live"
    assert attrs["rastir.cost.usd"] > 0


def test_bedrock_converse_reads_the_model_id_and_the_request_id(clients: Clients) -> None:
    @rastir.llm
    def ask(modelId: str) -> Any:  # the boto3 spelling, passed on
        return clients.bedrock.converse(modelId=modelId, messages=BEDROCK_MESSAGES)

    with capture_spans() as spans:
        response = ask(modelId=BEDROCK_ID)
    assert response["stopReason"] == "end_turn"
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.request.model"] == "claude-3-5-sonnet-20240620-v1:0"
    assert attrs["aws.bedrock.model_id"] == BEDROCK_ID
    assert attrs["rastir.model.vendor"] == "anthropic"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    _check_usage(attrs, cache_write=True)
    assert attrs["gen_ai.usage.output_tokens"] == USAGE["output"]
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.response.id"] == "bedrock-live"
    assert attrs["aws.bedrock.latency_ms"] == 42
    assert attrs["rastir.cost.usd"] > 0


def test_the_client_object_names_the_provider_when_the_model_is_inside(
    clients: Clients,
) -> None:
    # The model is chosen inside the function; the client is an argument.
    @rastir.llm
    def ask(client: Any, question: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )

    with capture_spans() as spans:
        ask(clients.azure, "hi")
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"


# -- openai: raw responses, parse(), helpers, the Responses API -----------------------------
def test_openai_with_raw_response_is_read_through_its_parsed_response(
    clients: Clients,
) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES
        )

    with capture_spans() as spans:
        raw = ask(model="gpt-4o-mini")
    assert type(raw).__name__ == "LegacyAPIResponse"
    completion = raw.parse()  # the caller's own parse still works (the SDK's cache)
    assert completion.choices[0].message.content == "Hello"
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.provider.name"] == "openai"
    _check_usage(attrs)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.cost.usd"] > 0


def test_anthropic_with_raw_response_is_read_through_its_parsed_response(
    clients: Clients,
) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.anthropic.messages.with_raw_response.create(
            model=model, max_tokens=16, messages=MESSAGES
        )

    with capture_spans() as spans:
        raw = ask(model="claude-3-7-sonnet")
    assert raw.parse().stop_reason == "end_turn"
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.response.model"] == "claude-3-7-sonnet-20250219"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    _check_usage(attrs, cache_write=True)


def test_raw_response_parse_returned_from_the_function(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        raw = clients.groq.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        return raw.parse()

    @rastir.llm
    def raw(model: str) -> Any:
        return clients.groq.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES
        )

    with capture_spans() as spans:
        ask(model="llama-3.1-8b-instant")
        assert type(raw(model="llama-3.1-8b-instant")).__name__ == "APIResponse"
    assert len(spans) == 2
    for span in spans:
        attrs = span.attributes
        assert attrs["gen_ai.provider.name"] == "groq"
        assert attrs["gen_ai.response.model"] == "llama-3.1-8b-instant"
        assert attrs["gen_ai.usage.output_tokens"] == USAGE["output"]
        assert attrs["rastir.cost.usd"] > 0


def test_openai_chat_completions_parse_keeps_the_provider_and_cache_reads(
    clients: Clients,
) -> None:
    # parse() returns ParsedChatCompletion[~ResponseFormatT], a pydantic generic class.
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.parse(model=model, messages=MESSAGES)

    with capture_spans() as spans:
        parsed = ask(model="gpt-4o-mini")
    assert type(parsed).__name__.startswith("ParsedChatCompletion[")
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.provider.name"] == "openai"
    _check_usage(attrs)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.cost.usd"] == pytest.approx(_openai_cost(clients))


def test_azure_chat_completions_parse_stays_azure(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.azure.chat.completions.parse(model=model, messages=MESSAGES)

    with capture_spans() as spans:
        ask(model="gpt-4o-mini")
    assert _llm_span(spans).attributes["gen_ai.provider.name"] == "azure.ai.openai"


def _openai_cost(clients: Clients) -> float:
    """The cost of the plain ChatCompletion, for comparison."""

    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.create(model=model, messages=MESSAGES)

    with capture_spans() as spans:
        ask(model="gpt-4o-mini")
    cost = _llm_span(spans).attributes["rastir.cost.usd"]
    assert isinstance(cost, float)
    return cost


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_returned_and_iterated_by_the_caller(
    clients: Clients, include_usage: bool
) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        options: Any = {"include_usage": True} if include_usage else None
        return clients.openai.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options=options
        )

    with capture_spans() as spans:
        stream = ask(model="gpt-4o-mini")
        assert not spans  # the span lives as long as the stream
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Hello"
    span = _llm_span(spans)
    _check_stream(span, 5 if include_usage else 4)
    attrs = span.attributes
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    if include_usage:
        _check_usage(attrs)
        assert attrs["rastir.cost.usd"] > 0
    else:  # no usage chunk: no counts and no price, rather than a wrong one
        assert "gen_ai.usage.input_tokens" not in attrs
        assert "rastir.cost.usd" not in attrs


def test_openai_chat_completions_stream_helper(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.stream(
            model=model, messages=MESSAGES, stream_options={"include_usage": True}
        )

    with capture_spans() as spans:
        manager = ask(model="gpt-4o-mini")
        assert not spans
        with manager as stream:
            deltas = [e.delta for e in stream if e.type == "content.delta"]
        assert "".join(deltas) == "Hello"
    span = _llm_span(spans)
    _check_stream(span, span.attributes["rastir.stream.chunks"])
    attrs = span.attributes
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.provider.name"] == "openai"
    _check_usage(attrs)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.cost.usd"] > 0


def test_openai_chat_completions_stream_helper_get_final_completion(
    clients: Clients,
) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.stream(
            model=model, messages=MESSAGES, stream_options={"include_usage": True}
        )

    with capture_spans() as spans:
        with ask(model="gpt-4o-mini") as stream:
            final = stream.get_final_completion()  # consumed inside the SDK
        assert final.choices[0].message.content == "Hello"
    attrs = _llm_span(spans).attributes
    assert "rastir.stream.partial" not in attrs
    _check_usage(attrs)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.cost.usd"] > 0


def test_openai_responses_stream_create_and_helper(clients: Clients) -> None:
    @rastir.llm
    def created(model: str) -> Any:
        return clients.openai.responses.create(model=model, input="hi", stream=True)

    @rastir.llm
    def helper(model: str) -> Any:
        return clients.openai.responses.stream(model=model, input="hi")

    with capture_spans() as spans:
        events = [e.type for e in created(model="gpt-4o-mini")]
        assert events[0] == "response.created"
        assert events[-1] == "response.completed"
        with helper(model="gpt-4o-mini") as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert text == "Hello"
    assert len(spans) == 2
    for span in spans:
        _check_stream(span, len(events))
        attrs = span.attributes
        assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
        assert attrs["gen_ai.response.id"] == "resp_live"
        _check_usage(attrs)
        assert attrs["gen_ai.response.finish_reasons"] == ("completed",)
        assert attrs["rastir.cost.usd"] > 0


def test_openai_responses_stream_get_final_response(clients: Clients) -> None:
    @rastir.llm
    def helper(model: str) -> Any:
        return clients.openai.responses.stream(model=model, input="hi")

    with capture_spans() as spans:
        with helper(model="gpt-4o-mini") as stream:
            final = stream.get_final_response()
        assert final.output_text == "Hello"
    attrs = _llm_span(spans).attributes
    assert "rastir.stream.partial" not in attrs
    _check_usage(attrs)


@pytest.mark.anyio
async def test_async_openai_clients(api: FakeAPI) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url=api.url + "/v1", max_retries=0
    ) as client:

        @rastir.llm
        async def plain(model: str) -> Any:
            return await client.chat.completions.create(model=model, messages=MESSAGES)

        @rastir.llm
        async def streamed(model: str) -> Any:
            return await client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )

        @rastir.llm
        async def raw(model: str) -> Any:
            return await client.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES
            )

        @rastir.llm
        def helper(model: str) -> Any:
            return client.chat.completions.stream(
                model=model, messages=MESSAGES, stream_options={"include_usage": True}
            )

        @rastir.llm
        def responses(model: str) -> Any:
            return client.responses.stream(model=model, input="hi")

        with capture_spans() as spans:
            await plain(model="gpt-4o-mini")
            stream = await streamed(model="gpt-4o-mini")
            assert len(spans) == 1
            chunks = [c async for c in stream]
            assert len(chunks) == 5
            (await raw(model="gpt-4o-mini")).parse()
            async with helper(model="gpt-4o-mini") as events:
                async for _ in events:
                    pass
            async with responses(model="gpt-4o-mini") as events:
                final = await events.get_final_response()
            assert final.output_text == "Hello"
    assert len(spans) == 5
    for span in spans:
        assert span.status == "ok"
        attrs = span.attributes
        assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
        _check_usage(attrs)
        assert attrs["rastir.cost.usd"] > 0
        assert "rastir.stream.partial" not in attrs
    assert "rastir.ttft_ms" in spans[1].attributes


# -- the other providers' streams --------------------------------------------------------------
def test_anthropic_create_stream_and_message_stream_manager(clients: Clients) -> None:
    @rastir.llm
    def created(model: str) -> Any:
        return clients.anthropic.messages.create(
            model=model, max_tokens=16, messages=MESSAGES, stream=True
        )

    @rastir.llm
    def managed(model: str) -> Any:
        return clients.anthropic.messages.stream(model=model, max_tokens=16, messages=MESSAGES)

    with capture_spans() as spans:
        raw_events = [e.type for e in created(model="claude-3-7-sonnet")]
        assert raw_events[0] == "message_start"
        assert raw_events[-1] == "message_stop"
        assert not spans or len(spans) == 1
        with managed(model="claude-3-7-sonnet") as stream:
            text = "".join(stream.text_stream)
        assert text == "Hello"
        with managed(model="claude-3-7-sonnet") as stream:
            message = stream.get_final_message()  # consumed inside the SDK
        assert message.stop_reason == "end_turn"
    assert len(spans) == 3
    for span in spans:
        attrs = span.attributes
        assert span.status == "ok"
        assert attrs["gen_ai.response.model"] == "claude-3-7-sonnet-20250219"
        assert attrs["gen_ai.provider.name"] == "anthropic"
        _check_usage(attrs, cache_write=True)
        assert attrs["gen_ai.usage.output_tokens"] == USAGE["output"]
        assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert attrs["gen_ai.response.id"] == "msg_live"
        assert attrs["rastir.cost.usd"] > 0
        assert "rastir.stream.partial" not in attrs
    _check_stream(spans[0], len(raw_events))
    assert spans[1].attributes["rastir.ttft_ms"] > 0


@pytest.mark.anyio
async def test_async_anthropic_streams(api: FakeAPI) -> None:
    async with anthropic.AsyncAnthropic(api_key="k", base_url=api.url, max_retries=0) as client:

        @rastir.llm
        async def created(model: str) -> Any:
            return await client.messages.create(
                model=model, max_tokens=16, messages=MESSAGES, stream=True
            )

        @rastir.llm
        def managed(model: str) -> Any:
            return client.messages.stream(model=model, max_tokens=16, messages=MESSAGES)

        @rastir.llm
        async def raw(model: str) -> Any:
            return await client.messages.with_raw_response.create(
                model=model, max_tokens=16, messages=MESSAGES
            )

        with capture_spans() as spans:
            stream = await created(model="claude-3-7-sonnet")
            assert not spans
            events = [e async for e in stream]
            async with managed(model="claude-3-7-sonnet") as helper:
                text = "".join([t async for t in helper.text_stream])
            response = await raw(model="claude-3-7-sonnet")
            assert type(response).__name__ == "AsyncAPIResponse"
            assert (await response.parse()).stop_reason == "end_turn"
        assert text == "Hello"
    assert len(spans) == 3
    _check_stream(spans[0], len(events))
    assert spans[2].attributes["gen_ai.response.model"] == "claude-3-7-sonnet-20250219"
    for span in spans:
        _check_usage(span.attributes, cache_write=True)
        assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)


STREAMS: dict[str, tuple[Callable[[Clients, str], Any], str, str, int, str]] = {
    "azure": (
        lambda c, m: c.azure.chat.completions.create(
            model=m, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ),
        "gpt-4o-mini",
        "azure.ai.openai",
        5,
        "stop",
    ),
    "groq": (
        lambda c, m: c.groq.chat.completions.create(model=m, messages=MESSAGES, stream=True),
        "llama-3.1-8b-instant",
        "groq",
        4,
        "stop",
    ),
    "mistral": (
        lambda c, m: c.mistral.chat.stream(model=m, messages=MESSAGES),
        "mistral-small-latest",
        "mistral_ai",
        2,
        "stop",
    ),
    "cohere": (
        lambda c, m: c.cohere.chat_stream(model=m, messages=MESSAGES),
        "command-r-plus",
        "cohere",
        6,
        "COMPLETE",
    ),
    "gemini": (
        lambda c, m: c.gemini.models.generate_content_stream(model=m, contents="hi"),
        "gemini-2.5-flash",
        "gcp.gemini",
        2,
        "STOP",
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_provider_stream_returned_and_iterated(clients: Clients, name: str) -> None:
    call, model, provider, chunks, finish = STREAMS[name]

    @rastir.llm
    def ask(model: str) -> Any:
        return call(clients, model)

    with capture_spans() as spans:
        stream = ask(model=model)
        assert not spans
        seen = list(stream)
    assert len(seen) == chunks
    span = _llm_span(spans)
    _check_stream(span, chunks)
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]
    assert attrs["gen_ai.response.finish_reasons"] == (finish,)
    assert attrs["rastir.cost.usd"] > 0


def test_bedrock_converse_stream(clients: Clients) -> None:
    @rastir.llm
    def ask(modelId: str) -> Any:
        return clients.bedrock.converse_stream(modelId=modelId, messages=BEDROCK_MESSAGES)

    with capture_spans() as spans:
        response = ask(modelId=BEDROCK_ID)
        assert not spans
        events = list(response["stream"])
    assert next(iter(events[0])) == "messageStart"
    span = _llm_span(spans)
    _check_stream(span, len(events))
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["aws.bedrock.model_id"] == BEDROCK_ID
    _check_usage(attrs, cache_write=True)
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.response.id"] == "bedrock-live"
    assert attrs["rastir.cost.usd"] > 0


# -- abandoned streams ---------------------------------------------------------------------------
def test_stream_closed_early_is_partial(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.create(model=model, messages=MESSAGES, stream=True)

    with capture_spans() as spans:
        stream = ask(model="long")
        first = [next(stream), next(stream)]
        assert len(first) == 2
        assert not spans
        stream.close()
    span = _llm_span(spans)
    assert span.attributes["rastir.stream.partial"] is True
    assert span.attributes["rastir.stream.chunks"] == 2
    assert span.status == "ok"
    assert span.attributes["rastir.ttft_ms"] > 0


def test_stream_dropped_unfinished_is_partial(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.anthropic.messages.create(
            model=model, max_tokens=16, messages=MESSAGES, stream=True
        )

    with capture_spans() as spans:
        stream = ask(model="long")
        assert next(stream).type == "message_start"
        stream.response.close()  # what the SDK's own close() does, then drop it
        del stream
        gc.collect()
    span = _llm_span(spans)
    attrs = span.attributes
    assert attrs["rastir.stream.partial"] is True
    assert attrs["rastir.stream.chunks"] == 1
    assert attrs["gen_ai.response.model"] == "long-20250219"  # from message_start
    assert "rastir.ttft_ms" not in attrs  # message_start carries no content


def test_message_stream_manager_left_early_is_partial(clients: Clients) -> None:
    @rastir.llm
    def managed(model: str) -> Any:
        return clients.anthropic.messages.stream(model=model, max_tokens=16, messages=MESSAGES)

    with capture_spans() as spans, managed(model="long") as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
    attrs = _llm_span(spans).attributes
    assert attrs["rastir.stream.partial"] is True
    assert attrs["rastir.ttft_ms"] > 0
    assert attrs["rastir.stream.chunks"] < LONG_CHUNKS


# -- errors --------------------------------------------------------------------------------------
ERROR_CALLS: dict[str, Callable[[Clients, str], Any]] = {
    "openai": lambda c, m: c.openai.chat.completions.create(model=m, messages=MESSAGES),
    "openai-stream": lambda c, m: c.openai.chat.completions.create(
        model=m, messages=MESSAGES, stream=True
    ),
    "azure": lambda c, m: c.azure.chat.completions.create(model=m, messages=MESSAGES),
    "anthropic": lambda c, m: c.anthropic.messages.create(
        model=m, max_tokens=16, messages=MESSAGES
    ),
    "groq": lambda c, m: c.groq.chat.completions.create(model=m, messages=MESSAGES),
    "mistral": lambda c, m: c.mistral.chat.complete(model=m, messages=MESSAGES),
    "cohere": lambda c, m: c.cohere.chat(
        model=m,
        messages=MESSAGES,
        request_options={"max_retries": 0},
    ),
    "gemini": lambda c, m: c.gemini.models.generate_content(model=m, contents="hi"),
    "bedrock": lambda c, m: c.bedrock.converse(modelId=m, messages=BEDROCK_MESSAGES),
}
SDK_PACKAGES = {
    "openai": ("openai",),
    "openai-stream": ("openai",),
    "azure": ("openai",),
    "anthropic": ("anthropic",),
    "groq": ("groq",),
    "mistral": ("mistralai", "httpx2"),
    "cohere": ("cohere", "httpx"),
    "gemini": ("google", "httpx", "httpx2"),  # google-genai 2.x (Python 3.10) uses httpx
    "bedrock": ("botocore",),
}
STATUSES = {
    "err-429": "rate_limit",
    "err-400": "validation_error",
    "err-401": "provider_error",
    "err-404": "validation_error",
    "err-500": "provider_error",
    "err-529": "provider_error",
    "hang": "timeout",
}


@pytest.mark.parametrize("scenario", sorted(STATUSES))
@pytest.mark.parametrize("name", sorted(ERROR_CALLS))
def test_sdk_errors_are_reraised_unchanged_and_categorised(
    clients: Clients, api: FakeAPI, name: str, scenario: str
) -> None:
    # AWS answers a call it refuses the credentials of with a 403
    scenario_model = "err-403" if name == "bedrock" and scenario == "err-401" else scenario
    raised: list[BaseException] = []

    @rastir.llm
    def ask(model: str) -> Any:
        try:
            return ERROR_CALLS[name](clients, model)
        except Exception as exc:
            raised.append(exc)
            raise

    before = api.count(scenario_model)
    with capture_spans() as spans, pytest.raises(Exception) as info:
        ask(model=scenario_model)
    assert raised
    assert info.value is raised[0]  # the SDK's own exception, unchanged
    assert type(info.value).__module__.split(".")[0] in SDK_PACKAGES[name]
    span = _llm_span(spans)
    assert span.status == "error"
    assert span.error is not None
    assert span.error["type"] == STATUSES[scenario], (name, scenario, type(info.value))
    assert span.error["exception_type"].endswith(type(info.value).__qualname__)
    assert span.attributes["gen_ai.request.model"] == scenario_model  # kept on failure
    assert api.count(scenario_model) == before + 1  # no retry: max_retries=0


def test_anthropic_overloaded_is_its_own_exception(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.anthropic.messages.create(model=model, max_tokens=16, messages=MESSAGES)

    with capture_spans() as spans, pytest.raises(anthropic.OverloadedError):
        ask(model="err-529")
    error = _llm_span(spans).error
    assert error is not None
    assert error["type"] == "provider_error"
    assert error["exception_type"] == "anthropic.OverloadedError"


def test_error_event_in_the_middle_of_a_stream(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.anthropic.messages.create(
            model=model, max_tokens=16, messages=MESSAGES, stream=True
        )

    with capture_spans() as spans:
        stream = ask(model="midstream-error")
        with pytest.raises(anthropic.APIStatusError) as info:
            for _ in stream:
                pass
    span = _llm_span(spans)
    assert span.status == "error"
    assert span.error is not None
    assert span.error["type"] == "provider_error", type(info.value)
    attrs = span.attributes
    assert attrs["rastir.stream.partial"] is True
    assert attrs["rastir.ttft_ms"] > 0  # the text before the error
    assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]  # from message_start


def test_connection_refused(clients: Clients) -> None:
    # A port that was free a moment ago, with nothing listening.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.OpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)

    @rastir.llm
    def ask(model: str) -> Any:
        return client.chat.completions.create(model=model, messages=MESSAGES)

    try:
        with capture_spans() as spans, pytest.raises(openai.APIConnectionError):
            ask(model="gpt-4o-mini")
    finally:
        client.close()
    span = _llm_span(spans)
    assert span.error is not None
    assert span.error["type"] == "provider_error"
    assert span.error["exception_type"] == "openai.APIConnectionError"
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_sdk_retries_make_one_span(api: FakeAPI, sdk: str) -> None:
    """With max_retries=1, a 429 then a success is one ok span; two 429s one error."""
    if sdk == "openai":
        client: Any = openai.OpenAI(api_key="sk", base_url=api.url + "/v1", max_retries=1)

        def call(model: str) -> Any:
            return client.chat.completions.create(model=model, messages=MESSAGES)
    else:
        client = anthropic.Anthropic(api_key="k", base_url=api.url, max_retries=1)

        def call(model: str) -> Any:
            return client.messages.create(model=model, max_tokens=16, messages=MESSAGES)

    ask = rastir.llm(call)
    flaky = f"flaky-{sdk}"
    try:
        with capture_spans() as spans:
            ask(model=flaky)
        span = _llm_span(spans)
        assert api.count(flaky) == 2
        assert span.status == "ok"
        assert span.attributes["gen_ai.usage.input_tokens"] == USAGE["input"]
        assert span.attributes["gen_ai.request.model"] == flaky

        before = api.count("err-429")
        with capture_spans() as spans, pytest.raises(Exception, match="429") as info:
            ask(model="err-429")
        assert api.count("err-429") == before + 2
        span = _llm_span(spans)
        assert type(info.value).__name__ == "RateLimitError"
        assert span.error is not None
        assert span.error["type"] == "rate_limit"
    finally:
        client.close()


def test_error_raised_by_the_stream_helper_entering(clients: Clients) -> None:
    @rastir.llm
    def managed(model: str) -> Any:
        return clients.anthropic.messages.stream(model=model, max_tokens=16, messages=MESSAGES)

    with (
        capture_spans() as spans,
        pytest.raises(anthropic.RateLimitError),
        managed(model="err-429"),
    ):
        pass
    span = _llm_span(spans)
    assert span.error is not None
    assert span.error["type"] == "rate_limit"


# -- attribute names against the OpenTelemetry GenAI semantic conventions ------------------
def test_gen_ai_attribute_names_are_semconv_names(clients: Clients) -> None:
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes

    known = {
        value
        for key, value in vars(gen_ai_attributes).items()
        if key.startswith("GEN_AI_") and isinstance(value, str)
    }

    @rastir.llm
    def ask(model: str, messages: Any, temperature: float, max_tokens: int) -> Any:
        # (anthropic 2.x takes no temperature: the decorated function's does count)
        return clients.anthropic.messages.create(
            model=model, max_tokens=max_tokens, messages=messages
        )

    @rastir.llm
    def think(model: str, top_p: float) -> Any:
        return clients.gemini.models.generate_content(
            model=model, contents="hi", config=genai_types.GenerateContentConfig(top_p=top_p)
        )

    rastir.configure(capture_content=True)
    with capture_spans() as spans:
        ask(model="claude-3-7-sonnet", messages=MESSAGES, temperature=0.5, max_tokens=16)
        think(model="gemini-2.5-flash", top_p=0.9)
    used = {k for span in spans for k in span.attributes if k.startswith("gen_ai.")}
    assert used >= {
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.id",
        "gen_ai.operation.name",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.request.temperature",
        "gen_ai.request.max_tokens",
        "gen_ai.request.top_p",
        "gen_ai.usage.reasoning.output_tokens",
    }
    assert used - known == set()


@pytest.mark.anyio
# google-genai's async client subclasses aiohttp's ClientSession, which aiohttp warns about
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_async_gemini_groq_and_mistral_streams(api: FakeAPI) -> None:
    gemini = genai.Client(
        api_key="gemini-test",
        http_options=genai_types.HttpOptions(
            base_url=api.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    mistral = Mistral(api_key="m", server_url=api.url + "/mistral", retry_config=NO_MISTRAL_RETRY)
    async with groq.AsyncGroq(api_key="gsk", base_url=api.url, max_retries=0) as groq_client:

        @rastir.llm
        async def think(model: str) -> Any:
            return await gemini.aio.models.generate_content_stream(model=model, contents="hi")

        @rastir.llm
        async def fast(model: str) -> Any:
            return await groq_client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )

        @rastir.llm
        async def mistral_stream(model: str) -> Any:
            return await mistral.chat.stream_async(model=model, messages=MESSAGES)

        with capture_spans() as spans:
            for call, model in (
                (think, "gemini-2.5-flash"),
                (fast, "llama-3.1-8b-instant"),
                (mistral_stream, "mistral-small-latest"),
            ):
                stream = await call(model=model)
                assert not spans.find(model)
                chunks = [c async for c in stream]
                assert chunks
    await gemini.aio.aclose()
    gemini.close()
    await mistral.sdk_configuration.async_client.aclose()  # type: ignore[union-attr]
    mistral.sdk_configuration.client.close()  # type: ignore[union-attr]
    assert [s.attributes["gen_ai.provider.name"] for s in spans] == [
        "gcp.gemini",
        "groq",
        "mistral_ai",
    ]
    for span in spans:
        attrs = span.attributes
        assert attrs["rastir.ttft_ms"] > 0
        assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]
        assert attrs["rastir.cost.usd"] > 0
        assert "rastir.stream.partial" not in attrs


def test_a_model_no_price_list_knows_is_cost_unknown(clients: Clients) -> None:
    @rastir.llm
    def ask(model: str) -> Any:
        return clients.openai.chat.completions.create(model=model, messages=MESSAGES)

    with capture_spans() as spans:
        ask(model="acme-finetune-7")
    attrs = _llm_span(spans).attributes
    assert attrs["gen_ai.usage.input_tokens"] == USAGE["input"]
    assert attrs["rastir.cost.unknown"] is True
    assert "rastir.cost.usd" not in attrs
