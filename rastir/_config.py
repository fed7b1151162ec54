"""``configure()``: settings from arguments, ``RASTIR_*`` environment variables and defaults.

Precedence: an argument given to ``configure()`` wins over the environment variable,
which wins over the default. Calling ``configure()`` again replaces the settings
cleanly: the previous exporter delivers the spans queued until then to its own
target (bounded by the new ``shutdown_timeout``; what it cannot send in time is
counted as dropped), and a new one takes over the queue for every later span. A
configuration that is refused (``ValueError``) changes nothing: the previous one
stays in force.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from rastir.export._pipeline import PIPELINE
from rastir.sampling import HEAD, rejection_threshold

__all__ = ["Settings", "configure", "flush", "get_settings", "shutdown"]

if TYPE_CHECKING:
    from urllib.parse import SplitResult

_UNSET: Any = object()


def urlsplit(url: str) -> SplitResult:
    """``urllib.parse.urlsplit``, imported on first use: with ``ipaddress`` it costs
    about 3 ms, and only ``configure()`` needs it."""
    from urllib.parse import urlsplit as split

    return split(url)


class Settings:
    """The effective configuration. Read it with :func:`get_settings`.

    Immutable. A plain ``__slots__`` class rather than a frozen dataclass: importing
    ``dataclasses`` and building the class cost about 4 ms of ``import rastir``
    (PERFORMANCE.md: ``import rastir`` <= 30 ms). It behaves like the dataclass did:
    keyword or positional arguments in this order, ``==``, ``repr``, ``__match_args__``
    and assignments refused. A new setting goes into ``__match_args__`` (the order),
    the annotations and ``__init__``; ``tests/core/test_settings.py`` checks they agree.
    """

    # The field order, as the dataclass had it: positional arguments, repr, ==.
    __match_args__ = (
        "service",
        "push_url",
        "env",
        "version",
        "enabled",
        "token",
        "batch_size",
        "flush_interval",
        "max_queue",
        "capture_content",
        "headers",
        "timeout",
        "shutdown_timeout",
        "retry_budget",
        "gzip",
        "otel_bridge",
        "sample_ratio",
        "exporter",
        "otlp_endpoint",
    )
    __slots__ = __match_args__

    service: str
    push_url: str | None
    env: str | None
    version: str | None
    enabled: bool
    token: str | None
    batch_size: int
    flush_interval: float
    max_queue: int
    capture_content: bool
    headers: Mapping[str, str]
    timeout: float
    shutdown_timeout: float
    retry_budget: float
    gzip: bool
    otel_bridge: bool | None
    sample_ratio: float
    exporter: str
    otlp_endpoint: str | None

    def __init__(
        self,
        service: str = "unknown_service",
        push_url: str | None = None,
        env: str | None = None,
        version: str | None = None,
        enabled: bool = True,
        token: str | None = None,
        batch_size: int = 512,
        flush_interval: float = 1.0,
        max_queue: int = 8192,
        capture_content: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        shutdown_timeout: float = 2.0,
        retry_budget: float = 30.0,
        gzip: bool = True,
        otel_bridge: bool | None = None,
        sample_ratio: float = 1.0,
        exporter: str = "rastir",
        otlp_endpoint: str | None = None,
    ) -> None:
        values = locals()
        for name in self.__match_args__:
            object.__setattr__(self, name, values[name])
        if headers is None:
            object.__setattr__(self, "headers", {})

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{self.__class__.__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Settings], tuple[Any, ...]]:
        return (self.__class__, self._values())

    def resource(self) -> dict[str, str | int | float | bool]:
        """The resource attributes sent with every batch."""
        from rastir import __version__

        # OTEL_RESOURCE_ATTRIBUTES first: rastir's own keys below win over it.
        res: dict[str, str | int | float | bool] = dict(otel_resource_attributes())
        res |= {
            "service.name": self.service,
            "telemetry.sdk.name": "rastir",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
            "process.pid": os.getpid(),
        }
        if self.version:
            res["service.version"] = self.version
        if self.env:
            res["deployment.environment.name"] = self.env
        return res


# name -> (env var, parser)
def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use true or false)")


def _parse_headers(name: str, raw: str) -> dict[str, str]:
    """``k=v,k2=v2``, values percent-decoded.

    As the OpenTelemetry environment specification defines
    ``OTEL_EXPORTER_OTLP_HEADERS`` (values URL-encoded, W3C Baggage style), and as the
    collector reads its own ``RASTIR_COLLECTOR_OTLP_HEADERS``: a ``,`` or a line break
    in a value is written ``%2C``/``%0A`` (the latter is then refused). A ``%`` not
    followed by two hex digits is kept as it is.
    """
    from urllib.parse import unquote

    headers: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: {part!r} is not key=value")
        headers[key.strip()] = unquote(value.strip())
    return headers


def otel_resource_attributes() -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` as the OpenTelemetry environment specification reads
    it: ``key=value`` pairs joined by ``,``, values percent-decoded. A value that cannot
    be read is discarded whole, with a warning, as the specification asks."""
    raw = _env("OTEL_RESOURCE_ATTRIBUTES")
    if raw is None:
        return {}
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            import logging

            logging.getLogger("rastir").warning(
                "OTEL_RESOURCE_ATTRIBUTES ignored: %r is not key=value", part[:64]
            )
            return {}
        out[key.strip()] = unquote(value.strip())
    return out


