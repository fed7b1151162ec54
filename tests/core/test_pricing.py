"""Cost of LLM calls: genai-prices data, overrides, profiles and cache-token rules.

Expected prices are computed here from genai-prices itself (its ``calc_price`` and its
raw per-model data), never copied as numbers, so the tests follow the installed data.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot

import rastir
from rastir import pricing
from rastir.pricing import (
    BATCH,
    STANDARD,
    PricingProfile,
    PricingRegistry,
    TokenUsage,
    get_pricing,
    set_model_price,
    use_pricing_profile,
)
from tests._python import run_python


def _genai_total(
    gp_provider: str,
    model: str,
    *,
    input_total: int,
    output: int = 0,
    cache_read: int = 0,
    cache_write: int = 0,
    context: dict[str, str] | None = None,
) -> float:
    """genai-prices' own price; its ``input_tokens`` always includes the cache."""
    usage = genai_prices.Usage(
        input_tokens=input_total,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    calc = genai_prices.calc_price(usage, model, provider_id=gp_provider, price_context=context)
    return float(calc.total_price)


def _mtok(gp_provider: str, model: str, key: str) -> Decimal:
    """A raw per-million price from genai-prices' data."""
    _, info = get_snapshot().find_provider_model(model, None, gp_provider, None)
    from datetime import datetime, timezone

    value = getattr(info.get_prices(datetime.now(tz=timezone.utc)), key)
    assert isinstance(value, Decimal), f"{model} {key} is {value!r}"
    return value


def _close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


# -- TokenUsage -----------------------------------------------------------------------


def test_token_usage_is_a_slotted_dataclass_with_zero_defaults() -> None:
    usage = TokenUsage(input_tokens=5)
    assert dataclasses.is_dataclass(usage)
    assert not hasattr(usage, "__dict__")
    assert (usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (0, 0, 0)
    assert TokenUsage(1, 2, 3, 4) == TokenUsage(
        input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4
    )


# -- known models ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "gp_provider", "model"),
    [
        ("openai", "openai", "gpt-4o"),
        ("openai", "openai", "gpt-4o-mini-2024-07-18"),
        ("azure.ai.openai", "azure", "gpt-4o"),
        ("groq", "groq", "llama-3.3-70b-versatile"),
        ("gcp.gemini", "google", "gemini-2.5-flash"),
        ("mistral_ai", "mistral", "mistral-large-latest"),
        ("cohere", "cohere", "command-r-plus"),
        ("anthropic", "anthropic", "claude-3-5-sonnet-20241022"),
        ("aws.bedrock", "aws", "meta.llama3-70b-instruct-v1:0"),
    ],
)
def test_known_models_are_priced_as_genai_prices_prices_them(
    provider: str, gp_provider: str, model: str
) -> None:
    registry = PricingRegistry()
    cost = registry.price(provider, model, TokenUsage(input_tokens=1234, output_tokens=567))
    expected = _genai_total(gp_provider, model, input_total=1234, output=567)
    assert expected > 0
    assert _close(cost, expected), (cost, expected)


def test_price_is_the_per_million_data_times_the_tokens() -> None:
    registry = PricingRegistry()
    cost = registry.price("openai", "gpt-4o", TokenUsage(input_tokens=2_000, output_tokens=300))
    pin = _mtok("openai", "gpt-4o", "input_mtok")
    pout = _mtok("openai", "gpt-4o", "output_mtok")
    assert _close(cost, float((2_000 * pin + 300 * pout) / 1_000_000))


def test_provider_aliases_reach_the_same_price() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1000, output_tokens=1000)
    for group in (
        ("azure", "azure_openai", "azure.ai.openai", "AZURE"),
        ("aws.bedrock", "bedrock", "aws"),
        ("gcp.gemini", "gemini", "google", "gcp.vertex_ai"),
    ):
        model = {"azure": "gpt-4o", "aws.bedrock": "amazon.nova-pro-v1:0"}.get(
            group[0], "gemini-2.0-flash"
        )
        prices = {registry.price(name, model, usage) for name in group}
        assert len(prices) == 1, (group, prices)
        assert None not in prices, group


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "us.anthropic.claude-3-sonnet-20240229-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-3-sonnet-20240229-v1:0",
    ],
)
@pytest.mark.parametrize("provider", ["aws.bedrock", "anthropic", None])
def test_bedrock_ids_with_region_vendor_and_arn_prefixes_are_priced(
    model: str, provider: str | None
) -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1000, output_tokens=200)
    expected = _genai_total(
        "aws", "anthropic.claude-3-sonnet-20240229-v1:0", input_total=1000, output=200
    )
    assert _close(registry.price(provider, model, usage), expected)
    found = registry.model_price(provider, model)
    assert found is not None
    assert found.source.startswith("genai-prices:aws/")


def test_a_tiered_model_switches_tier_by_the_whole_prompt_like_genai_prices() -> None:
    registry = PricingRegistry()
    found = registry.model_price("gcp.gemini", "gemini-2.5-pro")
    assert found is not None
    assert found.tiered
    for total, cached in ((1_000, 100), (150_000, 60_000), (250_000, 1_000)):
        usage = TokenUsage(input_tokens=total, output_tokens=500, cache_read_tokens=cached)
        expected = _genai_total(
            "google", "gemini-2.5-pro", input_total=total, output=500, cache_read=cached
        )
        assert _close(registry.price("gcp.gemini", "gemini-2.5-pro", usage), expected)


# -- cache tokens ---------------------------------------------------------------------


