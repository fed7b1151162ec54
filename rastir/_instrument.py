"""The wrappers behind every decorator.

The right wrapper (sync, async, generator, async generator) is chosen once, when a
function is decorated, never on each call. Each wrapper:

1. returns straight to the function when rastir is disabled;
2. opens a span whose parent is the current span (or remote context);
3. lets a ``prepare`` hook read the arguments and set inherited labels;
4. makes the span current only while the function's own code runs: a generator's
   span is current during each step and never across a ``yield``, so the consumer's
   code between steps is not attributed to it;
5. records the outcome (``Exception`` is an error; cancellation is ``cancelled``;
   ``GeneratorExit`` from an early ``close()`` is not an error), re-raises the user's
   exception unchanged, and hands the span to the pipeline.
"""

from __future__ import annotations

import builtins
import functools
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar

from rastir.context import _current_span
from rastir.errors import error_info, is_cancellation
from rastir.export._pipeline import PIPELINE
from rastir.spans import Span, SpanContext

__all__ = [
    "Hooks",
    "Recorder",
    "StreamHooks",
    "detach_span",
    "end_span",
    "finish_span",
    "instrument",
    "record_coroutine_exit",
    "record_exception",
    "start_span",
]

F = TypeVar("F", bound=Callable[..., Any])


def _log_debug(message: str) -> None:
    """Log a swallowed failure at debug level, with its traceback.

    ``logging`` is imported here, on the failure path, rather than with rastir: it
    is a tenth of ``import rastir`` and most processes never log through it.
    """
    import logging

    logging.getLogger("rastir").debug(message, exc_info=True)


# What a prepare hook hands back: inherited labels (ContextVar, value) that the
# wrapper sets while the function's code runs, and resets after.
Labels = tuple[tuple[ContextVar[Any], Any], ...] | None
Tokens = list[tuple[ContextVar[Any], Token[Any]]] | None
Prepare = Callable[[Span, tuple[Any, ...], dict[str, Any]], Labels]
Complete = Callable[[Span, Any], None]


class Recorder(Protocol):
    """Per-call stream state: sees each item, then writes onto the span at the end."""

    def item(self, obj: Any) -> None: ...
    def end(self, partial: bool, final: Any = None) -> None: ...


class StreamHooks(Protocol):
    """Streaming behaviour (``@llm``): a recorder for generator functions, and
    ``adopt`` for what a plain function returns. ``adopt`` returns a stand-in that
    ends the span itself when the result is a stream; otherwise it completes the span
    from the result (in place of the ``complete`` hook) and returns None."""

    def begin(self, span: Span) -> Recorder: ...
    def adopt(self, span: Span, result: Any) -> Any: ...


class Hooks:
    """Per-decorator behaviour: what to read before the call and after it."""

    __slots__ = ("complete", "prepare", "static", "stream")

    def __init__(
        self,
        prepare: Prepare | None = None,
        complete: Complete | None = None,
        stream: StreamHooks | None = None,
        static: dict[str, Any] | None = None,
    ) -> None:
        self.prepare = prepare
        self.complete = complete
        self.stream = stream
        # Constant attributes. With ``static`` set, ``prepare`` does nothing but copy
        # them, and plain functions skip it: their span starts with a copy instead.
        self.static = static


def start_span(
    name: str,
    kind: str,
    attributes: dict[str, Any] | None = None,
    parent: Span | SpanContext | None = None,
) -> tuple[Span, Token[Span | SpanContext | None], Any]:
    """Open a span and make it current (OTel bridge included); close with :func:`end_span`.

    ``parent`` overrides the current context (a remote parent from headers).
    """
    bridge = PIPELINE.bridge
    if parent is None:
        parent = _current_span.get()
        if bridge is not None:
            parent = bridge.parent(parent)
    span = Span(name, kind, parent, attributes)
    token = _current_span.set(span)
    otel = None if bridge is None else bridge.attach(span)
    return span, token, otel


