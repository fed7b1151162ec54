"""The collector's configuration: one frozen dataclass, filled from ``RASTIR_COLLECTOR_*``.

Precedence, as everywhere in rastir: a command-line option beats the environment
variable, which beats the default. Every value is validated once, here, so that the
request path never has to: a bad value raises :class:`ValueError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from rastir.collector.store._dsn import is_postgres_url, redact_dsn

__all__ = [
    "ENV_PREFIX",
    "AckMode",
    "CollectorSettings",
    "LogFormat",
    "StoreKind",
    "parse_bytes",
    "parse_duration",
]

ENV_PREFIX: Final = "RASTIR_COLLECTOR_"

StoreKind = Literal["sqlite", "memory"]
AckMode = Literal["queued", "committed"]
LogFormat = Literal["logfmt", "json"]
OtlpCompression = Literal["gzip", "none"]

_STORE_KINDS: Final = ("sqlite", "memory")
_ACK_MODES: Final = ("queued", "committed")
#: Settings whose values are secrets: never shown by ``repr``.
_SECRETS: Final = frozenset({"ingest_token", "query_token", "eval_judge_key"})
_LOG_FORMATS: Final = ("logfmt", "json")
_LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_BYTE_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(name: str, raw: str) -> float | None:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``.

    ``"0"``, ``"off"``, ``"none"`` and ``"forever"`` mean no limit and give ``None``.

    Raises:
        ValueError: the text is not a duration.
    """
    text = raw.strip().lower()
    if text in ("off", "none", "forever", "0", ""):
        return None
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(
            f"{name}={raw!r} is not a duration (examples: 3600, 90s, 15m, 12h, 7d, off)"
        )
    seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    return seconds or None


def parse_bytes(name: str, raw: str) -> int:
    """Bytes from ``"1048576"``, ``"512k"``, ``"8MiB"``, ``"1g"`` (units are binary).

    Raises:
        ValueError: the text is not a size.
    """
    m = _BYTES.match(raw)
    if m is None:
        raise ValueError(f"{name}={raw!r} is not a size (examples: 1048576, 512KiB, 8MiB, 1GiB)")
    unit = (m.group(2) or "").lower()[:1]
    if unit == "b":
        unit = ""
    return int(float(m.group(1)) * _BYTE_UNITS[unit])


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer")


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use true or false)")


def _parse_str(name: str, raw: str) -> str:
    return raw.strip()


def _parse_optional_str(name: str, raw: str) -> str | None:
    return raw.strip() or None


def _parse_path(name: str, raw: str) -> Path:
    if not raw.strip():
        raise ValueError(f"{name} is empty: give a directory")
    return Path(raw.strip()).expanduser()


def _parse_lower(name: str, raw: str) -> str:
    return raw.strip().lower()


def _parse_store(name: str, raw: str) -> str:
    """A store kind, lowercased; a URL keeps its case (user, password, database)."""
    text = raw.strip()
    if is_postgres_url(text):
        scheme, rest = text.split("://", 1)
        return f"{scheme.lower()}://{rest}"
    return text.lower()


