"""Error normalisation: map any exception to one of six fixed categories.

Spans record *what kind* of failure happened so that dashboards can tell a
provider's rate limit from a bug in the application. The mapping has to work for
the common LLM SDKs and HTTP clients without importing them: importing ``openai``
or ``botocore`` costs hundreds of milliseconds and they are optional. Exceptions
are therefore recognised by class name, by module name and by walking the MRO,
and by the HTTP status code an exception carries.

This module imports nothing outside the interpreter core so that importing it
stays far below a millisecond (``typing`` alone costs several).
"""

from __future__ import annotations

import _thread

__all__ = [
    "CATEGORIES",
    "RastirError",
    "classify",
    "classify_status",
    "error_info",
    "is_cancellation",
    "register_error_mapping",
    "status_code_of",
    "unregister_error_mapping",
]


class RastirError(Exception):
    """Root of every exception raised by rastir itself.

    Catch this to handle any rastir failure; more specific errors subclass it.
    """


CATEGORIES: tuple[str, ...] = (
    "timeout",
    "rate_limit",
    "validation_error",
    "provider_error",
    "internal_error",
    "unknown",
)

_TIMEOUT = "timeout"
_RATE_LIMIT = "rate_limit"
_VALIDATION = "validation_error"
_PROVIDER = "provider_error"
_INTERNAL = "internal_error"
_UNKNOWN = "unknown"

# Top-level packages of LLM SDKs and HTTP transports: anything they raise that no
# more specific rule recognises is the provider's (or the network's) failure.
_PROVIDER_PACKAGES = frozenset(
    {
        "openai",
        "anthropic",
        "cohere",
        "mistralai",
        "groq",
        "botocore",
        "boto3",
        "httpx",
        "httpx2",
        "httpcore",
        "aiohttp",
        "requests",
        "urllib3",
        "litellm",
    }
)
# ``google`` is a namespace package shared with protobuf and friends, so only the
# two client libraries count (``google.generativeai`` raises api_core errors).
_PROVIDER_MODULE_PREFIXES = ("google.genai", "google.api_core")

# Stdlib modules whose exceptions come from the network.
_NETWORK_MODULES = frozenset({"socket", "ssl", "http.client", "urllib.error"})

# Timeout class names recognised in any module: builtins (``asyncio.TimeoutError``
# and ``socket.timeout`` are aliases of it since 3.11/3.10; on 3.10 asyncio's is
# its own class of the same name), httpx/httpx2/httpcore, openai/anthropic,
# botocore and urllib3.
_TIMEOUT_NAMES = frozenset(
    {
        "TimeoutError",
        "TimeoutException",
        "APITimeoutError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
    }
)
# ``Timeout`` is too generic a name to trust everywhere; requests and litellm
# (and botocore's vendored requests) use it for their timeout base class.
_PROVIDER_TIMEOUT_NAMES = frozenset({"Timeout"})
_RATE_LIMIT_NAMES = frozenset({"RateLimitError"})
# pydantic/pydantic_core, jsonschema, marshmallow and Django all call their
# validation failure ``ValidationError``; botocore checks parameters client-side.
_VALIDATION_NAMES = frozenset({"ValidationError", "ParamValidationError"})
# These names only mean "the request was invalid" inside an SDK.
_PROVIDER_VALIDATION_NAMES = frozenset(
    {"BadRequestError", "UnprocessableEntityError", "NotFoundError"}
)
# Builtin exceptions that signal a bug in the program rather than bad input.
_INTERNAL_BUILTINS = frozenset(
    {
        "KeyError",
        "IndexError",
        "AttributeError",
        "TypeError",
        "NameError",
        "RuntimeError",
        "AssertionError",
        "ZeroDivisionError",
        "NotImplementedError",
        "RecursionError",
        "LookupError",
        "ArithmeticError",
    }
)

# botocore puts the service's error code in ``response["Error"]["Code"]`` and the
# HTTP status is not always telling (S3 ``RequestTimeout`` and some throttling
# errors come back as 400), so the code is consulted before the status.
_AWS_ERROR_CODES = {
    "Throttling": _RATE_LIMIT,
    "ThrottlingException": _RATE_LIMIT,
    "ThrottledException": _RATE_LIMIT,
    "RequestThrottled": _RATE_LIMIT,
    "RequestThrottledException": _RATE_LIMIT,
    "TooManyRequestsException": _RATE_LIMIT,
    "ServiceQuotaExceededException": _RATE_LIMIT,
    "ProvisionedThroughputExceededException": _RATE_LIMIT,
    "RequestLimitExceeded": _RATE_LIMIT,
    "SlowDown": _RATE_LIMIT,
    "ValidationException": _VALIDATION,
    "ValidationError": _VALIDATION,
    "ModelTimeoutException": _TIMEOUT,
    "RequestTimeout": _TIMEOUT,
    "RequestTimeoutException": _TIMEOUT,
}

