"""Write what the adapters found onto a span: request phase, response phase, cost.

Precedence (seed 001): explicit decorator arguments beat everything; concrete values
read from the response beat guesses made from the request; what the request phase
wrote stays on the span when the call raises.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from rastir import _config
from rastir.adapters import _content
from rastir.adapters.base import AdapterResult, get, int_or_none
from rastir.adapters.registry import AdapterRegistry, get_registry

__all__ = [
    "parse_bedrock_model_id",
    "request_phase",
    "response_phase",
    "write_result",
]

_log = logging.getLogger("rastir")

# Keyword arguments the request phase reads, and what each one is. Only these are
# ever looked at: keys, headers and tokens are never read.
_MODEL: Final = 0
_INFERENCE_CONFIG: Final = 1
_GUARDRAIL_CONFIG: Final = 2
_KWARGS: Final[dict[str, int | str]] = {
    "model": _MODEL,
    "model_id": _MODEL,
    "modelId": _MODEL,
    "model_name": _MODEL,
    "inferenceConfig": _INFERENCE_CONFIG,
    "guardrailConfig": _GUARDRAIL_CONFIG,
    # request parameters (OTel gen_ai.request.*), numbers only
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
}
_MODEL_ORDER: Final = ("model", "model_id", "modelId", "model_name")
_MISS: Final = object()

# Bedrock model ids: ``vendor.model``, optionally behind a cross-region inference
# profile prefix (``us.anthropic...``) or inside an ARN.
_BEDROCK_VENDORS: Final = frozenset(
    (
        "anthropic",
        "amazon",
        "meta",
        "mistral",
        "cohere",
        "ai21",
        "stability",
        "deepseek",
        "writer",
        "qwen",
        "openai",
        "twelvelabs",
        "luma",
        "moonshot",
        "minimax",
        "google",
        "nvidia",
    )
)
_BEDROCK_REGIONS: Final = frozenset(("us", "eu", "apac", "us-gov", "global", "ca", "jp", "au"))


# Response providers whose classes do not say who hosts the model -> the hosts a
# request can name instead (AnthropicBedrock/AnthropicVertex clients, a Bedrock model
# id, ``genai.Client(vertexai=True)``). "openai" is handled apart: any request
# provider beats it.
_HOSTS: Final[dict[str, frozenset[str]]] = {
    "anthropic": frozenset(("aws.bedrock", "gcp.vertex_ai", "azure.ai.inference")),
    "gcp.gemini": frozenset(("gcp.vertex_ai",)),
}

# Providers whose Chat Completions ``completion_tokens`` leave the reasoning tokens
# out (genai-prices' x-ai "chat" extractor adds them); OpenAI's include them.
_REASONING_OUTSIDE: Final = frozenset(("x_ai", "xai", "x-ai", "xAI", "X_AI", "XAI"))


def _chat_reasoning(result: Any) -> int | None:
    """``usage.completion_tokens_details.reasoning_tokens`` of a Chat Completions
    response (object or dict), else None. The Responses API's ``output_tokens``
    include the reasoning tokens for xAI too: not read there."""
    try:
        usage = get(result, "usage")
        if usage is None or get(usage, "prompt_tokens") is None:
            return None
        details = get(usage, "completion_tokens_details")
        return None if details is None else int_or_none(get(details, "reasoning_tokens"))
    except Exception:
        return None


_registry: AdapterRegistry | None = None


def _get_registry() -> AdapterRegistry:
    global _registry
    _registry = get_registry()
    return _registry


def parse_bedrock_model_id(model_id: str) -> tuple[str, str] | None:
    """``(model, vendor)`` from a Bedrock model id, or None when it is not one.

    ``anthropic.claude-3-sonnet`` gives ``("claude-3-sonnet", "anthropic")``; the
    regional form ``us.anthropic.claude-3-5-sonnet-20240620-v1:0`` and ARNs
    (``arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2``,
    ``...:inference-profile/eu.meta.llama3-2-1b-instruct-v1:0``) too.
    """
    ident = model_id
    if ident.startswith("arn:"):
        ident = ident.rpartition("/")[2]
        if not ident:
            return None
    head, dot, rest = ident.partition(".")
    if not dot:
        return None
    if head in _BEDROCK_REGIONS:
        head, dot, rest = rest.partition(".")
        if not dot:
            return None
    if head not in _BEDROCK_VENDORS or not rest:
        return None
    return rest, head


def _bedrock(attrs: dict[str, Any], model: str) -> str | None:
    """The model part of a Bedrock id (recording the id and vendor), or None.

    The raw id is kept as ``aws.bedrock.model_id``: it is what AWS bills, and what the
    cost is looked up with (``write_result``). A Bedrock ARN that names no model (an
    application inference profile, a custom or imported model) is recorded as it is,
    with no vendor: only a price set for that ARN can price it.
    """
    parsed = parse_bedrock_model_id(model)
    if parsed is None:
        if model.startswith("arn:") and ":bedrock:" in model:
            attrs["aws.bedrock.model_id"] = model
            return model
        return None
    attrs["aws.bedrock.model_id"] = model
    attrs["rastir.model.vendor"] = parsed[1]
    return parsed[0]


def _read_config(attrs: dict[str, Any], role: int, value: Any) -> str | None:
    """Bedrock's ``inferenceConfig`` / ``guardrailConfig``; the provider they imply."""
    if not isinstance(value, dict):
        return None
    if role == _INFERENCE_CONFIG:
        for ckey, name in (
            ("maxTokens", "gen_ai.request.max_tokens"),
            ("temperature", "gen_ai.request.temperature"),
            ("topP", "gen_ai.request.top_p"),
        ):
            number = value.get(ckey)
            if number is not None and number.__class__ in (int, float):
                attrs[name] = number
        return None
    gid = value.get("guardrailIdentifier")
    if isinstance(gid, str) and gid:
        attrs["rastir.guardrail.id"] = gid
    version = value.get("guardrailVersion")
    if isinstance(version, str) and version:
        attrs["rastir.guardrail.version"] = version
    return "aws.bedrock"


