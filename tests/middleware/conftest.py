from __future__ import annotations

from collections.abc import Iterator

import pytest

from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from tests.middleware.servers import SpanWaiter, StatsDelta, reset_otel_globals


@pytest.fixture
def counted() -> StatsDelta:
    return StatsDelta()


@pytest.fixture(autouse=True)
def _no_leaked_context() -> Iterator[None]:
    """No test may leave a span or baggage current in the test's own context."""
    yield
    assert _current_span.get() is None
    assert _current_baggage.get() == ()


@pytest.fixture
def otel_globals() -> Iterator[None]:
    """A test that sets OpenTelemetry's global tracer provider gets it unset after."""
    reset_otel_globals()
    yield
    reset_otel_globals()


@pytest.fixture
def spans() -> Iterator[SpanWaiter]:
    """Every span that ends during the test, from any thread, with a way to wait."""
    waiter = SpanWaiter()
    PIPELINE.add_sink(waiter)
    try:
        yield waiter
    finally:
        PIPELINE.remove_sink(waiter)