_STATUS_CATEGORIES = {
    408: _TIMEOUT,
    504: _TIMEOUT,
    429: _RATE_LIMIT,
    400: _VALIDATION,
    404: _VALIDATION,
    409: _VALIDATION,
    413: _VALIDATION,
    422: _VALIDATION,
    401: _PROVIDER,
    403: _PROVIDER,
}

# Rule strength while walking the MRO: a specific name anywhere in the MRO beats
# membership of a provider package, which beats the generic builtin fallbacks
# (an SDK error that also subclasses ``ValueError`` is still the SDK's error).
_SPECIFIC = 0
_PROVIDER_MODULE = 1
_GENERIC = 2

# Classes are cached per type; cap the cache so that code creating exception
# classes on the fly cannot grow it (and keep those classes alive) forever.
_CACHE_LIMIT = 1024


class _Decision:
    """What can be decided about an exception class without looking at the instance.

    Attributes:
        category: The registered category when ``registered``, else the category
            from the class-name and module rules.
        registered: A user registration matched, so the instance is not consulted.
        aws: The class is a botocore ``ClientError``, so the error code on the
            instance is consulted.
    """

    __slots__ = ("aws", "category", "registered")

    def __init__(self, category: str, registered: bool, aws: bool) -> None:
        self.category = category
        self.registered = registered
        self.aws = aws


class _State:
    """Registrations and the per-class cache derived from them.

    Replaced as a whole on every registration change, so a reader that took one
    snapshot never mixes new registrations with decisions cached under old ones.
    """

    __slots__ = ("by_class", "by_name", "cache")

    def __init__(
        self,
        by_class: dict[type[BaseException], str],
        by_name: dict[str, str],
    ) -> None:
        self.by_class = by_class
        self.by_name = by_name
        self.cache: dict[type[BaseException], _Decision] = {}


_state = _State({}, {})
# Serialises writers only; readers take the current ``_state`` without locking.
_write_lock = _thread.allocate_lock()


def _module_of(cls: type) -> str:
    # ``__module__`` is writable on classes and may be anything (or missing).
    module = getattr(cls, "__module__", None)
    return module if isinstance(module, str) else ""


def _type_name(cls: type) -> str:
    module = _module_of(cls)
    if module in ("builtins", ""):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _is_provider_module(module: str) -> bool:
    if module.partition(".")[0] in _PROVIDER_PACKAGES:
        return True
    return any(
        module == prefix or module.startswith(prefix + ".") for prefix in _PROVIDER_MODULE_PREFIXES
    )


def _rule_for(cls: type) -> tuple[int, str] | None:
    """Return the (strength, category) one class in an MRO stands for, if any."""
    name = cls.__name__
    module = _module_of(cls)
    provider = _is_provider_module(module)
    if name in _TIMEOUT_NAMES or (provider and name in _PROVIDER_TIMEOUT_NAMES):
        return _SPECIFIC, _TIMEOUT
    if name == "TooSlowError" and module.partition(".")[0] == "trio":
        return _SPECIFIC, _TIMEOUT
    if name in _RATE_LIMIT_NAMES:
        return _SPECIFIC, _RATE_LIMIT
    if name in _VALIDATION_NAMES or (provider and name in _PROVIDER_VALIDATION_NAMES):
        return _SPECIFIC, _VALIDATION
    if provider:
        return _PROVIDER_MODULE, _PROVIDER
    if module == "builtins":
        if name == "ValueError":
            return _GENERIC, _VALIDATION
        if name == "ConnectionError":
            return _GENERIC, _PROVIDER
        if name in _INTERNAL_BUILTINS:
            return _GENERIC, _INTERNAL
    elif module in _NETWORK_MODULES:
        return _GENERIC, _PROVIDER
    return None


def _decide(cls: type[BaseException], state: _State) -> _Decision:
    mro = cls.__mro__
    if state.by_class or state.by_name:
        for klass in mro:
            category = state.by_class.get(klass)
            if category is None and state.by_name:
                qualified = _type_name(klass)
                category = state.by_name.get(qualified)
                if category is None and "." not in qualified:
                    category = state.by_name.get("builtins." + qualified)
            if category is not None:
                return _Decision(category, registered=True, aws=False)

    aws = False
    best: tuple[int, str] | None = None
    for klass in mro:
        if klass.__name__ == "ClientError" and _module_of(klass).startswith("botocore."):
            aws = True
        rule = _rule_for(klass)
        if rule is not None and (best is None or rule[0] < best[0]):
            best = rule
    return _Decision(_UNKNOWN if best is None else best[1], registered=False, aws=aws)


