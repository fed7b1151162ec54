"""Request phase: keyword scanner, Bedrock ids, SDK objects among the arguments,
precedence, failures and secrets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2 as httpx
import pytest

import rastir
from rastir.adapters import apply_request, apply_response, parse_bedrock_model_id
from rastir.spans import Span
from rastir.testing import capture_spans
from tests.adapters import objects


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("anthropic.claude-3-sonnet", ("claude-3-sonnet", "anthropic")),
        (
            "anthropic.claude-3-sonnet-20240229-v1:0",
            ("claude-3-sonnet-20240229-v1:0", "anthropic"),
        ),
        (
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            ("claude-3-5-sonnet-20240620-v1:0", "anthropic"),
        ),
        ("eu.meta.llama3-2-1b-instruct-v1:0", ("llama3-2-1b-instruct-v1:0", "meta")),
        ("apac.amazon.nova-lite-v1:0", ("nova-lite-v1:0", "amazon")),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
            ("claude-v2", "anthropic"),
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            ("claude-3-7-sonnet-20250219-v1:0", "anthropic"),
        ),
        ("gpt-3.5-turbo", None),
        ("claude-3.5-sonnet", None),
        ("us.gpt-4o", None),
        ("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123", None),
    ],
)
def test_bedrock_model_id_parsing(model_id: str, expected: tuple[str, str] | None) -> None:
    assert parse_bedrock_model_id(model_id) == expected


@pytest.mark.parametrize("key", ["model", "model_id", "modelId", "model_name"])
def test_generic_kwarg_scanner(key: str) -> None:
    span = Span("x", "llm", None)
    apply_request(span, (), {key: "some-model", "temperature": 0.5, "top_p": 1})
    assert span.attributes["gen_ai.request.model"] == "some-model"
    assert span.attributes["gen_ai.request.temperature"] == 0.5
    assert span.attributes["gen_ai.request.top_p"] == 1
    assert "gen_ai.provider.name" not in span.attributes


def test_bedrock_request_config_is_read() -> None:
    span = Span("x", "llm", None)
    apply_request(
        span,
        (),
        {
            "modelId": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.1},
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "DRAFT"},
        },
    )
    attrs = span.attributes
    assert attrs["gen_ai.request.model"] == "claude-3-5-haiku-20241022-v1:0"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["rastir.model.vendor"] == "anthropic"
    assert attrs["gen_ai.request.max_tokens"] == 256
    assert attrs["rastir.guardrail.id"] == "gr-1"


def _clients() -> list[tuple[Any, str]]:
    from anthropic import Anthropic, AnthropicBedrock
    from cohere import ClientV2
    from google import genai
    from groq import Groq
    from mistralai.client import Mistral
    from openai import AsyncAzureOpenAI, OpenAI

    return [
        (OpenAI(api_key="sk-test-secret-1"), "openai"),
        (
            AsyncAzureOpenAI(
                api_key="az-test-secret-2",
                azure_endpoint="https://example.openai.azure.com",
                api_version="2024-10-21",
            ),
            "azure.ai.openai",
        ),
        (Anthropic(api_key="sk-ant-test-secret-3"), "anthropic"),
        (
            AnthropicBedrock(aws_access_key="AKIATEST", aws_secret_key="s", aws_region="us-east-1"),
            "aws.bedrock",
        ),
        (Groq(api_key="gsk-test-secret-4"), "groq"),
        (Mistral(api_key="mi-test-secret-5"), "mistral_ai"),
        (ClientV2(api_key="co-test-secret-6"), "cohere"),
        (genai.Client(api_key="gm-test-secret-7"), "gcp.gemini"),
        (_bedrock_runtime(), "aws.bedrock"),
    ]


def _bedrock_runtime() -> Any:
    """A real boto3-style ``bedrock-runtime`` client (botocore builds it offline)."""
    import botocore.session  # type: ignore[import-untyped]  # botocore ships no types

    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIATEST",
        aws_secret_access_key="aws-test-secret-8",
    )


def test_sdk_client_objects_name_the_provider_and_survive_a_failure() -> None:
    request = httpx.Request("POST", "https://api.example.com/v1/chat")
    for client, provider in _clients():

        @rastir.llm
        def call(c: Any, *, model: str) -> Any:
            raise httpx.ConnectError("connection refused", request=request)

        with capture_spans() as spans, pytest.raises(httpx.ConnectError):
            call(client, model="the-model")
        span = spans.one(kind="llm")
        assert span.attributes["gen_ai.provider.name"] == provider, type(client)
        assert span.attributes["gen_ai.request.model"] == "the-model"
        assert span.status == "error"


def test_rate_limit_error_keeps_model_provider_and_category() -> None:
    import openai

    response = httpx.Response(
        429,
        headers={"retry-after": "2"},
        request=httpx.Request("POST", "https://api.openai.com/v1/chat/completions"),
    )
    error = openai.RateLimitError("Rate limit reached", response=response, body=None)

    @rastir.llm(model="gpt-4o", provider="openai")
    def chat(messages: list[dict[str, str]]) -> Any:
        raise error

    with capture_spans() as spans, pytest.raises(openai.RateLimitError) as raised:
        chat([{"role": "user", "content": "hi"}])
    assert raised.value is error
    span = spans.one(kind="llm")
    assert span.attributes["gen_ai.request.model"] == "gpt-4o"
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.error is not None
    assert span.error["type"] == "rate_limit"
    assert span.error["exception_type"].endswith("RateLimitError")


@pytest.mark.anyio
async def test_timeout_error_in_async_call_keeps_request_metadata() -> None:
    import openai

    error = openai.APITimeoutError(request=httpx.Request("POST", "https://api.openai.com/v1"))

    @rastir.llm
    async def chat(client: Any, model: str) -> Any:
        await asyncio.sleep(0)
        raise error

    with capture_spans() as spans, pytest.raises(openai.APITimeoutError):
        await chat(openai.AsyncOpenAI(api_key="sk-test"), model="gpt-4o-mini")
    span = spans.one(kind="llm")
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.error is not None
    assert span.error["type"] == "timeout"


def test_precedence_explicit_beats_response_beats_request() -> None:
    completion = objects.openai_chat()

    @rastir.llm
    def guessed(model: str) -> Any:
        return completion

    @rastir.llm(model="gpt-4o-prod", provider="azure.ai.openai")
    def explicit(model: str) -> Any:
        return completion

    with capture_spans() as spans:
        guessed(model="gpt-4o")
        explicit(model="gpt-4o")
    g = spans.one("guessed").attributes
    assert g["gen_ai.request.model"] == "gpt-4o"
    assert g["gen_ai.response.model"] == "gpt-4o-2024-08-06"  # what the collector labels
    e = spans.one("explicit").attributes
    assert e["gen_ai.request.model"] == "gpt-4o-prod"
    assert "gen_ai.response.model" not in e
    assert e["rastir.response.model_reported"] == "gpt-4o-2024-08-06"
    assert e["gen_ai.provider.name"] == "azure.ai.openai"
    # The price still comes from the model the provider reported.
    assert e["rastir.cost.usd"] == g["rastir.cost.usd"]


def test_response_provider_beats_a_request_guess_but_not_a_specific_host() -> None:
    from openai import AzureOpenAI

    azure = AzureOpenAI(
        api_key="k", azure_endpoint="https://x.openai.azure.com", api_version="2024-10-21"
    )

    @rastir.llm
    def via_azure(client: Any) -> Any:
        return objects.openai_chat()  # no Azure annotations in this response

    @rastir.llm
    def anthropic_from_bedrock_guess(modelId: str) -> Any:
        return objects.anthropic_message()

    with capture_spans() as spans:
        via_azure(azure)
        anthropic_from_bedrock_guess(modelId="anthropic.claude-3-haiku-20240307-v1:0")
    assert spans.one("via_azure").attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert spans.one("anthropic_from_bedrock_guess").attributes["gen_ai.provider.name"] == (
        "anthropic"
    )


def test_model_and_provider_are_inherited_by_children() -> None:
    seen: list[Any] = []

    @rastir.llm
    def outer(client: Any, model: str) -> None:
        seen.append((rastir.current_model(), rastir.current_provider()))

    from anthropic import Anthropic

    outer(Anthropic(api_key="sk-ant-x"), model="claude-3-5-haiku-latest")
    assert seen == [("claude-3-5-haiku-latest", "anthropic")]


SECRETS = (
    "sk-test-secret-1",
    "az-test-secret-2",
    "sk-ant-test-secret-3",
    "gsk-test-secret-4",
    "mi-test-secret-5",
    "co-test-secret-6",
    "gm-test-secret-7",
    "aws-test-secret-8",
    "Bearer top-secret-token",
    "x-api-secret",
    "tok-refresh-secret",
)


def test_secrets_are_never_recorded_even_with_capture_content() -> None:
    rastir.configure(push_url=None, capture_content=True)
    clients = [c for c, _ in _clients()]

    @rastir.llm
    def chat(*clients: Any, **kwargs: Any) -> Any:
        return objects.openai_chat()

    with capture_spans() as spans:
        chat(
            *clients,
            model="gpt-4o",
            messages=[{"role": "user", "content": "hello"}],
            api_key="x-api-secret",
            headers={"Authorization": "Bearer top-secret-token"},
            extra_headers={"Authorization": "Bearer top-secret-token"},
            authorization="Bearer top-secret-token",
            token="tok-refresh-secret",
            access_token="tok-refresh-secret",
        )
    span = spans.one(kind="llm")
    everything = repr(span.attributes) + repr(span.events) + repr(span.error)
    assert "hello" in span.attributes["gen_ai.input.messages"]  # content was captured
    for secret in SECRETS:
        assert secret not in everything, secret
    for key in span.attributes:
        lowered = key.lower()
        assert "key" not in lowered
        assert "authorization" not in lowered
        assert "token" not in lowered or "tokens" in lowered


def test_apply_helpers_work_on_spans_managed_elsewhere() -> None:
    span = Span("ChatOpenAI", "llm", None)
    apply_request(span, (), {"model": "gpt-4o"})
    apply_response(span, objects.openai_chat())
    assert span.attributes["gen_ai.request.model"] == "gpt-4o"
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert span.attributes["gen_ai.usage.output_tokens"] == 34
    assert span.attributes["rastir.cost.usd"] > 0
    # Odd inputs never raise.
    apply_request(span, (object(),), {"model": 12})
    apply_response(span, object())
    apply_response(span, None)
