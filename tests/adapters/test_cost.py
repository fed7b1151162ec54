"""Cost on ``@llm`` spans, end to end with ``rastir.pricing``: known models, each
provider's cache-token semantics, unknown models, overrides and profiles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rastir
from rastir.pricing import PricingProfile, TokenUsage, get_pricing
from rastir.testing import capture_spans
from tests.adapters import objects


@pytest.fixture
def prices() -> Iterator[Any]:
    """The process-wide pricing registry, with every change undone afterwards."""
    registry = get_pricing()
    set_here: list[tuple[str, str | None]] = []

    class Prices:
        def set(self, model: str, provider: str | None = None, **per_million: float) -> None:
            registry.set_model_price(model, provider=provider, **per_million)
            set_here.append((model, provider))

    yield Prices()
    for model, provider in set_here:
        registry.remove_model_price(model, provider=provider)
    registry.use_profile(None)


def _attrs(result: Any, **kwargs: Any) -> dict[str, Any]:
    @rastir.llm
    def call(**_: Any) -> Any:
        return result

    with capture_spans() as spans:
        call(**kwargs)
    return spans.one(kind="llm").attributes


def test_openai_cached_tokens_are_inside_the_prompt_count(prices: Any) -> None:
    prices.set("gpt-4o-2024-08-06", "openai", input=2.5, output=10.0, cache_read=1.25)
    attrs = _attrs(objects.openai_chat())  # 1200 prompt tokens, 1024 of them cached
    expected = ((1200 - 1024) * 2.5 + 1024 * 1.25 + 34 * 10.0) / 1e6
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_anthropic_cache_tokens_are_outside_the_input_count(prices: Any) -> None:
    prices.set(
        "claude-sonnet-4-20250514",
        "anthropic",
        input=3.0,
        output=15.0,
        cache_read=0.3,
        cache_write=3.75,
    )
    attrs = _attrs(objects.anthropic_message())  # 100 in, 2000 read, 500 written, 20 out
    expected = (100 * 3.0 + 2000 * 0.3 + 500 * 3.75 + 20 * 15.0) / 1e6
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_known_models_are_priced_from_the_price_data() -> None:
    # No override: the genai-prices data prices it, and cached tokens cost less.
    cached = _attrs(objects.openai_chat())["rastir.cost.usd"]
    fresh = _attrs(
        objects.openai_chat(
            usage={"prompt_tokens": 1200, "completion_tokens": 34, "total_tokens": 1234}
        )
    )["rastir.cost.usd"]
    assert 0 < cached < fresh


def test_an_unknown_model_is_flagged_never_priced_at_zero() -> None:
    attrs = _attrs(objects.openai_chat(model="acme-private-finetune-7"))
    assert attrs["rastir.cost.unknown"] is True
    assert "rastir.cost.usd" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 1200


def test_no_tokens_means_no_cost_and_no_flag() -> None:
    attrs = _attrs(objects.gemini_response(usage=False), model="gemini-2.5-flash")
    assert "rastir.cost.usd" not in attrs
    assert "rastir.cost.unknown" not in attrs


def test_an_override_takes_effect_and_a_profile_scales_it(prices: Any) -> None:
    before = _attrs(objects.mistral_response())["rastir.cost.usd"]
    prices.set("mistral-large-latest", input=1000.0, output=1000.0)
    after = _attrs(objects.mistral_response())["rastir.cost.usd"]
    assert after == pytest.approx((11 + 6) * 1000.0 / 1e6)
    assert after != before
    get_pricing().use_profile(PricingProfile("contract", multiplier=0.5))
    discounted = _attrs(objects.mistral_response())["rastir.cost.usd"]
    assert discounted == pytest.approx(after * 0.5)


def test_streamed_tokens_are_priced(prices: Any) -> None:
    prices.set("gpt-4o-mini", "openai", input=1.0, output=2.0)

    @rastir.llm
    def chat() -> Any:
        return objects.openai_stream()

    with capture_spans() as spans:
        list(chat())
    assert spans.one(kind="llm").attributes["rastir.cost.usd"] == pytest.approx(
        (9 * 1.0 + 2 * 2.0) / 1e6
    )


# -- Bedrock: priced by the id the call sent ---------------------------------------------------
BEDROCK_IDS = [
    "meta.llama3-1-70b-instruct-v1:0",
    "amazon.nova-pro-v1:0",
    "us.amazon.nova-lite-v1:0",
    "mistral.mistral-large-2402-v1:0",
    "cohere.command-r-plus-v1:0",
    "us.deepseek.r1-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-70b-instruct-v1:0",
]


@pytest.mark.parametrize("model_id", BEDROCK_IDS)
def test_bedrock_converse_is_priced_by_the_model_id_it_sent(model_id: str) -> None:
    attrs = _attrs(objects.bedrock_converse(), modelId=model_id, messages=[])
    expected = get_pricing().price_counts("aws.bedrock", model_id, 30, 7)
    assert expected is not None
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    assert "rastir.cost.unknown" not in attrs
    # The span still shows the short model; the raw id is kept beside it.
    assert "." not in attrs["gen_ai.request.model"].partition(":")[0]
    assert attrs["aws.bedrock.model_id"] == model_id


@pytest.mark.parametrize("model_id", ["us.meta.llama3-1-70b-instruct-v1:0", "amazon.nova-pro-v1:0"])
def test_a_langchain_bedrock_message_is_priced_by_its_raw_id(model_id: str) -> None:
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content="hi",
        response_metadata={
            "model_name": model_id,
            "model_provider": "bedrock_converse",
            "stopReason": "end_turn",
        },
        usage_metadata={"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500},
    )
    attrs = _attrs(message)
    expected = get_pricing().price_counts("aws.bedrock", model_id, 1000, 500)
    assert expected is not None
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["aws.bedrock.model_id"] == model_id
    assert attrs["gen_ai.response.model"] == model_id.rpartition(".")[2]


def test_a_langchain_bedrock_chat_model_argument_keeps_the_raw_id() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class BedrockLike(GenericFakeChatModel):
        model_id: str = "us.meta.llama3-1-70b-instruct-v1:0"

    @rastir.llm
    def ask(chat_model: Any) -> Any:
        return objects.bedrock_converse()

    with capture_spans() as spans:
        ask(BedrockLike(messages=iter([])))
    attrs = spans.one(kind="llm").attributes
    assert attrs["aws.bedrock.model_id"] == "us.meta.llama3-1-70b-instruct-v1:0"
    assert attrs["gen_ai.request.model"] == "llama3-1-70b-instruct-v1:0"
    assert attrs["rastir.model.vendor"] == "meta"
    assert attrs["rastir.cost.usd"] == pytest.approx(
        get_pricing().price_counts("aws.bedrock", "us.meta.llama3-1-70b-instruct-v1:0", 30, 7)
    )


@pytest.mark.parametrize(
    "name",
    [
        "us.meta.llama3-1-70b-instruct-v1:0",  # the id as sent
        "meta.llama3-1-70b-instruct-v1:0",  # without the region
        "llama3-1-70b-instruct-v1:0",  # the model the span shows
        "llama3-1-70b-instruct",  # the bare model
        "LLAMA3-1-70B-INSTRUCT",  # any letter case
    ],
)
@pytest.mark.parametrize("provider", [None, "aws.bedrock"])
def test_an_override_under_any_name_of_a_bedrock_id_prices_its_spans(
    prices: Any, name: str, provider: str | None
) -> None:
    prices.set(name, provider, input=1.0, output=1.0)
    attrs = _attrs(objects.bedrock_converse(), modelId="us.meta.llama3-1-70b-instruct-v1:0")
    assert attrs["rastir.cost.usd"] == pytest.approx((30 + 7) * 1.0 / 1e6)


def test_bedrock_override_precedence_provider_first_then_the_most_specific_name(
    prices: Any,
) -> None:
    model_id = "us.anthropic.claude-3-haiku-20240307-v1:0"
    prices.set("claude-3-haiku-20240307", "anthropic", input=100.0, output=100.0)
    listed = _attrs(objects.bedrock_converse(), modelId=model_id)["rastir.cost.usd"]
    # An override for Anthropic's own API does not price what AWS bills.
    assert listed == pytest.approx(get_pricing().price_counts("aws.bedrock", model_id, 30, 7))
    assert listed != pytest.approx((30 + 7) * 100.0 / 1e6)
    prices.set("claude-3-haiku-20240307", input=1.0, output=1.0)
    prices.set(model_id, input=2.0, output=2.0)
    assert _attrs(objects.bedrock_converse(), modelId=model_id)["rastir.cost.usd"] == (
        pytest.approx((30 + 7) * 2.0 / 1e6)
    )
    prices.set("claude-3-haiku-20240307", "aws.bedrock", input=3.0, output=3.0)
    assert _attrs(objects.bedrock_converse(), modelId=model_id)["rastir.cost.usd"] == (
        pytest.approx((30 + 7) * 3.0 / 1e6)
    )


def test_an_application_inference_profile_is_priced_only_by_an_override_for_its_arn(
    prices: Any,
) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
    before = _attrs(objects.bedrock_converse(), modelId=arn)
    assert before["rastir.cost.unknown"] is True
    assert before["gen_ai.provider.name"] == "aws.bedrock"
    assert before["aws.bedrock.model_id"] == arn
    assert "rastir.model.vendor" not in before
    prices.set(arn, "aws.bedrock", input=3.0, output=15.0)
    after = _attrs(objects.bedrock_converse(), modelId=arn)
    assert after["rastir.cost.usd"] == pytest.approx((30 * 3.0 + 7 * 15.0) / 1e6)
    assert "rastir.cost.unknown" not in after


def test_a_bedrock_call_that_fails_still_names_the_provider_of_a_profile_arn() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"

    @rastir.llm
    def converse(**_: Any) -> Any:
        raise TimeoutError("read timed out")

    with capture_spans() as spans, pytest.raises(TimeoutError):
        converse(modelId=arn)
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == arn


# -- Gemini thinking, Cohere billed units ---------------------------------------------------------
def _genai_prices_total(provider: str, model: str, **usage: int) -> float:
    from genai_prices import Usage, calc_price

    return float(calc_price(Usage(**usage), model_ref=model, provider_id=provider).total_price)


def test_gemini_thinking_tokens_are_output_tokens_and_priced() -> None:
    from google.genai import types

    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finish_reason": "STOP"}
            ],
            "model_version": "gemini-2.5-flash",
            "usage_metadata": {
                "prompt_token_count": 1000,
                "candidates_token_count": 100,
                "thoughts_token_count": 900,
                "cached_content_token_count": 400,
                "total_token_count": 2000,
            },
        }
    )
    attrs = _attrs(response)
    assert attrs["gen_ai.usage.output_tokens"] == 1000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 900
    expected = _genai_prices_total(
        "google", "gemini-2.5-flash", input_tokens=1000, cache_read_tokens=400, output_tokens=1000
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_gemini_tool_use_prompt_tokens_are_input_tokens() -> None:
    from google.genai import types

    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}],
            "model_version": "gemini-2.5-flash",
            "usage_metadata": {
                "prompt_token_count": 100,
                "tool_use_prompt_token_count": 50,
                "candidates_token_count": 10,
            },
        }
    )
    attrs = _attrs(response)
    assert attrs["gen_ai.usage.input_tokens"] == 150
    assert attrs["gen_ai.usage.output_tokens"] == 10
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs


def test_cohere_is_priced_by_its_billed_units() -> None:
    attrs = _attrs(objects.cohere_response(), model="command-r-plus-08-2024")
    # billed_units: 15 in, 4 out; usage.tokens says 215 in (the prompt template too).
    assert attrs["gen_ai.usage.input_tokens"] == 15
    assert attrs["gen_ai.usage.output_tokens"] == 4
    expected = _genai_prices_total(
        "cohere", "command-r-plus-08-2024", input_tokens=15, output_tokens=4
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_cohere_without_billed_units_falls_back_to_its_token_counts() -> None:
    from cohere.v2.types import V2ChatResponse

    response = V2ChatResponse.model_validate(
        {
            "id": "co-2",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "Ciao"}]},
            "usage": {"tokens": {"input_tokens": 20, "output_tokens": 5}},
        }
    )
    attrs = _attrs(response, model="command-r-plus-08-2024")
    assert attrs["gen_ai.usage.input_tokens"] == 20
    assert attrs["gen_ai.usage.output_tokens"] == 5


# -- genai-prices' own reading of a response body, as the expected price ---------------------------
def _genai_prices_of(body: dict[str, Any], provider: str, flavor: str = "default") -> float:
    """What genai-prices' ``extract_usage`` + ``calc_price`` charge for a raw body."""
    from genai_prices import extract_usage

    return float(
        extract_usage(body, provider_id=provider, api_flavor=flavor).calc_price().total_price
    )


