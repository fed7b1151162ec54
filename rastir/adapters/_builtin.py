"""The built-in adapters, registered when the registry is first used."""

from __future__ import annotations

from rastir.adapters.base import BaseAdapter

__all__ = ["builtin_adapters"]


def builtin_adapters() -> list[BaseAdapter]:
    """One instance of each built-in adapter."""
    from rastir.adapters.fallback import FallbackAdapter

    return [FallbackAdapter()]