def test_openai_cached_tokens_are_inside_prompt_tokens() -> None:
    # OpenAI: prompt_tokens=1000 of which prompt_tokens_details.cached_tokens=400.
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)
    pin = _mtok("openai", "gpt-4o", "input_mtok")
    pcr = _mtok("openai", "gpt-4o", "cache_read_mtok")
    pout = _mtok("openai", "gpt-4o", "output_mtok")
    assert pcr < pin
    expected = float((600 * pin + 400 * pcr + 100 * pout) / 1_000_000)
    assert _close(registry.price("openai", "gpt-4o", usage), expected)
    assert _close(
        registry.price("openai", "gpt-4o", usage),
        _genai_total("openai", "gpt-4o", input_total=1000, output=100, cache_read=400),
    )
    # Cached tokens are cheaper: the same prompt uncached costs more.
    uncached = registry.price("openai", "gpt-4o", TokenUsage(1000, 100))
    assert uncached is not None
    assert uncached > expected


def test_anthropic_cache_reads_and_writes_are_outside_input_tokens() -> None:
    # Anthropic: input_tokens=600 after the breakpoint, plus 400 read and 200 written.
    registry = PricingRegistry()
    model = "claude-3-5-sonnet-20241022"
    usage = TokenUsage(
        input_tokens=600, output_tokens=100, cache_read_tokens=400, cache_write_tokens=200
    )
    pin = _mtok("anthropic", model, "input_mtok")
    pout = _mtok("anthropic", model, "output_mtok")
    pcr = _mtok("anthropic", model, "cache_read_mtok")
    pcw = _mtok("anthropic", model, "cache_write_mtok")
    expected = float((600 * pin + 100 * pout + 400 * pcr + 200 * pcw) / 1_000_000)
    assert _close(registry.price("anthropic", model, usage), expected)
    assert _close(
        registry.price("anthropic", model, usage),
        _genai_total(
            "anthropic", model, input_total=1200, output=100, cache_read=400, cache_write=200
        ),
    )


def test_bedrock_converse_counts_like_anthropic() -> None:
    # Converse: inputTokens excludes cacheReadInputTokens and cacheWriteInputTokens.
    registry = PricingRegistry()
    model = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    usage = TokenUsage(input_tokens=50, output_tokens=10, cache_read_tokens=900)
    expected = _genai_total("aws", model, input_total=950, output=10, cache_read=900)
    assert _close(registry.price("aws.bedrock", model, usage), expected)


def test_claude_on_vertex_counts_like_anthropic() -> None:
    registry = PricingRegistry()
    found = registry.model_price("gcp.vertex_ai", "claude-3-5-sonnet@20240620")
    assert found is not None
    assert not found.cached_in_input
    usage = TokenUsage(input_tokens=10, output_tokens=10, cache_read_tokens=500)
    # Would raise "cache tokens exceed input_tokens" with OpenAI-style counting.
    assert registry.price("gcp.vertex_ai", "claude-3-5-sonnet@20240620", usage) is not None


def test_cached_in_input_overrides_the_providers_rule() -> None:
    # LangChain's usage_metadata folds Anthropic's cache counts into input_tokens.
    registry = PricingRegistry()
    model = "claude-3-5-sonnet-20241022"
    normalised = TokenUsage(input_tokens=1000, output_tokens=5, cache_read_tokens=400)
    native = TokenUsage(input_tokens=600, output_tokens=5, cache_read_tokens=400)
    as_normalised = registry.price("anthropic", model, normalised, cached_in_input=True)
    assert as_normalised == registry.price("anthropic", model, native)
    assert registry.price("anthropic", model, normalised) != as_normalised


def test_cache_counts_larger_than_an_inclusive_prompt_are_refused() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=100, cache_read_tokens=400)
    with pytest.raises(ValueError, match="exceed input_tokens"):
        registry.price("openai", "gpt-4o", usage)


def test_a_missing_cache_price_bills_cached_tokens_as_input() -> None:
    registry = PricingRegistry()
    found = registry.model_price("groq", "llama-3.3-70b-versatile")
    assert found is not None
    assert found.cache_read == found.input
    with_cache = registry.price(
        "groq", "llama-3.3-70b-versatile", TokenUsage(1000, 10, cache_read_tokens=300)
    )
    assert with_cache == registry.price("groq", "llama-3.3-70b-versatile", TokenUsage(1000, 10))


# -- unknown models -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-nonexistent-9000"),
        (None, "my-private-model"),
        ("some-new-cloud", "my-private-model"),
        ("unknown", "x"),
        ("openai", ""),
    ],
)
def test_an_unknown_model_is_none_never_zero(provider: str | None, model: str) -> None:
    registry = PricingRegistry()
    assert registry.price(provider, model, TokenUsage(1000, 1000)) is None
    assert registry.price(provider, model, TokenUsage(1000, 1000)) is None  # cached miss
    assert registry.model_price(provider, model) is None


def test_without_genai_prices_overrides_still_price_and_the_rest_is_unknown() -> None:
    registry = PricingRegistry(use_genai_prices=False)
    assert not registry.has_price_data
    assert registry.price("openai", "gpt-4o", TokenUsage(10, 10)) is None
    registry.set_model_price("gpt-4o", input=1.0, output=2.0)
    assert registry.price("openai", "gpt-4o", TokenUsage(1_000_000, 1_000_000)) == 3.0


def _run(code: str) -> str:
    return run_python(code).stdout.strip()


