from __future__ import annotations

from collections.abc import Iterator

import pytest

from rastir.sampling import HEAD


@pytest.fixture(autouse=True)
def _full_head_ratio() -> Iterator[None]:
    """Every test starts, and leaves the process, sampling every trace."""
    HEAD.set_ratio(1.0)
    yield
    HEAD.set_ratio(1.0)