def request_phase(
    attrs: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    explicit_model: bool = False,
    explicit_provider: bool = False,
    names: tuple[str, ...] | None = None,
) -> tuple[str | None, str | None]:
    """Read the call's arguments into ``attrs``; returns the (model, provider) seen.

    Only model names, provider names, a few numeric request parameters and guardrail
    identifiers are read: never keys, headers or tokens. The prompt is recorded only
    with ``capture_content`` on. ``names`` are the decorated function's positional
    parameter names (``_content.positional_names(fn)``, computed once per function):
    with them, a positional argument named like a secret is never taken as the prompt.

    This runs on every ``@llm`` call, so the registry's per-class lookup is inlined
    here (one pass over the arguments, no call per argument).
    """
    model: str | None = None
    provider: str | None = None
    reg = _registry or _get_registry()
    cache = reg._rq_cache
    objects: list[Any] | None = None  # (adapter, argument) pairs to read
    for value in args:
        cls = type(value)
        adapter = cache.get(cls, _MISS)
        if adapter is _MISS:
            adapter = reg._request_adapter(cls)
        if adapter is not None:
            if objects is None:
                objects = []
            objects.append((adapter, value))
    if kwargs:
        models = 0
        get = _KWARGS.get
        for key, value in kwargs.items():
            role = get(key)
            if role is None:
                cls = type(value)
                adapter = cache.get(cls, _MISS)
                if adapter is _MISS:
                    adapter = reg._request_adapter(cls)
                if adapter is not None:
                    if objects is None:
                        objects = []
                    objects.append((adapter, value))
            elif role == _MODEL:
                if value.__class__ is str and value:
                    models += 1
                    model = value
            elif role.__class__ is str:
                if value is not None and value.__class__ in (int, float):
                    attrs[role] = value
            else:
                provider = _read_config(attrs, role, value) or provider  # type: ignore[arg-type]
        if models > 1:  # several spellings: the documented order decides
            for key in _MODEL_ORDER:
                value = kwargs.get(key)
                if value.__class__ is str and value:
                    model = value
                    break
    found: list[AdapterResult] = []
    if objects is not None:
        for adapter, value in objects:
            r = adapter.extract_request_object(value)
            if r is not None:
                found.append(r)
    for adapter in reg._arg_scanners:
        if adapter.can_handle_request(args, kwargs):
            r = adapter.extract_request_metadata(args, kwargs)
            if r is not None:
                found.append(r)
    for r in found:
        # What the call names explicitly (a ``model=`` keyword) beats what a client
        # or model object was configured with; the objects fill what is missing.
        if model is None and r.model:
            model = r.model
        if r.provider and (provider is None or provider == "openai"):
            provider = r.provider
        if r.extra_attributes:
            for key, value in r.extra_attributes.items():
                attrs.setdefault(key, value)
    if model is not None and ("." in model or model.startswith("arn:")):
        short = _bedrock(attrs, model)
        if short is not None:
            model = short
            provider = "aws.bedrock"
    if model is not None and not explicit_model:
        attrs["gen_ai.request.model"] = model
    if provider is not None and not explicit_provider:
        attrs["gen_ai.provider.name"] = provider
    if _config._settings.capture_content:
        try:
            messages = _content.input_messages(args, kwargs, names)
            if messages:
                attrs["gen_ai.input.messages"] = _content.dumps(messages)
        except Exception:
            _log.debug("rastir: could not record the prompt", exc_info=True)
    return model, provider