def _parse_headers(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` (values percent-decoded, as in ``OTEL_EXPORTER_OTLP_HEADERS``)."""
    from urllib.parse import unquote

    out: list[tuple[str, str]] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: {part.strip()!r} is not key=value")
        out.append((key.strip(), unquote(value.strip())))
    return tuple(out)


def _parse_optional_path(name: str, raw: str) -> Path | None:
    return Path(raw.strip()).expanduser() if raw.strip() else None


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector can be told. Build it directly, or with :meth:`from_env`.

    Sizes are bytes, durations are seconds (``None`` means no limit).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("rastir-data")
    #: ``sqlite`` (in ``data_dir``), ``memory``, or a ``postgresql://`` (or
    #: ``postgres://``) URL: a database several collectors share. A URL may hold a
    #: password; it is shown only masked (:attr:`store_display`).
    store: StoreKind | str = "sqlite"
    #: Bearer token ``POST /v1/telemetry`` requires; ``None`` accepts anyone.
    ingest_token: str | None = None
    #: Bearer token the query API (and ``/metrics`` unless ``public_metrics``) requires.
    query_token: str | None = None
    #: ``/metrics`` without a token even when ``query_token`` is set.
    public_metrics: bool = False
    #: Age after which stored spans are deleted; ``None`` keeps them.
    retention: float | None = 7 * 86400.0
    #: Size above which the oldest stored spans are deleted; ``None`` for no bound.
    retention_bytes: int | None = None
    #: Largest body accepted, on the wire and again after gunzip.
    max_body_bytes: int = 8 << 20
    max_spans_per_batch: int = 10_000
    #: Longer attribute strings (and span names, error messages) are cut to this.
    max_attr_value_len: int = 4096
    #: Attributes beyond this many per span (or event, or link) are dropped.
    max_attrs_per_span: int = 128
    #: Distinct values one label of one metric group may take before ``__other__``.
    max_label_values: int = 1000
    #: Series one metric group may hold before new combinations fold to ``__other__``.
    max_series_per_metric: int = 10_000
    #: ``queued``: 202 once the spans are queued for the store (lost on a crash before
    #: the store writes them). ``committed``: 202 only once they are durable.
    ack: AckMode = "queued"
    #: Ingest requests being handled at once before more are refused with 429.
    max_inflight: int = 256
    #: Refuse with 429 once the store's write queue is this full (0..1).
    queue_high_water: float = 0.9
    #: Refuse with 429 while the event loop lags more than this (seconds); ``None`` off.
    max_loop_lag: float | None = 0.5
    #: Refuse with 429 an ingest request that waited longer than this (seconds) between
    #: its first bytes being read and its handler starting; ``None`` off. Measured
    #: only under ``rastir collector``, whose HTTP protocol stamps each request.
    max_queue_delay: float | None = 0.25
    #: The ``Retry-After`` seconds sent with 429 and 503.
    retry_after: int = 1
    #: Write queue of the SQLite or PostgreSQL store, in spans (per replica).
    queue_capacity: int = 50_000
    #: Spans the memory store keeps; the oldest traces are evicted beyond it.
    memory_max_spans: int = 100_000
    #: SIGTERM: how long open requests may finish, and again how long the store may flush.
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    log_format: LogFormat = "logfmt"
    access_log: bool = True
    #: Evaluation config file (JSON, TOML or YAML; docs/evaluation.md); ``None``: none run.
    eval_config: Path | None = None
    #: OpenAI-compatible base URL of the LLM judge, e.g. ``https://api.openai.com/v1``.
    eval_judge_url: str | None = None
    #: Model the judge is asked for; evaluators may name another.
    eval_judge_model: str | None = None
    #: Bearer key sent to the judge (pass it by environment, not on the command line).
    eval_judge_key: str | None = None
    #: Seconds for one judge request; a timed-out request is retried.
    eval_judge_timeout: float = 30.0
    #: Retries of a judge request after a timeout, a connection error, 408, 429 or 5xx.
    eval_judge_retries: int = 2
    #: Evaluations waiting for a worker; beyond it they are dropped and counted.
    eval_queue_size: int = 1000
    #: Evaluations run at once (each is an async task on the event loop).
    eval_workers: int = 2
    #: OTLP/HTTP traces endpoint to export every kept span to (``/v1/traces`` is
    #: appended to a URL without a path); ``None``: no export. docs/collector.md.
    otlp_endpoint: str | None = None
    #: Extra headers for the OTLP endpoint (authentication, tenant), as pairs.
    otlp_headers: tuple[tuple[str, str], ...] = ()
    #: ``none`` (the OTLP exporters' default) or ``gzip``: about 5 µs of CPU per span, 8x fewer
    #: bytes; worth it over a thin link to the target.
    otlp_compression: OtlpCompression = "none"
    #: Seconds for one export request.
    otlp_timeout: float = 10.0
    #: Spans per export request.
    otlp_batch_size: int = 512
    #: Spans waiting for export; beyond it new spans are dropped and counted.
    otlp_queue_size: int = 20_000
    #: Seconds a partial batch waits before it is sent.
    otlp_flush_interval: float = 1.0
    #: Seconds one batch may be retried (backoff with jitter, Retry-After honoured)
    #: before it is dropped and counted.
    otlp_retry_budget: float = 30.0
    #: Tail sampling (docs/sampling.md): buffer each trace until it is complete, then
    #: keep it when it has an error, is slow, or falls in ``tail_ratio``.
    tail_sampling: bool = False
    #: A trace is decided once no span of it arrived for this many seconds...
    tail_decision_wait: float = 10.0
    #: ...or for this many once its root span arrived. Longer than the OpenTelemetry
    #: SDKs' default BatchSpanProcessor delay (5 s), so spans an OTel service flushes
    #: after the root still find their trace undecided.
    tail_root_grace: float = 6.0
    #: Traces lasting at least this many seconds are kept; ``None``: no latency rule.
    tail_slow_threshold: float | None = 10.0
    #: Share of the other traces kept, decided from the trace id (as head sampling).
    tail_ratio: float = 0.1
    #: Traces and spans the sampler buffers; beyond either, the traces idle longest
    #: are decided early with what has arrived.
    tail_max_traces: int = 10_000
    tail_max_spans: int = 200_000

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError("invalid collector settings: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out: list[str] = []
        if not self.host:
            out.append("host is empty")
        if not 0 <= self.port <= 65535:
            out.append(f"port={self.port} is not in 0..65535")
        if self.store not in _STORE_KINDS and not is_postgres_url(self.store):
            out.append(
                f"store={redact_dsn(self.store)!r} is not one of sqlite, memory "
                "or a postgresql:// URL"
            )
        if self.ack not in _ACK_MODES:
            out.append(f"ack={self.ack!r} is not one of {', '.join(_ACK_MODES)}")
        if self.log_format not in _LOG_FORMATS:
            out.append(f"log_format={self.log_format!r} is not one of {', '.join(_LOG_FORMATS)}")
        if self.log_level.lower() not in _LOG_LEVELS:
            out.append(f"log_level={self.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        for token_name in ("ingest_token", "query_token"):
            token = getattr(self, token_name)
            if token is not None and (
                not token
                or not token.isascii()
                or not token.isprintable()
                or any(c.isspace() for c in token)
            ):
                out.append(f"{token_name} must be printable ASCII without spaces")
        positive_ints = (
            "max_body_bytes",
            "max_spans_per_batch",
            "max_attr_value_len",
            "max_attrs_per_span",
            "max_label_values",
            "max_series_per_metric",
            "max_inflight",
            "queue_capacity",
            "memory_max_spans",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name}={value!r} must be a positive integer")
        if self.retry_after < 0:
            out.append(f"retry_after={self.retry_after} must be >= 0")
        if not 0.0 < self.queue_high_water <= 1.0:
            out.append(f"queue_high_water={self.queue_high_water} must be in (0, 1]")
        for name in ("retention", "max_loop_lag", "max_queue_delay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                out.append(f"{name}={value!r} must be a positive number of seconds or None")
        if self.retention_bytes is not None and self.retention_bytes < 1:
            out.append(f"retention_bytes={self.retention_bytes} must be positive or None")
        if not (math.isfinite(self.shutdown_timeout) and self.shutdown_timeout >= 0):
            out.append(f"shutdown_timeout={self.shutdown_timeout} must be >= 0")
        out.extend(self._eval_problems())
        out.extend(self._export_problems())
        return out

    def _export_problems(self) -> list[str]:
        """OTLP export and sampling settings (rastir.collector.otlp, .sampling)."""
        out: list[str] = []
        url = self.otlp_endpoint
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            out.append(f"otlp_endpoint={url!r} must be an http:// or https:// URL")
        if self.otlp_compression not in ("gzip", "none"):
            out.append(f"otlp_compression={self.otlp_compression!r} is not one of gzip, none")
        for key, value in self.otlp_headers:
            if not key or any(c in key + value for c in "\r\n"):
                out.append(f"otlp_headers: {key!r} is empty or holds a line break")
        for name in ("otlp_batch_size", "otlp_queue_size", "tail_max_traces", "tail_max_spans"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name}={value!r} must be a positive integer")
        if self.otlp_queue_size < self.otlp_batch_size:
            out.append(
                f"otlp_queue_size={self.otlp_queue_size} must be at least "
                f"otlp_batch_size={self.otlp_batch_size}"
            )
        for name in (
            "otlp_timeout",
            "otlp_flush_interval",
            "otlp_retry_budget",
            "tail_decision_wait",
            "tail_root_grace",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                out.append(f"{name}={value!r} must be a positive number of seconds")
        slow = self.tail_slow_threshold
        if slow is not None and not (math.isfinite(slow) and slow > 0):
            out.append(f"tail_slow_threshold={slow!r} must be a positive number of seconds")
        if not (math.isfinite(self.tail_ratio) and 0.0 <= self.tail_ratio <= 1.0):
            out.append(f"tail_ratio={self.tail_ratio!r} must be from 0 to 1")
        if self.tail_sampling and self.ack == "committed":
            # A 202 in committed mode promises spans on disk; the sampler holds them
            # in memory until the trace is decided.
            out.append("tail_sampling cannot be combined with ack=committed")
        return out

    def _eval_problems(self) -> list[str]:
        out: list[str] = []
        url = self.eval_judge_url
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            out.append(f"eval_judge_url={url!r} must be an http:// or https:// URL")
        if self.eval_judge_model is not None and not self.eval_judge_model.strip():
            out.append("eval_judge_model is empty")
        if not (math.isfinite(self.eval_judge_timeout) and self.eval_judge_timeout > 0):
            out.append(f"eval_judge_timeout={self.eval_judge_timeout} must be > 0 seconds")
        if not 0 <= self.eval_judge_retries <= 10:
            out.append(f"eval_judge_retries={self.eval_judge_retries} must be in 0..10")
        if not 1 <= self.eval_queue_size <= 1_000_000:
            out.append(f"eval_queue_size={self.eval_queue_size} must be in 1..1000000")
        if not 1 <= self.eval_workers <= 256:
            out.append(f"eval_workers={self.eval_workers} must be in 1..256")
        return out

    def __repr__(self) -> str:
        # The dataclass's own repr, with no secret in it: a store URL's password
        # masked, the tokens and the judge's key shown only as set or not, and the
        # OTLP headers by name.
        def shown(name: str) -> str:
            value = getattr(self, name)
            if name == "store":
                return repr(self.store_display)
            if name in _SECRETS and value is not None:
                return "'***'"
            if name == "otlp_headers":  # often an Authorization or an API key
                return repr(tuple((key, "***") for key, _ in value))
            return repr(value)

        fields = ", ".join(f"{f.name}={shown(f.name)}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"

    @property
    def store_display(self) -> str:
        """The store as it may be logged: a URL's password is masked."""
        return redact_dsn(self.store) if is_postgres_url(self.store) else self.store

    @property
    def store_is_shared(self) -> bool:
        """Whether the store is a PostgreSQL database (``data_dir`` unused)."""
        return is_postgres_url(self.store)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> CollectorSettings:
        """Settings from ``RASTIR_COLLECTOR_<FIELD>`` variables, then ``overrides``.

        An override of ``None`` is ignored, so parsed command-line options can be
        passed straight through.

        Raises:
            ValueError: a variable or an override is invalid; the message names it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None:
                continue
            values[f.name] = _PARSERS[f.name](var, raw)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown collector settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def parse(field: str, raw: str, source: str) -> Any:
        """One setting from text, as ``from_env`` reads it; ``source`` names it in errors.

        Raises:
            ValueError: an unknown setting or an invalid value.
        """
        parser = _PARSERS.get(field)
        if parser is None:
            raise ValueError(f"unknown collector setting {field!r}")
        return parser(source, raw)

    def store_options(self) -> dict[str, Any]:
        """Keyword options for ``open_store`` for the configured kind of store.

        The SQLite and the PostgreSQL store take the same: the write queue's size,
        and retention by age and by size.
        """
        if self.store == "memory":
            return {"max_spans": self.memory_max_spans, "retention_seconds": self.retention}
        return {
            "queue_max_spans": self.queue_capacity,
            "retention_seconds": self.retention,
            "max_bytes": self.retention_bytes,
        }


_PARSERS: Final[dict[str, Callable[[str, str], Any]]] = {
    "host": _parse_str,
    "port": _parse_int,
    "data_dir": _parse_path,
    "store": _parse_store,
    "ingest_token": _parse_optional_str,
    "query_token": _parse_optional_str,
    "public_metrics": _parse_bool,
    "retention": parse_duration,
    "retention_bytes": lambda n, r: (
        None if r.strip().lower() in ("", "off", "none") else parse_bytes(n, r)
    ),
    "max_body_bytes": parse_bytes,
    "max_spans_per_batch": _parse_int,
    "max_attr_value_len": _parse_int,
    "max_attrs_per_span": _parse_int,
    "max_label_values": _parse_int,
    "max_series_per_metric": _parse_int,
    "ack": _parse_lower,
    "max_inflight": _parse_int,
    "queue_high_water": _parse_float,
    "max_loop_lag": parse_duration,
    "max_queue_delay": parse_duration,
    "retry_after": _parse_int,
    "queue_capacity": _parse_int,
    "memory_max_spans": _parse_int,
    "shutdown_timeout": _parse_float,
    "log_level": _parse_lower,
    "log_format": _parse_lower,
    "access_log": _parse_bool,
    "otlp_endpoint": _parse_optional_str,
    "otlp_headers": _parse_headers,
    "otlp_compression": _parse_lower,
    "otlp_timeout": _parse_float,
    "otlp_batch_size": _parse_int,
    "otlp_queue_size": _parse_int,
    "otlp_flush_interval": _parse_float,
    "otlp_retry_budget": _parse_float,
    "tail_sampling": _parse_bool,
    "tail_decision_wait": _parse_float,
    "tail_root_grace": _parse_float,
    "tail_slow_threshold": parse_duration,
    "tail_ratio": _parse_float,
    "tail_max_traces": _parse_int,
    "tail_max_spans": _parse_int,
    "eval_config": _parse_optional_path,
    "eval_judge_url": _parse_optional_str,
    "eval_judge_model": _parse_optional_str,
    "eval_judge_key": _parse_optional_str,
    "eval_judge_timeout": _parse_float,
    "eval_judge_retries": _parse_int,
    "eval_queue_size": _parse_int,
    "eval_workers": _parse_int,
}
