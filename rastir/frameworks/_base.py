"""What every framework decorator shares: the call's state and its wrappers.

A decorated call opens the agent span and publishes a :class:`FrameworkCall` in a
ContextVar for as long as the function's own code runs (or, for a stream, during each
step of it). The framework's hooks, registered once and process-wide where the framework
only offers that, look the call up in the ContextVar and do nothing outside one.

The hooks identify their runs by the framework's own ids (LangChain ``run_id`` and
``parent_run_id``, LlamaIndex span ids, ...). :class:`FrameworkCall` maps those ids to
spans explicitly, so a span's parent never depends on which thread or task the framework
happened to call the hook from.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Hashable, Iterator
from contextvars import ContextVar, Token
from typing import Any

from rastir import _config
from rastir._instrument import record_exception
from rastir.adapters._nested import note_inner
from rastir.context import _current_agent, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.spans import AttributeValue, Span, SpanContext

__all__ = ["FrameworkCall", "active_call", "capture_enabled", "truncate"]

_log = logging.getLogger("rastir")
_MAX_CAPTURE = 4096

# The decorated call whose framework runs the hooks should record.
_active: ContextVar[FrameworkCall | None] = ContextVar("rastir_framework_call", default=None)

Labels = list[tuple[ContextVar[Any], Any]]


def active_call(framework: str | None = None) -> FrameworkCall | None:
    """The innermost decorated call running in this context, or None.

    With ``framework``, the innermost call *of that framework*: a framework's hooks
    record only for a call that turned them on, whichever other decorated calls (of
    another framework, or with no framework found) run inside it. Without this, hooks
    registered by an earlier call would record into any later call, and what a call
    traces would depend on which calls came before it.
    """
    call = _active.get()
    if framework is None:
        return call
    while call is not None and call.framework != framework:
        call = call.outer
    return call


def capture_enabled() -> bool:
    return _config._settings.capture_content


def truncate(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:
        text = "<unprintable>"
    return text[:_MAX_CAPTURE]


class _Run:
    """A framework run that has a span, and the context tokens that made it current."""

    __slots__ = ("otel", "span", "token")

    def __init__(
        self, span: Span, token: Token[Span | SpanContext | None] | None, otel: Any
    ) -> None:
        self.span = span
        self.token = token
        self.otel = otel


class FrameworkCall:
    """One decorated call: its agent span and the spans of the framework runs inside it.

    Hooks may be called from any thread. Every method here is safe to call concurrently
    and never raises into the framework.
    """

    __slots__ = (
        "_aliases",
        "_lock",
        "_runs",
        "agent",
        "agent_name",
        "data",
        "finalizers",
        "framework",
        "function",
        "outer",
    )

    def __init__(
        self,
        agent: Span,
        agent_name: str,
        framework: str | None,
        outer: FrameworkCall | None = None,
        function: str = "",
    ) -> None:
        self.agent = agent
        self.agent_name = agent_name
        self.framework = framework
        # The decorated call this one runs inside, if any (see active_call).
        self.outer = outer
        # ``module.qualname`` of the decorated function, for once-per-function warnings.
        self.function = function
        self._runs: dict[Hashable, _Run] = {}
        # Runs without a span of their own (routing functions, sequences, ...): their
        # children belong to the span of the nearest ancestor that has one.
        self._aliases: dict[Hashable, Span] = {}
        self._lock = threading.Lock()
        # What an integration remembers about framework runs between its hooks.
        self.data: dict[Hashable, Any] = {}
        # Run when the call ends, before its open spans are closed.
        self.finalizers: list[Callable[[], None]] = []

    # -- lookup -------------------------------------------------------------------
    def span_of(self, key: Hashable | None) -> Span | None:
        """The span recorded for a framework id (or the one it stands for)."""
        if key is None:
            return None
        run = self._runs.get(key)
        if run is not None:
            return run.span
        return self._aliases.get(key)

    def parent_for(self, parent_key: Hashable | None) -> Span:
        """The span a new run hangs under: its parent run's, else the caller's span.

        A run with no known parent is a top-level run of the framework: it belongs
        under whatever span is current in this call (the agent span, or a span the
        user opened inside it).
        """
        span = self.span_of(parent_key)
        if span is not None:
            return span
        current = _current_span.get()
        if isinstance(current, Span) and current.tid == self.agent.tid and not current.ended:
            return current
        return self.agent

    # -- recording ----------------------------------------------------------------
    def open(
        self,
        key: Hashable,
        name: str,
        kind: str,
        parent: Span,
        attributes: dict[str, Any] | None = None,
        *,
        current: bool = False,
    ) -> Span:
        """Start a span for a framework run; with ``current``, make it the current span
        of the calling context until :meth:`close` (so code the run calls, such as a
        tool reaching an MCP server, continues the trace under it)."""
        attrs: dict[str, Any] = {"gen_ai.agent.name": self.agent_name}
        if attributes:
            attrs.update(attributes)
        span = Span(name, kind, parent, attrs)
        if kind == "llm" and parent.kind == "llm":
            note_inner(parent, span)  # the same call seen twice is counted once
        token = otel = None
        if current:
            token = _current_span.set(span)
            # With the OTel bridge on, OpenTelemetry's current span too: an MCP client
            # the framework holds (mcp injects the OTel context into ``_meta``) then
            # continues the trace under this span.
            bridge = PIPELINE.bridge
            if bridge is not None:
                otel = bridge.attach(span)
        with self._lock:
            self._runs[key] = _Run(span, token, otel)
        return span

    def alias(self, key: Hashable, parent_key: Hashable | None) -> None:
        """Record a run that gets no span: its children go to its parent's span."""
        parent = self.parent_for(parent_key)
        with self._lock:
            self._aliases[key] = parent

    def close(
        self,
        key: Hashable,
        error: BaseException | None = None,
        *,
        category: str | None = None,
        exc_type: str = "",
    ) -> Span | None:
        """End a run's span (or forget an alias). Returns the span, if it had one.

        ``category`` marks the span failed without an exception (``exc_type`` names
        what said so), or, with ``error``, replaces the category the exception would
        be classified as (the framework's own "tool failed" exception, say).
        """
        with self._lock:
            run = self._runs.pop(key, None)
            if run is None:
                self._aliases.pop(key, None)
                return None
        span = run.span
        if error is not None:
            record_exception(span, error)
            if category is not None and span.error is not None:
                span.error["type"] = category
        elif category is not None:
            span.set_error(category, exc_type, "")
        if run.otel is not None:
            bridge = PIPELINE.bridge
            if bridge is not None:
                bridge.detach(run.otel)
        if run.token is not None:
            _restore(run.token, span)
        if not span.ended:
            span._t1 = time.perf_counter_ns()
            PIPELINE.on_end(span)
        return span

    def close_all(self, exc: BaseException | None = None) -> None:
        """End every span still open when the call ends, so none is lost.

        With ``exc`` (what ended the call: an error, a cancellation), the spans it cut
        short get that status too; the framework may never report their end (LangChain
        reports no error for a model call cancelled inside ``asyncio.gather``).
        """
        for finalize in self.finalizers:
            try:
                finalize()
            except Exception:
                _log.debug("rastir: framework finalizer failed", exc_info=True)
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
            self._aliases.clear()
            self.data.clear()
        for run in runs:
            span = run.span
            if not span.ended:
                span.attributes["rastir.span.unfinished"] = True
                if exc is not None and span.status == "ok":
                    record_exception(span, exc)
                span._t1 = time.perf_counter_ns()
                PIPELINE.on_end(span)