def test_without_the_pricing_extra_installed_pricing_degrades_to_overrides() -> None:
    out = _run(
        """
        import sys
        sys.modules["genai_prices"] = None  # what import sees when it is not installed
        import rastir
        from rastir.pricing import TokenUsage
        registry = rastir.get_pricing()
        unknown = registry.price("openai", "gpt-4o", TokenUsage(10, 10))
        rastir.set_model_price("gpt-4o", input=2.0, output=4.0)
        known = registry.price("openai", "gpt-4o", TokenUsage(500_000, 250_000))
        print(registry.has_price_data, unknown, known)
        """
    )
    assert out == "False None 2.0"


def test_pricing_never_touches_the_network_nor_starts_a_thread() -> None:
    out = _run(
        """
        import sys, threading
        seen = []
        def hook(event, args):
            if event.startswith(("socket.", "urllib.", "http.client.")):
                seen.append(event)
        sys.addaudithook(hook)
        from rastir.pricing import BATCH, PricingRegistry, TokenUsage
        registry = PricingRegistry()
        for provider, model in [
            ("openai", "gpt-4o"),
            ("anthropic", "claude-3-5-sonnet"),
            ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
            ("gcp.gemini", "gemini-2.5-pro"),
            (None, "not-a-model"),
        ]:
            registry.price(provider, model, TokenUsage(10, 10))
        registry.use_profile(BATCH)
        registry.price("openai", "gpt-4o", TokenUsage(10, 10))
        print(seen, threading.active_count())
        """
    )
    assert out == "[] 1"


def test_import_rastir_does_not_import_genai_prices() -> None:
    out = _run(
        """
        import sys
        import rastir
        before = "genai_prices" in sys.modules
        rastir.get_pricing()
        after_registry = "genai_prices" in sys.modules
        rastir.get_pricing().price("openai", "gpt-4o", rastir.TokenUsage(1, 1))
        print(before, after_registry, "genai_prices" in sys.modules)
        """
    )
    assert out == "False False True"


# -- overrides ------------------------------------------------------------------------


def test_an_override_prices_a_model_genai_prices_does_not_know() -> None:
    registry = PricingRegistry()
    registry.set_model_price("acme-ft-7b", input=0.5, output=1.5, cache_read=0.1)
    usage = TokenUsage(input_tokens=2_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000)
    # OpenAI-style counting for an unnamed provider: 1M uncached + 1M cached.
    assert registry.price(None, "acme-ft-7b", usage) == pytest.approx(0.5 + 1.5 + 0.1)


def test_an_override_wins_over_genai_prices_and_removing_it_restores_the_data() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    listed = registry.price("openai", "gpt-4o", usage)
    registry.set_model_price("GPT-4o", input=1.0, output=1.0)
    assert registry.price("openai", "gpt-4o", usage) == 2.0
    found = registry.model_price("openai", "gpt-4o")
    assert found is not None
    assert found.source.startswith("override:")
    assert registry.remove_model_price("gpt-4o")
    assert not registry.remove_model_price("gpt-4o")
    assert registry.price("openai", "gpt-4o", usage) == listed


def test_an_override_for_one_provider_leaves_the_others_alone() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1_000_000)
    registry.set_model_price("gpt-4o", input=9.0, output=9.0, provider="azure")
    assert registry.price("azure.ai.openai", "gpt-4o", usage) == 9.0
    assert registry.price("openai", "gpt-4o", usage) == _genai_total(
        "openai", "gpt-4o", input_total=1_000_000
    )


def test_an_override_of_a_bare_model_applies_to_its_bedrock_id() -> None:
    registry = PricingRegistry()
    registry.set_model_price("claude-3-haiku-20240307", input=1.0, output=1.0)
    cost = registry.price(
        "aws.bedrock",
        "eu.anthropic.claude-3-haiku-20240307-v1:0",
        TokenUsage(input_tokens=1_000_000, cache_write_tokens=1_000_000),
    )
    # cache_write defaults to the input price, and Bedrock counts it outside the input.
    assert cost == 2.0


def test_the_module_level_helpers_change_the_process_registry() -> None:
    assert get_pricing() is get_pricing()
    assert rastir.get_pricing is get_pricing
    try:
        set_model_price("house-model", input=3.0, output=0.0)
        assert get_pricing().price(None, "house-model", TokenUsage(1_000_000)) == 3.0
        use_pricing_profile(PricingProfile("half", multiplier=0.5))
        assert get_pricing().price(None, "house-model", TokenUsage(1_000_000)) == 1.5
    finally:
        use_pricing_profile(None)
        get_pricing().remove_model_price("house-model")
    assert get_pricing().price(None, "house-model", TokenUsage(1_000_000)) is None


# -- profiles -------------------------------------------------------------------------


def test_a_discount_profile_scales_every_price() -> None:
    listed = PricingRegistry()
    contract = PricingRegistry(profile=PricingProfile("acme", multiplier=0.8))
    usage = TokenUsage(1000, 2000, cache_read_tokens=100)
    listed_cost = listed.price("openai", "gpt-4o", usage)
    assert listed_cost is not None
    assert contract.price("openai", "gpt-4o", usage) == pytest.approx(listed_cost * 0.8)
    contract.set_model_price("mine", input=10.0, output=10.0)
    assert contract.price(None, "mine", TokenUsage(1_000_000)) == pytest.approx(8.0)


def test_a_profile_for_one_provider_applies_to_that_provider_only() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(1000, 1000)
    openai_listed = registry.price("openai", "gpt-4o", usage)
    azure_listed = registry.price("azure", "gpt-4o", usage)
    assert openai_listed is not None
    assert azure_listed is not None
    registry.use_profile(PricingProfile("azure-deal", multiplier=0.5), provider="azure.ai.openai")
    assert registry.profile("azure").name == "azure-deal"
    assert registry.profile("openai") is STANDARD
    assert registry.price("azure", "gpt-4o", usage) == pytest.approx(azure_listed * 0.5)
    assert registry.price("openai", "gpt-4o", usage) == openai_listed
    registry.use_profile(None, provider="azure")
    assert registry.price("azure", "gpt-4o", usage) == azure_listed


