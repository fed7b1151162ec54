"""Tests for rastir.errors, built on real exception objects from the real SDKs.

requests, aiohttp and the google client libraries are not dependencies of the test
suite, so their exceptions are represented by *stand-ins*: classes with the same
names, modules, bases and status attributes as the real ones. That is exactly
what `rastir.errors` inspects, since it never imports those packages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http
import json
import socket
import ssl
import subprocess
import sys
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import anyio
import anyio.lowlevel
import botocore.session  # type: ignore[import-untyped]
import httpx
import httpx2
import openai
import pydantic
import pytest
import trio
import urllib3.exceptions
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from hypothesis import given
from hypothesis import strategies as st

from rastir import errors
from rastir.errors import (
    CATEGORIES,
    RastirError,
    classify,
    error_info,
    is_cancellation,
    register_error_mapping,
    status_code_of,
    unregister_error_mapping,
)

# -- builders for real SDK exceptions ------------------------------------------------

# openai and anthropic are built on httpx2; the httpx tests use httpx itself.
_URL = "https://api.example.com/v1/chat"


def _sdk_response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("POST", _URL))


def _httpx_status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", _URL)
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def _openai(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    return cls("request failed", response=_sdk_response(status), body=None)


def _anthropic(cls: type[anthropic.APIStatusError], status: int) -> anthropic.APIStatusError:
    return cls("request failed", response=_sdk_response(status), body=None)


def _client_error(code: str, status: int) -> Any:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Converse",
    )


def _pydantic_error() -> pydantic.ValidationError:
    class Message(pydantic.BaseModel):
        role: str
        max_tokens: int

    try:
        Message.model_validate({"role": "user", "max_tokens": "many"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validation unexpectedly passed")


def _json_error() -> json.JSONDecodeError:
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("json unexpectedly parsed")


def _stand_in(
    module: str, name: str, bases: tuple[type[BaseException], ...], **attrs: object
) -> type[BaseException]:
    cls = type(name, bases, {"__module__": module, **attrs})
    assert issubclass(cls, BaseException)
    return cls


# Stand-ins shaped like requests.exceptions (RequestException derives from OSError).
_RequestException = _stand_in("requests.exceptions", "RequestException", (OSError,))
_RequestsTimeout = _stand_in("requests.exceptions", "Timeout", (_RequestException,))
_RequestsReadTimeout = _stand_in("requests.exceptions", "ReadTimeout", (_RequestsTimeout,))
_RequestsConnectionError = _stand_in("requests.exceptions", "ConnectionError", (_RequestException,))
_RequestsConnectTimeout = _stand_in(
    "requests.exceptions", "ConnectTimeout", (_RequestsConnectionError, _RequestsTimeout)
)
_RequestsHTTPError = _stand_in("requests.exceptions", "HTTPError", (_RequestException,))

# Stand-ins shaped like aiohttp.client_exceptions.
_AiohttpClientError = _stand_in("aiohttp.client_exceptions", "ClientError", (Exception,))
_AiohttpResponseError = _stand_in(
    "aiohttp.client_exceptions", "ClientResponseError", (_AiohttpClientError,)
)
_AiohttpServerTimeout = _stand_in(
    "aiohttp.client_exceptions", "ServerTimeoutError", (_AiohttpClientError, TimeoutError)
)

# Stand-ins shaped like google.api_core.exceptions and google.genai.errors, which
# carry the HTTP status as ``code``.
_GoogleAPICallError = _stand_in("google.api_core.exceptions", "GoogleAPICallError", (Exception,))
_GoogleResourceExhausted = _stand_in(
    "google.api_core.exceptions", "ResourceExhausted", (_GoogleAPICallError,), code=429
)
_GoogleServiceUnavailable = _stand_in(
    "google.api_core.exceptions", "ServiceUnavailable", (_GoogleAPICallError,), code=503
)
_GenaiAPIError = _stand_in("google.genai.errors", "APIError", (Exception,))
# Not a provider: protobuf shares the ``google`` namespace package.
_ProtobufDecodeError = _stand_in("google.protobuf.message", "DecodeError", (Exception,))


def _with(exc: BaseException, **attrs: object) -> BaseException:
    for name, value in attrs.items():
        setattr(exc, name, value)
    return exc


class _AppError(Exception):
    pass


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class _StrReturnsBytes(Exception):
    def __str__(self) -> str:
        return b"bytes"  # type: ignore[return-value]


class _RaisingStatus(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("lazy status failed")

    @property
    def response(self) -> object:
        raise KeyError("response")


class _RaisingEverything(Exception):
    def __getattr__(self, name: str) -> object:
        raise ValueError(name)


class _RaisingResponse:
    @property
    def status_code(self) -> int:
        raise httpx.ResponseNotRead()


class _NastyInt(int):
    def __int__(self) -> int:
        raise OverflowError("nasty")

    def __index__(self) -> int:
        raise OverflowError("nasty")


# -- classify ------------------------------------------------------------------------

CLASSIFY_CASES: list[tuple[str, BaseException, str]] = [
    # openai
    ("openai rate limit", _openai(openai.RateLimitError, 429), "rate_limit"),
    (
        "openai timeout",
        openai.APITimeoutError(request=httpx2.Request("POST", _URL)),
        "timeout",
    ),
    ("openai bad request", _openai(openai.BadRequestError, 400), "validation_error"),
    ("openai not found", _openai(openai.NotFoundError, 404), "validation_error"),
    ("openai conflict", _openai(openai.ConflictError, 409), "validation_error"),
    ("openai unprocessable", _openai(openai.UnprocessableEntityError, 422), "validation_error"),
    ("openai authentication", _openai(openai.AuthenticationError, 401), "provider_error"),
    ("openai permission denied", _openai(openai.PermissionDeniedError, 403), "provider_error"),
    ("openai server error", _openai(openai.InternalServerError, 500), "provider_error"),
    (
        "openai connection error",
        openai.APIConnectionError(request=httpx2.Request("POST", _URL)),
        "provider_error",
    ),
    # anthropic
    ("anthropic rate limit", _anthropic(anthropic.RateLimitError, 429), "rate_limit"),
    (
        "anthropic timeout",
        anthropic.APITimeoutError(request=httpx2.Request("POST", _URL)),
        "timeout",
    ),
    ("anthropic bad request", _anthropic(anthropic.BadRequestError, 400), "validation_error"),
    ("anthropic authentication", _anthropic(anthropic.AuthenticationError, 401), "provider_error"),
    ("anthropic server error", _anthropic(anthropic.InternalServerError, 500), "provider_error"),
    ("anthropic overloaded 529", _anthropic(anthropic.OverloadedError, 529), "provider_error"),
    ("anthropic gateway timeout", _anthropic(anthropic.GatewayTimeoutError, 504), "timeout"),
    ("anthropic request timeout", _anthropic(anthropic.RequestTimeoutError, 408), "timeout"),
    ("anthropic too large", _anthropic(anthropic.ContentTooLargeError, 413), "validation_error"),
    (
        "anthropic connection error",
        anthropic.APIConnectionError(request=httpx2.Request("POST", _URL)),
        "provider_error",
    ),
    # httpx and httpx2
    ("httpx read timeout", httpx.ReadTimeout("timed out"), "timeout"),
    ("httpx connect timeout", httpx.ConnectTimeout("timed out"), "timeout"),
    ("httpx write timeout", httpx.WriteTimeout("timed out"), "timeout"),
    ("httpx pool timeout", httpx.PoolTimeout("timed out"), "timeout"),
    ("httpx connect error", httpx.ConnectError("refused"), "provider_error"),
    ("httpx remote protocol error", httpx.RemoteProtocolError("eof"), "provider_error"),
    ("httpx status 429", _httpx_status_error(429), "rate_limit"),
    ("httpx status 500", _httpx_status_error(500), "provider_error"),
    ("httpx status 422", _httpx_status_error(422), "validation_error"),
    ("httpx status 408", _httpx_status_error(408), "timeout"),
    ("httpx status 418 falls back to the module", _httpx_status_error(418), "provider_error"),
    ("httpx2 read timeout", httpx2.ReadTimeout("timed out"), "timeout"),
    ("httpx2 connect error", httpx2.ConnectError("refused"), "provider_error"),
    # botocore
    ("aws throttling sent as 400", _client_error("ThrottlingException", 400), "rate_limit"),
    ("aws legacy throttling code", _client_error("Throttling", 400), "rate_limit"),
    ("aws too many requests", _client_error("TooManyRequestsException", 429), "rate_limit"),
    ("aws quota", _client_error("ServiceQuotaExceededException", 400), "rate_limit"),
    (
        "aws provisioned throughput",
        _client_error("ProvisionedThroughputExceededException", 400),
        "rate_limit",
    ),
    ("aws validation", _client_error("ValidationException", 400), "validation_error"),
    ("aws model timeout", _client_error("ModelTimeoutException", 408), "timeout"),
    ("aws s3 request timeout sent as 400", _client_error("RequestTimeout", 400), "timeout"),
    ("aws access denied", _client_error("AccessDeniedException", 403), "provider_error"),
    ("aws not found", _client_error("ResourceNotFoundException", 404), "validation_error"),
    ("aws internal error", _client_error("InternalServerException", 500), "provider_error"),
    ("aws empty client error", ClientError({}, "Converse"), "provider_error"),
    (
        "botocore read timeout",
        ReadTimeoutError(endpoint_url="https://bedrock.example"),
        "timeout",
    ),
    (
        "botocore connect timeout",
        ConnectTimeoutError(endpoint_url="https://bedrock.example"),
        "timeout",
    ),
    (
        "botocore param validation",
        ParamValidationError(report="Invalid type for parameter modelId"),
        "validation_error",
    ),
    (
        "botocore endpoint connection",
        EndpointConnectionError(endpoint_url="https://bedrock.example"),
        "provider_error",
    ),
    # urllib3
    (
        "urllib3 read timeout",
        urllib3.exceptions.ReadTimeoutError(None, "/v1", "timed out"),  # type: ignore[arg-type]
        "timeout",
    ),
    ("urllib3 protocol error", urllib3.exceptions.ProtocolError("reset"), "provider_error"),
    # validation
    ("pydantic validation", _pydantic_error(), "validation_error"),
    ("json decode", _json_error(), "validation_error"),
    ("builtin value error", ValueError("bad"), "validation_error"),
    ("unicode decode", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "validation_error"),
    # timeouts from the stdlib and trio
    ("builtin timeout", TimeoutError("slow"), "timeout"),
    ("asyncio timeout", asyncio.TimeoutError(), "timeout"),
    # socket.timeout is an alias of TimeoutError, but older code still raises it by that name.
    ("socket timeout", socket.timeout("slow"), "timeout"),  # noqa: UP041
    ("concurrent futures timeout", concurrent.futures.TimeoutError(), "timeout"),
    ("trio too slow", trio.TooSlowError(), "timeout"),
    # network
    ("connection refused", ConnectionRefusedError(111, "refused"), "provider_error"),
    ("connection reset", ConnectionResetError(104, "reset"), "provider_error"),
    ("dns failure", socket.gaierror(-2, "Name or service not known"), "provider_error"),
    ("tls failure", ssl.SSLError(1, "handshake failed"), "provider_error"),
    (
        "urllib http error 429",
        urllib.error.HTTPError(_URL, 429, "Too Many Requests", http.client.HTTPMessage(), None),
        "rate_limit",
    ),
    ("urllib url error", urllib.error.URLError("no route"), "provider_error"),
    # internal
    ("key error", KeyError("missing"), "internal_error"),
    ("index error", IndexError("out of range"), "internal_error"),
    ("attribute error", AttributeError("no attr"), "internal_error"),
    ("type error", TypeError("wrong type"), "internal_error"),
    ("name error", NameError("undefined"), "internal_error"),
    ("unbound local", UnboundLocalError("unbound"), "internal_error"),
    ("runtime error", RuntimeError("broken"), "internal_error"),
    ("assertion error", AssertionError("false"), "internal_error"),
    ("zero division", ZeroDivisionError("division by zero"), "internal_error"),
    ("not implemented", NotImplementedError(), "internal_error"),
    ("recursion", RecursionError("too deep"), "internal_error"),
    ("lookup", LookupError("missing"), "internal_error"),
    ("arithmetic", ArithmeticError("overflow"), "internal_error"),
    ("overflow", OverflowError("overflow"), "internal_error"),
    # unknown
    ("plain exception", Exception("boom"), "unknown"),
    ("application exception", _AppError("boom"), "unknown"),
    ("rastir error", RastirError("boom"), "unknown"),
    ("file not found", FileNotFoundError(2, "missing"), "unknown"),
    ("protobuf is not a provider", _ProtobufDecodeError("bad bytes"), "unknown"),
    ("cancelled", asyncio.CancelledError(), "unknown"),
    ("keyboard interrupt", KeyboardInterrupt(), "unknown"),
    ("system exit with a status-like code", SystemExit(500), "unknown"),
    ("generator exit", GeneratorExit(), "unknown"),
    # stand-ins for SDKs that are not test dependencies (see the module docstring)
    ("requests stand-in read timeout", _RequestsReadTimeout("slow"), "timeout"),
    ("requests stand-in connect timeout", _RequestsConnectTimeout("slow"), "timeout"),
    ("requests stand-in connection error", _RequestsConnectionError("down"), "provider_error"),
    (
        "requests stand-in http error 429",
        _with(_RequestsHTTPError("429"), response=SimpleNamespace(status_code=429)),
        "rate_limit",
    ),
    (
        "requests stand-in http error without response",
        _with(_RequestsHTTPError("?"), response=None),
        "provider_error",
    ),
    (
        "aiohttp stand-in 503",
        _with(_AiohttpResponseError("unavailable"), status=503),
        "provider_error",
    ),
    ("aiohttp stand-in 429", _with(_AiohttpResponseError("slow down"), status=429), "rate_limit"),
    ("aiohttp stand-in server timeout", _AiohttpServerTimeout("slow"), "timeout"),
    ("google stand-in resource exhausted", _GoogleResourceExhausted("quota"), "rate_limit"),
    ("google stand-in unavailable", _GoogleServiceUnavailable("down"), "provider_error"),
    ("genai stand-in 400", _with(_GenaiAPIError("bad"), code=400), "validation_error"),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [pytest.param(exc, expected, id=name) for name, exc, expected in CLASSIFY_CASES],
)
def test_classify_maps_real_exceptions_to_their_category(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [pytest.param(exc, expected, id=name) for name, exc, expected in CLASSIFY_CASES],
)
def test_classify_gives_the_same_answer_from_the_class_cache(
    exc: BaseException, expected: str
) -> None:
    classify(exc)
    assert classify(exc) == expected


def test_classify_recognises_botocore_modelled_exception_classes() -> None:
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        throttled = client.exceptions.ThrottlingException(
            {
                "Error": {"Code": "ThrottlingException", "Message": "slow down"},
                "ResponseMetadata": {"HTTPStatusCode": 429},
            },
            "Converse",
        )
        invalid = client.exceptions.ValidationException(
            {
                "Error": {"Code": "ValidationException", "Message": "bad model id"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "Converse",
        )
    finally:
        client.close()

    assert type(throttled).__module__ == "botocore.errorfactory"
    assert classify(throttled) == "rate_limit"
    assert classify(invalid) == "validation_error"


def test_classify_looks_at_the_status_of_each_instance_not_just_the_class() -> None:
    assert classify(_httpx_status_error(429)) == "rate_limit"
    assert classify(_httpx_status_error(503)) == "provider_error"
    assert classify(_httpx_status_error(429)) == "rate_limit"


def test_classify_treats_subclasses_of_known_errors_like_their_base() -> None:
    class RetryBudgetExhausted(openai.RateLimitError):
        pass

    class SlowTool(TimeoutError):
        pass

    exc = RetryBudgetExhausted("budget", response=_sdk_response(429), body=None)
    assert classify(exc) == "rate_limit"
    assert classify(SlowTool()) == "timeout"


def test_classify_prefers_the_sdk_over_a_generic_builtin_base() -> None:
    oddity = _stand_in("openai._oddities", "OddError", (ValueError,))
    assert classify(oddity("odd")) == "provider_error"


def test_categories_are_the_six_fixed_names_in_order() -> None:
    assert CATEGORIES == (
        "timeout",
        "rate_limit",
        "validation_error",
        "provider_error",
        "internal_error",
        "unknown",
    )
    assert {expected for _, _, expected in CLASSIFY_CASES} == set(CATEGORIES)


# -- registrations -------------------------------------------------------------------

Register = Callable[["type[BaseException] | str", str], None]


@pytest.fixture
def register() -> Iterator[Register]:
    added: list[type[BaseException] | str] = []

    def _register(target: type[BaseException] | str, category: str) -> None:
        register_error_mapping(target, category)
        added.append(target)

    yield _register
    for target in added:
        unregister_error_mapping(target)


def test_registering_a_class_overrides_the_built_in_rules(register: Register) -> None:
    exc = _openai(openai.RateLimitError, 429)
    assert classify(exc) == "rate_limit"

    register(openai.RateLimitError, "provider_error")

    assert classify(exc) == "provider_error"


def test_registering_a_class_covers_its_subclasses(register: Register) -> None:
    register(anthropic.RateLimitError, "unknown")

    exc = _anthropic(anthropic.ContractSpendLimitReachedError, 429)
    assert classify(exc) == "unknown"


def test_the_nearest_registered_class_in_the_mro_wins(register: Register) -> None:
    register(Exception, "unknown")
    register(_AppError, "validation_error")

    assert classify(_AppError("x")) == "validation_error"
    assert classify(KeyError("x")) == "unknown"


@pytest.mark.parametrize(
    ("name", "exc"),
    [
        pytest.param(
            "openai.APIConnectionError",
            openai.APIConnectionError(request=httpx2.Request("GET", _URL)),
            id="sdk class",
        ),
        pytest.param(
            "openai.APIError",
            openai.APITimeoutError(request=httpx2.Request("GET", _URL)),
            id="sdk base class",
        ),
        pytest.param("KeyError", KeyError("k"), id="bare builtin"),
        pytest.param("builtins.KeyError", KeyError("k"), id="qualified builtin"),
        pytest.param("builtins.LookupError", IndexError(0), id="builtin base"),
        pytest.param(f"{__name__}._AppError", _AppError("x"), id="application class"),
        pytest.param(
            "aiohttp.client_exceptions.ClientError", _AiohttpServerTimeout(), id="stand-in"
        ),
    ],
)
def test_registering_a_dotted_name_matches_classes_in_the_mro(
    register: Register, name: str, exc: BaseException
) -> None:
    register(name, "rate_limit")

    assert classify(exc) == "rate_limit"


def test_a_registration_takes_effect_for_a_class_already_cached(register: Register) -> None:
    assert classify(ZeroDivisionError()) == "internal_error"

    register(ZeroDivisionError, "validation_error")
    assert classify(ZeroDivisionError()) == "validation_error"

    unregister_error_mapping(ZeroDivisionError)
    assert classify(ZeroDivisionError()) == "internal_error"


def test_a_registered_category_wins_over_the_status_code(register: Register) -> None:
    register("httpx.HTTPStatusError", "unknown")

    assert classify(_httpx_status_error(429)) == "unknown"


def test_unregistering_an_unknown_mapping_does_nothing() -> None:
    unregister_error_mapping(_AppError)
    unregister_error_mapping("nowhere.NoSuchError")

    assert classify(_AppError()) == "unknown"


@pytest.mark.parametrize("category", ["", "Timeout", "rate-limit", "error", "none"])
def test_registering_an_unknown_category_raises_value_error(category: str) -> None:
    with pytest.raises(ValueError, match="unknown error category"):
        register_error_mapping(_AppError, category)


@pytest.mark.parametrize("target", ["", "   "])
def test_registering_an_empty_name_raises_value_error(target: str) -> None:
    with pytest.raises(ValueError):
        register_error_mapping(target, "timeout")


@pytest.mark.parametrize("target", [42, int, None, _AppError()])
def test_registering_something_that_is_not_an_exception_class_raises_type_error(
    target: Any,
) -> None:
    with pytest.raises(TypeError):
        register_error_mapping(target, "timeout")


# -- status_code_of ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(_openai(openai.RateLimitError, 429), 429, id="openai status_code"),
        pytest.param(_anthropic(anthropic.OverloadedError, 529), 529, id="anthropic 529"),
        pytest.param(_httpx_status_error(502), 502, id="httpx response.status_code"),
        pytest.param(_client_error("ThrottlingException", 400), 400, id="botocore metadata"),
        pytest.param(
            urllib.error.HTTPError(_URL, 404, "Not Found", http.client.HTTPMessage(), None),
            404,
            id="urllib code",
        ),
        pytest.param(_with(_AiohttpResponseError(), status=503), 503, id="aiohttp status"),
        pytest.param(_GoogleResourceExhausted(), 429, id="google code"),
        pytest.param(
            _with(Exception(), status_code=http.HTTPStatus.TOO_MANY_REQUESTS), 429, id="int enum"
        ),
        pytest.param(httpx.ReadTimeout("slow"), None, id="httpx timeout without response"),
        pytest.param(ValueError("x"), None, id="builtin"),
        pytest.param(ClientError({}, "Converse"), None, id="botocore without metadata"),
    ],
)
def test_status_code_of_finds_the_status_where_each_sdk_keeps_it(
    exc: BaseException, expected: int | None
) -> None:
    assert status_code_of(exc) == expected


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(_RaisingStatus(), id="properties that raise"),
        pytest.param(_RaisingEverything(), id="getattr that raises"),
        pytest.param(_with(Exception(), response=_RaisingResponse()), id="response that raises"),
        pytest.param(_with(Exception(), status_code=True), id="bool"),
        pytest.param(_with(Exception(), status_code="429"), id="string"),
        pytest.param(_with(Exception(), status_code=429.0), id="float"),
        pytest.param(_with(Exception(), status_code=_NastyInt(429)), id="int subclass that raises"),
        pytest.param(_with(Exception(), code=42), id="code below 100"),
        pytest.param(_with(Exception(), code=600), id="code above 599"),
        pytest.param(_with(Exception(), code=-1), id="negative code"),
        pytest.param(_with(Exception(), code=10**100), id="huge code"),
        pytest.param(_with(Exception(), response={"ResponseMetadata": 200}), id="odd metadata"),
        pytest.param(
            _with(Exception(), response={"ResponseMetadata": {"HTTPStatusCode": "200"}}),
            id="string metadata",
        ),
        pytest.param(_with(Exception(), response=[429]), id="list response"),
    ],
)
def test_status_code_of_never_raises_on_hostile_objects(exc: BaseException) -> None:
    assert status_code_of(exc) is None
    assert classify(exc) in CATEGORIES
    assert error_info(exc)[0] in CATEGORIES


def test_status_code_of_prefers_status_code_over_code() -> None:
    exc = _with(Exception(), status_code=429, code=500)

    assert status_code_of(exc) == 429


# -- error_info ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            _openai(openai.RateLimitError, 429),
            ("rate_limit", "openai.RateLimitError", "request failed"),
            id="openai",
        ),
        pytest.param(KeyError("k"), ("internal_error", "KeyError", "'k'"), id="builtin"),
        pytest.param(
            httpx.ReadTimeout("timed out"),
            ("timeout", "httpx.ReadTimeout", "timed out"),
            id="httpx",
        ),
        pytest.param(
            asyncio.CancelledError(),
            ("unknown", "asyncio.exceptions.CancelledError", ""),
            id="cancelled",
        ),
        pytest.param(
            _AppError("boom"), ("unknown", f"{__name__}._AppError", "boom"), id="application"
        ),
    ],
)
def test_error_info_gives_category_qualified_type_and_message(
    exc: BaseException, expected: tuple[str, str, str]
) -> None:
    assert error_info(exc) == expected


def test_error_info_names_nested_classes_by_qualname() -> None:
    class Local(Exception):
        pass

    _, exception_type, _ = error_info(Local())

    assert exception_type == (
        f"{__name__}.test_error_info_names_nested_classes_by_qualname.<locals>.Local"
    )


@pytest.mark.parametrize(
    ("message", "max_message", "expected"),
    [
        pytest.param("x" * 1000, 10, "x" * 9 + "…", id="cut"),
        pytest.param("x" * 10, 10, "x" * 10, id="exactly the limit"),
        pytest.param("short", 512, "short", id="short"),
        pytest.param("abc", 1, "…", id="limit of one"),
        pytest.param("abc", 0, "", id="limit of zero"),
        pytest.param("", 5, "", id="empty"),
    ],
)
def test_error_info_truncates_long_messages_with_an_ellipsis(
    message: str, max_message: int, expected: str
) -> None:
    _, _, got = error_info(ValueError(message), max_message=max_message)

    assert got == expected
    assert len(got) <= max(max_message, 0)


def test_error_info_default_limit_is_512_characters() -> None:
    _, _, message = error_info(ValueError("y" * 10_000))

    assert len(message) == 512
    assert message.endswith("…")


@pytest.mark.parametrize("cls", [_Unprintable, _StrReturnsBytes])
def test_error_info_describes_unprintable_exceptions(cls: type[Exception]) -> None:
    category, exception_type, message = error_info(cls("x"))

    assert category == "unknown"
    assert exception_type == f"{__name__}.{cls.__qualname__}"
    assert message == f"<unprintable {__name__}.{cls.__qualname__} object>"


def test_error_info_survives_a_class_with_a_non_string_module() -> None:
    weird = type("Weird", (Exception,), {})
    weird.__module__ = None  # type: ignore[assignment]

    assert error_info(weird("w")) == ("unknown", "Weird", "w")


# -- is_cancellation -----------------------------------------------------------------


def _trio_cancelled() -> BaseException:
    caught: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as exc:
                caught.append(exc)
                raise

    trio.run(main)
    return caught[0]


def _anyio_cancelled(backend: str) -> BaseException:
    caught: list[BaseException] = []

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.lowlevel.checkpoint()
            except anyio.get_cancelled_exc_class() as exc:
                caught.append(exc)
                raise

    anyio.run(main, backend=backend)
    return caught[0]


def _asyncio_cancelled() -> BaseException:
    caught: list[BaseException] = []

    async def victim(started: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            caught.append(exc)
            raise

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(victim(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return caught[0]


class _MyCancelled(asyncio.CancelledError):
    pass


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(_asyncio_cancelled, id="asyncio task cancelled"),
        pytest.param(_trio_cancelled, id="trio cancel scope"),
        pytest.param(lambda: _anyio_cancelled("asyncio"), id="anyio on asyncio"),
        pytest.param(lambda: _anyio_cancelled("trio"), id="anyio on trio"),
        pytest.param(asyncio.CancelledError, id="asyncio cancelled error"),
        pytest.param(_MyCancelled, id="subclass of cancelled error"),
        pytest.param(KeyboardInterrupt, id="keyboard interrupt"),
        pytest.param(lambda: SystemExit(0), id="system exit"),
    ],
)
def test_is_cancellation_is_true_for_cancellation_and_shutdown(
    factory: Callable[[], BaseException],
) -> None:
    assert is_cancellation(factory())


def test_the_anyio_cancellation_classes_are_the_backends_own() -> None:
    assert type(_anyio_cancelled("trio")) is trio.Cancelled
    assert type(_anyio_cancelled("asyncio")) is asyncio.CancelledError


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(GeneratorExit(), id="generator exit"),
        pytest.param(Exception("x"), id="exception"),
        pytest.param(TimeoutError(), id="timeout"),
        pytest.param(concurrent.futures.CancelledError(), id="another future was cancelled"),
        pytest.param(anyio.TaskCancelled(), id="another anyio task was cancelled"),
        pytest.param(StopIteration(), id="stop iteration"),
        pytest.param(
            _stand_in("mylib", "Cancelled", (BaseException,))(), id="cancelled outside trio"
        ),
    ],
)
def test_is_cancellation_is_false_for_everything_else(exc: BaseException) -> None:
    assert not is_cancellation(exc)


# -- robustness ----------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=8),
)
_nested = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["Error", "Code", "ResponseMetadata", "HTTPStatusCode", "x"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=8,
)
_attribute_values = st.one_of(
    _nested,
    st.builds(SimpleNamespace, status_code=_nested),
    st.just(_RaisingResponse()),
    st.builds(_NastyInt, st.integers(min_value=-(2**70), max_value=2**70)),
)
_AwsStandIn = _stand_in("botocore.exceptions", "ClientError", (Exception,))


@given(
    cls=st.sampled_from(
        [
            Exception,
            ValueError,
            KeyError,
            OSError,
            TimeoutError,
            httpx.HTTPError,
            _AppError,
            _Unprintable,
            _AwsStandIn,
            _AiohttpResponseError,
            _RequestsHTTPError,
        ]
    ),
    message=st.text(),
    attributes=st.dictionaries(
        st.sampled_from(["status_code", "status", "code", "response"]), _attribute_values
    ),
    max_message=st.integers(min_value=-5, max_value=600),
)
def test_classify_and_error_info_never_raise_for_arbitrary_attributes(
    cls: type[BaseException],
    message: str,
    attributes: dict[str, object],
    max_message: int,
) -> None:
    exc = _with(cls(message), **attributes)

    category = classify(exc)
    info = error_info(exc, max_message=max_message)

    assert category in CATEGORIES
    assert info[0] == category
    assert len(info[2]) <= max(max_message, 0)
    status = status_code_of(exc)
    assert status is None or 100 <= status <= 599


# -- module contract -----------------------------------------------------------------


def test_all_lists_exactly_the_public_api() -> None:
    assert sorted(errors.__all__) == [
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
    assert all(hasattr(errors, name) for name in errors.__all__)
    assert issubclass(RastirError, Exception)


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (429, "rate_limit"),
        (408, "timeout"),
        (504, "timeout"),
        (422, "validation_error"),
        (418, "validation_error"),
        (401, "provider_error"),
        (503, "provider_error"),
        (529, "provider_error"),
        (302, "unknown"),
    ],
)
def test_classify_status_maps_an_http_status_on_its_own(status: int, category: str) -> None:
    assert errors.classify_status(status) == category


def test_the_module_itself_imports_no_sdk_event_loop_or_typing() -> None:
    # Load errors.py on its own: the package facade imports other modules, and
    # this test is about what errors.py costs whoever imports it.
    path = Path(errors.__file__).resolve()
    heavy = ["asyncio", "typing", "threading", "trio", "anyio", "openai", "botocore", "httpx"]
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('standalone_errors', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "before = set(sys.modules)\n"
        "spec.loader.exec_module(module)\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules and m not in before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == ""