def detach_span(
    token: Token[Span | SpanContext | None], otel: Any, span: Span | None = None
) -> None:
    """Undo :func:`start_span`'s context changes (the span itself stays open).

    Never raises. A ``with rastir.span()`` held across a generator's ``yield`` can be
    closed from another context (another thread, the garbage collector, asyncio's
    finaliser task for an abandoned async generator, ``Context.run(gen.close)``),
    where the token does not belong. That context is left alone unless ``span`` is
    its current span (a copy of the context the span was made current in), which is
    then replaced by the previous span, by value. Without ``span`` (older callers)
    the previous span is always restored by value.
    """
    try:
        _current_span.reset(token)
    except ValueError:
        if span is None or _current_span.get() is span:
            old = token.old_value
            _current_span.set(None if old is Token.MISSING else old)
        return  # the OTel token belongs to the other context too: leave it
    if otel is not None:
        bridge = PIPELINE.bridge
        if bridge is not None:
            bridge.detach(otel)


def finish_span(span: Span) -> None:
    """Stamp the end and hand the span to the pipeline."""
    span._t1 = time.perf_counter_ns()
    PIPELINE.on_end(span)


def end_span(span: Span, token: Token[Span | SpanContext | None], otel: Any) -> None:
    """:func:`detach_span` then :func:`finish_span` (the span ends whatever happens)."""
    try:
        detach_span(token, otel, span)
    finally:
        finish_span(span)


def record_exception(span: Span, exc: BaseException) -> None:
    """Record how a span ended abnormally. Never raises.

    An exception is an error and a cancellation is ``cancelled``. An exception group
    (``ExceptionGroup`` from a ``TaskGroup``, or a ``BaseExceptionGroup``: a task group
    stopped by a cancellation while another task failed) is an error when any
    exception in it is not a cancellation, described by the first such one (walked
    depth-first), and ``cancelled`` when all are. ``StopIteration`` and
    ``StopAsyncIteration`` (a decorated ``__next__``/``__anext__`` reporting the end of
    its iteration, as the protocol says it must) are not errors. ``GeneratorExit`` (a
    generator closed early) changes nothing; any other ``BaseException`` is an error.
    """
    try:
        if isinstance(exc, Exception):
            if isinstance(exc, _STOP):
                return  # an iterator's ``__next__``/``__anext__`` saying "done"
            if _is_group(exc):
                exc = _first_failure(exc) or exc  # a TaskGroup's ExceptionGroup
            category, exc_type, message = error_info(exc)
            span.set_error(category, exc_type, message)
        elif is_cancellation(exc):
            span.status = "cancelled"
            span.attributes["rastir.cancelled.by"] = type(exc).__name__
        elif not isinstance(exc, GeneratorExit):  # a generator closed early: not failed
            failed = _first_failure(exc)
            if failed is None:  # a group of cancellations only
                span.status = "cancelled"
                span.attributes["rastir.cancelled.by"] = type(exc).__name__
            else:
                category, exc_type, message = error_info(failed)
                span.set_error(category, exc_type, message)
    except Exception:  # pragma: no cover - error_info never raises
        span.status = "error"


def record_coroutine_exit(span: Span, exc: BaseException) -> None:
    """:func:`record_exception` for a coroutine. ``GeneratorExit`` there means the
    coroutine was closed before it finished (its task destroyed while pending, or the
    coroutine dropped half-way): it never completed, so the span is ``cancelled``
    (``rastir.cancelled.by=GeneratorExit``)."""
    if isinstance(exc, GeneratorExit):
        span.status = "cancelled"
        span.attributes["rastir.cancelled.by"] = "GeneratorExit"
    else:
        record_exception(span, exc)


_STOP = (StopIteration, StopAsyncIteration)
# ``BaseExceptionGroup`` is built in from Python 3.11.
_GROUP: type[BaseException] | None = getattr(builtins, "BaseExceptionGroup", None)


def _is_group(exc: BaseException) -> bool:
    """An exception group: the built-in one, or on Python 3.10 the ``exceptiongroup``
    backport that anyio and trio raise there (told by name, never imported)."""
    if _GROUP is not None:
        return isinstance(exc, _GROUP)
    return any(
        c.__name__ == "BaseExceptionGroup" and c.__module__.startswith("exceptiongroup")
        for c in type(exc).__mro__
    )