def test_the_batch_profile_uses_genai_prices_batch_variant() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=10_000, output_tokens=5_000)
    standard = registry.price("openai", "gpt-4o", usage)
    registry.use_profile(BATCH)
    batch = registry.price("openai", "gpt-4o", usage)
    expected = _genai_total(
        "openai",
        "gpt-4o",
        input_total=10_000,
        output=5_000,
        context={"processing": "batch"},
    )
    assert standard is not None
    assert batch is not None
    assert _close(batch, expected)
    assert batch < standard
    registry.use_profile(None)
    assert registry.price("openai", "gpt-4o", usage) == standard


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cache_read_tokens"])
def test_negative_token_counts_are_refused(field: str) -> None:
    usage = TokenUsage(**{field: -1})
    with pytest.raises(ValueError, match=rf"TokenUsage\.{field} must be >= 0"):
        PricingRegistry().price("openai", "gpt-4o", usage)


@pytest.mark.parametrize("value", [1.5, "10", None, True, Decimal(3)])
def test_token_counts_of_the_wrong_type_are_refused(value: Any) -> None:
    usage = TokenUsage(output_tokens=value)
    with pytest.raises(TypeError, match=r"TokenUsage\.output_tokens must be an int"):
        PricingRegistry().price("openai", "gpt-4o", usage)


def test_a_negative_count_is_refused_for_an_unknown_model_too() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        PricingRegistry().price(None, "nope", TokenUsage(cache_write_tokens=-5))


@pytest.mark.parametrize(
    ("provider", "model", "usage", "message"),
    [
        ("openai", "gpt-4o", {"input_tokens": 1}, "usage must be a rastir.pricing.TokenUsage"),
        ("openai", ["gpt-4o"], TokenUsage(), "model must be a str"),
        ("openai", None, TokenUsage(), "model must be a str"),
        (42, "gpt-4o", TokenUsage(), "provider must be a str or None"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused(
    provider: Any, model: Any, usage: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        PricingRegistry().price(provider, model, usage)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input": -1.0, "output": 1.0}, ValueError, "input must be a finite number >= 0"),
        ({"input": 1.0, "output": math.nan}, ValueError, "output must be a finite number"),
        ({"input": 1.0, "output": 1.0, "cache_read": math.inf}, ValueError, "cache_read"),
        ({"input": "1", "output": 1.0}, TypeError, "input must be a number"),
        ({"input": True, "output": 1.0}, TypeError, "input must be a number"),
        ({"input": 1.0, "output": 1.0, "provider": 3}, TypeError, "provider must be a str"),
    ],
)
def test_bad_override_prices_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    registry = PricingRegistry()
    with pytest.raises(error, match=message):
        registry.set_model_price("m", **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        registry.set_model_price("  ", input=1.0, output=1.0)
    assert registry.price(None, "m", TokenUsage(1)) is None


def test_bad_profiles_are_refused() -> None:
    with pytest.raises(ValueError, match="multiplier must be a finite number >= 0"):
        PricingProfile("x", multiplier=-0.1)
    with pytest.raises(ValueError, match="non-empty"):
        PricingProfile("")
    with pytest.raises(TypeError, match="price_context must map str to str"):
        PricingProfile("x", price_context={"processing": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="profile must be a PricingProfile"):
        PricingRegistry().use_profile("batch")  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="immutable"):
        BATCH.multiplier = 0.0
    assert PricingProfile("batch", price_context={"processing": "batch"}) == BATCH


# -- concurrency and bounds -----------------------------------------------------------


def test_concurrent_pricing_while_overrides_change_sees_only_valid_prices() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1_000_000)
    listed = registry.price("openai", "gpt-4o", usage)
    allowed = {listed, 7.0}
    seen: set[float | None] = set()
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def reader() -> None:
        start.wait()
        try:
            for _ in range(5_000):
                seen.add(registry.price("openai", "gpt-4o", usage))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer() -> None:
        start.wait()
        for _ in range(300):
            registry.set_model_price("gpt-4o", input=7.0, output=7.0)
            registry.remove_model_price("gpt-4o")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert seen <= allowed
    assert listed in seen
    assert registry.price("openai", "gpt-4o", usage) == listed


def test_the_resolved_price_cache_is_bounded() -> None:
    registry = PricingRegistry(use_genai_prices=False)
    for n in range(pricing._MAX_RECORDS + 50):
        registry.price(None, f"generated-{n}", TokenUsage())
    assert len(registry._records) <= pricing._MAX_RECORDS


def test_prices_that_change_with_the_time_of_day_expire_at_the_next_edge() -> None:
    # DeepSeek lists off-peak prices by UTC time of day: the resolved record must
    # be rebuilt at the window's edge, not kept forever.
    import time as _time

    registry = PricingRegistry()
    assert registry.model_price("deepseek", "deepseek-chat") is not None
    expires = registry._records[("deepseek", "deepseek-chat")][7]
    assert _time.time() < expires <= _time.time() + 86_400
    assert registry.model_price("openai", "gpt-4o") is not None
    assert registry._records[("openai", "gpt-4o")][7] == 0.0


# -- free models ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"), [("mistral_ai", "mistral-nemo:free"), ("openai", "moderation")]
)
def test_a_model_listed_free_costs_zero_like_genai_prices(provider: str, model: str) -> None:
    registry = PricingRegistry()
    gp_provider = {"mistral_ai": "mistral"}.get(provider, provider)
    assert _genai_total(gp_provider, model, input_total=1000, output=200) == 0
    assert registry.price(provider, model, TokenUsage(1000, 200)) == 0.0
    found = registry.model_price(provider, model)
    assert found is not None
    assert "free" in found.source


@pytest.mark.parametrize(("provider", "model"), [("openai", "whisper-1"), ("openai", "tts-1")])
def test_a_model_priced_in_other_units_than_tokens_stays_unknown(provider: str, model: str) -> None:
    assert PricingRegistry().price(provider, model, TokenUsage(1000, 200)) is None


# -- one cache rule for list prices and overrides ----------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022"),
        ("azure.ai.inference", "claude-3-5-sonnet-20241022"),
        (None, "claude-3-5-sonnet-20241022"),
        ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        (None, "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("openai", "gpt-4o"),
        ("gcp.vertex_ai", "gemini-2.5-flash"),
    ],
)
@pytest.mark.parametrize("override_provider", ["same", None])
def test_an_override_never_changes_how_the_cache_counts_are_read(
    provider: str | None, model: str, override_provider: str | None
) -> None:
    registry = PricingRegistry()
    listed = registry.model_price(provider, model)
    assert listed is not None
    registry.set_model_price(
        model, input=1.0, output=2.0, provider=provider if override_provider else None
    )
    overridden = registry.model_price(provider, model)
    assert overridden is not None
    assert overridden.source.startswith("override:")
    assert overridden.cached_in_input == listed.cached_in_input