def _restore(token: Token[Span | SpanContext | None], span: Span) -> None:
    """Undo the ``current`` of :meth:`FrameworkCall.open`.

    The framework normally ends a run in the context that started it; if it does not,
    the token cannot be reset there, and the span is replaced by its parent instead so
    nothing later is attributed to a finished span.
    """
    try:
        _current_span.reset(token)
    except ValueError:
        if _current_span.get() is span:
            _current_span.set(token.old_value if isinstance(token.old_value, Span) else None)


# -- the decorators' wrappers ------------------------------------------------------------
Activate = Callable[[FrameworkCall, tuple[Any, ...], dict[str, Any]], Labels]


Entered = tuple[list[tuple[ContextVar[Any], Token[Any]]], Any]


class _Scope:
    """Everything one call sets while its code runs, and how to end it."""

    __slots__ = ("call", "labels", "span")

    def __init__(self, call: FrameworkCall, labels: Labels) -> None:
        self.call = call
        self.span = call.agent
        self.labels = labels

    def enter(self) -> Entered:
        tokens = [(var, var.set(value)) for var, value in self.labels]
        bridge = PIPELINE.bridge
        return tokens, None if bridge is None else bridge.attach(self.span)

    @staticmethod
    def leave(entered: Entered) -> None:
        tokens, otel = entered
        if otel is not None:
            bridge = PIPELINE.bridge
            if bridge is not None:
                bridge.detach(otel)
        for var, token in reversed(tokens):
            var.reset(token)

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is not None:
            record_exception(self.span, exc)
        self.call.close_all(exc)
        self.span._t1 = time.perf_counter_ns()
        PIPELINE.on_end(self.span)


