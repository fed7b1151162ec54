"""The real collector the topology tests' servers export to (shared with the examples)."""

from tests.examples.conftest import collector

__all__ = ["collector"]
