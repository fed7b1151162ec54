"""Real servers the tests run: found on PATH, or a skip (a failure in CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str, package: str) -> str:
    """The path of a server binary a test runs for real.

    Outside CI a missing binary skips the test; with ``RASTIR_TEST_REQUIRE_SERVERS=1``
    (set by ``.ci/run``, which installs the servers) it fails it instead, so CI can
    never pass by skipping.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package})"
        if os.environ.get("RASTIR_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
