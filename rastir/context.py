"""Context: which span is current, and the labels children inherit.

Rastir never copies attributes from a parent span to its children. Instead the
decorators set dedicated ContextVars that children read (seed 002 §6):

* ``@agent`` sets the agent; ``@llm``, ``@tool`` and ``@retrieval`` read it.
* ``@llm`` sets the model and provider for whatever runs inside it.

ContextVars follow asyncio tasks, anyio and trio task groups, ``asyncio.to_thread`` and
``contextvars.copy_context().run``. A plain ``threading.Thread`` starts with an empty
context, so a span started there is the root of a new trace unless the caller copies
the context into the thread.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from rastir.export._pipeline import PIPELINE
from rastir.spans import Span, SpanContext

__all__ = [
    "attach",
    "current_agent",
    "current_baggage",
    "current_model",
    "current_provider",
    "current_span",
    "current_span_id",
    "current_trace_id",
    "detach",
    "use_span",
]

# The current span, or the remote context it continues. One ContextVar for both
# keeps the hot path to a single lookup.
_current_span: ContextVar[Span | SpanContext | None] = ContextVar(
    "rastir_current_span", default=None
)
_current_agent: ContextVar[str | None] = ContextVar("rastir_current_agent", default=None)
# (model, provider) of the nearest enclosing @llm: one ContextVar for the pair, so an
# @llm call sets and resets one variable, not two.
_current_llm: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "rastir_current_llm", default=(None, None)
)
# W3C baggage entries received from upstream, forwarded unchanged.
_current_baggage: ContextVar[tuple[tuple[str, str], ...]] = ContextVar(
    "rastir_current_baggage", default=()
)


# -- multiprocessing children start with an empty context -------------------------------
# A forked worker would otherwise keep the context of the thread that forked it: a
# pool started during one request would put the tasks of every later request in that
# request's trace. Cleared as a spawned or forkserver child starts (the default on
# macOS and, from Python 3.14, on Linux): context crosses processes only when passed
# (``inject`` and ``continue_trace``). A bare ``os.fork()`` keeps it.
_mp_hooked = False


def _start_empty() -> None:
    _current_span.set(None)
    _current_agent.set(None)
    _current_llm.set((None, None))
    _current_baggage.set(())


def _hook_multiprocessing() -> None:
    """Before a fork: have multiprocessing run :func:`_start_empty` in its children.

    multiprocessing runs its after-fork callbacks as a child process starts, in the
    context its target then runs in. Registered once, when multiprocessing is in use.
    """
    global _mp_hooked
    if _mp_hooked:
        return
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        _mp_hooked = True
        util.register_after_fork(_hook_multiprocessing, lambda _: _start_empty())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_hook_multiprocessing)


def current_span() -> Span | None:
    """The rastir span running in this context, or None.

    A remote parent extracted from headers is not a span of this process, so it is
    not returned here; :func:`current_trace_id` still reports its trace.
    """
    span = _current_span.get()
    return span if isinstance(span, Span) else None


def current_trace_id() -> str | None:
    """The 32-hex-digit trace id of the current context, or None outside any trace."""
    span = _current_span.get()
    return None if span is None else f"{span.tid:032x}"


def current_span_id() -> str | None:
    """The 16-hex-digit id of the current span (or remote parent), or None."""
    span = _current_span.get()
    return None if span is None else f"{span.sid:016x}"


def current_agent() -> str | None:
    """The agent name set by the nearest enclosing ``@agent``."""
    return _current_agent.get()


def current_model() -> str | None:
    """The model set by the nearest enclosing ``@llm``."""
    return _current_llm.get()[0]


def current_provider() -> str | None:
    """The provider set by the nearest enclosing ``@llm``."""
    return _current_llm.get()[1]


def current_baggage() -> dict[str, str]:
    """The W3C baggage entries of the current context."""
    return dict(_current_baggage.get())


def attach(span: Span | SpanContext | None) -> Token[Span | SpanContext | None]:
    """Make ``span`` current; give the token back to :func:`detach` in the same context."""
    return _current_span.set(span)


def detach(token: Token[Span | SpanContext | None]) -> None:
    """Undo :func:`attach`."""
    _current_span.reset(token)


@contextmanager
def use_span(span: Span | SpanContext | None) -> Iterator[Span | SpanContext | None]:
    """Make ``span`` current for the body of the ``with`` block, without ending it.

    Use it to continue a trace received from elsewhere: ``with use_span(extract(headers)):``.
    The baggage that came with such a context is current too, so it travels on.
    """
    token = _current_span.set(span)
    baggage = span.baggage if isinstance(span, SpanContext) else None
    baggage_token = _current_baggage.set(baggage) if baggage else None
    bridge = PIPELINE.bridge
    otel = None if bridge is None or span is None else bridge.attach(span)
    try:
        yield span
    finally:
        if bridge is not None:
            bridge.detach(otel)
        if baggage_token is not None:
            _current_baggage.reset(baggage_token)
        _current_span.reset(token)