# -- Mistral: cached tokens in a plain-dict prompt_tokens_details ----------------------------------
MISTRAL_CACHED: dict[str, Any] = {
    "id": "mi-c",
    "object": "chat.completion",
    "created": 1,
    "model": "mistral-large-2512",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ],
    "usage": {
        "prompt_tokens": 100_000,
        "completion_tokens": 100,
        "total_tokens": 100_100,
        "prompt_tokens_details": {"cached_tokens": 90_000},
    },
}


def test_mistral_cached_tokens_are_read_from_its_dict_details_and_priced_as_cache_reads() -> None:
    from mistralai.client.models import ChatCompletionResponse

    response = ChatCompletionResponse.model_validate(MISTRAL_CACHED)
    # The SDK keeps it as an undeclared field, a plain dict.
    assert response.usage.model_extra == {"prompt_tokens_details": {"cached_tokens": 90_000}}
    attrs = _attrs(response)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 90_000
    expected = _genai_prices_of(MISTRAL_CACHED, "mistral")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    # 5x less than the same prompt uncached: the cache is not ignored.
    assert (
        expected
        < _genai_prices_total(
            "mistral", "mistral-large-2512", input_tokens=100_000, output_tokens=100
        )
        / 2
    )


def test_a_mistral_stream_prices_its_cached_tokens_too() -> None:
    from mistralai.client.models import CompletionEvent

    chunk = {
        "id": "mi-c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mistral-large-2512",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": MISTRAL_CACHED["usage"],
    }

    @rastir.llm
    def chat() -> Iterator[Any]:
        yield CompletionEvent.model_validate({"data": chunk})

    with capture_spans() as spans:
        list(chat())
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 90_000
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(MISTRAL_CACHED, "mistral"))