def _first_failure(exc: BaseException, depth: int = 0) -> BaseException | None:
    """The first exception in ``exc`` (a group, walked depth-first) that is not a
    cancellation; ``exc`` itself when it is not a group."""
    members = getattr(exc, "exceptions", None)
    if not isinstance(members, tuple) or depth > 32:
        return None if is_cancellation(exc) else exc
    for member in members:
        if isinstance(member, BaseException):
            found = _first_failure(member, depth + 1)
            if found is not None:
                return found
    return None


def _set_labels(labels: Labels) -> Tokens:
    if not labels:
        return None
    return [(var, var.set(value)) for var, value in labels]


def _reset_labels(tokens: Tokens) -> None:
    if tokens:
        for var, token in reversed(tokens):
            var.reset(token)


def _safe_prepare(
    prepare: Prepare, span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Labels:
    try:
        return prepare(span, args, kwargs)
    except Exception:
        _log_debug("rastir: prepare hook failed")
        return None


def _safe_complete(complete: Complete, span: Span, result: Any) -> None:
    try:
        complete(span, result)
    except Exception:
        _log_debug("rastir: complete hook failed")


def instrument(fn: F, name: str, kind: str, hooks: Hooks | None = None) -> F:
    """Wrap ``fn`` so each call is a span. ``staticmethod``/``classmethod`` are kept."""
    if isinstance(fn, (staticmethod, classmethod)):
        inner = instrument(fn.__func__, name, kind, hooks)
        return type(fn)(inner)
    # inspect costs a tenth of ``import rastir``; decorating is where it is needed.
    import inspect

    prepare = hooks.prepare if hooks else None
    complete = hooks.complete if hooks else None
    stream = hooks.stream if hooks else None
    static = hooks.static if hooks else None
    plain = complete is None and stream is None and (prepare is None or static is not None)
    managed = _contextlib_manager(fn)
    if managed is not None:
        # ``@trace`` above ``@contextmanager``/``@asynccontextmanager``: the span covers
        # the ``with`` block, as ``rastir.span()`` does, instead of ending when the
        # manager is made. The generator function inside is wrapped and managed again.
        inner, make = managed
        if inspect.isasyncgenfunction(inner):
            held: Callable[..., Any] = _wrap_held_async_gen(inner, name, kind, prepare)
        else:
            held = _wrap_held_gen(inner, name, kind, prepare)
        functools.update_wrapper(held, inner)
        manager: Any = make(held)
        functools.update_wrapper(manager, fn)
        manager.__wrapped__ = held  # what a decorator above this one unwraps
        manager.__rastir_kind__ = kind
        return manager  # type: ignore[no-any-return]
    if inspect.isasyncgenfunction(fn):
        wrapper: Callable[..., Any] = _wrap_async_gen(fn, name, kind, prepare, complete, stream)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _wrap_gen(fn, name, kind, prepare, complete, stream)
    elif inspect.iscoroutinefunction(fn):
        if stream is not None:
            wrapper = _wrap_async_adopt(fn, name, kind, prepare, complete, stream)
        elif plain:
            wrapper = _wrap_async_plain(fn, name, kind, static)
        else:
            wrapper = _wrap_async(fn, name, kind, prepare, complete)
    elif stream is not None:
        wrapper = _wrap_sync_adopt(fn, name, kind, prepare, complete, stream)
    elif plain:
        wrapper = _wrap_sync_plain(fn, name, kind, static)
    else:
        wrapper = _wrap_sync(fn, name, kind, prepare, complete)
    functools.update_wrapper(wrapper, fn)
    wrapper.__rastir_kind__ = kind  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _contextlib_manager(fn: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    """``(generator function, contextmanager or asynccontextmanager)`` when ``fn`` is
    what ``contextlib.contextmanager``/``asynccontextmanager`` made of a generator
    function (their helpers share one code object each); otherwise None."""
    inner = getattr(fn, "__wrapped__", None)
    code = getattr(fn, "__code__", None)
    if inner is None or code is None:
        return None
    import contextlib
    import inspect

    for make in (contextlib.contextmanager, contextlib.asynccontextmanager):
        if code is make(_nothing).__code__ and (
            inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner)
        ):
            return inner, make
    return None


def _nothing() -> Any:  # pragma: no cover - never called
    """Given to contextlib only to read the code object of the helper it returns."""


def _leave(
    span: Span, token: Token[Span | SpanContext | None], tokens: Tokens, bridge: Any, otel: Any
) -> None:
    """End a held span's context changes, safely from another context (see
    :func:`detach_span`)."""
    try:
        _current_span.reset(token)
    except ValueError:  # the ``with`` block ended in another context
        if _current_span.get() is span:
            old = token.old_value
            _current_span.set(None if old is Token.MISSING else old)
        return
    if bridge is not None:
        bridge.detach(otel)
    _reset_labels(tokens)


def _enter_held(
    name: str,
    kind: str,
    prepare: Prepare | None,
    bridge: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Span, Tokens, Token[Span | SpanContext | None], Any]:
    """Start a held span and make it (and its labels) current: what :func:`_leave`
    undoes when the ``with`` block ends."""
    cur = _current_span
    parent = cur.get() if bridge is None else bridge.parent(cur.get())
    span = Span(name, kind, parent, {})
    labels = _safe_prepare(prepare, span, args, kwargs) if prepare is not None else None
    tokens = _set_labels(labels)
    token = cur.set(span)
    otel = None if bridge is None else bridge.attach(span)
    return span, tokens, token, otel


def _wrap_held_gen(
    fn: Callable[..., Generator[Any, Any, Any]], name: str, kind: str, prepare: Prepare | None
) -> Callable[..., Generator[Any, Any, Any]]:
    """The generator of a ``@contextmanager``: unlike :func:`_wrap_gen`, the span and
    labels stay current across its ``yield``, which is the ``with`` block."""
    pipeline = PIPELINE

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if not pipeline.enabled:
            return (yield from fn(*args, **kwargs))
        bridge = pipeline.bridge
        span, tokens, token, otel = _enter_held(name, kind, prepare, bridge, args, kwargs)
        try:
            return (yield from fn(*args, **kwargs))
        except GeneratorExit:
            span.attributes["rastir.generator.closed_early"] = True
            raise
        except BaseException as exc:  # from the ``with`` block or the manager itself
            record_exception(span, exc)
            raise
        finally:
            try:
                _leave(span, token, tokens, bridge, otel)
            finally:
                finish_span(span)

    return wrapper


def _wrap_held_async_gen(
    fn: Callable[..., AsyncGenerator[Any, Any]], name: str, kind: str, prepare: Prepare | None
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """:func:`_wrap_held_gen` for an ``@asynccontextmanager``."""
    pipeline = PIPELINE

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        span: Span | None = None
        if pipeline.enabled:
            bridge = pipeline.bridge
            span, tokens, token, otel = _enter_held(name, kind, prepare, bridge, args, kwargs)
        try:
            agen = fn(*args, **kwargs)
            step: Callable[[Any], Any] = agen.asend
            value: Any = None
            while True:
                try:
                    item = await step(value)
                except StopAsyncIteration:
                    return
                try:
                    value = yield item
                    step = agen.asend
                except GeneratorExit:
                    if span is not None:
                        span.attributes["rastir.generator.closed_early"] = True
                    await agen.aclose()
                    raise
                except BaseException as exc:  # thrown in by __aexit__: pass it on
                    value = exc
                    step = agen.athrow
        except BaseException as exc:
            if span is not None:
                record_exception(span, exc)  # GeneratorExit changes nothing
            raise
        finally:
            if span is not None:
                try:
                    _leave(span, token, tokens, bridge, otel)
                finally:
                    finish_span(span)

    return wrapper


def _wrap_sync(
    fn: Callable[..., Any],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
) -> Callable[..., Any]:
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels = _safe_prepare(prepare, span, args, kwargs) if prepare is not None else None
        tokens = _set_labels(labels)
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record_exception(span, exc)
            raise
        else:
            if complete is not None:
                # The call's own time: what the hook does (adapters, the price table's
                # first load) is rastir's work, not the call's.
                span._t1 = perf()
                _safe_complete(complete, span, result)
            return result
        finally:
            if bridge is not None:
                bridge.detach(otel)
            cur.reset(token)
            if tokens is not None:
                _reset_labels(tokens)
            if not span._t1:
                span._t1 = perf()
            on_end(span)

    return wrapper


def _wrap_sync_plain(
    fn: Callable[..., Any], name: str, kind: str, static: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """:func:`_wrap_sync` without hooks (``@trace``, constant attributes at most)."""
    copy = None if static is None else static.copy
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, None if copy is None else copy())
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            record_exception(span, exc)
            raise
        finally:
            if bridge is not None:
                bridge.detach(otel)
            cur.reset(token)
            span._t1 = perf()
            on_end(span)

    return wrapper


def _wrap_async(
    fn: Callable[..., Any],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
) -> Callable[..., Any]:
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels = _safe_prepare(prepare, span, args, kwargs) if prepare is not None else None
        tokens = _set_labels(labels)
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            record_coroutine_exit(span, exc)
            raise
        else:
            if complete is not None:
                # The call's own time: what the hook does (adapters, the price table's
                # first load) is rastir's work, not the call's.
                span._t1 = perf()
                _safe_complete(complete, span, result)
            return result
        finally:
            try:
                cur.reset(token)
            except ValueError:  # closed unfinished by the GC, in a context not ours
                otel = tokens = None  # leave that context alone
            if bridge is not None:
                bridge.detach(otel)
            if tokens is not None:
                _reset_labels(tokens)
            if not span._t1:
                span._t1 = perf()
            on_end(span)

    return wrapper


def _wrap_async_plain(
    fn: Callable[..., Any], name: str, kind: str, static: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """:func:`_wrap_async` without hooks (``@trace`` on ``async def``)."""
    copy = None if static is None else static.copy
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, None if copy is None else copy())
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        try:
            return await fn(*args, **kwargs)
        except BaseException as exc:
            record_coroutine_exit(span, exc)
            raise
        finally:
            try:
                cur.reset(token)
            except ValueError:  # closed unfinished by the GC, in a context not ours
                otel = None  # leave that context alone
            if bridge is not None:
                bridge.detach(otel)
            span._t1 = perf()
            on_end(span)

    return wrapper


def _safe_begin(stream: StreamHooks, span: Span) -> Recorder | None:
    try:
        return stream.begin(span)
    except Exception:
        _log_debug("rastir: stream hook failed")
        return None


def _wrap_sync_adopt(
    fn: Callable[..., Any],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
    stream: StreamHooks,
) -> Callable[..., Any]:
    """:func:`_wrap_sync`, plus: a returned stream object takes over the span's end."""
    adopt = stream.adopt
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels: Labels = None
        if prepare is not None:
            try:  # _safe_prepare, inlined: this wrapper is @llm's hot path
                labels = prepare(span, args, kwargs)
            except Exception:
                _log_debug("rastir: prepare hook failed")
        tokens: Tokens = None
        if labels:  # _set_labels, inlined
            tokens = []
            for var, value in labels:
                tokens.append((var, var.set(value)))
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        owned = False
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record_exception(span, exc)
            raise
        else:
            # The stream hook either adopts a stream (which then ends the span) or
            # completes the span from the result itself. The call's own time ends
            # here, before the hook's work (a stream sets its own end).
            span._t1 = perf()
            try:
                proxy = adopt(span, result)
            except Exception:
                _log_debug("rastir: stream hook failed")
                proxy = None
            if proxy is not None:
                span._t1 = 0  # open until the stream ends
                owned = True
                return proxy
            return result
        finally:
            if bridge is not None:
                bridge.detach(otel)
            cur.reset(token)
            if tokens is not None:
                for var, tok in reversed(tokens):
                    var.reset(tok)
            if not owned:
                if not span._t1:
                    span._t1 = perf()
                on_end(span)

    return wrapper


def _wrap_async_adopt(
    fn: Callable[..., Any],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
    stream: StreamHooks,
) -> Callable[..., Any]:
    """:func:`_wrap_async`, plus: a returned stream object takes over the span's end."""
    adopt = stream.adopt
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels: Labels = None
        if prepare is not None:
            try:  # _safe_prepare, inlined: this wrapper is @llm's hot path
                labels = prepare(span, args, kwargs)
            except Exception:
                _log_debug("rastir: prepare hook failed")
        tokens: Tokens = None
        if labels:  # _set_labels, inlined
            tokens = []
            for var, value in labels:
                tokens.append((var, var.set(value)))
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        owned = False
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            record_coroutine_exit(span, exc)
            raise
        else:
            span._t1 = perf()  # the call's own time (see _wrap_sync_adopt)
            try:
                proxy = adopt(span, result)
            except Exception:
                _log_debug("rastir: stream hook failed")
                proxy = None
            if proxy is not None:
                span._t1 = 0  # open until the stream ends
                owned = True
                return proxy
            return result
        finally:
            try:
                cur.reset(token)
            except ValueError:  # closed unfinished by the GC, in a context not ours
                otel = tokens = None  # leave that context alone
            if bridge is not None:
                bridge.detach(otel)
            if tokens is not None:
                for var, tok in reversed(tokens):
                    var.reset(tok)
            if not owned:
                if not span._t1:
                    span._t1 = perf()
                on_end(span)

    return wrapper


def _wrap_gen(
    fn: Callable[..., Generator[Any, Any, Any]],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
    stream: StreamHooks | None = None,
) -> Callable[..., Generator[Any, Any, Any]]:
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if not pipeline.enabled:
            return (yield from fn(*args, **kwargs))
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels = _safe_prepare(prepare, span, args, kwargs) if prepare is not None else None
        rec = _safe_begin(stream, span) if stream is not None else None
        gen = fn(*args, **kwargs)
        send: Callable[[Any], Any] = gen.send
        value: Any = None
        items = 0
        exhausted = False
        try:
            while True:
                # Span and labels are current during this step only, never across
                # the yield below (DESIGN §4).
                tokens = _set_labels(labels)
                token = cur.set(span)
                otel = None if bridge is None else bridge.attach(span)
                try:
                    item = send(value)
                except StopIteration as stop:
                    exhausted = True
                    if complete is not None:
                        _safe_complete(complete, span, stop.value)
                    return stop.value
                finally:
                    if bridge is not None:
                        bridge.detach(otel)
                    cur.reset(token)
                    _reset_labels(tokens)
                items += 1
                if rec is not None:
                    rec.item(item)
                try:
                    value = yield item
                    send = gen.send
                except GeneratorExit:
                    span.attributes["rastir.generator.closed_early"] = True
                    # Its finally blocks run as a step does: span, labels, bridge.
                    tokens = _set_labels(labels)
                    token = cur.set(span)
                    otel = None if bridge is None else bridge.attach(span)
                    try:
                        gen.close()
                    finally:
                        if bridge is not None:
                            bridge.detach(otel)
                        cur.reset(token)
                        _reset_labels(tokens)
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it on
                    value = exc
                    send = gen.throw
        except GeneratorExit:
            raise
        except BaseException as exc:
            record_exception(span, exc)
            raise
        finally:
            span.attributes["rastir.generator.items"] = items
            if rec is not None:
                rec.end(not exhausted)
            span._t1 = perf()
            on_end(span)

    return wrapper


def _wrap_async_gen(
    fn: Callable[..., AsyncGenerator[Any, Any]],
    name: str,
    kind: str,
    prepare: Prepare | None,
    complete: Complete | None,
    stream: StreamHooks | None = None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    pipeline = PIPELINE
    on_end = pipeline.on_end
    perf = time.perf_counter_ns
    cur = _current_span

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = fn(*args, **kwargs)
        if not pipeline.enabled:
            async with _aclosing(agen):
                value: Any = None
                asend: Callable[[Any], Any] = agen.asend
                while True:
                    try:
                        item = await asend(value)
                    except StopAsyncIteration:
                        return
                    try:
                        value = yield item
                        asend = agen.asend
                    except GeneratorExit:
                        raise
                    except BaseException as exc:
                        value = exc
                        asend = agen.athrow
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, kind, parent, {})
        labels = _safe_prepare(prepare, span, args, kwargs) if prepare is not None else None
        rec = _safe_begin(stream, span) if stream is not None else None
        # Ends the span if this generator is destroyed without its finally running
        # (an event loop closed before its async generators were shut down).
        guard = _Unfinalized(span, rec, on_end)
        step: Callable[[Any], Any] = agen.asend
        value = None
        items = 0
        exhausted = False
        try:
            while True:
                # Span and labels are current during this step only, never across
                # the yield below (DESIGN §4).
                tokens = _set_labels(labels)
                token = cur.set(span)
                otel = None if bridge is None else bridge.attach(span)
                try:
                    item = await step(value)
                except StopAsyncIteration:
                    exhausted = True
                    if complete is not None:
                        _safe_complete(complete, span, None)
                    return
                finally:
                    try:
                        cur.reset(token)
                    except ValueError:  # closed mid-step by the GC, in a context not ours
                        otel = tokens = None  # leave that context alone
                    if bridge is not None:
                        bridge.detach(otel)
                    _reset_labels(tokens)
                items += 1
                guard.items = items
                if rec is not None:
                    rec.item(item)
                try:
                    value = yield item
                    step = agen.asend
                except GeneratorExit:
                    span.attributes["rastir.generator.closed_early"] = True
                    # Its finally blocks run as a step does: span, labels, bridge.
                    tokens = _set_labels(labels)
                    token = cur.set(span)
                    otel = None if bridge is None else bridge.attach(span)
                    try:
                        await agen.aclose()
                    finally:
                        try:
                            cur.reset(token)
                        except ValueError:  # see the step's
                            otel = tokens = None
                        if bridge is not None:
                            bridge.detach(otel)
                        _reset_labels(tokens)
                    raise
                except BaseException as exc:
                    value = exc
                    step = agen.athrow
        except GeneratorExit:
            # Also when closed in the middle of a step (its task destroyed pending).
            span.attributes["rastir.generator.closed_early"] = True
            raise
        except BaseException as exc:
            record_exception(span, exc)
            raise
        finally:
            guard.span = None
            span.attributes["rastir.generator.items"] = items
            if rec is not None:
                rec.end(not exhausted)
            span._t1 = perf()
            on_end(span)

    return wrapper


class _Unfinalized:
    """The span of an async generator that was never finalized.

    asyncio closes an abandoned async generator by scheduling ``aclose()`` on its loop;
    when that loop is already closed (``loop.close()`` without
    ``shutdown_asyncgens()``), the generator is destroyed without its ``finally``
    running, and its span would be lost. This object lives in the wrapper's frame, so
    it goes when that frame is cleared: if the span is still open then, it is ended as
    a generator closed early, at the time of its last step.
    """

    __slots__ = ("items", "on_end", "rec", "span")

    def __init__(self, span: Span, rec: Recorder | None, on_end: Callable[[Span], None]) -> None:
        self.span: Span | None = span
        self.rec = rec
        self.on_end = on_end
        self.items = 0

    def __del__(self) -> None:
        span = self.span
        if span is None:
            return
        self.span = None
        try:
            attributes = span.attributes
            attributes["rastir.generator.closed_early"] = True
            attributes["rastir.generator.finalized"] = False
            attributes["rastir.generator.items"] = self.items
            if self.rec is not None:
                self.rec.end(True)
            span._t1 = time.perf_counter_ns()
            self.on_end(span)
        except Exception:  # never raise from a finalizer into the GC
            pass


class _aclosing:
    """``contextlib.aclosing`` for Python 3.10 and later, without the import cost."""

    __slots__ = ("agen",)

    def __init__(self, agen: AsyncGenerator[Any, Any]) -> None:
        self.agen = agen

    async def __aenter__(self) -> AsyncGenerator[Any, Any]:
        return self.agen

    async def __aexit__(self, *exc: object) -> None:
        await self.agen.aclose()