def _merge(results: list[AdapterResult]) -> AdapterResult:
    """One result from a chain, later (more concrete) values winning."""
    if len(results) == 1:
        return results[0]
    merged = AdapterResult()
    extra: dict[str, Any] = {}
    for r in results:
        if r.extra_attributes:
            extra.update(r.extra_attributes)
        if r.model:
            merged.model = r.model
        if r.provider:
            merged.provider = r.provider
        if r.tokens_input is not None:
            merged.tokens_input = r.tokens_input
        if r.tokens_output is not None:
            merged.tokens_output = r.tokens_output
        if r.cache_read_tokens is not None:
            merged.cache_read_tokens = r.cache_read_tokens
        if r.cache_write_tokens is not None:
            merged.cache_write_tokens = r.cache_write_tokens
        if r.usage_details:
            merged.usage_details = {**(merged.usage_details or {}), **r.usage_details}
        if r.finish_reason:
            merged.finish_reason = r.finish_reason
        if r.finish_reasons:
            merged.finish_reasons = r.finish_reasons
        if r.response_id:
            merged.response_id = r.response_id
        if r.output_messages:
            merged.output_messages = r.output_messages
    merged.extra_attributes = extra
    return merged


# One shared tuple per finish reason. A span's attributes are kept as a tuple, not a
# list, because a dict holding a list (or a fresh tuple) is tracked by the garbage
# collector: every @llm span waiting in the export queue would add two tracked
# objects to each collection. A cached tuple of one str is untracked after the first
# collection it survives, so the span's attribute dict stays untracked too.
_REASONS: dict[str, tuple[str]] = {}


def _one_reason(reason: str) -> tuple[str]:
    t = _REASONS.get(reason)
    if t is None:
        if len(_REASONS) >= 256:  # providers have a handful; bound the odd ones
            _REASONS.clear()
        t = _REASONS[reason] = (reason,)
    return t


def write_result(
    attrs: dict[str, Any],
    r: AdapterResult,
    explicit_model: str | None = None,
    explicit_provider: str | None = None,
    result: Any = None,
) -> None:
    """Put one (merged) result on a span's attributes, then price it.

    ``result`` is the response ``r`` was read from, if any: a few counts that matter
    for a single provider are read from it only then.
    """
    if r.extra_attributes:
        attrs.update(r.extra_attributes)
    model = r.model
    if model:
        if explicit_model is None:
            attrs["gen_ai.response.model"] = model
            if "gen_ai.request.model" not in attrs:
                attrs["gen_ai.request.model"] = model
        elif model != explicit_model:
            # The decorator's word wins the label; what the provider said is kept.
            attrs["rastir.response.model_reported"] = model
    provider = r.provider
    tin = r.tokens_input
    tout = r.tokens_output
    if provider == "openai":
        # An OpenAI-shaped response says nothing about who served it (Azure, Groq, a
        # gateway): any provider found in the request stays.
        host = attrs.get("gen_ai.provider.name")
        if host is None:
            if explicit_provider is None:
                attrs["gen_ai.provider.name"] = provider
        elif host in _REASONING_OUTSIDE and tout is not None:
            # Reasoning tokens are output tokens (AUD-6): xAI's Chat Completions
            # completion_tokens leave them out (OpenAI's include them).
            details = r.usage_details
            reasoning = details.get("reasoning_tokens") if details else None
            if reasoning is None and result is not None:
                reasoning = _chat_reasoning(result)
            if reasoning:
                tout += reasoning
                attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
    elif provider and explicit_provider is None:
        # Anthropic's and google-genai's classes are the same whoever hosts the
        # model, so a host the request named (Bedrock, Vertex AI) stays.
        hosts = _HOSTS.get(provider)
        if hosts is None or attrs.get("gen_ai.provider.name") not in hosts:
            attrs["gen_ai.provider.name"] = provider
    if tin is not None:
        attrs["gen_ai.usage.input_tokens"] = tin
    if tout is not None:
        attrs["gen_ai.usage.output_tokens"] = tout
    cr = r.cache_read_tokens
    cw = r.cache_write_tokens
    if cr:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cr
    if cw:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = cw
    if r.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = tuple(r.finish_reasons)
    elif r.finish_reason:
        attrs["gen_ai.response.finish_reasons"] = _one_reason(r.finish_reason)
    if r.response_id:
        attrs["gen_ai.response.id"] = r.response_id
    if tin is None and tout is None:
        return
    # Cost: the registry's int-count entry point, no TokenUsage built per call.
    price = _pricing or _load_pricing()
    if price is False:
        return
    # A Bedrock call is priced by the id it sent (``us.meta.llama3-...-v1:0``, an
    # ARN): the short model on the span is not a price-list entry. A response that
    # names another model (not the short form of that id) is priced by its own name.
    bedrock_id = attrs.get("aws.bedrock.model_id")
    if bedrock_id is not None and (not model or model in bedrock_id):
        name = bedrock_id
    else:
        name = model or attrs.get("gen_ai.request.model") or explicit_model
    if not name:
        attrs["rastir.cost.unknown"] = True
        return
    details = r.usage_details
    try:
        if details:
            part = details.get
            cost = _pricing_parts(
                attrs.get("gen_ai.provider.name"),
                name,
                tin or 0,
                tout or 0,
                cr or 0,
                cw or 0,
                None,
                part("cache_write_1h_tokens", 0),
                part("input_audio_tokens", 0),
                part("cache_audio_read_tokens", 0),
                part("output_audio_tokens", 0),
                part("input_image_tokens", 0),
                part("cache_image_read_tokens", 0),
                part("output_image_tokens", 0),
                part("input_video_tokens", 0),
                part("cache_video_read_tokens", 0),
                part("output_video_tokens", 0),
            )
        else:
            cost = price(
                attrs.get("gen_ai.provider.name"), name, tin or 0, tout or 0, cr or 0, cw or 0
            )
    except Exception:
        _log.debug("rastir: pricing failed", exc_info=True)
        cost = None
    if cost is None:
        attrs["rastir.cost.unknown"] = True
    else:
        attrs["rastir.cost.usd"] = float(cost)


