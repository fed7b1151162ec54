"""What an adapter is: the result types it produces and the base class it extends.

An adapter is a stateless reader. It looks at the arguments of an ``@llm`` call
(request phase), at what the call returned (response phase) or at one chunk of a
stream, and says what it found: model, provider, tokens, finish reason and extra
attributes. It never creates spans, never keeps state between calls and never
imports the SDK whose objects it reads: it recognises them by class name and module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

__all__ = [
    "FALLBACK",
    "FRAMEWORK",
    "PROVIDER",
    "USAGE_DETAILS",
    "AdapterResult",
    "BaseAdapter",
    "TokenDelta",
    "add_usage_detail",
    "class_name",
    "detect_provider_from_module",
    "get",
    "in_package",
    "int_or_none",
    "str_or_none",
]

# The keys of ``usage_details``. All but the last are ``rastir.pricing.TokenUsage``
# fields, parts of the main counts priced apart: 1-hour cache writes (part of the
# cache writes); for audio, image and video, the prompt's tokens (cached ones
# included), those read from the cache (part of the cache reads too) and the
# generated ones (part of the output). ``reasoning_tokens`` is a Chat Completions
# response's ``completion_tokens_details.reasoning_tokens``: inside the output count
# for OpenAI, outside it for xAI, whose spans get them added (``_apply.write_result``).
USAGE_DETAILS: Final = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "cache_image_read_tokens",
    "output_image_tokens",
    "input_video_tokens",
    "cache_video_read_tokens",
    "output_video_tokens",
    "reasoning_tokens",
)

FRAMEWORK: Final = "framework"
PROVIDER: Final = "provider"
FALLBACK: Final = "fallback"


@dataclass(slots=True)
class AdapterResult:
    """What one adapter read from a request or a response.

    ``None`` means "not known here": the pipeline keeps whatever another phase or
    adapter found. ``tokens_input`` is as the provider reports it (OpenAI counts
    cached tokens inside it, Anthropic does not); the cache counts are separate.

    ``usage_details`` holds the rarer counts that only refine the price, by name
    (see :data:`USAGE_DETAILS`), or None: most responses have none, and one field
    keeps building a result cheap.
    """

    unwrapped_result: Any = None
    model: str | None = None
    provider: str | None = None
    tokens_input: int | None = None
    tokens_output: int | None = None
    finish_reason: str | None = None
    extra_attributes: dict[str, Any] = field(default_factory=dict)
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    response_id: str | None = None
    # Every choice's finish reason, when a response has several.
    finish_reasons: list[str] | None = None
    # The generated messages, as OTel GenAI output messages; recorded only with
    # capture_content on.
    output_messages: list[dict[str, Any]] | None = None
    usage_details: dict[str, int] | None = None


@dataclass(slots=True)
class TokenDelta:
    """What one stream chunk says.

    ``content`` is True when the chunk carries generated content (text or a tool
    call): the first such chunk marks the time to first token. Token counts are
    running totals when ``cumulative`` (OpenAI's usage chunk, Anthropic's
    ``message_delta``, Gemini, Bedrock's ``metadata``), increments otherwise
    (LangChain's ``AIMessageChunk``).
    """

    tokens_input: int | None = None
    tokens_output: int | None = None
    model: str | None = None
    provider: str | None = None
    finish_reason: str | None = None
    content: bool = False
    text: str | None = None
    cumulative: bool = True
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    response_id: str | None = None
    extra_attributes: dict[str, Any] | None = None
    # Running totals or increments like the counts above; see AdapterResult.
    usage_details: dict[str, int] | None = None


class BaseAdapter:
    """Base class of every adapter. Subclass it and register an instance.

    Detection is by type whenever possible: :meth:`match_type` answers True or False
    from the class alone, and the registry caches that answer per class, so a type is
    examined once per process. Return None from it when the answer depends on the
    value (a ``dict`` with a ``messages`` key, say); :meth:`can_handle` is then asked
    on every object of that type.

    Capability flags tell the registry which phases to ask this adapter about.
    """

    name: ClassVar[str] = "base"
    kind: ClassVar[str] = PROVIDER
    priority: ClassVar[int] = 100
    supports_request: ClassVar[bool] = False
    supports_response: ClassVar[bool] = True
    supports_streaming: ClassVar[bool] = False

    # -- response phase ------------------------------------------------------------
    def match_type(self, cls: type) -> bool | None:
        """True/False when the class alone decides; None to look at each value."""
        return None

    def can_handle(self, result: Any) -> bool:
        """Whether :meth:`transform` applies to this response."""
        return self.match_type(type(result)) is True

    def transform(self, result: Any) -> AdapterResult:
        """Read a response. Frameworks set ``unwrapped_result`` to the inner object."""
        raise NotImplementedError

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        """The generated messages as OTel output messages; asked only when content
        capture is on, so :meth:`transform` stays cheap."""
        return None

    # -- request phase -------------------------------------------------------------
    def match_request_type(self, cls: type) -> bool:
        """Whether an argument of this class is an SDK client or model object this
        adapter reads (cached per class by the registry)."""
        return False

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        """Read model and provider from an argument :meth:`match_request_type` chose."""
        return None

    def can_handle_request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether any argument is one this adapter reads."""
        return self._find_in_args(args, kwargs, self.match_request_type) is not None

    def extract_request_metadata(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AdapterResult | None:
        """Read the request: by default, the first argument this adapter recognises."""
        obj = self._find_in_args(args, kwargs, self.match_request_type)
        return None if obj is None else self.extract_request_object(obj)

    # -- streaming -----------------------------------------------------------------
    def match_stream_type(self, cls: type) -> bool | None:
        """Like :meth:`match_type`, for stream chunks."""
        return None

    def can_handle_stream(self, chunk: Any) -> bool:
        """Whether :meth:`extract_stream_delta` applies to this chunk."""
        return self.match_stream_type(type(chunk)) is True

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        """Read one chunk of a stream."""
        return None

    # -- helpers for subclasses --------------------------------------------------
    @staticmethod
    def _find_in_args(
        args: tuple[Any, ...], kwargs: Mapping[str, Any], match: Callable[[type], bool]
    ) -> Any:
        """The first positional or keyword argument whose class ``match`` accepts."""
        for value in args:
            if match(type(value)):
                return value
        for value in kwargs.values():
            if match(type(value)):
                return value
        return None

    @staticmethod
    def _extract_model_attr(
        obj: Any, names: tuple[str, ...] = ("model_name", "model", "model_id", "deployment_name")
    ) -> str | None:
        """The first non-empty string attribute among ``names``."""
        for name in names:
            try:
                value = getattr(obj, name, None)
            except Exception:
                continue
            if isinstance(value, str) and value:
                return value
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.kind} priority={self.priority}>"


# Module prefix (first dotted part) -> OTel ``gen_ai.provider.name`` well-known value.
_MODULE_PROVIDERS: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "groq": "groq",
    "mistralai": "mistral_ai",
    "cohere": "cohere",
    "google": "gcp.gemini",
    "boto3": "aws.bedrock",
    "botocore": "aws.bedrock",
    "langchain_openai": "openai",
    "langchain_anthropic": "anthropic",
    "langchain_groq": "groq",
    "langchain_mistralai": "mistral_ai",
    "langchain_cohere": "cohere",
    "langchain_google_genai": "gcp.gemini",
    "langchain_google_vertexai": "gcp.vertex_ai",
    "langchain_aws": "aws.bedrock",
    "langchain_deepseek": "deepseek",
    "langchain_xai": "x_ai",
    "langchain_ibm": "ibm.watsonx.ai",
}
# Substrings of a module path, checked when the prefix is not enough
# (``llama_index.llms.openai``, ``crewai``'s litellm-backed models, ...).
_MODULE_HINTS: Final[tuple[tuple[str, str], ...]] = (
    ("azure", "azure.ai.openai"),
    ("bedrock", "aws.bedrock"),
    ("anthropic", "anthropic"),
    ("groq", "groq"),
    ("mistral", "mistral_ai"),
    ("cohere", "cohere"),
    ("vertex", "gcp.vertex_ai"),
    ("gemini", "gcp.gemini"),
    ("google_genai", "gcp.gemini"),
    ("deepseek", "deepseek"),
    ("openai", "openai"),
)


def detect_provider_from_module(module: str) -> str | None:
    """Map a module path to an OTel provider name, or None."""
    if not module:
        return None
    head = module.partition(".")[0]
    found = _MODULE_PROVIDERS.get(head)
    if found is not None and found != "openai":
        return found
    lowered = module.lower()
    for hint, provider in _MODULE_HINTS:
        if hint in lowered:
            return provider
    return found


def add_usage_detail(r: AdapterResult | TokenDelta, key: str, count: Any) -> None:
    """Record one of the :data:`USAGE_DETAILS` counts on ``r`` when it is a count > 0."""
    value = int_or_none(count)
    if value:
        details = r.usage_details
        if details is None:
            details = r.usage_details = {}
        details[key] = value


def infer_cached_part(
    r: AdapterResult | TokenDelta, key: str, part: int, uncached: int, cache_read: int | None
) -> None:
    """Record under ``key`` how much of a prompt part must have come from the cache.

    Usages report a modality's prompt tokens (``audio_tokens``) cached ones included,
    without saying how many the cache held. When the uncached prompt cannot hold
    them all, at least the excess was read from the cache: recording it keeps the
    parts within their counts, so the call is priced instead of left unknown.
    """
    excess = part - max(uncached, 0)
    if excess > 0 and cache_read:
        add_usage_detail(r, key, min(excess, cache_read))


def class_name(cls: type) -> str:
    """A class's name without generic parameters: pydantic names the classes of its
    parametrised generic models ``ParsedChatCompletion[~ResponseFormatT]`` or
    ``ParsedResponse[Answer]``; this gives ``ParsedChatCompletion`` and
    ``ParsedResponse``. Called when a class is first matched (the answer is cached)."""
    return cls.__name__.partition("[")[0]


def in_package(cls: type, package: str) -> bool:
    """Whether ``cls`` is defined in ``package`` or one of its submodules."""
    module = cls.__module__
    return module.startswith(package) and (
        len(module) == len(package) or module[len(package)] == "."
    )


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` otherwise; None when missing."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    try:
        return getattr(obj, key, None)
    except Exception:
        return None


def int_or_none(value: Any) -> int | None:
    """An int token count, or None (bools and negatives are not counts)."""
    if value.__class__ is int and value >= 0:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def str_or_none(value: Any) -> str | None:
    """A non-empty str, or None. Enum members give their value."""
    if value.__class__ is str:
        return value if value else None
    if isinstance(value, str):
        return str(value.value) if hasattr(value, "value") else str(value)
    inner = getattr(value, "value", None)
    if isinstance(inner, str) and inner:
        return inner
    return None