# -- Claude on Vertex AI / Azure with a price override -------------------------------------------
def _claude_message(model: str, **usage: Any) -> Any:
    from anthropic.types import Message

    return Message.model_validate(
        {
            "id": "msg_v",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


@pytest.mark.parametrize("host", ["gcp.vertex_ai", "azure.ai.inference"])
@pytest.mark.parametrize("override_provider", ["host", None])
def test_a_price_override_for_claude_on_a_cloud_keeps_anthropics_cache_counting(
    prices: Any, host: str, override_provider: str | None
) -> None:
    message = _claude_message(
        "claude-3-5-sonnet-v2@20241022",
        input_tokens=1500,
        output_tokens=900,
        cache_read_input_tokens=8000,
        cache_creation_input_tokens=2000,
    )
    prices.set(
        "claude-3-5-sonnet-v2",
        host if override_provider == "host" else None,
        input=2.0,
        output=10.0,
        cache_read=0.2,
        cache_write=2.5,
    )

    @rastir.llm(provider=host)
    def call() -> Any:
        return message

    with capture_spans() as spans:
        call()
    attrs = spans.one(kind="llm").attributes
    # input_tokens leaves the cache out, as Anthropic's own API does.
    expected = (1500 * 2.0 + 8000 * 0.2 + 2000 * 2.5 + 900 * 10.0) / 1e6
    assert "rastir.cost.unknown" not in attrs
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


# -- an override for a base model prices its dated snapshots ---------------------------------------
def test_an_override_for_the_base_model_prices_the_dated_snapshot_the_api_answers_with(
    prices: Any,
) -> None:
    # OpenAI answers model="gpt-4o" with "gpt-4o-2024-08-06".
    prices.set("gpt-4o", None, input=1.0, output=4.0)
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1000, "total_tokens": 1_001_000}
    attrs = _attrs(objects.openai_chat(usage=usage))
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["rastir.cost.usd"] == pytest.approx(1.0 + 0.004)


def test_an_override_for_the_exact_snapshot_beats_one_for_its_base_model(prices: Any) -> None:
    prices.set("gpt-4o", "openai", input=1.0, output=4.0)
    prices.set("gpt-4o-2024-08-06", None, input=2.0, output=8.0)
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000}
    assert _attrs(objects.openai_chat(usage=usage))["rastir.cost.usd"] == pytest.approx(2.0)


