"""Run Python code in a fresh interpreter, as the tests that need a new process do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ROOT", "run_python"]

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    clean: bool = False,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) run with ``python -c``, the checkout on ``PYTHONPATH``.

    Args:
        args: the program's ``sys.argv[1:]``.
        env: variables set on top of this process's environment.
        clean: leave out this process's ``RASTIR_*`` and ``OTEL_*`` variables first.
        check: fail the test (``CalledProcessError``) when the program fails.
    """
    full = {
        k: v for k, v in os.environ.items() if not (clean and k.startswith(("RASTIR_", "OTEL_")))
    }
    full.update(env or {})
    full["PYTHONPATH"] = str(ROOT)
    command: Sequence[str] = [sys.executable, "-c", textwrap.dedent(code), *args]
    return subprocess.run(
        command, env=full, cwd=ROOT, capture_output=True, text=True, check=check, timeout=timeout
    )