def _aws_category(exc: BaseException) -> str | None:
    try:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error")
            if isinstance(error, dict):
                code = error.get("Code")
                if isinstance(code, str):
                    return _AWS_ERROR_CODES.get(code)
    except Exception:
        pass
    return None


def _status_category(status: int) -> str | None:
    category = _STATUS_CATEGORIES.get(status)
    if category is None and 500 <= status <= 599:
        # Includes non-standard 5xx such as Anthropic's 529 "overloaded".
        category = _PROVIDER
    return category


def classify_status(status: int) -> str:
    """The category of an HTTP error status on its own, as a client span records it.

    Statuses with no specific rule fall back by class: other 4xx are
    ``validation_error`` (the request was refused), anything else ``unknown``.
    """
    category = _status_category(status)
    if category is not None:
        return category
    return _VALIDATION if 400 <= status <= 499 else _UNKNOWN


def classify(exc: BaseException) -> str:
    """Map an exception to one of `CATEGORIES`.

    Rules, first match wins:

    1. A mapping added with `register_error_mapping` for the exception's class or
       any class in its MRO (nearest first).
    2. For botocore ``ClientError``, the service error code (``ThrottlingException``
       and friends).
    3. The HTTP status code from `status_code_of`: 408/504 are timeouts, 429 a
       rate limit, 400/404/409/413/422 validation errors, 401/403 and any other
       5xx provider errors. Only `Exception` instances are consulted, so that
       ``SystemExit(500)`` is not mistaken for a server error.
    4. Class names and modules over the MRO: known timeout, rate-limit and
       validation classes; then anything raised by a known SDK or HTTP transport
       (provider error); then builtin ``ValueError`` (validation),
       ``ConnectionError`` and stdlib network errors (provider), and builtin
       programming errors such as ``KeyError`` or ``TypeError`` (internal).
    5. ``"unknown"``.

    The class-only part of the decision is cached per exception class.

    Args:
        exc: The exception to classify. It is never modified.

    Returns:
        One of `CATEGORIES`. Never raises.
    """
    try:
        cls = type(exc)
        state = _state
        decision = state.cache.get(cls)
        if decision is None:
            decision = _decide(cls, state)
            cache = state.cache
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[cls] = decision
        if decision.registered:
            return decision.category
        if decision.aws:
            category = _aws_category(exc)
            if category is not None:
                return category
        if isinstance(exc, Exception):
            status = status_code_of(exc)
            if status is not None:
                category = _status_category(status)
                if category is not None:
                    return category
        return decision.category
    except Exception:
        return _UNKNOWN


def _as_status(value: object) -> int | None:
    # bool is an int subclass; ``status = True`` is not an HTTP status.
    if isinstance(value, int) and not isinstance(value, bool):
        status = int(value)
        if 100 <= status <= 599:
            return status
    return None


def _attribute_status(obj: object, name: str) -> int | None:
    try:
        return _as_status(getattr(obj, name, None))
    except Exception:
        # A property may raise anything, e.g. httpx's ``.request`` when unset.
        return None


def status_code_of(exc: BaseException) -> int | None:
    """Find the HTTP status code an exception carries, if any.

    Looked up in order: ``exc.status_code`` (openai/anthropic ``APIStatusError``,
    cohere, mistralai, litellm), ``exc.status`` (aiohttp), ``exc.response.status_code``
    (httpx ``HTTPStatusError``, requests), botocore's
    ``exc.response["ResponseMetadata"]["HTTPStatusCode"]`` and ``exc.code``
    (urllib, google). Only ``int`` values (not ``bool``) from 100 to 599 count.

    Args:
        exc: Any exception, or any object at all.

    Returns:
        The status code, or ``None`` when none is found. Never raises, even for
        properties that raise or attributes of unexpected types.
    """
    status = _attribute_status(exc, "status_code")
    if status is not None:
        return status
    status = _attribute_status(exc, "status")
    if status is not None:
        return status
    try:
        response = getattr(exc, "response", None)
    except Exception:
        response = None
    if response is not None:
        if isinstance(response, dict):
            try:
                metadata = response.get("ResponseMetadata")
                if isinstance(metadata, dict):
                    status = _as_status(metadata.get("HTTPStatusCode"))
            except Exception:
                status = None
        else:
            status = _attribute_status(response, "status_code")
        if status is not None:
            return status
    return _attribute_status(exc, "code")