def response_phase(
    attrs: dict[str, Any],
    result: Any,
    explicit_model: str | None = None,
    explicit_provider: str | None = None,
) -> None:
    """Run the adapter chain on ``result`` and write what it found."""
    reg = _registry or _get_registry()
    # The registry's fast path, inlined: a class no framework wraps, whose provider
    # candidates are cached.
    cls = type(result)
    merged: AdapterResult | None = None
    if reg._fw_cache.get(cls) == ():
        cands = reg._pv_cache.get(cls)
        if cands is not None:
            for adapter, certain in cands:
                if not certain:
                    try:
                        certain = adapter.can_handle(result)
                    except Exception:
                        continue
                if certain:
                    merged = adapter.transform(result)
                    break
            else:
                return
    if merged is None:
        results = reg.response(result)
        if not results:
            return
        merged = results[0] if len(results) == 1 else _merge(results)
    write_result(attrs, merged, explicit_model, explicit_provider, result)
    if _config._settings.capture_content:
        try:
            messages = merged.output_messages or reg.output_messages(result)
            if messages:
                attrs["gen_ai.output.messages"] = _content.dumps(messages)
        except Exception:
            _log.debug("rastir: could not record the response", exc_info=True)


# -- cost ------------------------------------------------------------------------------------
# The process's PricingRegistry.price_counts once imported; False without
# rastir.pricing. get_pricing() returns one registry for the life of the process.
_pricing: Any = None
# Its price_parts: a call whose usage has parts priced apart (1-hour cache writes,
# audio); set with _pricing.
_pricing_parts: Any = None


def _load_pricing() -> Any:
    global _pricing, _pricing_parts
    try:
        from rastir.pricing import get_pricing
    except ImportError:
        _pricing = False
    else:
        registry = get_pricing()
        _pricing_parts = registry.price_parts
        _pricing = registry.price_counts
    return _pricing


_warming: threading.Thread | None = None
_warming_lock = threading.Lock()


def warm_pricing() -> threading.Thread | None:
    """Load the adapter registry and the price data on a daemon thread, once per process.

    Importing genai-prices' tables takes a few hundred milliseconds. ``@llm`` calls
    this when it decorates a function (usually at import time, long before the first
    call), so the first priced call finds the data loaded instead of loading it on the
    application's thread. A call that comes sooner waits for the load to finish, as it
    would have without the warm-up.
    """
    global _warming
    if _warming is not None:
        return _warming
    with _warming_lock:
        if _warming is None:

            def load() -> None:
                try:
                    # The adapter registry too: building it imports the 15 built-in
                    # adapters (tens of ms), which the first call would otherwise pay.
                    _get_registry()
                    pricing = _load_pricing()
                    if pricing is not False:
                        from rastir.pricing import get_pricing

                        get_pricing().preload()
                except Exception:  # never the application's problem
                    _log.debug("rastir: price data preload failed", exc_info=True)

            thread = threading.Thread(target=load, name="rastir-pricing-preload", daemon=True)
            thread.start()
            _warming = thread
    return _warming