# -- Anthropic 1-hour cache writes ------------------------------------------------------------
ANTHROPIC_1H: dict[str, Any] = {
    "id": "msg_1h",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 100,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 6_000, "ephemeral_5m_input_tokens": 4_000},
    },
}


def test_anthropic_one_hour_cache_writes_are_priced_at_their_own_rate() -> None:
    from anthropic.types import Message

    attrs = _attrs(Message.model_validate(ANTHROPIC_1H))
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 10_000
    expected = _genai_prices_of(ANTHROPIC_1H, "anthropic")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    # More than all 10_000 writes at the 5-minute rate.
    five_minutes = _genai_prices_total(
        "anthropic",
        "claude-sonnet-4-20250514",
        input_tokens=10_100,
        cache_write_tokens=10_000,
        output_tokens=100,
    )
    assert expected > five_minutes


def test_a_streamed_anthropic_message_prices_its_one_hour_cache_writes() -> None:
    from anthropic import Anthropic
    from anthropic._streaming import Stream
    from anthropic.types import RawMessageStreamEvent

    events = objects.anthropic_events(cache_write=10_000)
    start = events[0]["message"]
    start["model"] = "claude-sonnet-4-20250514"
    start["usage"] = {
        "input_tokens": 100,
        "output_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 10_000, "ephemeral_5m_input_tokens": 0},
    }
    events[-2]["usage"] = {"output_tokens": 100, "cache_creation_input_tokens": 10_000}
    client = Anthropic(api_key="sk-ant-test-not-a-key", base_url="http://127.0.0.1:9")

    @rastir.llm
    def chat() -> Any:
        return Stream(
            cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]  # a union, as the SDK passes it
            response=objects.sse_response(events, named=True),
            client=client,
        )

    with capture_spans() as spans:
        list(chat())
    attrs = spans.one(kind="llm").attributes
    body = {**ANTHROPIC_1H, "usage": {**start["usage"], "output_tokens": 100}}
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(body, "anthropic"))