Begin = Callable[[tuple[Any, ...], dict[str, Any]], "_Scope | None"]


def make_begin(
    agent_name: str,
    attributes: dict[str, AttributeValue],
    choose: Callable[[tuple[Any, ...], dict[str, Any]], tuple[str | None, Activate | None]],
    function: str = "",
) -> Begin:
    """Build the function that opens a call: the agent span, the call state, the hooks."""
    static: dict[str, Any] = dict(attributes)
    static["gen_ai.operation.name"] = "invoke_agent"
    static["gen_ai.agent.name"] = agent_name

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Scope | None:
        if not PIPELINE.enabled:
            return None
        try:
            framework, activate = choose(args, kwargs)
        except Exception:
            _log.debug("rastir: framework detection failed", exc_info=True)
            framework, activate = None, None
        bridge = PIPELINE.bridge
        parent = _current_span.get()
        if bridge is not None:
            parent = bridge.parent(parent)
        span = Span(agent_name, "agent", parent, dict(static))
        if framework is not None:
            span.attributes["rastir.framework"] = framework
        call = FrameworkCall(span, agent_name, framework, _active.get(), function)
        labels: Labels = [(_current_span, span), (_current_agent, agent_name), (_active, call)]
        if activate is not None:
            try:
                labels.extend(activate(call, args, kwargs))
            except Exception:
                _log.debug("rastir: enabling %s hooks failed", framework, exc_info=True)
        return _Scope(call, labels)

    return begin