# -- overrides and the model genai-prices resolves a name to -------------------------------


def test_an_override_for_a_base_model_prices_its_dated_snapshot() -> None:
    registry = PricingRegistry()
    registry.set_model_price("gpt-4o", input=1.0, output=4.0)
    assert _close(registry.price("openai", "gpt-4o-2024-08-06", TokenUsage(1_000_000)), 1.0)
    found = registry.model_price("openai", "gpt-4o-2024-08-06")
    assert found is not None
    assert found.source.startswith("override:*/gpt-4o")


def test_override_precedence_exact_name_then_provider_then_the_model_id() -> None:
    registry = PricingRegistry()
    dated = "gpt-4o-2024-08-06"
    usage = TokenUsage(1_000_000)
    registry.set_model_price("GPT-4o", input=1.0, output=1.0)
    assert _close(registry.price("openai", dated, usage), 1.0)
    # One restricted to the caller's provider beats one for any provider.
    registry.set_model_price("gpt-4o", input=2.0, output=1.0, provider="openai")
    assert _close(registry.price("openai", dated, usage), 2.0)
    assert _close(registry.price("azure", dated, usage), 1.0)
    # An override for the snapshot itself, even for any provider, beats them all.
    registry.set_model_price(dated, input=3.0, output=1.0)
    assert _close(registry.price("openai", dated, usage), 3.0)
    registry.remove_model_price(dated)
    registry.remove_model_price("gpt-4o", provider="openai")
    registry.remove_model_price("gpt-4o")
    listed = registry.price("openai", dated, usage)
    assert _close(listed, float(_mtok("openai", dated, "input_mtok")))


def test_an_override_for_another_model_does_not_leak_to_a_sibling() -> None:
    registry = PricingRegistry()
    registry.set_model_price("gpt-4o-mini", input=0.01, output=0.01)
    found = registry.model_price("openai", "gpt-4o-2024-08-06")
    assert found is not None
    assert found.source.startswith("genai-prices:")


def test_without_genai_prices_an_override_matches_only_its_own_names() -> None:
    registry = PricingRegistry(use_genai_prices=False)
    registry.set_model_price("gpt-4o", input=1.0, output=4.0)
    assert registry.price("openai", "gpt-4o-2024-08-06", TokenUsage(10)) is None
    assert registry.price("openai", "gpt-4o", TokenUsage(10)) is not None


# -- parts priced apart: 1-hour cache writes, audio ------------------------------------------------


def test_token_usage_parts_default_to_zero() -> None:
    usage = TokenUsage(1, 2, 3, 4)
    assert (usage.cache_write_1h_tokens, usage.input_audio_tokens) == (0, 0)
    assert usage.cache_audio_read_tokens == 0


@pytest.mark.parametrize("total_prompt", [50_000, 250_000])
def test_one_hour_cache_writes_are_priced_like_genai_prices_tiers_included(
    total_prompt: int,
) -> None:
    # claude-sonnet-4-5: a dearer 1-hour write price, and a higher tier past 200k.
    model = "claude-sonnet-4-5"
    writes, hour = 40_000, 30_000
    usage = TokenUsage(
        input_tokens=total_prompt - writes,
        output_tokens=500,
        cache_write_tokens=writes,
        cache_write_1h_tokens=hour,
    )
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=total_prompt,
            output_tokens=500,
            cache_write_tokens=writes,
            cache_write_1h_tokens=hour,
        ),
        model,
        provider_id="anthropic",
    )
    cost = PricingRegistry().price("anthropic", model, usage)
    assert _close(cost, float(calc.total_price)), (cost, calc.total_price)
    five_minutes = PricingRegistry().price(
        "anthropic", model, dataclasses.replace(usage, cache_write_1h_tokens=0)
    )
    assert cost is not None
    assert five_minutes is not None
    assert cost > five_minutes


