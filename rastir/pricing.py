"""The cost of an LLM call in US dollars.

``get_pricing().price(provider, model, usage)`` answers with a float, or ``None`` when
the model has no known price: the caller then flags the span with
``rastir.cost.unknown=true`` instead of recording a misleading $0.

Where prices come from, first match wins:

1. prices set with :meth:`PricingRegistry.set_model_price` (your own contract, a
   fine-tuned or self-hosted model);
2. the ``genai-prices`` package (``pip install 'rastir[pricing]'``), a maintained,
   offline price database. It is imported on the first lookup, never by ``import
   rastir``, and this module never asks it to fetch anything: no network, ever.

A :class:`PricingProfile` then scales the result (a negotiated discount) and can
select a price variant that genai-prices knows (batch processing, a service tier).

Cache tokens follow each provider's own counting. OpenAI, Azure, Groq, Gemini,
Mistral, DeepSeek and most others report cached prompt tokens *inside* the prompt
token count; Anthropic and Bedrock's Converse API report ``input_tokens`` *without*
the cache reads and writes. :class:`TokenUsage` takes ``input_tokens`` exactly as the
provider reported it, and the registry prices each part once.

Some parts of those counts have prices of their own where genai-prices lists them:
1-hour cache writes (Anthropic), audio, image and video input and their cached share
(Gemini, OpenAI's audio and image models), and audio, image and video output
(``gpt-audio``, Gemini's image and native-audio models). :class:`TokenUsage` carries
them as parts of the counts above, as genai-prices' own ``Usage`` does.

Hot path: the resolved price of a ``(provider, model)`` pair is cached as a tuple of
per-token floats, so a repeated :meth:`PricingRegistry.price` is a dict lookup, a few
type checks and four multiplications.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

__all__ = [
    "BATCH",
    "STANDARD",
    "ModelPrice",
    "PricingProfile",
    "PricingRegistry",
    "TokenUsage",
    "get_pricing",
    "set_model_price",
    "use_pricing_profile",
]

_time = time.time
_PER_MILLION: Final = 1_000_000.0
_MAX_RECORDS: Final = 4096


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


@dataclass(slots=True)
class TokenUsage:
    """Token counts of one LLM call, as the provider reported them.

    ``input_tokens`` is the provider's own prompt count: for OpenAI-style APIs it
    already contains the cached tokens, for Anthropic and Bedrock it does not. The
    registry knows which is which (see :meth:`PricingRegistry.price`).

    The fields after the first four are *parts* of them, priced apart when the
    model's data has a price for them (else as the count they belong to):
    ``cache_write_1h_tokens`` are the cache writes with a 1-hour lifetime (part of
    ``cache_write_tokens``; Anthropic's ``cache_creation.ephemeral_1h_input_tokens``).
    For each of audio, image and video, ``input_<m>_tokens`` are the prompt's tokens
    of that modality, cached ones included (OpenAI's ``prompt_tokens_details``,
    Gemini's prompt modalities), ``cache_<m>_read_tokens`` those read from the cache
    (part of both ``cache_read_tokens`` and ``input_<m>_tokens``), and
    ``output_<m>_tokens`` the generated ones (part of ``output_tokens``; OpenAI's
    ``completion_tokens_details.audio_tokens``, Gemini's output modalities).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    cache_audio_read_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    cache_image_read_tokens: int = 0
    output_image_tokens: int = 0
    input_video_tokens: int = 0
    cache_video_read_tokens: int = 0
    output_video_tokens: int = 0


class PricingProfile:
    """How list prices turn into what you pay.

    Args:
        name: A label for logs and docs, e.g. ``"acme-contract"``.
        multiplier: Every price is multiplied by this, e.g. ``0.8`` for a negotiated
            20 % discount. It applies to prices you set yourself too.
        price_context: Selects a price variant from genai-prices' data, e.g.
            ``{"processing": "batch"}`` or ``{"service_tier": "flex"}``. A model
            without that variant keeps its standard price. Prices you set yourself
            are not affected.

    Raises:
        ValueError: ``multiplier`` is negative, NaN or infinite, or ``name`` is empty.
        TypeError: An argument has the wrong type.
    """

    __slots__ = ("multiplier", "name", "price_context")

    name: str
    multiplier: float
    price_context: tuple[tuple[str, str], ...]

    def __init__(
        self,
        name: str,
        *,
        multiplier: float = 1.0,
        price_context: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"PricingProfile name must be a non-empty str, got {name!r}")
        if price_context is None:
            context: tuple[tuple[str, str], ...] = ()
        elif isinstance(price_context, Mapping):
            for key, value in price_context.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"price_context must map str to str, got {key!r}: {value!r}")
            context = tuple(sorted(price_context.items()))
        else:
            raise TypeError(
                f"price_context must be a mapping or None, got {type(price_context).__name__}"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "multiplier", _non_negative("multiplier", multiplier))
        object.__setattr__(self, "price_context", context)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PricingProfile is immutable")

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if self.multiplier != 1.0:
            parts.append(f"multiplier={self.multiplier!r}")
        if self.price_context:
            parts.append(f"price_context={dict(self.price_context)!r}")
        return f"PricingProfile({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PricingProfile):
            return NotImplemented
        return (self.name, self.multiplier, self.price_context) == (
            other.name,
            other.multiplier,
            other.price_context,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.multiplier, self.price_context))


STANDARD: Final = PricingProfile("standard")
"""List prices, no variant: the default profile."""

BATCH: Final = PricingProfile("batch", price_context={"processing": "batch"})
"""Batch-API prices where genai-prices lists them (OpenAI, Anthropic, Gemini, ...)."""


class ModelPrice:
    """The effective price of one model, as :meth:`PricingRegistry.model_price` reports it.

    Prices are USD per million tokens after the profile is applied; a cache price the
    data does not list is the input price (that is what such tokens are billed at).
    Likewise the parts :class:`TokenUsage` counts apart cost the price of the count
    they belong to when the data lists none of their own: a 1-hour cache write costs
    ``cache_write``, audio, image and video input ``input``, their output ``output``,
    and their cached share ``cache_read`` when the data lists a cache-read price (else
    the modality's own input price, as the cache then gives no discount).
    """

    __slots__ = (
        "cache_audio_read",
        "cache_image_read",
        "cache_read",
        "cache_video_read",
        "cache_write",
        "cache_write_1h",
        "cached_in_input",
        "input",
        "input_audio",
        "input_image",
        "input_video",
        "output",
        "output_audio",
        "output_image",
        "output_video",
        "per_request",
        "source",
        "tiered",
    )

    input: float
    output: float
    cache_read: float
    cache_write: float
    cache_write_1h: float
    input_audio: float
    cache_audio_read: float
    output_audio: float
    input_image: float
    cache_image_read: float
    output_image: float
    input_video: float
    cache_video_read: float
    output_video: float
    per_request: float
    cached_in_input: bool
    tiered: bool
    source: str

    def __init__(
        self,
        *,
        input: float,
        output: float,
        cache_read: float,
        cache_write: float,
        per_request: float,
        cached_in_input: bool,
        tiered: bool,
        source: str,
        cache_write_1h: float | None = None,
        input_audio: float | None = None,
        cache_audio_read: float | None = None,
        output_audio: float | None = None,
        input_image: float | None = None,
        cache_image_read: float | None = None,
        output_image: float | None = None,
        input_video: float | None = None,
        cache_video_read: float | None = None,
        output_video: float | None = None,
    ) -> None:
        self.input = input
        self.output = output
        self.cache_read = cache_read
        self.cache_write = cache_write
        self.cache_write_1h = cache_write if cache_write_1h is None else cache_write_1h
        self.input_audio = input if input_audio is None else input_audio
        self.cache_audio_read = cache_read if cache_audio_read is None else cache_audio_read
        self.output_audio = output if output_audio is None else output_audio
        self.input_image = input if input_image is None else input_image
        self.cache_image_read = cache_read if cache_image_read is None else cache_image_read
        self.output_image = output if output_image is None else output_image
        self.input_video = input if input_video is None else input_video
        self.cache_video_read = cache_read if cache_video_read is None else cache_video_read
        self.output_video = output if output_video is None else output_video
        self.per_request = per_request
        self.cached_in_input = cached_in_input
        self.tiered = tiered
        self.source = source

    def __repr__(self) -> str:
        return (
            f"ModelPrice(input={self.input!r}, output={self.output!r}, "
            f"cache_read={self.cache_read!r}, cache_write={self.cache_write!r}, "
            f"cache_write_1h={self.cache_write_1h!r}, input_audio={self.input_audio!r}, "
            f"cache_audio_read={self.cache_audio_read!r}, "
            f"output_audio={self.output_audio!r}, input_image={self.input_image!r}, "
            f"cache_image_read={self.cache_image_read!r}, "
            f"output_image={self.output_image!r}, input_video={self.input_video!r}, "
            f"cache_video_read={self.cache_video_read!r}, "
            f"output_video={self.output_video!r}, "
            f"per_request={self.per_request!r}, cached_in_input={self.cached_in_input!r}, "
            f"tiered={self.tiered!r}, source={self.source!r})"
        )


# -- provider names -------------------------------------------------------------------

# Names callers use (OTel ``gen_ai.provider.name`` values, SDK and framework spellings)
# -> genai-prices provider id. Anything else is passed to genai-prices as written.
_PROVIDER_ALIASES: Final[dict[str, str]] = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "anthropic": "anthropic",
    "aws": "aws",
    "bedrock": "aws",
    "aws.bedrock": "aws",
    "aws_bedrock": "aws",
    "amazon": "aws",
    "amazon_bedrock": "aws",
    "gemini": "google",
    "google": "google",
    "google_genai": "google",
    "google-genai": "google",
    "google.genai": "google",
    "vertex": "google",
    "vertexai": "google",
    "vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "groq": "groq",
    "cohere": "cohere",
    "mistral": "mistral",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "x_ai": "x-ai",
    "x-ai": "x-ai",
    "together": "together",
    "together_ai": "together",
    "together-ai": "together",
}
_NO_PROVIDER: Final = frozenset({"", "unknown", "none", "null"})

