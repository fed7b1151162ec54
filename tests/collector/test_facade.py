"""``rastir.collector``'s public names, imported lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rastir.collector

ROOT = Path(__file__).resolve().parents[2]


def test_every_name_in_all_is_exported() -> None:
    for name in rastir.collector.__all__:
        assert getattr(rastir.collector, name) is not None
    with pytest.raises(AttributeError):
        _ = rastir.collector.nope


def test_importing_the_store_package_does_not_pull_in_the_web_stack() -> None:
    code = (
        "import sys; import rastir.collector.store; "
        "sys.exit(1 if 'starlette' in sys.modules or 'uvicorn' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
