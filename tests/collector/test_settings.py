"""CollectorSettings: defaults, RASTIR_COLLECTOR_* variables, and refusing bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from rastir.collector import settings as settings_module
from rastir.collector.settings import CollectorSettings, parse_bytes, parse_duration


def test_the_defaults_are_valid_and_local() -> None:
    s = CollectorSettings()
    assert (s.host, s.port, s.store, s.ack) == ("127.0.0.1", 8080, "sqlite", "queued")
    assert s.ingest_token is None
    assert s.query_token is None


def test_every_setting_has_an_environment_variable() -> None:
    names = {f.name for f in dataclasses.fields(CollectorSettings)}
    assert names == set(settings_module._PARSERS)


@pytest.mark.parametrize(
    ("var", "raw", "field", "value"),
    [
        ("HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("PORT", " 9000 ", "port", 9000),
        ("DATA_DIR", "/var/lib/rastir", "data_dir", Path("/var/lib/rastir")),
        ("STORE", "MEMORY", "store", "memory"),
        ("INGEST_TOKEN", "abc", "ingest_token", "abc"),
        ("QUERY_TOKEN", "", "query_token", None),
        ("PUBLIC_METRICS", "yes", "public_metrics", True),
        ("RETENTION", "12h", "retention", 43200.0),
        ("RETENTION", "off", "retention", None),
        ("RETENTION_BYTES", "2GiB", "retention_bytes", 2 << 30),
        ("MAX_BODY_BYTES", "512k", "max_body_bytes", 512 << 10),
        ("MAX_SPANS_PER_BATCH", "50", "max_spans_per_batch", 50),
        ("MAX_ATTR_VALUE_LEN", "100", "max_attr_value_len", 100),
        ("MAX_ATTRS_PER_SPAN", "10", "max_attrs_per_span", 10),
        ("MAX_LABEL_VALUES", "20", "max_label_values", 20),
        ("MAX_SERIES_PER_METRIC", "200", "max_series_per_metric", 200),
        ("ACK", "committed", "ack", "committed"),
        ("MAX_INFLIGHT", "8", "max_inflight", 8),
        ("QUEUE_HIGH_WATER", "0.5", "queue_high_water", 0.5),
        ("MAX_LOOP_LAG", "250ms", "max_loop_lag", 0.25),
        ("RETRY_AFTER", "3", "retry_after", 3),
        ("QUEUE_CAPACITY", "1000", "queue_capacity", 1000),
        ("MEMORY_MAX_SPANS", "1000", "memory_max_spans", 1000),
        ("SHUTDOWN_TIMEOUT", "2.5", "shutdown_timeout", 2.5),
        ("LOG_LEVEL", "DEBUG", "log_level", "debug"),
        ("LOG_FORMAT", "json", "log_format", "json"),
        ("ACCESS_LOG", "false", "access_log", False),
    ],
)
def test_environment_variables_are_parsed(var: str, raw: str, field: str, value: Any) -> None:
    s = CollectorSettings.from_env({f"RASTIR_COLLECTOR_{var}": raw})
    assert getattr(s, field) == value


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        ("PORT", "http", "RASTIR_COLLECTOR_PORT='http' is not an integer"),
        ("PORT", "70000", "port=70000 is not in 0..65535"),
        ("STORE", "redis", "store='redis' is not one of sqlite, memory or a postgresql:// URL"),
        ("ACK", "maybe", "ack='maybe' is not one of queued, committed"),
        ("RETENTION", "a week", "RETENTION='a week' is not a duration"),
        ("MAX_BODY_BYTES", "lots", "RASTIR_COLLECTOR_MAX_BODY_BYTES='lots' is not a size"),
        ("MAX_BODY_BYTES", "0", "max_body_bytes=0 must be a positive integer"),
        ("QUEUE_HIGH_WATER", "1.5", "queue_high_water=1.5 must be in (0, 1]"),
        ("PUBLIC_METRICS", "sure", "is not a boolean"),
        ("INGEST_TOKEN", "has space", "ingest_token must be printable ASCII without spaces"),
        ("LOG_LEVEL", "loud", "log_level='loud' is not one of"),
        ("SHUTDOWN_TIMEOUT", "-1", "shutdown_timeout=-1.0 must be >= 0"),
    ],
)
def test_bad_values_raise_value_error_naming_the_setting(var: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        CollectorSettings.from_env({f"RASTIR_COLLECTOR_{var}": raw})
    assert message in str(e.value)


def test_overrides_win_over_the_environment_and_none_is_ignored() -> None:
    env = {"RASTIR_COLLECTOR_PORT": "9000", "RASTIR_COLLECTOR_STORE": "memory"}
    s = CollectorSettings.from_env(env, port=9100, store=None)
    assert (s.port, s.store) == (9100, "memory")
    with pytest.raises(ValueError, match="unknown collector settings: colour"):
        CollectorSettings.from_env({}, colour="blue")


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ValueError) as e:
        CollectorSettings(port=-1, max_inflight=0)
    assert "port=-1" in str(e.value)
    assert "max_inflight=0" in str(e.value)


def test_durations_and_sizes() -> None:
    assert parse_duration("x", "90") == 90.0
    assert parse_duration("x", "1.5m") == 90.0
    assert parse_duration("x", "2w") == 1209600.0
    assert parse_duration("x", "0") is None
    assert parse_bytes("x", "1024") == 1024
    assert parse_bytes("x", "1.5KiB") == 1536
    assert parse_bytes("x", "8mb") == 8 << 20
    assert parse_bytes("x", "1G") == 1 << 30


def test_store_options_follow_the_store_kind() -> None:
    assert CollectorSettings(store="memory", memory_max_spans=5, retention=9.0).store_options() == {
        "max_spans": 5,
        "retention_seconds": 9.0,
    }
    opts = CollectorSettings(
        retention=60.0, retention_bytes=1 << 20, queue_capacity=7
    ).store_options()
    assert opts == {"queue_max_spans": 7, "retention_seconds": 60.0, "max_bytes": 1 << 20}


@pytest.mark.parametrize(
    ("raw", "store"),
    [
        (
            "postgresql://rastir:Pa55@db.example:5432/Traces",
            "postgresql://rastir:Pa55@db.example:5432/Traces",
        ),
        (" POSTGRES://u@h/DB ", "postgres://u@h/DB"),
        ("SQLite", "sqlite"),
    ],
)
def test_the_store_may_be_a_postgresql_url_whose_case_is_kept(raw: str, store: str) -> None:
    s = CollectorSettings.from_env({"RASTIR_COLLECTOR_STORE": raw})
    assert s.store == store


def test_a_postgresql_store_takes_the_sql_stores_options_and_no_data_dir() -> None:
    s = CollectorSettings(
        store="postgresql://u@h/db", retention=60.0, retention_bytes=1 << 20, queue_capacity=7
    )
    assert s.store_options() == {
        "queue_max_spans": 7,
        "retention_seconds": 60.0,
        "max_bytes": 1 << 20,
    }
    assert s.store_is_shared
    assert not CollectorSettings().store_is_shared


def test_no_token_key_or_header_value_is_shown_by_repr() -> None:
    s = CollectorSettings(
        ingest_token="in-secret",
        query_token="q-secret",
        eval_judge_key="sk-secret",
        otlp_headers=(("authorization", "Bearer h-secret"),),
    )
    shown = repr(s)
    for secret in ("in-secret", "q-secret", "sk-secret", "h-secret"):
        assert secret not in shown
    assert "ingest_token='***'" in shown
    assert "otlp_headers=(('authorization', '***'),)" in shown
    assert "public_metrics=False" in shown  # the rest as the dataclass shows it
    assert "query_token=None" in repr(CollectorSettings())


def test_a_store_urls_password_is_never_shown() -> None:
    s = CollectorSettings(store="postgresql://rastir:hunter2@db.example/traces")
    assert s.store_display == "postgresql://rastir:***@db.example/traces"
    assert "hunter2" not in repr(s)
    assert "postgresql://rastir:***@db.example/traces" in repr(s)
    with pytest.raises(ValueError, match="one of sqlite, memory or a postgresql:// URL") as e:
        CollectorSettings(store="postgresq://rastir:hunter2@db.example/traces")
    assert "hunter2" not in str(e.value)
    assert "rastir:***@db.example" in str(e.value)