# -- Gemini audio input --------------------------------------------------------------------------
@pytest.mark.parametrize("cached_audio", [0, 40_000])
def test_gemini_audio_input_is_priced_at_the_audio_rate(cached_audio: int) -> None:
    from google.genai import types

    usage: dict[str, Any] = {
        "promptTokenCount": 100_000,
        "candidatesTokenCount": 100,
        "totalTokenCount": 100_100,
        "promptTokensDetails": [
            {"modality": "AUDIO", "tokenCount": 80_000},
            {"modality": "TEXT", "tokenCount": 20_000},
        ],
    }
    if cached_audio:
        usage["cachedContentTokenCount"] = cached_audio
        usage["cacheTokensDetails"] = [{"modality": "AUDIO", "tokenCount": cached_audio}]
    body = {
        "modelVersion": "gemini-2.5-flash",
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": usage,
    }
    attrs = _attrs(types.GenerateContentResponse.model_validate(body))
    expected = _genai_prices_of(body, "google")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    text_rate = _genai_prices_total(
        "google",
        "gemini-2.5-flash",
        input_tokens=100_000,
        cache_read_tokens=cached_audio,
        output_tokens=100,
    )
    assert expected > text_rate


def test_openai_audio_input_tokens_are_priced_at_the_audio_rate() -> None:
    from openai.types.chat import ChatCompletion

    body = {
        **objects.OPENAI_CHAT,
        "model": "gpt-audio",
        "usage": {
            "prompt_tokens": 10_000,
            "completion_tokens": 100,
            "total_tokens": 10_100,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 9_000},
        },
    }
    attrs = _attrs(ChatCompletion.model_validate(body))
    expected = _genai_prices_of(body, "openai", "chat")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    assert expected > _genai_prices_total(
        "openai", "gpt-audio", input_tokens=10_000, output_tokens=100
    )


# -- xAI reasoning tokens ------------------------------------------------------------------------
XAI_CHAT: dict[str, Any] = {
    **objects.OPENAI_CHAT,
    "model": "grok-3-mini",
    "usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "total_tokens": 2000,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 900},
    },
}


@pytest.mark.parametrize("provider", ["x_ai", "xai"])
def test_xai_reasoning_tokens_are_output_tokens_outside_its_completion_count(
    provider: str,
) -> None:
    from openai.types.chat import ChatCompletion

    @rastir.llm(provider=provider)
    def call() -> Any:
        return ChatCompletion.model_validate(XAI_CHAT)

    with capture_spans() as spans:
        call()
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.usage.output_tokens"] == 1000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 900
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(XAI_CHAT, "x-ai", "chat"))


def test_openai_reasoning_tokens_are_not_counted_twice() -> None:
    # OpenAI's completion_tokens already include the reasoning tokens.
    body = {**XAI_CHAT, "model": "o3-mini"}
    from openai.types.chat import ChatCompletion

    attrs = _attrs(ChatCompletion.model_validate(body))
    assert attrs["gen_ai.usage.output_tokens"] == 100
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(body, "openai", "chat"))


def test_a_streamed_xai_chat_adds_its_reasoning_tokens() -> None:
    from openai.types.chat import ChatCompletionChunk

    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "grok-3-mini"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": XAI_CHAT["usage"]},
    ]

    @rastir.llm(provider="x_ai")
    def chat() -> Iterator[Any]:
        for chunk in chunks:
            yield ChatCompletionChunk.model_validate(chunk)

    with capture_spans() as spans:
        list(chat())
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.usage.output_tokens"] == 1000
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(XAI_CHAT, "x-ai", "chat"))