def _resolve_service(arg: Any, default: str) -> str:
    """``service``, else ``RASTIR_SERVICE``, else OpenTelemetry's ``OTEL_SERVICE_NAME``,
    else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else ``default``."""
    if arg is not _UNSET:
        return arg  # type: ignore[no-any-return]
    found = _env("RASTIR_SERVICE") or _env("OTEL_SERVICE_NAME")
    if found is None:
        found = otel_resource_attributes().get("service.name") or None
    return default if found is None else found


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value is not None and value != "" else None


def _resolve(arg: Any, var: str, kind: type, default: Any) -> Any:
    if arg is not _UNSET:
        return arg
    raw = _env(var)
    if raw is None:
        return default
    if kind is bool:
        return _parse_bool(var, raw)
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not an integer") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a number") from None
    return raw


def _resolve_headers(arg: Any, exporter: str) -> dict[str, str]:
    """``headers``, else ``RASTIR_HEADERS``; in direct OTLP mode, else the OTel SDK's
    ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``, else ``OTEL_EXPORTER_OTLP_HEADERS``.

    The first one set is used whole, not merged with the others: the OTel SDKs do the
    same with the signal-specific and the generic variable.
    """
    if arg is not _UNSET:
        if arg is not None and not isinstance(arg, Mapping):
            raise ValueError(f"headers must be a mapping of names to values, got {arg!r}")
        return dict(arg or {})
    names = ["RASTIR_HEADERS"]
    if exporter == "otlp":
        names += ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]
    for name in names:
        raw = _env(name)
        if raw is not None:
            return _parse_headers(name, raw)
    return {}


def _resolve_bridge(arg: Any) -> bool | None:
    if arg is not _UNSET:
        if arg is not None and not isinstance(arg, bool):
            raise ValueError(f"otel_bridge must be True, False or None, got {arg!r}")
        return arg
    raw = _env("RASTIR_OTEL_BRIDGE")
    if raw is None or raw.strip().lower() == "auto":
        return None
    return _parse_bool("RASTIR_OTEL_BRIDGE", raw)


def _bridge_for(s: Settings) -> Any:
    from rastir._otel import OTelBridge, otel_sdk_configured

    if s.otel_bridge is False or not s.enabled:
        return None
    if s.otel_bridge is None and not otel_sdk_configured():
        return None
    return OTelBridge()


