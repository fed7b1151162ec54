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
    from openai import AzureOpenAI, OpenAI

    azure = AzureOpenAI(
        api_key="k", azure_endpoint="https://x.openai.azure.com", api_version="2024-10-21"
    )

    @rastir.llm
    def via_azure(client: Any) -> Any:
        return objects.openai_chat()  # no Azure annotations in this response

    @rastir.llm
    def anthropic_after_an_openai_client(client: Any) -> Any:
        return objects.anthropic_message()

    @rastir.llm
    def anthropic_on_bedrock(modelId: str) -> Any:
        return objects.anthropic_message()  # the class says nothing about the host

    with capture_spans() as spans:
        via_azure(azure)
        anthropic_after_an_openai_client(OpenAI(api_key="k"))
        anthropic_on_bedrock(modelId="anthropic.claude-3-haiku-20240307-v1:0")
    assert spans.one("via_azure").attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert spans.one("anthropic_after_an_openai_client").attributes["gen_ai.provider.name"] == (
        "anthropic"
    )
    # Only Bedrock takes ``anthropic.claude-...-v1:0`` ids: the host is known.
    assert spans.one("anthropic_on_bedrock").attributes["gen_ai.provider.name"] == "aws.bedrock"


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


def _hosted_client(name: str) -> Any:
    from anthropic import Anthropic, AnthropicBedrock, AnthropicVertex
    from google import genai
    from google.oauth2.credentials import Credentials

    if name == "Anthropic":
        return Anthropic(api_key="sk-ant-test")
    if name == "AnthropicBedrock":
        return AnthropicBedrock(
            aws_access_key="AKIATEST", aws_secret_key="s", aws_region="us-east-1"
        )
    if name == "AnthropicVertex":
        return AnthropicVertex(region="us-east5", project_id="p", access_token="t")
    if name == "genai":
        return genai.Client(api_key="gm-test")
    credentials = Credentials(token="t")  # type: ignore[no-untyped-call]  # google-auth is untyped
    return genai.Client(vertexai=True, project="p", location="us-central1", credentials=credentials)


@pytest.mark.parametrize(
    ("client", "build", "provider"),
    [
        ("Anthropic", objects.anthropic_message, "anthropic"),
        ("AnthropicBedrock", objects.anthropic_message, "aws.bedrock"),
        ("AnthropicVertex", objects.anthropic_message, "gcp.vertex_ai"),
        ("genai", objects.gemini_response, "gcp.gemini"),
        ("genai-vertexai", objects.gemini_response, "gcp.vertex_ai"),
    ],
)
def test_anthropic_and_gemini_responses_keep_the_host_the_client_names(
    client: str, build: Any, provider: str
) -> None:
    # The anthropic and google-genai response classes are the same whoever hosts the
    # model; the client says who does.
    response = build()

    @rastir.llm
    def ask(client: Any, question: str) -> Any:
        return response

    with capture_spans() as spans:
        ask(_hosted_client(client), "hi")
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["rastir.cost.usd"] > 0


def test_claude_on_a_host_is_priced_with_the_cache_outside_the_input() -> None:
    from anthropic import AnthropicVertex

    from rastir.pricing import get_pricing

    @rastir.llm
    def ask(client: Any) -> Any:
        return objects.anthropic_message()  # 100 in, 2000 read, 500 written, 20 out

    with capture_spans() as spans:
        ask(AnthropicVertex(region="us-east5", project_id="p", access_token="t"))
    attrs = spans.one(kind="llm").attributes
    found = get_pricing().model_price("gcp.vertex_ai", "claude-sonnet-4-20250514")
    assert found is not None
    assert not found.cached_in_input
    expected = (
        100 * found.input + 2000 * found.cache_read + 500 * found.cache_write + 20 * found.output
    ) / 1e6
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