# -- free models ----------------------------------------------------------------------------
def test_a_model_genai_prices_lists_as_free_costs_zero_not_unknown() -> None:
    response = objects.openai_chat(model="mistral-nemo:free")

    @rastir.llm(provider="mistral_ai")
    def call() -> Any:
        return response

    with capture_spans() as spans:
        call()
    attrs = spans.one(kind="llm").attributes
    assert "rastir.cost.unknown" not in attrs
    assert attrs["rastir.cost.usd"] == 0.0


# -- audio, image and video parts: input and output ------------------------------------------------
def _chat_body(model: str, prompt: dict[str, int], completion: dict[str, int], **usage: int) -> Any:
    return {
        **objects.OPENAI_CHAT,
        "model": model,
        "usage": {
            **usage,
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
            "prompt_tokens_details": prompt,
            "completion_tokens_details": completion,
        },
    }


def test_openai_audio_output_tokens_are_priced_at_the_audio_rate() -> None:
    from openai.types.chat import ChatCompletion

    body = _chat_body(
        "gpt-audio-2025-08-28",
        {"cached_tokens": 0, "audio_tokens": 900, "image_tokens": 0, "text_tokens": 100},
        {"audio_tokens": 4_500, "reasoning_tokens": 0, "text_tokens": 500},
        prompt_tokens=1_000,
        completion_tokens=5_000,
    )
    attrs = _attrs(ChatCompletion.model_validate(body))
    expected = _genai_prices_of(body, "openai", "chat")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)
    assert attrs["gen_ai.usage.output_tokens"] == 5_000
    # gpt-audio bills audio output at several times its text output price.
    text_rate = _genai_prices_total(
        "openai", "gpt-audio", input_tokens=1_000, input_audio_tokens=900, output_tokens=5_000
    )
    assert expected > 4 * text_rate


def test_openai_audio_the_uncached_prompt_cannot_hold_is_taken_as_cached() -> None:
    from openai.types.chat import ChatCompletion

    # 800 of the 1_000 prompt tokens came from the cache, and 900 are audio: at least
    # 700 of the audio was cached. Without that inference the parts exceed the
    # uncached prompt, and the cost is unknown.
    body = _chat_body(
        "gpt-audio",
        {"cached_tokens": 800, "audio_tokens": 900},
        {"audio_tokens": 0},
        prompt_tokens=1_000,
        completion_tokens=50,
    )
    attrs = _attrs(ChatCompletion.model_validate(body))
    assert "rastir.cost.unknown" not in attrs
    expected = rastir.get_pricing().price(
        "openai",
        "gpt-audio",
        TokenUsage(
            input_tokens=1_000,
            output_tokens=50,
            cache_read_tokens=800,
            input_audio_tokens=900,
            cache_audio_read_tokens=700,
        ),
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_a_streamed_openai_audio_reply_prices_its_audio_output() -> None:
    from openai.types.chat import ChatCompletionChunk

    body = _chat_body(
        "gpt-audio-mini",
        {"cached_tokens": 0, "audio_tokens": 300},
        {"audio_tokens": 2_000},
        prompt_tokens=400,
        completion_tokens=2_100,
    )
    base = {"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "gpt-audio-mini"}
    audio = {"id": "au_1", "data": "AAAA", "expires_at": 1, "transcript": "hi"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"audio": audio}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": body["usage"]},
    ]

    @rastir.llm
    def chat() -> Any:
        return objects.openai_stream(chunks)

    with capture_spans() as spans:
        for chunk in chat():
            assert isinstance(chunk, ChatCompletionChunk)
    attrs = spans.one(kind="llm").attributes
    expected = _genai_prices_of(body, "openai", "chat")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)