# Providers whose reported input count excludes cache reads and writes. Anthropic's
# Messages API: ``usage.input_tokens`` counts only tokens after the last cache
# breakpoint. Bedrock Converse: ``inputTokens`` excludes ``cacheReadInputTokens`` and
# ``cacheWriteInputTokens``. Everyone else (OpenAI's ``prompt_tokens_details.
# cached_tokens``, Gemini's ``cachedContentTokenCount``, ...) counts them inside.
_CACHE_EXCLUDED: Final = frozenset({"anthropic", "aws"})
_CLAUDE_HOSTS: Final = frozenset({None, "google", "azure"})


def _cache_excluded(canonical: str | None, model: str, home: str | None) -> bool:
    """Whether a call's reported input count leaves the cache reads and writes out.

    ``canonical`` is the caller's provider, ``model`` the model's id (as resolved or as
    called) and ``home`` the provider that lists it (None when unknown). One rule for
    genai-prices' prices and for overrides, so that setting a price never changes how
    the counts are read.
    """
    if canonical in _CACHE_EXCLUDED:
        return True
    if canonical in _CLAUDE_HOSTS and "claude" in model.lower():
        # Claude on Vertex AI or Azure AI Foundry answers with Anthropic's own usage
        # shape, where input_tokens leaves out the cache.
        return True
    # No provider from the caller: assume the model's home provider's API shape.
    return canonical is None and home in _CACHE_EXCLUDED


def input_excludes_cache(provider: str | None, model: str) -> bool:
    """Whether pricing reads ``provider``'s input count for ``model`` as leaving the
    cache reads and writes out (Anthropic's and Bedrock's shape, Claude on Vertex AI or
    Azure). An adapter that normalises counts (LangChain) turns them back for these."""
    return _cache_excluded(_canonical_provider(provider), model, None)