def test_audio_input_and_cached_audio_are_priced_like_genai_prices() -> None:
    usage = TokenUsage(
        input_tokens=100_000,
        output_tokens=10,
        cache_read_tokens=30_000,
        input_audio_tokens=60_000,
        cache_audio_read_tokens=20_000,
    )
    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=100_000,
            output_tokens=10,
            cache_read_tokens=30_000,
            input_audio_tokens=60_000,
            cache_audio_read_tokens=20_000,
        ),
        "gemini-2.5-flash",
        provider_id="google",
    )
    assert _close(
        PricingRegistry().price("gcp.gemini", "gemini-2.5-flash", usage),
        float(expected.total_price),
    )


def test_a_part_without_a_price_of_its_own_costs_what_its_count_costs() -> None:
    registry = PricingRegistry()
    # gpt-4o lists no audio or 1-hour write price.
    plain = registry.price("openai", "gpt-4o", TokenUsage(10_000, 10))
    parts = TokenUsage(10_000, 10, input_audio_tokens=9_000)
    assert registry.price("openai", "gpt-4o", parts) == pytest.approx(plain)


def test_override_prices_for_the_parts_default_to_their_counts_prices() -> None:
    registry = PricingRegistry()
    registry.set_model_price("acme", input=1.0, output=1.0, cache_write=2.0, cache_read=0.5)
    found = registry.model_price(None, "acme")
    assert found is not None
    assert (found.cache_write_1h, found.input_audio, found.cache_audio_read) == (2.0, 1.0, 0.5)
    registry.set_model_price("acme", input=1.0, output=1.0, cache_write_1h=4.0, input_audio=8.0)
    usage = TokenUsage(
        input_tokens=1_000_000,
        cache_write_tokens=400_000,
        cache_write_1h_tokens=100_000,
        input_audio_tokens=500_000,
    )
    # 100k uncached text + 500k audio + 300k 5-minute writes + 100k 1-hour writes.
    expected = (100_000 * 1.0 + 500_000 * 8.0 + 300_000 * 1.0 + 100_000 * 4.0) / 1e6
    assert _close(registry.price(None, "acme", usage), expected)


@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(100, cache_write_tokens=10, cache_write_1h_tokens=11),
        TokenUsage(100, cache_read_tokens=10, input_audio_tokens=50, cache_audio_read_tokens=11),
        TokenUsage(100, input_audio_tokens=10, cache_audio_read_tokens=11),
        TokenUsage(100, cache_read_tokens=50, input_audio_tokens=60),
    ],
)
def test_a_part_larger_than_its_count_is_refused(usage: TokenUsage) -> None:
    with pytest.raises(ValueError, match="exceed"):
        PricingRegistry().price("openai", "gpt-4o", usage)


_PART_FIELDS = [f.name for f in dataclasses.fields(TokenUsage)][4:]


def test_the_parts_are_every_field_after_the_four_counts() -> None:
    parts = [f"{part}_tokens" for part in pricing._PARTS]
    assert parts == _PART_FIELDS
    assert len(parts) == 10


@pytest.mark.parametrize("field", _PART_FIELDS)
def test_parts_of_the_wrong_type_or_sign_are_refused(field: str) -> None:
    registry = PricingRegistry()
    for wrong in (1.5, 0.0, None, True, "1"):
        with pytest.raises(TypeError, match=field):
            registry.price("openai", "gpt-4o", TokenUsage(100, **{field: wrong}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        registry.price("openai", "gpt-4o", TokenUsage(100, **{field: -1}))


def test_price_parts_prices_like_price_with_the_same_parts() -> None:
    registry = PricingRegistry()
    usage = TokenUsage(
        input_tokens=100, output_tokens=10, cache_write_tokens=5000, cache_write_1h_tokens=3000
    )
    by_usage = registry.price("anthropic", "claude-sonnet-4-20250514", usage)
    by_counts = registry.price_parts(
        "anthropic", "claude-sonnet-4-20250514", 100, 10, 0, 5000, None, 3000, 0, 0
    )
    assert by_usage is not None
    assert by_usage == by_counts
    assert registry.price_parts("openai", "gpt-99-preview", 10, 1, 0, 0, None, 0, 5, 0) is None


# -- parts priced apart: audio, image and video, in and out -------------------------------------


def _gp_calc(
    gp_provider: str, model: str, counts: dict[str, int], context: dict[str, str] | None = None
) -> float:
    """genai-prices' ``calc_price`` of counts given with its own field names (its
    ``input_tokens`` always includes the cache)."""
    calc = genai_prices.calc_price(
        genai_prices.Usage(**counts), model, provider_id=gp_provider, price_context=context
    )
    return float(calc.total_price)


def test_audio_output_is_priced_at_the_audio_rate_like_genai_prices() -> None:
    # gpt-audio: audio in and out at several times the text prices.
    counts = {
        "input_tokens": 10_000,
        "output_tokens": 5_000,
        "input_audio_tokens": 9_000,
        "output_audio_tokens": 4_000,
    }
    cost = PricingRegistry().price("openai", "gpt-audio", TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("openai", "gpt-audio", counts), rel=1e-9)
    text = _gp_calc("openai", "gpt-audio", {"input_tokens": 10_000, "output_tokens": 5_000})
    assert cost is not None
    assert cost > 3 * text


@pytest.mark.parametrize(
    "model",
    ["gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"],
)
def test_image_output_is_priced_at_the_image_rate_like_genai_prices(model: str) -> None:
    counts = {"input_tokens": 300, "output_tokens": 1_310, "output_image_tokens": 1_290}
    cost = PricingRegistry().price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)
    text = _gp_calc("google", model, {"input_tokens": 300, "output_tokens": 1_310})
    assert cost is not None
    assert cost > 5 * text


def test_image_input_and_cached_images_are_priced_like_genai_prices() -> None:
    # gpt-image-1: image input at 2x text input, cached images at their own price.
    counts = {
        "input_tokens": 10_000,
        "output_tokens": 4_000,
        "cache_read_tokens": 4_000,
        "input_image_tokens": 8_000,
        "cache_image_read_tokens": 3_000,
    }
    cost = PricingRegistry().price("openai", "gpt-image-1", TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("openai", "gpt-image-1", counts), rel=1e-9)


def test_every_modality_in_and_out_at_once_is_priced_like_genai_prices() -> None:
    # gemini-live-2.5-flash lists audio, image and video input and audio output.
    counts = {
        "input_tokens": 100_000,
        "output_tokens": 20_000,
        "input_audio_tokens": 30_000,
        "input_image_tokens": 20_000,
        "input_video_tokens": 40_000,
        "output_audio_tokens": 15_000,
    }
    model = "gemini-live-2.5-flash"
    cost = PricingRegistry().price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)