def test_a_text_model_with_zeroed_token_details_takes_the_plain_price() -> None:
    from openai.types.chat import ChatCompletion

    from rastir.adapters.openai import OpenAIAdapter

    body = _chat_body(
        "gpt-4o-2024-08-06",
        {"cached_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        {"audio_tokens": 0, "reasoning_tokens": 0},
        prompt_tokens=12,
        completion_tokens=34,
    )
    response = ChatCompletion.model_validate(body)
    # Nothing priced apart: the result carries no usage details, so @llm prices it
    # with price_counts, not price_parts.
    assert OpenAIAdapter().transform(response).usage_details is None
    attrs = _attrs(response)
    assert attrs["rastir.cost.usd"] == pytest.approx(
        _genai_prices_of(body, "openai", "chat"), rel=1e-9
    )


IMAGES: dict[str, Any] = {
    "created": 1,
    "data": [{"b64_json": "aGk="}],
    "usage": {
        "input_tokens": 1_000,
        "input_tokens_details": {"image_tokens": 800, "text_tokens": 200},
        "output_tokens": 6_000,
        "output_tokens_details": {"image_tokens": 5_800, "text_tokens": 200},
        "total_tokens": 7_000,
    },
}


@pytest.mark.parametrize("model", ["gpt-image-1.5", "gpt-image-1"])
def test_an_images_api_response_prices_its_image_tokens(model: str) -> None:
    from openai.types import ImagesResponse

    attrs = _attrs(ImagesResponse.model_validate(IMAGES), model=model)
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.provider.name"] == "openai"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (
        1_000,
        6_000,
    )
    # genai-prices' own reading of the Images API body (it needs the model named).
    expected = _genai_prices_of({**IMAGES, "model": model}, "openai", "images")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)
    text_rate = _genai_prices_total("openai", model, input_tokens=1_000, output_tokens=6_000)
    assert expected > text_rate


def test_a_streamed_image_generation_prices_its_image_input() -> None:
    from openai import OpenAI
    from openai._streaming import Stream
    from openai.types import ImageGenStreamEvent

    common = {
        "b64_json": "aGk=",
        "background": "auto",
        "created_at": 1,
        "output_format": "png",
        "quality": "high",
        "size": "1024x1024",
    }
    usage = {
        "input_tokens": 2_000,
        "input_tokens_details": {"image_tokens": 1_500, "text_tokens": 500},
        "output_tokens": 4_000,
        "total_tokens": 6_000,
    }
    events = [
        {**common, "type": "image_generation.partial_image", "partial_image_index": 0},
        {**common, "type": "image_generation.completed", "usage": usage},
    ]
    client = OpenAI(api_key="sk-test-not-a-key", base_url="http://127.0.0.1:9/v1")

    @rastir.llm
    def generate(model: str) -> Any:
        return Stream(
            cast_to=ImageGenStreamEvent,  # type: ignore[arg-type]  # a union, as the SDK passes it
            response=objects.sse_response(events),
            client=client,
        )

    with capture_spans() as spans:
        assert len(list(generate(model="gpt-image-1"))) == 2
    attrs = spans.one(kind="llm").attributes
    assert "rastir.ttft_ms" in attrs
    expected = _genai_prices_of({"model": "gpt-image-1", "usage": usage}, "openai", "images")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)


def _gemini_body(model: str, **usage: Any) -> dict[str, Any]:
    return {
        "modelVersion": model,
        "responseId": "r-1",
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": usage,
    }


@pytest.mark.parametrize("model", ["gemini-2.5-flash-image", "gemini-3-pro-image-preview"])
def test_gemini_image_output_is_priced_at_the_image_rate(model: str) -> None:
    from google.genai import types

    body = _gemini_body(
        model,
        promptTokenCount=300,
        candidatesTokenCount=1_310,
        thoughtsTokenCount=200,
        totalTokenCount=1_810,
        promptTokensDetails=[{"modality": "TEXT", "tokenCount": 300}],
        candidatesTokensDetails=[
            {"modality": "IMAGE", "tokenCount": 1_290},
            {"modality": "TEXT", "tokenCount": 20},
        ],
    )
    attrs = _attrs(types.GenerateContentResponse.model_validate(body))
    assert attrs["gen_ai.usage.output_tokens"] == 1_510
    expected = _genai_prices_of(body, "google")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)
    # Image output costs about ten times text output.
    text_rate = _genai_prices_total("google", model, input_tokens=300, output_tokens=1_510)
    assert expected > 5 * text_rate