def _canonical_provider(provider: str | None) -> str | None:
    if provider is None:
        return None
    key = provider.strip().lower()
    if key in _NO_PROVIDER:
        return None
    return _PROVIDER_ALIASES.get(key, key)


# -- model ids ------------------------------------------------------------------------

# Bedrock model ids: ``[arn:...:inference-profile/][region.]vendor.model[-vN[:M]]``.
_BEDROCK_REGIONS: Final = frozenset({"us", "us-gov", "eu", "apac", "global", "jp", "au", "ca"})
_BEDROCK_VENDORS: Final[dict[str, str | None]] = {
    "anthropic": "anthropic",
    "meta": None,
    "amazon": "aws",
    "mistral": "mistral",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "openai": "openai",
    "ai21": None,
    "qwen": None,
    "writer": None,
    "twelvelabs": None,
    "stability": None,
    "luma": None,
    "moonshot": None,
    "minimax": None,
}
_BEDROCK_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")


def _bedrock_parts(model: str) -> tuple[str, str, str] | None:
    """``(id without ARN, vendor, bare model)`` for a Bedrock model id, else None.

    ``us.anthropic.claude-3-5-sonnet-20240620-v1:0`` gives
    ``("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic",
    "claude-3-5-sonnet-20240620")``.
    """
    model_id = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
    parts = model_id.split(".")
    if len(parts) >= 3 and parts[0] in _BEDROCK_REGIONS:
        parts = parts[1:]
    if len(parts) < 2 or parts[0] not in _BEDROCK_VENDORS:
        return None
    bare = _BEDROCK_VERSION.sub("", ".".join(parts[1:]))
    return model_id, parts[0], bare


def _candidates(provider: str | None, model: str) -> Iterator[tuple[str | None, str]]:
    """(provider, model) pairs to look up, most specific first, without repeats."""
    seen: set[tuple[str | None, str]] = set()
    found: list[tuple[str | None, str]] = []

    def add(p: str | None, m: str) -> None:
        key = (p, m.lower())
        if m and key not in seen:
            seen.add(key)
            found.append(key)

    bedrock = _bedrock_parts(model)
    if bedrock is not None:
        model_id, vendor, bare = bedrock
        # The id's shape says Bedrock whatever the caller called the provider.
        add("aws", model_id)
        add(provider, model_id)
        add(_BEDROCK_VENDORS[vendor] or provider, bare)
        add(None, model_id)
        add(None, bare)
    else:
        add(provider, model)
        # Vertex AI writes ``claude-3-5-sonnet@20240620``.
        if "@" in model:
            add(provider, model.partition("@")[0])
        # LiteLLM and friends write ``openai/gpt-4o``.
        if "/" in model and not model.startswith("models/"):
            head, _, tail = model.partition("/")
            add(_canonical_provider(head), tail)
        add(None, model)
    yield from found


# -- records --------------------------------------------------------------------------

# The parts TokenUsage counts apart, in field order (which is also the order of
# price_parts' arguments and of a record's ``details``).
_PARTS: Final = (
    "cache_write_1h",
    "input_audio",
    "cache_audio_read",
    "output_audio",
    "input_image",
    "cache_image_read",
    "output_image",
    "input_video",
    "cache_video_read",
    "output_video",
)
# A resolved price, as the hot path reads it:
# (input, output, cache_read, cache_write, per_request  -- USD per token / per call,
#  cache_excluded, tiers, expires, info, details)
# ``details`` are the per-token prices of the parts TokenUsage counts apart, in the
# order of _PARTS. ``tiers`` is None or
# ((start, (input, output, cache_read, cache_write), details), ...), highest start
# first: the prices once the whole prompt exceeds ``start`` tokens. ``expires`` is a
# Unix time after which the record is rebuilt (0.0: never).
_Base = tuple[float, float, float, float]
_Details = tuple[float, ...]
_Tiers = tuple[tuple[int, _Base, _Details], ...]
_Record = tuple[
    float, float, float, float, float, bool, _Tiers | None, float, ModelPrice | None, _Details
]
_NO_DETAILS: Final[_Details] = (0.0,) * len(_PARTS)
_UNKNOWN: Final[_Record] = (0.0, 0.0, 0.0, 0.0, 0.0, False, None, 0.0, None, _NO_DETAILS)
# An override: USD per million tokens of (input, output, cache_read, cache_write, then
# the parts in the order of _PARTS).
_Prices = tuple[float, ...]
_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    *(f"{part}_tokens" for part in _PARTS),
)


_ZERO: Final = 0


