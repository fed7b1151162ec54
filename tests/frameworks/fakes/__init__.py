"""Faithful fakes of the framework SDKs too heavy or too conflicting to install in CI.

Each fake reproduces, under the SDK's own module names, the public API that rastir's
integration and the tests use: the hook/plugin/event-bus classes with the same names,
fields and call order, and just enough of the agent runtime to drive them. ``install``
puts a fake in ``sys.modules`` only when the real package cannot be imported, so the
same tests run unchanged against the real SDK where it is installed (docs/decisions.md,
FW-3 records the install measurements and the conflicts).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

__all__ = ["install", "is_fake"]

_ROOTS = {"strands": "strands", "adk": "google.adk", "crewai": "crewai"}
_installed: set[str] = set()


def _real_available(root: str) -> bool:
    try:
        return importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):
        return False


def install(framework: str) -> None:
    """Make ``framework``'s modules importable: the real SDK if present, else the fake.

    Raises:
        RuntimeError: The SDK is missing and ``RASTIR_TEST_REQUIRE_REAL`` names it
            (``scripts/test-real-frameworks``: a run meant for the real SDK).
    """
    root = _ROOTS[framework]
    if framework in _installed or _real_available(root):
        return
    if framework in os.environ.get("RASTIR_TEST_REQUIRE_REAL", "").split(","):
        raise RuntimeError(f"{root} is not installed, and this run is for the real SDK")
    fake = importlib.import_module(f"tests.frameworks.fakes.{framework}_fake")
    for name, module in fake.modules().items():
        sys.modules.setdefault(name, module)
    _installed.add(framework)


def is_fake(framework: str) -> bool:
    return framework in _installed
