"""The package's public surface and its import-time promises."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import rastir


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(rastir) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(rastir, n)).__name__ == "module"}
    assert set(rastir.__all__) == (public - submodules) | {"__version__"}
    for name in rastir.__all__:
        assert getattr(rastir, name) is not None


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_importing_rastir_starts_no_thread_and_loads_no_optional_part() -> None:
    out = _fresh(
        """
        import sys, threading
        import rastir
        loaded = sorted(
            m for m in sys.modules
            if m.startswith(("rastir.collector", "rastir.middleware", "rastir.mcp_bridge",
                             "rastir.export.batch", "starlette", "prometheus_client",
                             "opentelemetry", "mcp", "httpx"))
        )
        print(threading.active_count(), loaded)
        """
    )
    assert out == "1 []"


def test_decorated_calls_without_configure_start_no_thread() -> None:
    out = _fresh(
        """
        import threading
        import rastir

        @rastir.trace
        def f():
            return 1

        for _ in range(10_000):
            f()
        from rastir.export._pipeline import PIPELINE
        print(threading.active_count(), len(PIPELINE.queue), PIPELINE.dropped)
        """
    )
    # Queued for a configure() that may come, bounded by max_queue, the rest counted.
    assert out == "1 8192 1808"