def _check_usage(usage: object) -> None:
    """Raise the clear error for a usage that cannot be priced (int subclasses pass)."""
    if not isinstance(usage, TokenUsage):
        raise TypeError(f"usage must be a rastir.pricing.TokenUsage, got {type(usage).__name__}")
    for field in _FIELDS:
        value = getattr(usage, field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"TokenUsage.{field} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"TokenUsage.{field} must be >= 0, got {value}")


def _key_error(provider: object, model: object) -> TypeError:
    if not isinstance(model, str):
        return TypeError(f"model must be a str, got {type(model).__name__}")
    return TypeError(f"provider must be a str or None, got {type(provider).__name__}")


class PricingRegistry:
    """Prices LLM calls from your overrides and genai-prices' data.

    Thread-safe. Lookups read a cache without locking; changes (overrides, profiles)
    take a lock and start a fresh cache, so the next lookup sees them.

    Args:
        profile: The default profile (``STANDARD`` when omitted).
        use_genai_prices: Look models up in genai-prices when it is installed. With
            False (or without the package) only your overrides are priced.
    """

    def __init__(
        self, *, profile: PricingProfile | None = None, use_genai_prices: bool = True
    ) -> None:
        self._lock = threading.RLock()
        self._records: dict[tuple[str | None, str], _Record] = {}
        self._overrides: dict[tuple[str | None, str], _Prices] = {}
        # The model genai-prices resolves each override's name to (None: none), filled
        # on first use: an override for ``gpt-4o`` also prices ``gpt-4o-2024-08-06``.
        self._override_ids: dict[tuple[str | None, str], str | None] = {}
        self._profile = STANDARD if profile is None else _check_profile(profile)
        self._provider_profiles: dict[str, PricingProfile] = {}
        self._use_data = bool(use_genai_prices)
        self._data: Any = None  # genai_prices.data_snapshot once loaded
        self._data_loaded = False

    # -- the hot path -------------------------------------------------------------

    def price(
        self,
        provider: str | None,
        model: str,
        usage: TokenUsage,
        *,
        cached_in_input: bool | None = None,
    ) -> float | None:
        """The cost of one call in USD, or None when the model's price is unknown.

        Args:
            provider: The provider as the caller names it (``"openai"``,
                ``"aws.bedrock"``, ``"gcp.gemini"``, ...), or None.
            model: The model id as sent or returned (Bedrock ids and ARNs included).
            usage: Token counts as the provider reported them.
            cached_in_input: Whether ``usage.input_tokens`` already contains the cache
                reads and writes. None (the default) follows the provider: False for
                Anthropic and Bedrock, True for the others. Pass True for counts that a
                framework has normalised, such as LangChain's ``usage_metadata``.

        Raises:
            TypeError: ``usage`` is not a TokenUsage, a count is not an int, or
                ``provider``/``model`` have the wrong type.
            ValueError: A count is negative, or the cache counts exceed an input count
                that should contain them.
        """
        if type(usage) is not TokenUsage:
            _check_usage(usage)
        i = usage.input_tokens
        o = usage.output_tokens
        r = usage.cache_read_tokens
        w = usage.cache_write_tokens
        if (
            type(i) is not int
            or type(o) is not int
            or type(r) is not int
            or type(w) is not int
            or (i | o | r | w) < 0
        ):
            _check_usage(usage)
        # The parts: usually all zero. An exact 0 is CPython's cached small int, so
        # identity proves it cheaply; anything else takes the checks below.
        w1 = usage.cache_write_1h_tokens
        a = usage.input_audio_tokens
        ra = usage.cache_audio_read_tokens
        oa = usage.output_audio_tokens
        m = usage.input_image_tokens
        rm = usage.cache_image_read_tokens
        om = usage.output_image_tokens
        v = usage.input_video_tokens
        rv = usage.cache_video_read_tokens
        ov = usage.output_video_tokens
        if (
            w1 is _ZERO
            and a is _ZERO
            and ra is _ZERO
            and oa is _ZERO
            and m is _ZERO
            and rm is _ZERO
            and om is _ZERO
            and v is _ZERO
            and rv is _ZERO
            and ov is _ZERO
        ):
            return self.price_counts(provider, model, i, o, r, w, cached_in_input)
        if (
            type(w1) is not int
            or type(a) is not int
            or type(ra) is not int
            or type(oa) is not int
            or type(m) is not int
            or type(rm) is not int
            or type(om) is not int
            or type(v) is not int
            or type(rv) is not int
            or type(ov) is not int
        ):
            _check_usage(usage)
        any_part = w1 | a | ra | oa | m | rm | om | v | rv | ov  # negative if one is
        if any_part:
            if any_part < 0:
                _check_usage(usage)
            return self.price_parts(
                provider, model, i, o, r, w, cached_in_input, w1, a, ra, oa, m, rm, om, v, rv, ov
            )
        return self.price_counts(provider, model, i, o, r, w, cached_in_input)

    def price_counts(
        self,
        provider: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cached_in_input: bool | None = None,
    ) -> float | None:
        """:meth:`price` for counts already known to be ints (the adapters' hot path).

        The counts mean what :class:`TokenUsage`'s fields mean; no ``TokenUsage`` is
        built, and only their signs are checked. Counts with parts priced apart (1-hour
        cache writes, audio, image, video) go to :meth:`price_parts`.

        Raises:
            TypeError: ``provider``/``model`` have the wrong type.
            ValueError: A count is negative, or the cache counts exceed an input count
                that should contain them.
        """
        try:
            rec = self._records.get((provider, model))
        except TypeError:
            raise _key_error(provider, model) from None
        if rec is None or (rec[7] and rec[7] <= _time()):
            rec = self._resolve(provider, model)
        i, o, r, w = input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
        if (i | o | r | w) < 0:
            raise ValueError(f"token counts must be >= 0, got {(i, o, r, w)}")
        if rec is _UNKNOWN:
            return None
        pin, pout, pcr, pcw, fixed, excluded, tiers, _, _, _ = rec
        if cached_in_input is not None:
            excluded = not cached_in_input
        if not excluded:
            i -= r + w
            if i < 0:
                raise ValueError(
                    f"cache tokens ({r} read + {w} write) exceed input_tokens "
                    f"({i + r + w}), which for provider {provider!r} include them"
                )
        if tiers is not None:
            # genai-prices' rule: the whole prompt (cached parts included) picks the
            # tier, whose prices then apply to every token ("cliff" pricing).
            total = i + r + w
            for start, tier, _ in tiers:
                if total > start:
                    pin, pout, pcr, pcw = tier
                    break
        return i * pin + o * pout + r * pcr + w * pcw + fixed

    def price_parts(
        self,
        provider: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cached_in_input: bool | None = None,
        cache_write_1h_tokens: int = 0,
        input_audio_tokens: int = 0,
        cache_audio_read_tokens: int = 0,
        output_audio_tokens: int = 0,
        input_image_tokens: int = 0,
        cache_image_read_tokens: int = 0,
        output_image_tokens: int = 0,
        input_video_tokens: int = 0,
        cache_video_read_tokens: int = 0,
        output_video_tokens: int = 0,
    ) -> float | None:
        """:meth:`price_counts` with the parts :class:`TokenUsage` prices apart.

        The parts mean what the ``TokenUsage`` fields of the same names mean. Kept
        apart from :meth:`price_counts` so that the common call pays nothing for them.

        Raises:
            TypeError: ``provider``/``model`` have the wrong type.
            ValueError: A count is negative, the cache counts exceed an input count
                that should contain them, or parts exceed the count they are part of.
        """
        base = self.price_counts(
            provider,
            model,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cached_in_input,
        )
        w1 = cache_write_1h_tokens
        a, ra, oa = input_audio_tokens, cache_audio_read_tokens, output_audio_tokens
        m, rm, om = input_image_tokens, cache_image_read_tokens, output_image_tokens
        v, rv, ov = input_video_tokens, cache_video_read_tokens, output_video_tokens
        if (w1 | a | ra | oa | m | rm | om | v | rv | ov) < 0:
            raise ValueError(
                f"token counts must be >= 0, got {(w1, a, ra, oa, m, rm, om, v, rv, ov)}"
            )
        if base is None:
            return None
        i, o, r, w = input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
        rec = self._resolve(provider, model)
        if not (rec[5] if cached_in_input is None else not cached_in_input):
            i -= r + w  # price_counts checked that this is not negative
        # What each modality has outside the cache, and the parts of each count.
        ua, um, uv = a - ra, m - rm, v - rv
        cached = ra + rm + rv
        uncached = ua + um + uv
        generated = oa + om + ov
        if w1 > w or cached > r or ua < 0 or um < 0 or uv < 0 or uncached > i or generated > o:
            raise ValueError(
                f"token parts exceed their counts: cache_write_1h {w1} of {w} cache "
                f"writes; audio, image and video read from the cache {(ra, rm, rv)} "
                f"({cached} of {r} cache reads) of {(a, m, v)} in the prompt; "
                f"{uncached} uncached ones of {i} uncached input; audio, image and "
                f"video output {(oa, om, ov)} ({generated} of {o} output)"
            )
        pin, pout, pcr, pcw, _, _, tiers, _, _, details = rec
        if tiers is not None:
            total = i + r + w
            for start, tier, tier_details in tiers:
                if total > start:
                    pin, pout, pcr, pcw = tier
                    details = tier_details
                    break
        p1h, pa, pra, poa, pm, prm, pom, pv, prv, pov = details
        # Each part replaces its share of the count it belongs to.
        return (
            base
            + w1 * (p1h - pcw)
            + ua * (pa - pin)
            + um * (pm - pin)
            + uv * (pv - pin)
            + ra * (pra - pcr)
            + rm * (prm - pcr)
            + rv * (prv - pcr)
            + oa * (poa - pout)
            + om * (pom - pout)
            + ov * (pov - pout)
        )

    # -- configuration ------------------------------------------------------------

    def set_model_price(
        self,
        model: str,
        *,
        input: float,
        output: float,
        cache_read: float | None = None,
        cache_write: float | None = None,
        provider: str | None = None,
        cache_write_1h: float | None = None,
        input_audio: float | None = None,
        cache_audio_read: float | None = None,
        output_audio: float | None = None,
        input_image: float | None = None,
        cache_image_read: float | None = None,
        output_image: float | None = None,
        input_video: float | None = None,
        cache_video_read: float | None = None,
        output_video: float | None = None,
    ) -> None:
        """Set your own price for a model, in USD per million tokens.

        It wins over genai-prices' data. With ``provider`` it applies to that provider
        only (``"azure"`` and ``"azure.ai.openai"`` are the same provider); without, to
        the model from any provider. The model id is matched case-insensitively, and a
        Bedrock id also matches its shorter names: ``us.anthropic.claude-x-v1:0``
        matches an override for ``anthropic.claude-x-v1:0``, ``claude-x-v1:0`` (the
        model ``@llm`` spans show) or ``claude-x``. An override for the provider wins
        over one for any provider; within each, the most specific name wins. Bedrock
        ARNs that name no model (application inference profiles) are priced only by an
        override for the ARN itself.

        With genai-prices installed, an override also prices every name genai-prices
        resolves to the same model: one for ``gpt-4o`` prices a response that names
        ``gpt-4o-2024-08-06``. An override for the name itself (any provider) wins
        over those.

        Args:
            model: The model id.
            input: Price of uncached input tokens.
            output: Price of output tokens.
            cache_read: Price of cache-read tokens; the input price when omitted.
            cache_write: Price of cache-write tokens; the input price when omitted.
            provider: Restrict the override to one provider.
            cache_write_1h: Price of 1-hour cache writes; ``cache_write`` when omitted.
            input_audio: Price of audio input tokens; the input price when omitted.
            cache_audio_read: Price of audio read from the cache; when omitted,
                ``cache_read`` if that is given, else the audio input price.
            output_audio: Price of audio output tokens; the output price when omitted.
            input_image: Price of image input tokens; the input price when omitted.
            cache_image_read: Price of image tokens read from the cache; when omitted,
                ``cache_read`` if that is given, else the image input price.
            output_image: Price of image output tokens; the output price when omitted.
            input_video: Price of video input tokens; the input price when omitted.
            cache_video_read: Price of video tokens read from the cache; when omitted,
                ``cache_read`` if that is given, else the video input price.
            output_video: Price of video output tokens; the output price when omitted.

        Raises:
            TypeError: A price is not a number, or ``model``/``provider`` is not a str.
            ValueError: A price is negative, NaN or infinite, or ``model`` is empty.
        """
        key = self._override_key(provider, model)
        pin = _non_negative("input", input)
        pout = _non_negative("output", output)
        pcr = pin if cache_read is None else _non_negative("cache_read", cache_read)
        pcw = pin if cache_write is None else _non_negative("cache_write", cache_write)
        p1h = pcw if cache_write_1h is None else _non_negative("cache_write_1h", cache_write_1h)
        prices = [pin, pout, pcr, pcw, p1h]
        for kind, (given, cached, generated) in (
            ("audio", (input_audio, cache_audio_read, output_audio)),
            ("image", (input_image, cache_image_read, output_image)),
            ("video", (input_video, cache_video_read, output_video)),
        ):
            pm = pin if given is None else _non_negative(f"input_{kind}", given)
            # Without a cache price of its own, a cached part gets the cache discount
            # when there is one, else costs what the modality costs.
            if cached is not None:
                prm = _non_negative(f"cache_{kind}_read", cached)
            else:
                prm = pm if cache_read is None else pcr
            pom = pout if generated is None else _non_negative(f"output_{kind}", generated)
            prices += (pm, prm, pom)
        with self._lock:
            self._overrides[key] = tuple(prices)
            self._records = {}

    def remove_model_price(self, model: str, *, provider: str | None = None) -> bool:
        """Remove an override set by :meth:`set_model_price`; True if there was one."""
        key = self._override_key(provider, model)
        with self._lock:
            found = self._overrides.pop(key, None) is not None
            self._override_ids.pop(key, None)
            self._records = {}
        return found

    def use_profile(self, profile: PricingProfile | None, *, provider: str | None = None) -> None:
        """Price with ``profile`` from now on.

        Without ``provider`` it becomes the default profile (None restores
        ``STANDARD``). With ``provider`` it applies to that provider only (None removes
        that provider's profile), e.g. a discount negotiated with one cloud.

        Raises:
            TypeError: ``profile`` is not a PricingProfile or None.
        """
        if profile is not None:
            _check_profile(profile)
        canonical = self._provider_arg(provider)
        with self._lock:
            if canonical is None:
                self._profile = STANDARD if profile is None else profile
            elif profile is None:
                self._provider_profiles.pop(canonical, None)
            else:
                self._provider_profiles[canonical] = profile
            self._records = {}

    def profile(self, provider: str | None = None) -> PricingProfile:
        """The profile that prices ``provider``'s calls (the default one without it)."""
        canonical = self._provider_arg(provider)
        if canonical is not None:
            found = self._provider_profiles.get(canonical)
            if found is not None:
                return found
        return self._profile

    def model_price(self, provider: str | None, model: str) -> ModelPrice | None:
        """The effective price of a model (after the profile), or None if unknown.

        For tiered models (a higher price above some prompt size) this shows the base
        tier. Useful to check which price a name resolves to, and from where.

        Raises:
            TypeError: ``provider``/``model`` have the wrong type.
        """
        return self._resolve(provider, model)[8]

    def clear_cache(self) -> None:
        """Forget resolved prices (e.g. after updating genai-prices' data in-process)."""
        with self._lock:
            self._records = {}

    @property
    def has_price_data(self) -> bool:
        """Whether genai-prices is in use (installed, and not switched off)."""
        with self._lock:
            return self._load_data() is not None

    def preload(self, *, background: bool = False) -> threading.Thread | None:
        """Import genai-prices now instead of on the first priced call.

        Importing its price tables takes a few hundred milliseconds once per process.
        Call this at start-up (``background=True`` does it on a daemon thread and
        returns the thread) so that no LLM call waits for it.
        """
        if not background:
            self._warm()
            return None
        thread = threading.Thread(target=self._warm, name="rastir-pricing-preload", daemon=True)
        thread.start()
        return thread

    # -- resolution (cold path, under the lock) ---------------------------------------

    def _warm(self) -> None:
        with self._lock:
            data = self._load_data()
            if data is not None:
                data.get_snapshot()

    def _load_data(self) -> Any:
        if not self._data_loaded:
            self._data_loaded = True
            if self._use_data:
                try:
                    from genai_prices import data_snapshot
                except ImportError:
                    pass  # the pricing extra is not installed: overrides only
                else:
                    self._data = data_snapshot
        return self._data

    @staticmethod
    def _provider_arg(provider: str | None) -> str | None:
        if provider is not None and not isinstance(provider, str):
            raise TypeError(f"provider must be a str or None, got {type(provider).__name__}")
        return _canonical_provider(provider)

    def _override_key(self, provider: str | None, model: str) -> tuple[str | None, str]:
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, got {type(model).__name__}")
        if not model.strip():
            raise ValueError("model must be a non-empty str")
        return self._provider_arg(provider), model.strip().lower()

    def _resolve(self, provider: str | None, model: str) -> _Record:
        if not isinstance(model, str) or (provider is not None and not isinstance(provider, str)):
            raise _key_error(provider, model)
        with self._lock:
            records = self._records
            rec = records.get((provider, model))
            if rec is not None and not (rec[7] and rec[7] <= _time()):
                return rec
            rec = self._build(provider, model.strip())
            if len(records) >= _MAX_RECORDS:
                # Model names are not a bounded set (some apps build them); start over
                # rather than grow without limit.
                records.clear()
            records[(provider, model)] = rec
            return rec

    def _build(self, provider: str | None, model: str) -> _Record:
        canonical = _canonical_provider(provider)
        profile = self._profile
        if canonical is not None:
            profile = self._provider_profiles.get(canonical, profile)
        mult = profile.multiplier
        if not model:
            return _UNKNOWN
        candidates = list(_candidates(canonical, model))

        for p, m in _override_lookups(canonical, model, candidates):
            found = self._overrides.get((p, m))
            if found is not None:
                return _from_override(canonical, model, found, mult, f"override:{p or '*'}/{m}")

        data = self._load_data()
        if data is None:
            return _UNKNOWN
        snapshot = data.get_snapshot()
        for p, m in candidates:
            try:
                gp_provider, info = snapshot.find_provider_model(m, None, p, None)
            except LookupError:
                continue
            if self._overrides:
                # No override names the model as called; one may name the model
                # genai-prices resolves it to (``gpt-4o`` for ``gpt-4o-2024-08-06``).
                key = self._override_for_id(snapshot, canonical, model, str(info.id))
                if key is not None:
                    return _from_override(
                        canonical,
                        str(info.id),
                        self._overrides[key],
                        mult,
                        f"override:{key[0] or '*'}/{key[1]} (as genai-prices:{info.id})",
                    )
            return _from_genai_prices(canonical, gp_provider, info, profile, f"{p or '*'}/{m}")
        return _UNKNOWN

    def _override_for_id(
        self, snapshot: Any, canonical: str | None, model: str, model_id: str
    ) -> tuple[str | None, str] | None:
        """The override whose name genai-prices resolves to ``model_id``, or None.

        The providers an override may be restricted to are those of the exact-name
        lookups: the caller's (and AWS for a Bedrock id), then any. Within one, an
        override named ``model_id`` itself wins, then the first one set.
        """
        target = model_id.lower()
        billed_by: list[str | None] = [canonical]
        if _bedrock_parts(model) is not None:
            billed_by.append("aws")
        billed_by.append(None)
        ids = self._override_ids
        for provider in dict.fromkeys(billed_by):
            matches: list[tuple[str | None, str]] = []
            for key in self._overrides:
                if key[0] != provider:
                    continue
                if key not in ids:
                    try:
                        _, info = snapshot.find_provider_model(key[1], None, key[0], None)
                    except LookupError:
                        ids[key] = None
                    else:
                        ids[key] = str(info.id).lower()
                if ids[key] == target:
                    matches.append(key)
            if matches:
                exact = [k for k in matches if k[1] == target]
                return (exact or matches)[0]
        return None


def _bedrock_names(model: str) -> list[str] | None:
    """The names an override may give a Bedrock id, most specific first, or None.

    ``arn:...:inference-profile/us.meta.llama3-1-70b-instruct-v1:0`` gives the ARN,
    ``us.meta.llama3-1-70b-instruct-v1:0``, ``meta.llama3-1-70b-instruct-v1:0``,
    ``llama3-1-70b-instruct-v1:0`` (the model ``@llm`` spans show) and
    ``llama3-1-70b-instruct``.
    """
    bedrock = _bedrock_parts(model)
    if bedrock is None:
        return None
    model_id, _vendor, bare = bedrock
    names = [model, model_id]
    head, _, rest = model_id.partition(".")
    if head in _BEDROCK_REGIONS:
        names.append(rest)
        rest = rest.partition(".")[2]
    names.append(rest)
    names.append(bare)
    return list(dict.fromkeys(n.lower() for n in names if n))


def _override_lookups(
    provider: str | None, model: str, candidates: list[tuple[str | None, str]]
) -> Iterator[tuple[str | None, str]]:
    """Override keys to try, first match wins: an override for the caller's provider
    beats one for any provider, and within each the most specific model name wins."""
    bedrock = _bedrock_names(model)
    if bedrock is not None:
        # A Bedrock id names its own provider: overrides set for "aws.bedrock" apply
        # whatever the caller called it. Not those of the model's maker: AWS bills
        # the call, not Anthropic or Meta.
        for billed_by in dict.fromkeys(x for x in (provider, "aws") if x is not None):
            for m in bedrock:
                yield billed_by, m
        for m in bedrock:
            yield None, m
        return
    models = list(dict.fromkeys(m for _, m in candidates))
    if provider is not None:
        for m in models:
            yield provider, m
        for p, m in candidates:
            if p is not None and p != provider:
                yield p, m
    for m in models:
        yield None, m


def _from_override(
    canonical: str | None, model: str, found: _Prices, mult: float, source: str
) -> _Record:
    scaled = [x * mult for x in found]
    pin, pout, pcr, pcw = scaled[:4]
    parts = scaled[4:]
    # A Bedrock id names its host whatever the caller called the provider.
    home = "aws" if _bedrock_parts(model) is not None else None
    excluded = _cache_excluded(canonical, model, home)
    info = ModelPrice(
        input=pin,
        output=pout,
        cache_read=pcr,
        cache_write=pcw,
        per_request=0.0,
        cached_in_input=not excluded,
        tiered=False,
        source=source,
        **dict(zip(_PARTS, parts, strict=True)),
    )
    m = _PER_MILLION
    details = tuple(x / m for x in parts)
    return (pin / m, pout / m, pcr / m, pcw / m, 0.0, excluded, None, 0.0, info, details)


def _check_profile(profile: object) -> PricingProfile:
    if not isinstance(profile, PricingProfile):
        raise TypeError(f"profile must be a PricingProfile, got {type(profile).__name__}")
    return profile


def _from_genai_prices(
    canonical: str | None, gp_provider: Any, info: Any, profile: PricingProfile, found: str
) -> _Record:
    now = datetime.now(tz=timezone.utc)
    context = dict(profile.price_context) or None
    # genai-prices applies price variants only to models listed by the provider
    # itself, not to those reached through a fallback provider; do the same.
    if context and not any(info is m for m in gp_provider.models):
        context = None
    prices = info.get_prices(now, context)
    mult = profile.multiplier

    def per_million(value: Any) -> float:
        return 0.0 if value is None else float(getattr(value, "base", value)) * mult

    def steps(value: Any) -> list[tuple[int, float]]:
        if not hasattr(value, "tiers"):
            return []
        return sorted(((int(t.start), float(t.price) * mult) for t in value.tiers), reverse=True)

    excluded = _cache_excluded(canonical, str(info.id), gp_provider.id)
    raw_in = prices.input_mtok
    raw_out = prices.output_mtok
    if raw_in is None and raw_out is None:
        if any(v is not None for v in vars(prices).values()):
            return _UNKNOWN  # priced per second, per page...: not by token
        # An empty price entry: genai-prices lists the model as free
        # (``mistral-nemo:free``, ``moderation``) and prices its calls at $0.
        model_price = ModelPrice(
            input=0.0,
            output=0.0,
            cache_read=0.0,
            cache_write=0.0,
            per_request=0.0,
            cached_in_input=not excluded,
            tiered=False,
            source=f"genai-prices:{gp_provider.id}/{info.id} (free; looked up as {found})",
        )
        free = _NO_DETAILS
        return (0.0, 0.0, 0.0, 0.0, 0.0, excluded, None, _expiry(info, now), model_price, free)
    raw_cr = prices.cache_read_mtok
    raw_cw = prices.cache_write_mtok
    if raw_cw is None:
        raw_cw = prices.cache_write_5m_mtok
    listed_cr = raw_cr
    # A cache price the data does not list: genai-prices bills those tokens as
    # input, and so do we (with the input tiers).
    if raw_cr is None:
        raw_cr = raw_in
    if raw_cw is None:
        raw_cw = raw_in
    # The parts TokenUsage counts apart, billed as the count they belong to when the
    # data has no price for them (genai-prices' leaf rule): a 1-hour write as a write,
    # audio, image and video as input or output, and their cached share as a cache
    # read. Without a cache-read price the cache gives no discount: cached audio then
    # costs what audio costs, as genai-prices bills it.
    raw_1h = prices.cache_write_1h_mtok
    raw = [raw_in, raw_out, raw_cr, raw_cw, raw_cw if raw_1h is None else raw_1h]
    for kind in ("audio", "image", "video"):
        given = getattr(prices, f"input_{kind}_mtok")
        if given is None:
            given = raw_in
        cached = getattr(prices, f"cache_{kind}_read_mtok")
        if cached is None:
            cached = given if listed_cr is None else listed_cr
        generated = getattr(prices, f"output_{kind}_mtok")
        raw += (given, cached, raw_out if generated is None else generated)
    bases = [per_million(v) for v in raw]
    kind_steps = [steps(v) for v in raw]
    # Each kind has its own tiers. Merge them into one list of breakpoints, each with
    # every kind's per-token price once the prompt passes it.
    starts = sorted({start for st in kind_steps for start, _ in st}, reverse=True)
    tiers: _Tiers | None = None
    if starts:
        tiers = tuple((s, *_prices_at(kind_steps, s, bases)) for s in starts)
    m = _PER_MILLION
    pin, pout, pcr, pcw = (x / m for x in bases[:4])
    requests = prices.requests_kcount
    per_request = float(requests) * mult / 1000.0 if requests is not None else 0.0
    model_price = ModelPrice(
        input=bases[0],
        output=bases[1],
        cache_read=bases[2],
        cache_write=bases[3],
        per_request=per_request,
        cached_in_input=not excluded,
        tiered=tiers is not None,
        source=f"genai-prices:{gp_provider.id}/{info.id} (looked up as {found})",
        **dict(zip(_PARTS, bases[4:], strict=True)),
    )
    details = tuple(x / m for x in bases[4:])
    return (
        pin,
        pout,
        pcr,
        pcw,
        per_request,
        excluded,
        tiers,
        _expiry(info, now),
        model_price,
        details,
    )


def _prices_at(
    kind_steps: list[list[tuple[int, float]]], start: int, bases: list[float]
) -> tuple[_Base, _Details]:
    """Per-token prices once the prompt exceeds ``start``: per kind, its highest tier
    starting at or below ``start``, else its base price."""
    found = list(bases)
    for k, st in enumerate(kind_steps):
        for tier_start, price in st:
            if tier_start <= start:
                found[k] = price
                break
    m = _PER_MILLION
    return (
        (found[0] / m, found[1] / m, found[2] / m, found[3] / m),
        tuple(x / m for x in found[4:]),
    )


def _expiry(info: Any, now: datetime) -> float:
    """When the prices resolved at ``now`` may change: a dated price change or the
    edge of a time-of-day window (off-peak pricing). 0.0 when they never do."""
    constraints: list[Any] = []
    if isinstance(info.prices, list):
        constraints.extend(c.constraint for c in info.prices)
    constraints.extend(v.constraint for v in info.price_variants or ())
    edges: list[datetime] = []
    today = now.date()
    for constraint in constraints:
        start_date = getattr(constraint, "start_date", None)
        if isinstance(start_date, date) and start_date > today:
            edges.append(
                datetime(start_date.year, start_date.month, start_date.day, tzinfo=now.tzinfo)
            )
        for edge in (
            getattr(constraint, "start_time", None),
            getattr(constraint, "end_time", None),
        ):
            if edge is None:
                continue
            if edge.tzinfo is None:
                edge = edge.replace(tzinfo=timezone.utc)
            when = datetime.combine(today, edge).astimezone(timezone.utc)
            while when <= now:
                when += timedelta(days=1)
            edges.append(when)
    return min(edges).timestamp() if edges else 0.0


# -- the process default ----------------------------------------------------------------

_default: PricingRegistry | None = None
_default_lock = threading.Lock()


def get_pricing() -> PricingRegistry:
    """The process-wide registry that ``@llm`` uses, created on first call."""
    registry = _default
    if registry is None:
        registry = _create_default()
    return registry


def _create_default() -> PricingRegistry:
    global _default
    with _default_lock:
        if _default is None:
            _default = PricingRegistry()
        return _default


def set_model_price(
    model: str,
    *,
    input: float,
    output: float,
    cache_read: float | None = None,
    cache_write: float | None = None,
    provider: str | None = None,
    cache_write_1h: float | None = None,
    input_audio: float | None = None,
    cache_audio_read: float | None = None,
    output_audio: float | None = None,
    input_image: float | None = None,
    cache_image_read: float | None = None,
    output_image: float | None = None,
    input_video: float | None = None,
    cache_video_read: float | None = None,
    output_video: float | None = None,
) -> None:
    """Set a model's price (USD per million tokens) on the process-wide registry.

    See :meth:`PricingRegistry.set_model_price`.
    """
    get_pricing().set_model_price(
        model,
        input=input,
        output=output,
        cache_read=cache_read,
        cache_write=cache_write,
        provider=provider,
        cache_write_1h=cache_write_1h,
        input_audio=input_audio,
        cache_audio_read=cache_audio_read,
        output_audio=output_audio,
        input_image=input_image,
        cache_image_read=cache_image_read,
        output_image=output_image,
        input_video=input_video,
        cache_video_read=cache_video_read,
        output_video=output_video,
    )


def use_pricing_profile(profile: PricingProfile | None, *, provider: str | None = None) -> None:
    """Price with ``profile`` on the process-wide registry.

    See :meth:`PricingRegistry.use_profile`.
    """
    get_pricing().use_profile(profile, provider=provider)