def test_video_output_is_priced_at_the_video_rate_like_genai_prices() -> None:
    counts = {"input_tokens": 1_000, "output_tokens": 50_000, "output_video_tokens": 49_000}
    model = "gemini-omni-flash-preview"
    cost = PricingRegistry().price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)


def test_cached_media_without_any_cache_price_cost_what_the_media_costs() -> None:
    # gemini-live-2.5-flash lists no cache-read price: the cache gives no discount, and
    # genai-prices bills cached images and audio as images and audio.
    counts = {
        "input_tokens": 50_000,
        "output_tokens": 10,
        "cache_read_tokens": 30_000,
        "input_image_tokens": 20_000,
        "cache_image_read_tokens": 15_000,
        "input_audio_tokens": 20_000,
        "cache_audio_read_tokens": 10_000,
    }
    model = "gemini-live-2.5-flash"
    cost = PricingRegistry().price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)
    found = PricingRegistry().model_price("gcp.gemini", model)
    assert found is not None
    assert found.cache_image_read == found.input_image
    assert found.cache_audio_read == found.input_audio


def test_cached_media_without_a_price_of_their_own_get_the_cache_discount() -> None:
    # gemini-2.5-flash lists a cache-read price but none for images: cached images are
    # cache reads, uncached ones input, as genai-prices folds unpriced parts.
    counts = {
        "input_tokens": 50_000,
        "output_tokens": 10,
        "cache_read_tokens": 30_000,
        "input_image_tokens": 20_000,
        "cache_image_read_tokens": 15_000,
        "cache_video_read_tokens": 5_000,
        "input_video_tokens": 5_000,
    }
    model = "gemini-2.5-flash"
    registry = PricingRegistry()
    cost = registry.price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)
    plain = registry.price("gcp.gemini", model, TokenUsage(50_000, 10, 30_000))
    assert cost == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("total_prompt", [100_000, 250_000])
def test_unpriced_parts_follow_their_counts_tiers(total_prompt: int) -> None:
    # gemini-2.5-pro: tiered input, output and cache prices, none for images.
    counts = {
        "input_tokens": total_prompt,
        "output_tokens": 3_000,
        "cache_read_tokens": 40_000,
        "input_image_tokens": 60_000,
        "cache_image_read_tokens": 20_000,
        "output_image_tokens": 2_000,
    }
    model = "gemini-2.5-pro"
    registry = PricingRegistry()
    cost = registry.price("gcp.gemini", model, TokenUsage(**counts))
    assert cost == pytest.approx(_gp_calc("google", model, counts), rel=1e-9)
    plain = registry.price("gcp.gemini", model, TokenUsage(total_prompt, 3_000, 40_000))
    assert cost == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("profile", [STANDARD, BATCH])
def test_image_parts_follow_the_profiles_price_variant(profile: PricingProfile) -> None:
    # gpt-image-1.5's batch variant halves its image prices too.
    counts = {
        "input_tokens": 5_000,
        "output_tokens": 6_000,
        "cache_read_tokens": 1_000,
        "input_image_tokens": 4_000,
        "cache_image_read_tokens": 500,
        "output_image_tokens": 5_500,
    }
    context = dict(profile.price_context) or None
    cost = PricingRegistry(profile=profile).price("openai", "gpt-image-1.5", TokenUsage(**counts))
    expected = _gp_calc("openai", "gpt-image-1.5", counts, context)
    assert cost == pytest.approx(expected, rel=1e-9)


def test_model_price_reports_the_media_prices_of_the_data() -> None:
    found = PricingRegistry().model_price("openai", "gpt-image-1.5")
    assert found is not None
    for part in ("input_image", "cache_image_read", "output_image"):
        assert getattr(found, part) == float(_mtok("openai", "gpt-image-1.5", f"{part}_mtok"))
    # Unlisted: audio as input and output, video likewise.
    assert (found.input_audio, found.output_audio) == (found.input, found.output)
    assert (found.input_video, found.output_video) == (found.input, found.output)
    assert found.cache_audio_read == found.cache_read
    assert "output_image=" in repr(found)