def error_info(exc: BaseException, max_message: int = 512) -> tuple[str, str, str]:
    """Describe an exception for a span: its category, type name and message.

    Args:
        exc: The exception to describe.
        max_message: Upper bound on the length of the message. A longer message
            is cut so that, with the trailing ``"…"`` that marks the cut, it is
            exactly ``max_message`` characters long. ``0`` or less gives ``""``.

    Returns:
        ``(category, exception_type, message)``: the category from `classify`;
        ``"module.QualName"`` of the exception's class (just ``QualName`` for
        builtins); and ``str(exc)``, or ``"<unprintable QualName object>"`` when
        that raises. Never raises.
    """
    category = classify(exc)
    try:
        exception_type = _type_name(type(exc))
    except Exception:
        exception_type = "<unknown>"
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {exception_type} object>"
    try:
        if len(message) > max_message:
            message = message[: max_message - 1] + "…" if max_message > 0 else ""
    except Exception:
        # Only reachable with a max_message that is not an int.
        message = message[:512]
    return category, exception_type, message


def is_cancellation(exc: BaseException) -> bool:
    """Tell whether an exception means "stop" rather than "failed".

    Cancellation is ``asyncio.CancelledError``, trio's ``Cancelled`` (anyio's
    cancellation class is whichever of these its backend uses),
    ``KeyboardInterrupt`` and ``SystemExit``, and their subclasses. These must not
    mark a span as an error. ``GeneratorExit`` is not cancellation: it is how a
    generator is closed. Neither are ``concurrent.futures.CancelledError`` or
    anyio's ``TaskCancelled``, which report that *another* task was cancelled.

    Args:
        exc: The exception to test. Neither trio nor asyncio is imported.

    Returns:
        Whether ``exc`` is a cancellation.
    """
    if isinstance(exc, Exception):
        # Every cancellation class derives from BaseException directly.
        return False
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return True
    for cls in type(exc).__mro__:
        name = cls.__name__
        if name == "CancelledError":
            if _module_of(cls) == "asyncio.exceptions":
                return True
        elif name == "Cancelled" and _module_of(cls).partition(".")[0] == "trio":
            return True
    return False


def _registration_key(target: type[BaseException] | str) -> type[BaseException] | str:
    if isinstance(target, str):
        key = target.strip()
        if not key:
            raise ValueError("an error mapping needs a class or a 'module.ClassName' name")
        return key
    if isinstance(target, type) and issubclass(target, BaseException):
        return target
    raise TypeError(
        f"an error mapping needs an exception class or a 'module.ClassName' name, "
        f"not {type(target).__name__}"
    )


def register_error_mapping(target: type[BaseException] | str, category: str) -> None:
    """Force a category for an exception class and its subclasses.

    Registrations take precedence over every built-in rule. When several
    registered classes appear in an exception's MRO, the nearest one wins.

    Args:
        target: An exception class, or its dotted name ``"module.QualName"`` so
            the class's package need not be imported (builtins may be named
            with or without ``"builtins."``). Matched against the name that
            `error_info` reports, e.g. ``"openai.RateLimitError"``.
        category: One of `CATEGORIES`.

    Raises:
        ValueError: ``category`` is not one of `CATEGORIES`, or ``target`` is an
            empty name.
        TypeError: ``target`` is neither an exception class nor a string.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown error category {category!r}; expected one of {CATEGORIES}")
    key = _registration_key(target)
    global _state
    with _write_lock:
        by_class = dict(_state.by_class)
        by_name = dict(_state.by_name)
        if isinstance(key, str):
            by_name[key] = category
        else:
            by_class[key] = category
        _state = _State(by_class, by_name)


def unregister_error_mapping(target: type[BaseException] | str) -> None:
    """Remove a mapping added with `register_error_mapping`.

    Removing a mapping that does not exist does nothing.

    Args:
        target: The class or name exactly as it was registered.

    Raises:
        ValueError: ``target`` is an empty name.
        TypeError: ``target`` is neither an exception class nor a string.
    """
    key = _registration_key(target)
    global _state
    with _write_lock:
        by_class = dict(_state.by_class)
        by_name = dict(_state.by_name)
        if isinstance(key, str):
            by_name.pop(key, None)
        else:
            by_class.pop(key, None)
        _state = _State(by_class, by_name)
