"""``rastir.Settings`` keeps the frozen-dataclass behaviour it had, without dataclasses.

It became a ``__slots__`` class to take ``dataclasses`` out of ``import rastir``; these
tests pin what users could rely on: argument order, defaults, immutability, ``==``,
``repr``, pattern matching and pickling.
"""

from __future__ import annotations

import inspect
import math
import pickle
import re
import subprocess
import sys
import typing
from typing import Any

import pytest

import rastir
from rastir import Settings


def test_fields_annotations_and_init_parameters_agree_in_order() -> None:
    params = list(inspect.signature(Settings).parameters)
    hints = list(typing.get_type_hints(Settings))
    assert params == list(Settings.__match_args__)
    assert hints == list(Settings.__match_args__)
    assert Settings.__slots__ == Settings.__match_args__


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert (s.service, s.push_url, s.enabled, s.batch_size, s.max_queue) == (
        "unknown_service",
        None,
        True,
        512,
        8192,
    )
    assert (s.flush_interval, s.timeout, s.shutdown_timeout, s.retry_budget) == (
        1.0,
        10.0,
        2.0,
        30.0,
    )
    assert (s.gzip, s.capture_content, s.otel_bridge) == (True, False, None)
    assert s.headers == {}
    assert Settings().headers is not s.headers  # a fresh dict each time


def test_positional_arguments_follow_the_field_order() -> None:
    s = Settings("svc", "http://127.0.0.1:1", "prod", "1.2")
    assert (s.service, s.push_url, s.env, s.version) == ("svc", "http://127.0.0.1:1", "prod", "1.2")


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(AttributeError, match="cannot assign to field 'service'"):
        s.service = "x"
    with pytest.raises(AttributeError, match="cannot delete field 'service'"):
        del s.service
    with pytest.raises(AttributeError):
        s.not_a_setting = 1
    assert s.service == "unknown_service"


def test_equality_repr_hash_and_pickle_behave_like_the_dataclass() -> None:
    a = Settings(service="a", batch_size=10)
    assert a == Settings(service="a", batch_size=10)
    assert a != Settings(service="b", batch_size=10)
    assert a != "Settings(service='a')"
    assert repr(a).startswith("Settings(service='a', push_url=None, env=None, version=None, ")
    assert "batch_size=10" in repr(a)
    last = Settings.__match_args__[-1]
    assert repr(a).endswith(f"{last}={getattr(a, last)!r})")
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)  # headers is a dict, as with the frozen dataclass
    assert pickle.loads(pickle.dumps(a)) == a


def test_pattern_matching_uses_the_field_order() -> None:
    match Settings("svc", "http://127.0.0.1:9"):
        case Settings(service, push_url):
            assert (service, push_url) == ("svc", "http://127.0.0.1:9")
        case _:  # pragma: no cover - the case above must match
            pytest.fail("Settings did not match positionally")


def test_configure_returns_settings_and_validates_urls_without_urllib_at_import() -> None:
    code = (
        "import sys\n"
        "import rastir\n"
        "before = 'urllib.parse' in sys.modules or 'dataclasses' in sys.modules\n"
        "s = rastir.configure(service='svc')\n"
        "try:\n"
        "    rastir.configure(push_url='ftp://example.com')\n"
        "except ValueError as e:\n"
        "    bad = str(e)\n"
        "print(before, type(s).__name__, s.service, bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == (
        "False Settings svc push_url 'ftp://example.com' must be an http:// or https:// URL"
    )


def test_get_settings_is_a_settings() -> None:
    assert isinstance(rastir.get_settings(), Settings)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"enabled": "false"}, "enabled must be True or False"),
        ({"enabled": None}, "enabled must be True or False"),
        ({"capture_content": "false"}, "capture_content must be True or False"),
        ({"flush_interval": math.inf}, "flush_interval must be a number of seconds"),
        ({"flush_interval": 1e10}, "flush_interval must be a number of seconds"),
        ({"timeout": math.nan}, "timeout must be a number of seconds"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be a number of seconds"),
        ({"push_url": 5}, "push_url must be a URL string"),
        ({"push_url": "http://[::1"}, "push_url 'http://[::1' is not a valid URL"),
        ({"push_url": "http://h:99999"}, "is not a valid URL: Port out of range"),
        ({"exporter": "otlp", "otlp_endpoint": 5}, "otlp_endpoint must be a URL string"),
        ({"headers": "a=b"}, "headers must be a mapping"),
    ],
)
def test_a_bad_setting_is_a_value_error_naming_it(options: dict[str, Any], message: str) -> None:
    before = rastir.get_settings()
    with pytest.raises(ValueError, match=re.escape(message)):
        rastir.configure(**options)
    assert rastir.get_settings() is before  # nothing changed


def test_a_bad_time_from_the_environment_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTIR_FLUSH_INTERVAL", "inf")
    with pytest.raises(ValueError, match="flush_interval"):
        rastir.configure()