def test_gemini_image_video_and_document_input_and_audio_output_are_priced_apart() -> None:
    from google.genai import types

    # A model with its own prices for audio, image and video input and audio output.
    body = _gemini_body(
        "gemini-live-2.5-flash",
        promptTokenCount=100_000,
        toolUsePromptTokenCount=5_000,
        candidatesTokenCount=20_000,
        totalTokenCount=125_000,
        promptTokensDetails=[
            {"modality": "TEXT", "tokenCount": 10_000},
            {"modality": "AUDIO", "tokenCount": 30_000},
            {"modality": "IMAGE", "tokenCount": 15_000},
            {"modality": "DOCUMENT", "tokenCount": 5_000},
            {"modality": "VIDEO", "tokenCount": 40_000},
        ],
        toolUsePromptTokensDetails=[
            {"modality": "TEXT", "tokenCount": 1_000},
            {"modality": "IMAGE", "tokenCount": 4_000},
        ],
        candidatesTokensDetails=[
            {"modality": "AUDIO", "tokenCount": 18_000},
            {"modality": "TEXT", "tokenCount": 2_000},
        ],
    )
    attrs = _attrs(types.GenerateContentResponse.model_validate(body))
    assert attrs["gen_ai.usage.input_tokens"] == 105_000
    expected = _genai_prices_of(body, "google")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)
    text_rate = _genai_prices_total(
        "google", "gemini-live-2.5-flash", input_tokens=105_000, output_tokens=20_000
    )
    assert expected > 3 * text_rate


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-live-2.5-flash"])
def test_gemini_cached_images_and_video_are_cache_reads_of_their_modality(model: str) -> None:
    from google.genai import types

    # gemini-2.5-flash: a cache-read price, none for images or video (cached ones are
    # cache reads). gemini-live-2.5-flash: image and video prices, no cache price
    # (cached ones cost what images and video cost).
    body = _gemini_body(
        model,
        promptTokenCount=100_000,
        cachedContentTokenCount=60_000,
        candidatesTokenCount=100,
        totalTokenCount=100_100,
        promptTokensDetails=[
            {"modality": "TEXT", "tokenCount": 20_000},
            {"modality": "IMAGE", "tokenCount": 50_000},
            {"modality": "VIDEO", "tokenCount": 30_000},
        ],
        cacheTokensDetails=[
            {"modality": "TEXT", "tokenCount": 10_000},
            {"modality": "IMAGE", "tokenCount": 30_000},
            {"modality": "VIDEO", "tokenCount": 20_000},
        ],
    )
    attrs = _attrs(types.GenerateContentResponse.model_validate(body))
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 60_000
    assert attrs["rastir.cost.usd"] == pytest.approx(_genai_prices_of(body, "google"), rel=1e-9)


def test_a_gemini_text_reply_reports_no_parts() -> None:
    from google.genai import types

    from rastir.adapters.gemini import GeminiAdapter

    body = _gemini_body(
        "gemini-2.5-flash",
        promptTokenCount=10,
        candidatesTokenCount=5,
        totalTokenCount=15,
        promptTokensDetails=[{"modality": "TEXT", "tokenCount": 10}],
        candidatesTokensDetails=[{"modality": "TEXT", "tokenCount": 5}],
    )
    response = types.GenerateContentResponse.model_validate(body)
    assert GeminiAdapter().transform(response).usage_details is None


def test_a_streamed_gemini_image_reply_prices_its_image_output() -> None:
    from google.genai import types

    model = "gemini-2.5-flash-image"
    final_usage = {
        "promptTokenCount": 300,
        "candidatesTokenCount": 1_300,
        "totalTokenCount": 1_600,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300}],
        "candidatesTokensDetails": [
            {"modality": "TEXT", "tokenCount": 10},
            {"modality": "IMAGE", "tokenCount": 1_290},
        ],
    }
    first = {
        "modelVersion": model,
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Here"}]}}],
        "usageMetadata": {
            "promptTokenCount": 300,
            "candidatesTokenCount": 10,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300}],
        },
    }
    last = {
        "modelVersion": model,
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": "aGk="}}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": final_usage,
    }

    @rastir.llm
    def chat() -> Iterator[Any]:
        for chunk in (first, last):
            yield types.GenerateContentResponse.model_validate(chunk)

    with capture_spans() as spans:
        list(chat())
    attrs = spans.one(kind="llm").attributes
    expected = _genai_prices_of(last, "google")
    assert attrs["rastir.cost.usd"] == pytest.approx(expected, rel=1e-9)


def test_gemini_output_parts_larger_than_the_output_count_leave_the_cost_unknown() -> None:
    from google.genai import types

    # A report that contradicts itself is not priced (as genai-prices refuses it).
    body = _gemini_body(
        "gemini-2.5-flash-image",
        promptTokenCount=10,
        candidatesTokenCount=5,
        totalTokenCount=15,
        candidatesTokensDetails=[{"modality": "IMAGE", "tokenCount": 1_290}],
    )
    attrs = _attrs(types.GenerateContentResponse.model_validate(body))
    assert attrs["rastir.cost.unknown"] is True
    with pytest.raises(ValueError, match="exceed"):
        _genai_prices_of(body, "google")