@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(100, 10, output_audio_tokens=11),
        TokenUsage(100, 10, output_audio_tokens=6, output_image_tokens=5),
        TokenUsage(100, 10, output_video_tokens=11),
        TokenUsage(100, input_image_tokens=10, cache_image_read_tokens=11),
        TokenUsage(100, cache_read_tokens=10, input_image_tokens=20, cache_image_read_tokens=11),
        TokenUsage(
            100,
            cache_read_tokens=10,
            input_audio_tokens=20,
            cache_audio_read_tokens=6,
            input_video_tokens=20,
            cache_video_read_tokens=5,
        ),
        TokenUsage(100, cache_read_tokens=50, input_image_tokens=30, input_video_tokens=30),
        TokenUsage(100, input_video_tokens=101),
    ],
)
def test_media_parts_larger_than_their_counts_are_refused(usage: TokenUsage) -> None:
    with pytest.raises(ValueError, match="exceed"):
        PricingRegistry().price("gcp.gemini", "gemini-2.5-flash", usage)


def test_override_prices_for_the_media_parts_and_their_defaults() -> None:
    registry = PricingRegistry()
    registry.set_model_price("acme-media", input=1.0, output=2.0, cache_read=0.5)
    found = registry.model_price(None, "acme-media")
    assert found is not None
    # Unset: input parts at the input price, output parts at the output price, cached
    # parts at the cache-read price.
    assert (found.input_image, found.input_video, found.input_audio) == (1.0, 1.0, 1.0)
    assert (found.output_image, found.output_video, found.output_audio) == (2.0, 2.0, 2.0)
    assert (found.cache_image_read, found.cache_video_read) == (0.5, 0.5)
    registry.set_model_price(
        "acme-media",
        input=1.0,
        output=2.0,
        input_image=3.0,
        output_audio=8.0,
        output_image=16.0,
        input_video=4.0,
        cache_video_read=0.25,
    )
    found = registry.model_price(None, "acme-media")
    assert found is not None
    # No cache-read price at all: cached images cost what images cost.
    assert found.cache_image_read == 3.0
    usage = TokenUsage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=300_000,
        input_image_tokens=400_000,
        cache_image_read_tokens=100_000,
        input_video_tokens=300_000,
        cache_video_read_tokens=200_000,
        output_audio_tokens=100_000,
        output_image_tokens=500_000,
    )
    # 1m prompt: 300k cached (100k image at 3.0, 200k video at 0.25), 700k not (300k
    # image at 3.0, 100k video at 4.0, 300k text at 1.0); 1m output: 100k audio at 8.0,
    # 500k image at 16.0, 400k text at 2.0.
    expected = (
        100_000 * 3.0
        + 200_000 * 0.25
        + 300_000 * 3.0
        + 100_000 * 4.0
        + 300_000 * 1.0
        + 100_000 * 8.0
        + 500_000 * 16.0
        + 400_000 * 2.0
    ) / 1e6
    assert registry.price(None, "acme-media", usage) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="output_image"):
        registry.set_model_price("acme-media", input=1.0, output=1.0, output_image=-1.0)


def test_the_process_wide_set_model_price_takes_the_part_prices() -> None:
    set_model_price("acme-voice-test", input=1.0, output=2.0, output_audio=20.0, cache_write_1h=9.0)
    try:
        found = get_pricing().model_price(None, "acme-voice-test")
        assert found is not None
        assert (found.output_audio, found.cache_write_1h) == (20.0, 9.0)
    finally:
        get_pricing().remove_model_price("acme-voice-test")


def test_price_parts_takes_the_parts_in_token_usage_order() -> None:
    registry = PricingRegistry()
    # A distinct price for every part, and distinct counts, each one consistent with
    # the count it is part of.
    registry.set_model_price(
        "acme-all",
        input=1.0,
        output=2.0,
        cache_read=0.5,
        cache_write=1.5,
        cache_write_1h=3.0,
        input_audio=4.0,
        cache_audio_read=5.0,
        output_audio=6.0,
        input_image=7.0,
        cache_image_read=8.0,
        output_image=9.0,
        input_video=10.0,
        cache_video_read=11.0,
        output_video=12.0,
    )
    counts = (10, 3_000, 20, 100, 4_000, 30, 200, 2_000, 40, 300)
    values = dict(zip(_PART_FIELDS, counts, strict=True))
    usage = TokenUsage(
        input_tokens=10_000,
        output_tokens=1_000,
        cache_read_tokens=100,
        cache_write_tokens=50,
        **values,
    )
    by_usage = registry.price(None, "acme-all", usage)
    by_counts = registry.price_parts(None, "acme-all", 10_000, 1_000, 100, 50, None, *counts)
    by_keywords = registry.price_parts(
        None,
        "acme-all",
        10_000,
        1_000,
        100,
        50,
        cache_write_1h_tokens=10,
        input_audio_tokens=3_000,
        cache_audio_read_tokens=20,
        output_audio_tokens=100,
        input_image_tokens=4_000,
        cache_image_read_tokens=30,
        output_image_tokens=200,
        input_video_tokens=2_000,
        cache_video_read_tokens=40,
        output_video_tokens=300,
    )
    assert by_usage is not None
    assert by_usage == by_counts == by_keywords
    # Each part at its own price: 1-hour writes 3.0, audio 4.0 / 5.0 / 6.0, image
    # 7.0 / 8.0 / 9.0, video 10.0 / 11.0 / 12.0 (in, cached, out).
    expected = (
        (50 - 10) * 1.5
        + 10 * 3.0
        + (100 - 20 - 30 - 40) * 0.5
        + 20 * 5.0
        + 30 * 8.0
        + 40 * 11.0
        + (10_000 - 150 - 2_980 - 3_970 - 1_960) * 1.0
        + 2_980 * 4.0
        + 3_970 * 7.0
        + 1_960 * 10.0
        + (1_000 - 600) * 2.0
        + 100 * 6.0
        + 200 * 9.0
        + 300 * 12.0
    ) / 1e6
    assert by_usage == pytest.approx(expected, rel=1e-12)