def _is_loopback(url: str | None) -> bool:
    """Whether ``url`` names this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    if not isinstance(url, str):
        return False
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost") or host == "::1":
        return True  # RFC 6761 §6.3: localhost names are loopback
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts)


def _check_url(what: str, url: Any) -> None:
    """A ValueError naming the setting for anything but an http(s) URL with a host."""
    if not isinstance(url, str):
        raise ValueError(f"{what} must be a URL string, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks the port)
    except ValueError as e:
        raise ValueError(f"{what} {url!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {url!r} must be an http:// or https:// URL")


# The longest any of the time settings may be: a day. Beyond it (or NaN, or infinity)
# the exporter's waits and deadlines overflow.
_MAX_SECONDS: Final = 86_400.0


def _validate(s: Settings) -> None:
    if not s.service or not isinstance(s.service, str):
        raise ValueError("service must be a non-empty string")
    for name in ("enabled", "capture_content"):
        value = getattr(s, name)
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if s.push_url is not None:
        _check_url("push_url", s.push_url)
    for name in ("batch_size", "max_queue"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if s.max_queue < s.batch_size:
        raise ValueError(f"max_queue ({s.max_queue}) must be at least batch_size ({s.batch_size})")
    for name in ("flush_interval", "timeout", "shutdown_timeout", "retry_budget"):
        value = getattr(s, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value <= _MAX_SECONDS  # NaN fails too
        ):
            raise ValueError(
                f"{name} must be a number of seconds above 0, at most {_MAX_SECONDS:.0f}, "
                f"got {value!r}"
            )
    rejection_threshold(s.sample_ratio)  # raises ValueError naming the ratio
    if not isinstance(s.gzip, bool):
        raise ValueError(f"gzip must be True, False or None, got {s.gzip!r}")
    _validate_exporter(s)
    _validate_http_fields(s)


# RFC 9110 §5.6.2: a field name is a token.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _sendable(what: str, text: str) -> None:
    # HTTP/1.1 field values are Latin-1 octets (RFC 9110 §5.5, obs-text) and may not
    # hold a line break: one would end the header and start another (injection).
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} contains a line break")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} cannot be sent in an HTTP header: not Latin-1") from None


def _validate_http_fields(s: Settings) -> None:
    """Headers and token the exporter can send, checked before anything changes."""
    if s.token is not None:
        if not isinstance(s.token, str):
            raise ValueError("token must be a string")
        _sendable("token", s.token)
    for key, value in s.headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("headers must map strings to strings")
        if not key or not _TOKEN_CHARS.issuperset(key):
            raise ValueError(f"header name {key!r} is not an HTTP token")
        _sendable(f"header {key!r}", value)


def _resolve_otlp_endpoint(arg: Any) -> str | None:
    if arg is not _UNSET:
        url = arg
    else:
        url = _env("RASTIR_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if url is None:
            base = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
            # OTel SDK environment spec: the generic endpoint is a base URL.
            url = None if base is None else base.rstrip("/") + "/v1/traces"
    if isinstance(url, str):
        try:
            path = urlsplit(url).path
        except ValueError:
            return url  # refused by _check_url, with the setting's name
        if path in ("", "/"):
            url = url.rstrip("/") + "/v1/traces"
    return url  # type: ignore[no-any-return]


def _validate_exporter(s: Settings) -> None:
    if s.exporter not in ("rastir", "otlp"):
        raise ValueError(f"exporter must be 'rastir' or 'otlp', got {s.exporter!r}")
    if s.exporter == "otlp":
        if s.otlp_endpoint is None:
            raise ValueError(
                "exporter='otlp' needs otlp_endpoint (or RASTIR_OTLP_ENDPOINT), for "
                "example http://127.0.0.1:4318/v1/traces"
            )
        _check_url("otlp_endpoint", s.otlp_endpoint)


_lock = threading.RLock()
_settings = Settings()
_exporter: Any = None  # rastir.export.batch.BatchExporter, imported on demand


def get_settings() -> Settings:
    """The settings in force (defaults until :func:`configure` is called)."""
    return _settings


def configure(
    service: str = _UNSET,
    push_url: str | None = _UNSET,
    *,
    env: str | None = _UNSET,
    version: str | None = _UNSET,
    enabled: bool = _UNSET,
    token: str | None = _UNSET,
    batch_size: int = _UNSET,
    flush_interval: float = _UNSET,
    max_queue: int = _UNSET,
    capture_content: bool = _UNSET,
    headers: Mapping[str, str] | None = _UNSET,
    timeout: float = _UNSET,
    shutdown_timeout: float = _UNSET,
    otel_bridge: bool | None = _UNSET,
    sample_ratio: float = _UNSET,
    exporter: str = _UNSET,
    otlp_endpoint: str | None = _UNSET,
    gzip: bool | None = _UNSET,
) -> Settings:
    """Configure rastir for this process. Safe to call again to reconfigure.

    Args:
        service: ``service.name`` of this process (``RASTIR_SERVICE``, else
            OpenTelemetry's ``OTEL_SERVICE_NAME``, else ``service.name`` in
            ``OTEL_RESOURCE_ATTRIBUTES``, whose other attributes join the resource).
        push_url: the collector's base URL, for example ``http://127.0.0.1:8080``
            (``RASTIR_PUSH_URL``). None keeps spans in-process (test captures only).
        env: ``deployment.environment.name`` (``RASTIR_ENV``).
        version: ``service.version`` (``RASTIR_VERSION``).
        enabled: False turns every decorator into a plain call (``RASTIR_ENABLED``).
        token: bearer token for the collector (``RASTIR_TOKEN``); Latin-1, no line break.
        batch_size: spans per POST (``RASTIR_BATCH_SIZE``).
        flush_interval: seconds between sends of a partial batch (``RASTIR_FLUSH_INTERVAL``).
        max_queue: spans held while waiting to be sent; beyond it new spans are
            dropped and counted (``RASTIR_MAX_QUEUE``).
        capture_content: record prompts, responses and tool arguments
            (``RASTIR_CAPTURE_CONTENT``). Off by default.
        headers: extra HTTP headers for the collector (``RASTIR_HEADERS``, ``k=v,k2=v2``,
            values percent-decoded as in ``OTEL_EXPORTER_OTLP_HEADERS``). In direct
            OTLP mode, when neither is given, ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``,
            else ``OTEL_EXPORTER_OTLP_HEADERS``. Names must be HTTP tokens, values
            Latin-1 without line breaks.
        timeout: seconds for one HTTP request to the collector (``RASTIR_TIMEOUT``).
        shutdown_timeout: bound on the flush at exit (``RASTIR_SHUTDOWN_TIMEOUT``).
        otel_bridge: join OpenTelemetry's context both ways (``RASTIR_OTEL_BRIDGE``):
            None (``auto``) when an OTel SDK tracer provider is already set, True
            whenever ``opentelemetry-api`` is installed, False never. See
            :mod:`rastir._otel`.
        sample_ratio: the share of new traces kept, from 0 to 1 (``RASTIR_SAMPLE_RATIO``,
            default 1). Decided from the trace id, so every service of a trace agrees;
            a trace continued from a ``traceparent`` keeps the sender's decision.
            Unsampled spans still reach the collector's metrics, but are neither
            stored nor exported there. See :mod:`rastir.sampling`.
        exporter: where spans go (``RASTIR_EXPORTER``): ``"rastir"`` (default), a
            rastir collector at ``push_url``; ``"otlp"``, OTLP/HTTP protobuf straight
            to an OpenTelemetry collector at ``otlp_endpoint`` (direct mode, no rastir
            collector). ``token`` and ``headers`` go with either.
        otlp_endpoint: the OTLP/HTTP traces URL for ``exporter="otlp"``, for example
            ``http://otel-collector:4318/v1/traces`` (``RASTIR_OTLP_ENDPOINT``, else
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``). A URL without a path
            gets ``/v1/traces``.
        gzip: compress request bodies (``RASTIR_GZIP``). None (the default) means
            auto: on, except when the target is a loopback address (``localhost``,
            ``127.x.x.x``, ``::1``), where compressing costs the exporter more CPU than
            the whole rest of a span's export and saves no network. The effective
            value is in the returned settings.

    Returns:
        The effective settings.

    Raises:
        ValueError: a setting, from an argument or the environment, is invalid.
    """
    global _settings, _exporter
    d = Settings()
    # RASTIR_GZIP=auto is the default spelled out (compress for a remote target).
    gzip_env = _env("RASTIR_GZIP")
    gzip_choice: Any
    if gzip is _UNSET and gzip_env is not None and gzip_env.strip().lower() == "auto":
        gzip_choice = None
    else:
        gzip_choice = _resolve(gzip, "RASTIR_GZIP", bool, None)
    exporter_choice = _resolve(exporter, "RASTIR_EXPORTER", str, d.exporter)
    new = Settings(
        service=_resolve_service(service, d.service),
        push_url=_resolve(push_url, "RASTIR_PUSH_URL", str, d.push_url),
        env=_resolve(env, "RASTIR_ENV", str, d.env),
        version=_resolve(version, "RASTIR_VERSION", str, d.version),
        enabled=_resolve(enabled, "RASTIR_ENABLED", bool, d.enabled),
        token=_resolve(token, "RASTIR_TOKEN", str, d.token),
        batch_size=_resolve(batch_size, "RASTIR_BATCH_SIZE", int, d.batch_size),
        flush_interval=_resolve(flush_interval, "RASTIR_FLUSH_INTERVAL", float, d.flush_interval),
        max_queue=_resolve(max_queue, "RASTIR_MAX_QUEUE", int, d.max_queue),
        capture_content=_resolve(capture_content, "RASTIR_CAPTURE_CONTENT", bool, False),
        headers=_resolve_headers(headers, exporter_choice),
        timeout=_resolve(timeout, "RASTIR_TIMEOUT", float, d.timeout),
        shutdown_timeout=_resolve(
            shutdown_timeout, "RASTIR_SHUTDOWN_TIMEOUT", float, d.shutdown_timeout
        ),
        otel_bridge=_resolve_bridge(otel_bridge),
        gzip=gzip_choice,
        sample_ratio=_resolve(sample_ratio, "RASTIR_SAMPLE_RATIO", float, d.sample_ratio),
        exporter=exporter_choice,
        otlp_endpoint=_resolve_otlp_endpoint(otlp_endpoint),
    )
    # The URLs first: the automatic gzip choice below reads them.
    if new.push_url is not None:
        _check_url("push_url", new.push_url)
        object.__setattr__(new, "push_url", new.push_url.rstrip("/") or None)
    if new.otlp_endpoint is not None:
        _check_url("otlp_endpoint", new.otlp_endpoint)
    if gzip_choice is None:  # automatic: off for a loopback target
        target = new.otlp_endpoint if new.exporter == "otlp" else new.push_url
        object.__setattr__(new, "gzip", not _is_loopback(target))
    _validate(new)
    exporting = new.enabled and bool(new.otlp_endpoint if new.exporter == "otlp" else new.push_url)
    transport = None
    if exporting:
        from rastir.export.batch import BatchExporter

        # Built before anything changes: a URL, header or token it refuses raises
        # here and leaves the previous configuration in force.
        transport = BatchExporter.transport_for(new)
    with _lock:
        old = _exporter
        _exporter = None
        if old is not None:
            # The old exporter sends what is queued now to its own target; every
            # later span is the new exporter's.
            old.retire(new.shutdown_timeout)
        _settings = new
        # The exit check for spans of a never-configured process stands down.
        PIPELINE.configured = True
        PIPELINE.bridge = _bridge_for(new)
        HEAD.set_ratio(new.sample_ratio)
        PIPELINE.enabled = new.enabled
        PIPELINE.max_queue = new.max_queue
        if transport is not None:
            from rastir.export.batch import BatchExporter

            PIPELINE.queueing = True
            _exporter = BatchExporter(PIPELINE, new, transport)
        else:
            PIPELINE.queueing = False
            PIPELINE.on_wake = None
            PIPELINE.wake_at = 1 << 62
            # Export is off by the caller's choice: the old exporter (retired above)
            # took what it was to send; nothing else is owed to anyone.
            PIPELINE.queue.clear()
    return new


def flush(timeout: float = 5.0) -> bool:
    """Send every span finished so far. Returns False if ``timeout`` ran out first."""
    exporter = _exporter
    if exporter is None:
        return True
    return bool(exporter.flush(timeout))


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the exporter thread. Later spans go nowhere until ``configure()``.

    Returns False if ``timeout`` (default: the ``shutdown_timeout`` setting) ran out.
    """
    global _exporter
    with _lock:
        exporter, _exporter = _exporter, None
        PIPELINE.queueing = False
        PIPELINE.on_wake = None
        PIPELINE.wake_at = 1 << 62
    if exporter is None:
        return True
    ok = bool(
        exporter.shutdown(_settings.shutdown_timeout if timeout is None else timeout, drain=True)
    )
    # Spans that ended while it stopped: the exporter takes only those queued at the
    # call. Counted (a later configure() reports them), not thrown away unseen.
    PIPELINE.discard_queued("ended after shutdown() began")
    return ok


def _exporter_or_none() -> Any:
    return _exporter