# -- secrets passed positionally ------------------------------------------------------------------
def test_a_positional_secret_is_never_recorded_as_the_prompt() -> None:
    rastir.configure(push_url=None, capture_content=True)

    @rastir.llm
    def key_first(api_key: str, question: str) -> Any:
        return objects.openai_chat()

    @rastir.llm
    def header_first(authorization: str, messages: list[dict[str, str]]) -> Any:
        return objects.openai_chat()

    with capture_spans() as spans:
        key_first("sk-proj-TOPSECRET123", "What is the capital of France?")
        header_first("Bearer TOPSECRET123", [{"role": "user", "content": "hi there"}])
    first = spans.one("key_first").attributes
    second = spans.one("header_first").attributes
    for attrs in (first, second):
        assert "TOPSECRET" not in repr(attrs)
    assert "What is the capital of France?" in first["gen_ai.input.messages"]
    assert "hi there" in second["gen_ai.input.messages"]


def test_a_positional_argument_named_like_a_secret_is_skipped_whatever_it_looks_like() -> None:
    rastir.configure(push_url=None, capture_content=True)

    @rastir.llm
    def login_then_ask(password: str, question: str) -> Any:
        return objects.openai_chat()

    with capture_spans() as spans:
        login_then_ask("hunter2", "Where is Rome?")
    attrs = spans.one("login_then_ask").attributes
    assert "hunter2" not in repr(attrs)
    assert "Where is Rome?" in attrs["gen_ai.input.messages"]


@pytest.mark.parametrize(
    ("names", "args", "expected"),
    [
        # A parameter named like a secret is skipped, however harmless its value looks.
        (("password", "question"), ("hunter2", "Where is Rome?"), "Where is Rome?"),
        (("apiKey", "prompt"), ("plainword", "Hi"), "Hi"),
        (("client_secret", "q"), ("abc", "Hi"), "Hi"),
        # A list of messages beats a string anywhere.
        (("a", "b"), ("some text", [{"role": "user", "content": "Hi"}]), "Hi"),
        # Without names: strings that look like a key or token are skipped.
        (None, ("sk-ant-api03-abc", "Hi"), "Hi"),
        (None, ("Bearer abc", "Hi"), "Hi"),
        (None, ("eyJhbGciOiJIUzI1NiJ9.e30.sig", "Hi"), "Hi"),
        (None, ("AKIAIOSFODNN7EXAMPLE", "Hi"), "Hi"),
        (None, ("c3VwZXJzZWNyZXQxMjM0NTY3ODkw", "Hi"), "Hi"),
        (None, ("How are you?",), "How are you?"),
        (None, ("sk-live-1234567890",), None),
    ],
)
def test_the_positional_prompt_skips_secrets(
    names: tuple[str, ...] | None, args: tuple[Any, ...], expected: str | None
) -> None:
    from rastir.adapters import _content

    found = _content.input_messages(args, {}, names)
    if expected is None:
        assert found is None
    else:
        assert found == [{"role": "user", "parts": [{"type": "text", "content": expected}]}]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("x_api_key", True),
        ("token", True),
        ("access_token", True),
        ("Authorization", True),
        ("password", True),
        ("aws_secret_access_key", True),
        ("credentials", True),
        ("question", False),
        ("messages", False),
        ("max_tokens", False),
        ("keywords", False),
        ("tokenizer", False),
    ],
)
def test_secret_parameter_names(name: str, secret: bool) -> None:
    from rastir.adapters._content import is_secret_name

    assert is_secret_name(name) is secret


def test_positional_names_are_read_once_per_function() -> None:
    from rastir.adapters._content import positional_names

    def ask(api_key: str, question: str, *rest: Any, model: str = "m") -> None: ...

    names = positional_names(ask)
    assert names == ("api_key", "question")
    assert positional_names(ask) is names
    assert positional_names(len) == ()


def test_request_phase_uses_parameter_names_when_given() -> None:
    from rastir.adapters import _content
    from rastir.adapters._apply import request_phase

    def ask(password: str, question: str) -> None: ...

    rastir.configure(push_url=None, capture_content=True)
    attrs: dict[str, Any] = {}
    request_phase(attrs, ("hunter2", "Hi"), {}, names=_content.positional_names(ask))
    assert "hunter2" not in attrs["gen_ai.input.messages"]
    assert '"Hi"' in attrs["gen_ai.input.messages"]
