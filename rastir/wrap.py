"""``wrap()``: trace every public method of an object through a transparent proxy.

    r = rastir.wrap(redis.Redis(), kind="retrieval")
    r.get("user:1")                 # a span "Redis.get" of kind retrieval

    conn = rastir.wrap(sqlite3.connect("app.db"), include={"execute", "commit"})

The proxy forwards everything else: attribute reads and writes, ``with`` and
``async with`` (which hand back the proxy when the object hands back itself),
``repr``, ``str``, equality and hashing, ``len``, iteration, item access, calls.
``isinstance(proxy, type(obj))`` holds, because the proxy reports the object's class
as its ``__class__``; only ``type(proxy)`` tells them apart.

Each method is wrapped once, on first use, and the wrapper is kept, so repeated calls
pay one dictionary lookup on top of the span. The wrapper is chosen by what the method
is: a sync function, a coroutine function, a generator or an async generator.

A sync method may hand back work that runs after it returns. Its span then stays open
until that work is done, for these results only (exact types, anything else ends the
span at the return, as any call does):

* a coroutine (``redis.asyncio``'s commands are written that way): until it completes;
* a generator or an async generator (``return self._rows()``): until it is exhausted,
  closed or fails, with the span current during each step only (as a decorated
  generator's, D8); closed before the end, or dropped, it is marked
  ``rastir.generator.closed_early``. The caller gets a generator (an async generator)
  that stands in for it: ``inspect.isgenerator`` holds, ``send``/``throw``/``close``
  (``asend``/``athrow``/``aclose``) reach the original. It is started up to a point
  before any of the original's code, so that dropping it unused still ends the span,
  and ``inspect.getgeneratorstate`` reports it suspended, not created;
* a ``contextlib.contextmanager``/``asynccontextmanager`` object (``httpx``'s
  ``Client.stream``): until its ``with`` block is left, with the span current from
  ``__enter__`` to ``__exit__``, the block included, as in ``rastir.span()``. The object
  is the one the method returned; its generator is driven through a stand-in.

A generator or context manager that something else still references after the method
returned (the object keeps it and hands it out again) is left alone: closing the
stand-in would close it for its other holders. Other context managers (a redis
``Pipeline``, a file) end the span at the return: they may never be entered.

An object is wrapped at most once: wrapping it again, or wrapping the proxy, gives
back the same proxy. MCP client sessions (``mcp.ClientSession`` and ``mcp.Client``)
get the MCP client instrumentation of :mod:`rastir.mcp_bridge.client` instead, which
also carries the trace to the server in ``_meta``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
import threading
import types
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any, Final, SupportsIndex, TypeVar

from rastir._instrument import (
    Hooks,
    Labels,
    detach_span,
    end_span,
    finish_span,
    instrument,
    record_coroutine_exit,
    record_exception,
    start_span,
)
from rastir.context import _current_span
from rastir.export._pipeline import PIPELINE
from rastir.spans import KINDS, Span

__all__ = ["wrap"]

T = TypeVar("T")

# (proxy, name, value) -> (what the proxy hands out, whether to keep it for next time)
Factory = Callable[[Any, str, Any], tuple[Any, bool]]

# The MCP client classes, by module and name so that mcp is never imported here.
_MCP_CLIENTS: Final = frozenset(
    (("mcp.client.session", "ClientSession"), ("mcp.client.client", "Client"))
)


# -- the proxy ------------------------------------------------------------------------
class _Proxy:
    """The base of every proxy class. Per-type subclasses add the special methods the
    wrapped type has, so ``hasattr(proxy, "__enter__")`` answers as the object would."""

    __slots__ = ("__weakref__", "_rastir_factory", "_rastir_methods", "_rastir_target")

    _rastir_target: Any
    _rastir_methods: dict[str, tuple[Any, Any]]  # name -> (method read, its wrapper)
    _rastir_factory: Factory

    def __init__(self, target: Any, factory: Factory) -> None:
        object.__setattr__(self, "_rastir_target", target)
        object.__setattr__(self, "_rastir_methods", {})
        object.__setattr__(self, "_rastir_factory", factory)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the proxy class lacks, and for the slots above while
        # they are unset (a copy made without __init__): those must not recurse.
        if name[:8] == "_rastir_":
            raise AttributeError(name)
        # Read live every time, so a method patched on the class, rebound on the
        # object, or returned by a property is the one called; the wrapper is reused
        # only while it wraps an equal method (same function, same object).
        value = getattr(self._rastir_target, name)
        if name[:1] == "_":
            return value
        cached = self._rastir_methods.get(name)
        if cached is not None and cached[0] == value:
            return cached[1]
        out, keep = self._rastir_factory(self, name, value)
        if keep:
            self._rastir_methods[name] = (value, out)
        return out

    def __copy__(self) -> Any:
        return type(self)(copy.copy(self._rastir_target), self._rastir_factory)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return type(self)(copy.deepcopy(self._rastir_target, memo), self._rastir_factory)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # Pickling a proxy pickles the object: what is loaded is untraced (wrap it
        # again), since a proxy's tracing is this process's, not the data's.
        return self._rastir_target.__reduce_ex__(protocol)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._rastir_target, name, value)
        self._rastir_methods.pop(name, None)

    def __delattr__(self, name: str) -> None:
        delattr(self._rastir_target, name)
        self._rastir_methods.pop(name, None)

    def __dir__(self) -> Iterable[str]:
        return dir(self._rastir_target)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance() falls back to __class__ when type() does not match (PEP 3119).
        return type(self._rastir_target)

    def __repr__(self) -> str:
        return repr(self._rastir_target)

    def __str__(self) -> str:
        return str(self._rastir_target)

    def __format__(self, spec: str) -> str:
        return format(self._rastir_target, spec)

    def __eq__(self, other: object) -> Any:
        if isinstance(other, _Proxy):
            other = other._rastir_target
        return self._rastir_target == other

    def __ne__(self, other: object) -> Any:
        if isinstance(other, _Proxy):
            other = other._rastir_target
        return self._rastir_target != other

    def __hash__(self) -> int:
        return hash(self._rastir_target)


def _special(name: str) -> Callable[..., Any]:
    """A forwarding special method; the object's own is looked up on its type, as the
    interpreter does."""

    def method(self: _Proxy, *args: Any, **kwargs: Any) -> Any:
        target = self._rastir_target
        return getattr(type(target), name)(target, *args, **kwargs)

    method.__name__ = name
    return method


def _returning_self(name: str) -> Callable[..., Any]:
    """``__enter__``/``__iter__``-style: the proxy stands in when the object returns itself."""

    def method(self: _Proxy, *args: Any) -> Any:
        target = self._rastir_target
        result = getattr(type(target), name)(target, *args)
        return self if result is target else result

    method.__name__ = name
    return method


async def _aenter(self: _Proxy) -> Any:
    target = self._rastir_target
    result = await type(target).__aenter__(target)
    return self if result is target else result


# Special methods forwarded when the wrapped type has them. Others (arithmetic,
# comparisons beyond equality) are left out: the objects worth tracing are clients
# and handles, not numbers.
_FORWARDED: Final = (
    "__exit__",
    "__aexit__",
    "__len__",
    "__length_hint__",
    "__contains__",
    "__getitem__",
    "__setitem__",
    "__delitem__",
    "__call__",
    "__bool__",
    "__next__",
    "__anext__",
    "__await__",
    "__reversed__",
    "__fspath__",
)
_SELF_RETURNING: Final = ("__enter__", "__iter__", "__aiter__")

_classes: weakref.WeakKeyDictionary[type, type[_Proxy]] = weakref.WeakKeyDictionary()
_classes_lock = threading.Lock()


def _proxy_class(cls: type) -> type[_Proxy]:
    """The proxy class for objects of ``cls``, built once per type."""
    try:
        found = _classes.get(cls)
    except TypeError:  # pragma: no cover - a type that refuses weak references
        found = None
    if found is not None:
        return found
    namespace: dict[str, Any] = {"__slots__": ()}
    for name in _FORWARDED:
        if hasattr(cls, name):
            namespace[name] = _special(name)
    for name in _SELF_RETURNING:
        if hasattr(cls, name):
            namespace[name] = _returning_self(name)
    if hasattr(cls, "__aenter__"):
        namespace["__aenter__"] = _aenter
    if getattr(cls, "__hash__", None) is None:
        namespace["__hash__"] = None  # unhashable objects stay unhashable
    built = type(f"{cls.__name__}Proxy", (_Proxy,), namespace)
    built.__module__ = __name__
    built.__qualname__ = f"wrap.<proxy of {cls.__qualname__}>"
    try:
        with _classes_lock:
            _classes[cls] = built
    except TypeError:  # pragma: no cover
        pass
    return built


# One proxy per object: id(target) -> weak reference to its proxy. The proxy holds the
# target, so while the proxy lives the id cannot be reused by another object.
# Re-entrant: a garbage collection triggered inside the locked block (creating a proxy
# allocates) can run another proxy's weakref callback, _forget, on this same thread.
_registry: dict[int, weakref.ref[_Proxy]] = {}
_registry_lock = threading.RLock()


def _forget(key: int, ref: weakref.ref[_Proxy]) -> None:
    with _registry_lock:
        if _registry.get(key) is ref:
            del _registry[key]


def proxy_for(obj: Any, make_factory: Callable[[Any], Factory]) -> Any:
    """The proxy of ``obj``, created with ``make_factory(obj)`` the first time.

    Shared by :func:`wrap` and the MCP client instrumentation so that an object is
    never wrapped twice, whichever entry point saw it first.
    """
    if isinstance(obj, _Proxy):
        return obj
    key = id(obj)
    with _registry_lock:
        ref = _registry.get(key)
        existing = ref() if ref is not None else None
        if existing is not None and existing._rastir_target is obj:
            return existing
        proxy = _proxy_class(type(obj))(obj, make_factory(obj))
        _registry[key] = weakref.ref(proxy, functools.partial(_forget, key))
    return proxy


def is_proxy(obj: Any) -> bool:
    """True for an object returned by :func:`wrap`."""
    return isinstance(obj, _Proxy)


def unwrap(obj: T) -> T:
    """The object behind a proxy (anything else is returned as is)."""
    if isinstance(obj, _Proxy):
        target: T = obj._rastir_target
        return target
    return obj


# -- method wrappers ------------------------------------------------------------------
def _is_method(value: Any) -> bool:
    # Bound methods, plain functions (module attributes, staticmethods) and C-level
    # methods such as sqlite3.Connection.execute. Classes are callable but are not
    # methods: sqlite3.Connection exposes its exception classes as attributes.
    return isinstance(
        value,
        (types.MethodType, types.FunctionType, types.BuiltinMethodType, types.MethodWrapperType),
    )


# What a sync method may return whose work runs after the return (exact types: one
# set lookup is all a plain result pays).
_GEN_CM: Final = contextlib._GeneratorContextManager
_AGEN_CM: Final = contextlib._AsyncGeneratorContextManager
_LAZY: Final = frozenset(
    (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType, _GEN_CM, _AGEN_CM)
)
_CLOSED_EARLY: Final = "rastir.generator.closed_early"
_ITEMS: Final = "rastir.generator.items"


def _no_refcount(obj: object) -> int:  # pragma: no cover - interpreters without refcounts
    return 0


_refcount: Callable[[object], int] = getattr(sys, "getrefcount", _no_refcount)


def _unshared_refs() -> int:
    """What :data:`_refcount` reports in ``wrapper`` (below) for a result that nothing
    else holds: 2 on CPython 3.11 (the local and the argument). Measured in the same
    shape (a local, passed straight to it) rather than written down, so that an
    interpreter that counts otherwise moves the limit with it."""

    def gen() -> Generator[None, None, None]:
        yield

    result = gen()
    return _refcount(result)


_UNSHARED: Final = _unshared_refs()


async def _finish_awaiting(span: Span, awaitable: Any) -> Any:
    """Await what a sync method returned, with its span current, then end the span."""
    cur = _current_span
    bridge = PIPELINE.bridge
    token = cur.set(span)
    otel = None if bridge is None else bridge.attach(span)
    try:
        return await awaitable
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
        finish_span(span)


def _traced_gen(gen: Generator[Any, Any, Any], span: Span, hold: bool) -> Generator[Any, Any, Any]:
    """Drive ``gen`` for its consumer and end ``span`` when it ends.

    The first ``yield`` hands back nothing: :func:`_started` runs to it at once, so
    that closing or dropping the stand-in before its first ``next()`` still ends the
    span. After it, as :func:`rastir._instrument._wrap_gen` does for a decorated
    generator: the span is current during each step and never across a ``yield``
    (D8); thrown-in exceptions and ``close()`` reach ``gen``; an exception out of
    ``gen`` is recorded and re-raised unchanged; a close before the end is
    ``closed_early``. With ``hold`` (a context manager's generator, stepped by
    ``__enter__`` and ``__exit__``) the span is current from the first step to the
    end, the ``with`` block included, as in ``rastir.span()``.
    """
    cur = _current_span
    bridge = PIPELINE.bridge
    send: Callable[[Any], Any] = gen.send
    item: Any = None
    items = 0
    held: tuple[Any, Any] | None = None
    try:
        while True:
            try:
                value = yield item
                send = gen.send
            except GeneratorExit:
                span.attributes[_CLOSED_EARLY] = True
                # Its finally blocks run with the span current, as a step does.
                token = None if hold else cur.set(span)
                otel = None if hold or bridge is None else bridge.attach(span)
                try:
                    gen.close()
                finally:
                    if token is not None:
                        if bridge is not None:
                            bridge.detach(otel)
                        cur.reset(token)
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                value = exc
                send = gen.throw
            if hold:
                token = None
                if held is None:
                    held = (cur.set(span), None if bridge is None else bridge.attach(span))
            else:
                token = cur.set(span)
                otel = None if bridge is None else bridge.attach(span)
            try:
                item = send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                if token is not None:  # set in this step, in this context: reset it
                    if bridge is not None:
                        bridge.detach(otel)
                    cur.reset(token)
            items += 1
    except GeneratorExit:
        raise
    except BaseException as exc:
        record_exception(span, exc)
        raise
    finally:
        if held is not None:
            detach_span(*held, span)
        if not hold:
            span.attributes[_ITEMS] = items
        finish_span(span)


async def _traced_agen(
    agen: AsyncGenerator[Any, Any], span: Span, hold: bool
) -> AsyncGenerator[Any, Any]:
    """:func:`_traced_gen` for an async generator (an ``asynccontextmanager``'s, with
    ``hold``)."""
    cur = _current_span
    bridge = PIPELINE.bridge
    step: Callable[[Any], Any] = agen.asend
    item: Any = None
    items = 0
    held: tuple[Any, Any] | None = None
    try:
        while True:
            try:
                value = yield item
                step = agen.asend
            except GeneratorExit:
                span.attributes[_CLOSED_EARLY] = True
                token = None if hold else cur.set(span)
                otel = None if hold or bridge is None else bridge.attach(span)
                try:
                    await agen.aclose()
                finally:
                    if token is not None:
                        if bridge is not None:
                            bridge.detach(otel)
                        cur.reset(token)
                raise
            except BaseException as exc:
                value = exc
                step = agen.athrow
            if hold:
                token = None
                if held is None:
                    held = (cur.set(span), None if bridge is None else bridge.attach(span))
            else:
                token = cur.set(span)
                otel = None if bridge is None else bridge.attach(span)
            try:
                item = await step(value)
            except StopAsyncIteration:
                return
            finally:
                if token is not None:  # set in this step, in this context: reset it
                    if bridge is not None:
                        bridge.detach(otel)
                    cur.reset(token)
            items += 1
    except GeneratorExit:
        raise
    except BaseException as exc:
        record_exception(span, exc)
        raise
    finally:
        if held is not None:
            detach_span(*held, span)
        if not hold:
            span.attributes[_ITEMS] = items
        finish_span(span)


def _started(driver: Any, original: Any) -> Any:
    """Run a stand-in from :func:`_traced_gen` or :func:`_traced_agen` to its first
    ``yield`` (none of the original's code runs), named as the original."""
    if type(driver) is types.GeneratorType:
        next(driver)
    else:
        try:
            driver.asend(None).send(None)
        except StopIteration:
            pass
    driver.__name__ = original.__name__
    driver.__qualname__ = original.__qualname__
    return driver


def _adopt(span: Span, token: Any, otel: Any, result: Any, shared: bool) -> Any:
    """What ``wrapper`` returns for a result of a type in :data:`_LAZY`: the span
    stays open until the result's work is done (see the module's docstring)."""
    cls = type(result)
    inner: Any = None
    # A coroutine does nothing until awaited, so awaiting it inside another coroutine
    # changes nothing. A future or task already runs, and is returned as is.
    if cls is types.CoroutineType:
        detach_span(token, otel, span)
        return _finish_awaiting(span, result)
    if cls is _GEN_CM or cls is _AGEN_CM:
        inner = getattr(result, "gen", None)
        expected = types.GeneratorType if cls is _GEN_CM else types.AsyncGeneratorType
        if type(inner) is not expected:  # pragma: no cover - not made by contextlib
            shared = True
    if shared:
        # Someone else holds it too (the object hands out one it keeps): a stand-in
        # closed or dropped would close it for them. The span ends here, as before.
        end_span(span, token, otel)
        return result
    detach_span(token, otel, span)
    try:
        if cls is types.GeneratorType:
            return _started(_traced_gen(result, span, False), result)
        if cls is types.AsyncGeneratorType:
            return _started(_traced_agen(result, span, False), result)
        if cls is _GEN_CM:
            result.gen = _started(_traced_gen(inner, span, True), inner)
        else:
            result.gen = _started(_traced_agen(inner, span, True), inner)
        return result
    except BaseException as exc:  # pragma: no cover - an event loop's firstiter hook
        record_exception(span, exc)
        finish_span(span)
        raise


def _wrap_sync(fn: Callable[..., Any], name: str, kind: str, static: dict[str, Any]) -> Any:
    pipeline = PIPELINE
    lazy = _LAZY

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return fn(*args, **kwargs)
        span, token, otel = start_span(name, kind, dict(static))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record_exception(span, exc)
            end_span(span, token, otel)
            raise
        # A coroutine, a generator or a contextlib context manager: its work runs
        # after the return, and the span stays open until it is done.
        if type(result) in lazy:
            shared = _refcount(result) > _UNSHARED  # before ``result`` is an argument
            return _adopt(span, token, otel, result, shared)
        end_span(span, token, otel)
        return result

    return wrapper


def _wrap_async(fn: Callable[..., Any], name: str, kind: str, static: dict[str, Any]) -> Any:
    """:func:`_wrap_sync` for an ``async def`` method: what its coroutine returns is
    adopted the same way (a generator, an async generator, a contextlib context
    manager keep the span open until their work is done)."""
    pipeline = PIPELINE
    lazy = _LAZY

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        span, token, otel = start_span(name, kind, dict(static))
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            record_coroutine_exit(span, exc)
            end_span(span, token, otel)
            raise
        if type(result) in lazy:
            shared = _refcount(result) > _UNSHARED  # before ``result`` is an argument
            # (A coroutine it returns comes back as one that the caller awaits later,
            # with the span current then, as for a sync method.)
            return _adopt(span, token, otel, result, shared)
        end_span(span, token, otel)
        return result

    return wrapper


def _method_wrapper(fn: Any, name: str, kind: str, static: dict[str, Any]) -> Any:
    """Choose the wrapper once, by what ``fn`` is (CONVENTIONS: at decoration time)."""
    import inspect  # here, not with rastir: a tenth of its import time

    if inspect.iscoroutinefunction(fn):
        wrapper = _wrap_async(fn, name, kind, static)
        return _named(wrapper, fn)
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):

        def prepare(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
            span.attributes.update(static)
            return None

        return instrument(fn, name, kind, Hooks(prepare))
    return _named(_wrap_sync(fn, name, kind, static), fn)


def _named(wrapper: Any, fn: Any) -> Any:
    """``wrapper`` with ``fn``'s name, qualified name, docstring and ``__wrapped__``."""
    try:
        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        wrapper.__doc__ = fn.__doc__
    except (AttributeError, TypeError):  # pragma: no cover - exotic callables
        pass
    wrapper.__wrapped__ = fn
    return wrapper


def _generic_factory(
    target: Any,
    kind: str,
    prefix: str,
    include: frozenset[str] | None,
    exclude: frozenset[str],
) -> Factory:
    cls = type(target)
    if isinstance(target, types.ModuleType):
        owner = target.__name__  # json.dumps, not builtins.module.dumps
    else:
        owner = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"

    def factory(proxy: Any, name: str, value: Any) -> tuple[Any, bool]:
        if (include is not None and name not in include) or name in exclude:
            return value, False
        if not _is_method(value):
            return value, False  # data attributes are read live on every access
        static = {"code.function.name": f"{owner}.{name}"}
        wrapper = _method_wrapper(value, f"{prefix}.{name}", kind, static)
        # Keep the wrapper unless the method lives in the instance's own __dict__,
        # where the application may rebind it (then it is wrapped on each access).
        instance_dict = getattr(target, "__dict__", None)
        keep = not (isinstance(instance_dict, dict) and name in instance_dict)
        return wrapper, keep

    return factory


def _is_mcp_client(obj: Any) -> bool:
    for klass in type(obj).__mro__:
        if (getattr(klass, "__module__", None), klass.__name__) in _MCP_CLIENTS:
            return True
    return False


def _names(value: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{what} must be a collection of method names, not a string")
    names = frozenset(value)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what} must hold method names (str), got {n!r}")
    return names


def wrap(
    obj: T,
    *,
    kind: str | None = None,
    name: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> T:
    """Trace calls to the public methods of ``obj`` through a transparent proxy.

    Every call of a public method (a name not starting with ``_``) becomes a span named
    ``"<name>.<method>"`` with ``code.function.name`` set to the method's qualified
    name. Exceptions are recorded with their error category and re-raised unchanged;
    cancellation is recorded as ``cancelled``. A sync method's span stays open over
    the work it returns unfinished: a coroutine until it completes, a generator or an
    async generator until it ends, a ``contextlib`` context manager until its ``with``
    block is left (see the module's docstring for the rules).

    ``mcp.ClientSession`` and ``mcp.Client`` objects get the MCP client
    instrumentation instead (:func:`rastir.mcp_bridge.wrap`): ``mcp.client`` spans
    for tool calls, resource reads, prompt gets and listings, with the trace carried
    to the server in ``params._meta``.

    Args:
        obj: The object to trace: a client, a connection, a module...
        kind: The span kind, one of :data:`rastir.spans.KINDS` (default ``"custom"``).
            For MCP clients only ``"mcp.client"`` is accepted.
        name: The span name prefix; defaults to the object's class name.
        include: Only these methods are traced.
        exclude: These methods are not traced (applied after ``include``).

    Returns:
        The proxy, typed as ``obj``. Wrapping the same object again, or wrapping the
        proxy, returns the same proxy; the options of the first call stay in force.

    Raises:
        ValueError: An unknown kind, or an empty name.
        TypeError: ``obj`` is None, or ``include``/``exclude`` are not collections of
            names.
    """
    if obj is None:
        raise TypeError("wrap() needs an object to trace, got None")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    inc = _names(include, "include")
    exc = _names(exclude, "exclude") or frozenset()
    if isinstance(obj, _Proxy):
        return obj
    if _is_mcp_client(obj):
        if kind not in (None, "mcp.client"):
            raise ValueError(f"an MCP client is traced with kind 'mcp.client', not {kind!r}")
        from rastir.mcp_bridge.client import wrap as wrap_mcp

        return wrap_mcp(obj, include=inc, exclude=exc)
    if name is not None:
        prefix = name
    elif isinstance(obj, types.ModuleType):
        prefix = obj.__name__
    else:
        prefix = str(getattr(type(obj), "__name__", "object"))
    span_kind = kind or "custom"
    proxy: T = proxy_for(obj, lambda o: _generic_factory(o, span_kind, prefix, inc, exc))
    return proxy
