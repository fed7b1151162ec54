"""Cost on ``@llm`` spans, end to end with ``rastir.pricing``: known models, each
provider's cache-token semantics, unknown models, overrides and profiles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rastir
from rastir.pricing import PricingProfile, get_pricing
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