def wrap_sync(fn: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = begin(args, kwargs)
        if scope is None:
            return fn(*args, **kwargs)
        tokens = scope.enter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            scope.leave(tokens)
            scope.finish(exc)
            raise
        scope.leave(tokens)
        # A stream handed back (``return graph.stream(...)``): the call lasts until the
        # caller has consumed it.
        if isinstance(result, types.GeneratorType):
            return _drive_gen(result, scope, _Unstarted(scope))
        if isinstance(result, types.AsyncGeneratorType):
            return _drive_agen(result, scope, _Unstarted(scope))
        scope.finish()
        return result

    return wrapper


class _Unstarted:
    """Ends the call of a stream handed back and never finalized.

    A generator that is never started never runs its ``finally``, not even when it is
    collected, so a stream the caller drops unread would leave the call's span open
    for ever. This object is an argument of the driving generator, so it lives in its
    frame and goes with it: if the drive has not taken over by then, the call's span is
    ended here (without the call's lock: the collector may run this anywhere, also while
    this thread holds that lock; a call that never ran a step has no open runs).
    """

    __slots__ = ("scope",)

    def __init__(self, scope: _Scope) -> None:
        self.scope: _Scope | None = scope

    def __del__(self) -> None:
        scope = self.scope
        if scope is None:
            return
        self.scope = None
        try:
            span = scope.span
            if span.ended:
                return
            span.attributes["rastir.generator.closed_early"] = True
            span.attributes["rastir.generator.items"] = 0
            span._t1 = time.perf_counter_ns()
            PIPELINE.on_end(span)
        except Exception:  # never raise into the garbage collector
            pass


def wrap_async(fn: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = begin(args, kwargs)
        if scope is None:
            return await fn(*args, **kwargs)
        tokens = scope.enter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            scope.leave(tokens)
            scope.finish(exc)
            raise
        scope.leave(tokens)
        if isinstance(result, types.AsyncGeneratorType):
            return _drive_agen(result, scope, _Unstarted(scope))
        scope.finish()
        return result

    return wrapper


def wrap_gen(fn: Callable[..., Generator[Any, Any, Any]], begin: Begin) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        scope = begin(args, kwargs)
        if scope is None:
            return (yield from fn(*args, **kwargs))
        tokens = scope.enter()
        try:
            gen = fn(*args, **kwargs)
        finally:
            scope.leave(tokens)
        return (yield from _drive_gen(gen, scope))

    return wrapper


def wrap_agen(fn: Callable[..., AsyncGenerator[Any, Any]], begin: Begin) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        scope = begin(args, kwargs)
        if scope is None:
            async for item in fn(*args, **kwargs):
                yield item
            return
        tokens = scope.enter()
        try:
            agen = fn(*args, **kwargs)
        finally:
            scope.leave(tokens)
        inner = _drive_agen(agen, scope)
        try:
            async for item in inner:
                yield item
        finally:
            await inner.aclose()

    return wrapper


def _drive_gen(
    gen: Generator[Any, Any, Any], scope: _Scope, unstarted: _Unstarted | None = None
) -> Generator[Any, Any, Any]:
    """Run a generator with the call's context set during each step (never across a
    yield, DESIGN §4); the call ends when it is exhausted, closed or fails (or, never
    started, when it is collected: ``unstarted``)."""
    if unstarted is not None:
        unstarted.scope = None  # started: this generator's finally ends the call
    send: Callable[[Any], Any] = gen.send
    value: Any = None
    items = 0
    error: BaseException | None = None
    try:
        while True:
            tokens = scope.enter()
            try:
                item = send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                scope.leave(tokens)
            items += 1
            try:
                value = yield item
                send = gen.send
            except GeneratorExit:
                scope.span.attributes["rastir.generator.closed_early"] = True
                tokens = scope.enter()
                try:
                    gen.close()
                finally:
                    scope.leave(tokens)
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                value = exc
                send = gen.throw
    except GeneratorExit:
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        scope.span.attributes["rastir.generator.items"] = items
        scope.finish(error)


async def _drive_agen(
    agen: AsyncGenerator[Any, Any], scope: _Scope, unstarted: _Unstarted | None = None
) -> AsyncGenerator[Any, Any]:
    """:func:`_drive_gen` for an async generator."""
    if unstarted is not None:
        unstarted.scope = None
    step: Callable[[Any], Any] = agen.asend
    value: Any = None
    items = 0
    error: BaseException | None = None
    try:
        while True:
            tokens = scope.enter()
            try:
                item = await step(value)
            except StopAsyncIteration:
                return
            finally:
                scope.leave(tokens)
            items += 1
            try:
                value = yield item
                step = agen.asend
            except GeneratorExit:
                scope.span.attributes["rastir.generator.closed_early"] = True
                tokens = scope.enter()
                try:
                    await agen.aclose()
                finally:
                    scope.leave(tokens)
                raise
            except BaseException as exc:
                value = exc
                step = agen.athrow
    except GeneratorExit:
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        scope.span.attributes["rastir.generator.items"] = items
        scope.finish(error)


def iter_objects(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """The call's arguments, one level into lists, tuples and dict values."""
    for value in (*args, *kwargs.values()):
        yield value
        if isinstance(value, (list, tuple)):
            yield from value[:16]
        elif isinstance(value, dict):
            yield from list(value.values())[:16]
