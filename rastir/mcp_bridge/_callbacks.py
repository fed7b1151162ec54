"""Requests the server sends to the client: sampling, elicitation and roots.

A tool may ask the client for something while it runs: ``sampling/createMessage`` (the
client's LLM), ``elicitation/create`` (the user), ``roots/list``. mcp answers each with
one of the callbacks the ``ClientSession`` (or ``Client``) was given. Those run where
mcp's receive loop runs them, in a context that has nothing to do with the tool call
that caused them: the session's own task over stdio and HTTP.

``wrap()`` therefore replaces the callbacks of the session or client it wraps with
traced ones. Each call of a callback is an ``mcp.server`` span (the OpenTelemetry MCP
conventions: the side that receives a request reports the server span, whichever
side it is) named ``{mcp.method.name}``, with ``mcp.method.name``,
``mcp.protocol.version``, ``jsonrpc.request.id`` (handshake-era protocol versions
only), ``network.transport`` and ``network.protocol.name`` where the wrap knows them,
and ``mcp.session.id`` for an ``mcp.Client`` over HTTP. Spans the callback opens
(an ``@rastir.llm``) are its children.

Its parent is the context in the request's ``params._meta`` (SEP-414), read as
``@mcp_endpoint`` reads it: mcp's dispatcher writes OpenTelemetry's current context
there on every request it sends (``mcp/shared/jsonrpc_dispatcher.py``,
``send_raw_request``), and while an ``@mcp_endpoint`` tool runs that is its
``mcp.server`` span (:mod:`rastir.mcp_bridge._otel`). An invalid ``traceparent`` starts
a new trace; no ``traceparent`` at all leaves the current span as the parent. That is
the case in the 2026-07-28 multi-round-trip flow (SEP-2322), where the server sends no
request: the client's ``call_tool`` runs the callbacks itself, under its own span.

A callback that raises is recorded and its exception re-raised unchanged; one that
returns ``ErrorData`` (a refusal, which mcp sends back as a JSON-RPC error) is an
error with that code. mcp's own defaults (no callback given) are left alone: mcp
advertises a capability only when its callback is not the default.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp_types import ErrorData
from mcp_types.version import is_version_at_least

from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge._errors import record_error_data, record_mcp_exception
from rastir.mcp_bridge._meta import read_meta
from rastir.mcp_bridge._otel import attach_for_mcp
from rastir.mcp_bridge.server import _close, _Opened
from rastir.spans import Span

__all__ = ["CALLBACKS", "INSTRUMENTED", "instrument_callbacks", "traced_callback"]

CALLBACKS: Final[dict[str, str]] = {
    "sampling_callback": "sampling/createMessage",
    "elicitation_callback": "elicitation/create",
    "list_roots_callback": "roots/list",
}
"""``Client`` field (``ClientSession`` keeps it with a leading ``_``) -> the method it answers."""

# From this protocol version on, the server no longer sends these as JSON-RPC requests
# (mcp_types refuses them); the client's call_tool runs the callbacks for the
# input_requests of an InputRequiredResult (SEP-2322), and the request_id mcp hands
# the callback is the input request's key, not a JSON-RPC id.
_INPUT_REQUIRED_VERSION: Final = "2026-07-28"
_MARK: Final = "__rastir_mcp_callback__"
_MCP_DEFAULTS_MODULE: Final = ClientSession.__module__

Callback = Callable[..., Awaitable[Any]]

INSTRUMENTED: Final[dict[int, weakref.ref[Any]]] = {}
"""The clients and sessions whose callbacks were looked at, by id, as ``wrap.py`` keeps
its proxies. ``client.session`` on a wrapped client makes a new session proxy whenever
the last one is gone, so the check before :func:`instrument_callbacks` is one lookup."""


def _seen(obj: Any) -> bool:
    ref = INSTRUMENTED.get(id(obj))
    return ref is not None and ref() is obj


def _forget(key: int, _: Any) -> None:
    INSTRUMENTED.pop(key, None)


def _remember(obj: Any) -> None:
    try:
        INSTRUMENTED[id(obj)] = weakref.ref(obj, functools.partial(_forget, id(obj)))
    except TypeError:  # not weakly referenceable: looked at again next time
        pass


def _open(
    context: Any,
    method: str,
    static: dict[str, Any],
    session_id: Callable[[], str | None] | None,
) -> _Opened:
    attrs = static.copy()
    meta: Any = None
    if session_id is not None:
        try:
            sid = session_id()
            if sid:
                attrs["mcp.session.id"] = sid
        except Exception:  # telemetry never breaks the callback
            pass
    try:
        meta = context.meta
        version = context.session.protocol_version
        if version:
            attrs["mcp.protocol.version"] = version
        request_id = context.request_id
        if request_id is not None and not (
            version and is_version_at_least(version, _INPUT_REQUIRED_VERSION)
        ):
            attrs["jsonrpc.request.id"] = str(request_id)
    except Exception:  # not mcp's ClientRequestContext: a span without those
        pass
    ambient = _current_span.get()
    bridge = PIPELINE.bridge
    remote, refused = read_meta(meta)
    baggage = None
    parent: Any
    if remote is not None:
        parent = remote
        if remote.baggage:
            baggage = _current_baggage.set(remote.baggage)
    elif refused:
        # As on the server (D27): a context that was sent but is invalid restarts the
        # trace rather than continue whatever the receive loop happens to carry.
        attrs["rastir.mcp.invalid_trace_context"] = True
        parent = None
    else:
        parent = ambient if bridge is None else bridge.parent(ambient)
    span = Span(method, "mcp.server", parent, attrs)
    token = _current_span.set(span)
    # OpenTelemetry-current too, as the server span is (AUD-12): an OTel-instrumented
    # LLM client, or a plain mcp client, used in the callback continues from it.
    otel = attach_for_mcp(span, True) if bridge is None else bridge.attach(span)
    return span, token, otel, baggage


def traced_callback(
    fn: Callback,
    method: str,
    network: Mapping[str, Any] | None = None,
    session_id: Callable[[], str | None] | None = None,
) -> Callback:
    """``fn``, a sampling, elicitation or list-roots callback, traced.

    Args:
        fn: The callback; it takes mcp's ``ClientRequestContext`` first.
        method: The MCP method it answers (a value of :data:`CALLBACKS`).
        network: ``network.transport`` and ``network.protocol.name`` for its spans,
            as far as they are known.
        session_id: Gives the ``Mcp-Session-Id`` of the connection, when there can be
            one (a wrapped ``mcp.Client`` over HTTP); called once per span.

    Returns:
        An async function with the same arguments and result.
    """
    static: dict[str, Any] = {"mcp.method.name": method, **(network or {})}
    pipeline = PIPELINE

    async def callback(context: Any, *args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(context, *args, **kwargs)
        opened = _open(context, method, static, session_id)
        try:
            result = await fn(context, *args, **kwargs)
        except BaseException as exc:
            record_mcp_exception(opened[0], exc, server=True)
            raise
        else:
            if isinstance(result, ErrorData):
                record_error_data(opened[0], result)
            return result
        finally:
            _close(opened)

    # Name, docstring and __wrapped__ from the callback; not its __dict__ (it may be an
    # object with an __call__, whose state stays its own).
    functools.update_wrapper(callback, fn, updated=())
    setattr(callback, _MARK, True)
    return callback


def _replace(
    owner: Any,
    attr: str,
    method: str,
    network: Mapping[str, Any],
    session_id: Callable[[], str | None] | None,
) -> None:
    try:
        value = getattr(owner, attr)
    except AttributeError:  # a release that keeps it elsewhere: left untraced
        return
    if (
        value is None
        or not callable(value)
        or getattr(value, _MARK, False)
        or getattr(value, "__module__", None) == _MCP_DEFAULTS_MODULE
    ):
        return
    setattr(owner, attr, traced_callback(value, method, network, session_id))


def instrument_callbacks(
    target: Any,
    network: Mapping[str, Any],
    include: frozenset[str] | None,
    exclude: frozenset[str],
    session_id: Callable[[], str | None] | None = None,
) -> None:
    """Trace the server-request callbacks of a ``Client`` or ``ClientSession``.

    A ``Client`` reads its ``sampling_callback``, ``elicitation_callback`` and
    ``list_roots_callback`` fields when it is entered, so those are replaced (and the
    session's, when it is entered already); a ``ClientSession`` calls what it keeps in
    ``_sampling_callback`` and the like on every request, so those are. Callbacks
    traced already are left as they are, so wrapping twice traces once.

    Args:
        target: The object ``wrap()`` is wrapping.
        network: ``network.transport`` and ``network.protocol.name`` for the spans,
            as far as they are known.
        include: Only these keys of :data:`CALLBACKS` (None: all).
        exclude: Not these.
        session_id: Gives the connection's ``Mcp-Session-Id`` (see
            :func:`traced_callback`).
    """
    if _seen(target):
        return
    chosen = [
        (name, method)
        for name, method in CALLBACKS.items()
        if (include is None or name in include) and name not in exclude
    ]
    session: Any = None
    if isinstance(target, Client):
        for name, method in chosen:
            _replace(target, name, method, network, session_id)
        session = getattr(target, "_session", None)
    elif isinstance(target, ClientSession):
        session = target
    if isinstance(session, ClientSession) and not _seen(session):
        for name, method in chosen:
            _replace(session, "_" + name, method, network, session_id)
        _remember(session)
    _remember(target)
