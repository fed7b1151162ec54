"""The rastir collector: ingest, trace store, query API and Prometheus metrics.

Needs the ``collector`` extra (``pip install 'rastir[collector]'``). Names are
imported on first use, so ``rastir.collector.store`` can be used without the web
stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CollectorSettings", "create_app"]

if TYPE_CHECKING:
    from rastir.collector.app import create_app
    from rastir.collector.settings import CollectorSettings


def __getattr__(name: str) -> Any:
    if name == "CollectorSettings":
        from rastir.collector.settings import CollectorSettings

        return CollectorSettings
    if name == "create_app":
        try:
            from rastir.collector.app import create_app
        except ImportError as e:
            raise ImportError(
                f"the rastir collector needs its extra: pip install 'rastir[collector]' ({e})"
            ) from e
        return create_app
    raise AttributeError(f"module 'rastir.collector' has no attribute {name!r}")
