"""MCP client instrumentation: ``wrap(session)`` for ``mcp.ClientSession`` and ``mcp.Client``.

    async with rastir.wrap(Client("http://127.0.0.1:8000/mcp")) as client:
        await client.call_tool("add", {"a": 1, "b": 2})

Each ``tools/call``, ``resources/read``, ``prompts/get`` and listing becomes an
``mcp.client`` span named after the OpenTelemetry MCP conventions (``tools/call add``),
with ``mcp.method.name``, ``gen_ai.tool.name`` and ``gen_ai.operation.name=execute_tool``
(tools), ``gen_ai.prompt.name`` (prompts), ``mcp.resource.uri`` (reads),
``mcp.protocol.version``, ``network.transport`` and ``server.address``/``server.port``
where the transport is known, and ``jsonrpc.request.id`` where it can be known.

The span's context travels to the server in ``params._meta`` (SEP-414: ``traceparent``,
``tracestate``, ``baggage``), merged into the ``meta`` the caller passed: the caller's
keys are kept, the trace keys are the span's. ``mcp.Client``'s cached methods
(``read_resource`` and the listings) are the exception: an explicit ``meta`` turns a
cache hit into a fetch, so there the context rides on mcp's own SEP-414 injection
(see :mod:`rastir.mcp_bridge._otel`), and a cache hit is a short span that sent
nothing.

Outcomes: a result with ``isError`` is ``error.type=tool_error``; a JSON-RPC error is
mapped from its code (``-32001`` is a timeout, the request errors are
``validation_error``, a server failure is ``provider_error``); other exceptions by the
usual rules; cancellation is ``cancelled``. Every other method and attribute of the
session passes through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp_types import PaginatedRequestParams

from rastir._instrument import end_span, start_span
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge._errors import record_mcp_exception, record_result
from rastir.mcp_bridge._meta import merge_meta
from rastir.mcp_bridge._otel import attach_for_mcp, detach_for_mcp
from rastir.spans import Span
from rastir.wrap import Factory, proxy_for

__all__ = ["OPERATIONS", "wrap"]

T = TypeVar("T")


class _Op:
    """What one client method does on the wire."""

    __slots__ = ("method", "target", "target_attr", "tool")

    def __init__(self, method: str, target: str | None, target_attr: str | None) -> None:
        self.method = method
        self.target = target  # the parameter naming what is called: name or uri
        self.target_attr = target_attr  # the attribute it is recorded as
        self.tool = method == "tools/call"


OPERATIONS: Final[dict[str, _Op]] = {
    "call_tool": _Op("tools/call", "name", "gen_ai.tool.name"),
    "get_prompt": _Op("prompts/get", "name", "gen_ai.prompt.name"),
    "read_resource": _Op("resources/read", "uri", "mcp.resource.uri"),
    "list_tools": _Op("tools/list", None, None),
    "list_prompts": _Op("prompts/list", None, None),
    "list_resources": _Op("resources/list", None, None),
    "list_resource_templates": _Op("resources/templates/list", None, None),
}
# mcp.Client methods served from its response cache when no meta is passed.
_CACHED: Final = frozenset(("read_resource", *(n for n in OPERATIONS if n.startswith("list_"))))


class _Peer:
    """What is known of the server for every span of one session or client."""

    __slots__ = ("address", "port", "transport")

    def __init__(
        self, transport: str | None = None, address: str | None = None, port: int | None = None
    ) -> None:
        self.transport = transport
        self.address = address
        self.port = port

    @classmethod
    def of_client(cls, client: Client) -> _Peer:
        server = client.server
        if isinstance(server, str):
            try:
                parts = urlsplit(server)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                return cls("tcp", parts.hostname, port)
            except ValueError:
                return cls("tcp")
        if isinstance(server, StdioServerParameters):
            return cls("pipe")
        return cls()  # in-process, or a transport object we cannot see into

    def static(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.transport is not None:
            attrs["network.transport"] = self.transport
        if self.address:
            attrs["server.address"] = self.address
        if self.port is not None:
            attrs["server.port"] = self.port
        return attrs


def _session_of(target: Any) -> ClientSession | None:
    if isinstance(target, ClientSession):
        return target
    try:
        session = target.session  # mcp.Client: raises outside ``async with``
    except Exception:
        return None
    return session if isinstance(session, ClientSession) else None


def _id_counter(session: ClientSession | None) -> Any:
    """The object whose ``_next_id`` numbers this session's outgoing requests.

    mcp does not expose the JSON-RPC id it assigns, so it is read from the dispatcher:
    the JSON-RPC dispatcher counts its own requests; the in-process direct dispatcher
    has its peer count them. Private attributes, read defensively: when the layout
    changes the id is simply not recorded.
    """
    dispatcher = getattr(session, "_dispatcher", None)
    if dispatcher is None:
        return None
    if type(dispatcher).__name__ == "DirectDispatcher":
        dispatcher = getattr(dispatcher, "_peer", None)
    return dispatcher if isinstance(getattr(dispatcher, "_next_id", None), int) else None


def _target_of(op: _Op, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if op.target is None:
        return None
    return args[0] if args else kwargs.get(op.target)


def _inject(
    op_name: str, is_client: bool, kwargs: dict[str, Any], span: Span
) -> dict[str, Any] | None:
    """The call's kwargs with the span's context merged into its ``_meta``, or None to
    leave the call alone (an ``mcp.Client`` cached read without meta)."""
    if op_name.startswith("list_") and not is_client:
        # ClientSession listings take their _meta inside ``params``.
        params = kwargs.get("params")
        if params is None:
            params = PaginatedRequestParams(_meta=merge_meta(None, span))
        elif isinstance(params, PaginatedRequestParams):
            params = params.model_copy(update={"meta": merge_meta(params.meta, span)})
        else:
            return None
        return {**kwargs, "params": params}
    meta = kwargs.get("meta")
    if is_client and op_name in _CACHED and meta is None and kwargs.get("cache_mode", "use") == "use":
        return None
    return {**kwargs, "meta": merge_meta(meta, span)}


def _wrap_operation(
    fn: Callable[..., Any], op_name: str, op: _Op, target: Any, peer: _Peer
) -> Callable[..., Any]:
    is_client = not isinstance(target, ClientSession)
    static = peer.static()
    static["mcp.method.name"] = op.method
    if op.tool:
        static["gen_ai.operation.name"] = "execute_tool"
    # A cache hit sends no request, so no id can be attributed to the span.
    find_id = not (is_client and op_name in _CACHED)
    pipeline = PIPELINE

    async def call(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        attrs = dict(static)
        name = op.method
        what = _target_of(op, args, kwargs)
        if what is not None and op.target_attr is not None:
            what = str(what)
            attrs[op.target_attr] = what
            if op.target == "name":  # resource URIs stay out of the name (cardinality)
                name = f"{op.method} {what}"
        span, token, otel = start_span(name, "mcp.client", attrs)
        mcp_otel = attach_for_mcp(span)
        session = _session_of(target)
        counter = _id_counter(session) if find_id else None
        before = counter._next_id if counter is not None else 0
        try:
            injected = _inject(op_name, is_client, kwargs, span)
            result = await fn(*args, **(kwargs if injected is None else injected))
        except BaseException as exc:
            record_mcp_exception(span, exc, server=False)
            raise
        else:
            if op.tool:
                record_result(span, result)
            return result
        finally:
            detach_for_mcp(mcp_otel)
            _finish_attributes(span, session, counter, before)
            end_span(span, token, otel)

    functools.update_wrapper(call, fn)
    return call


def _finish_attributes(span: Span, session: ClientSession | None, counter: Any, before: int) -> None:
    try:
        if session is not None:
            version = session.protocol_version
            if version:
                span.attributes["mcp.protocol.version"] = version
        if counter is not None and counter._next_id == before + 1:
            # Exactly one request left this session during the call, and the call
            # sent one: it is this call's (a concurrent call would have taken a
            # number too, and then nothing is recorded).
            span.attributes["jsonrpc.request.id"] = str(before + 1)
    except Exception:
        pass


def _factory(
    target: Any, peer: _Peer, include: frozenset[str] | None, exclude: frozenset[str]
) -> Factory:
    def factory(proxy: Any, name: str, value: Any) -> tuple[Any, bool]:
        if name == "session" and isinstance(value, ClientSession):
            # client.session.call_tool(...) is traced too, as the same session proxy.
            return _wrap_session(value, peer, include, exclude), False
        op = OPERATIONS.get(name)
        if op is None or (include is not None and name not in include) or name in exclude:
            return value, False
        if not callable(value):
            return value, False
        return _wrap_operation(value, name, op, target, peer), True

    return factory


def _wrap_session(
    session: ClientSession, peer: _Peer, include: frozenset[str] | None, exclude: frozenset[str]
) -> Any:
    return proxy_for(session, lambda s: _factory(s, peer, include, exclude))


def wrap(
    session: T,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    network_transport: str | None = None,
) -> T:
    """Trace an MCP client session and carry its trace to the server.

    Args:
        session: An ``mcp.ClientSession`` or ``mcp.Client``.
        include: Only these methods are traced (names from :data:`OPERATIONS`).
        exclude: These methods are not traced.
        network_transport: ``network.transport`` for the spans (``"pipe"`` for stdio,
            ``"tcp"`` for HTTP). An ``mcp.Client`` knows it from what it connects to;
            a bare ``ClientSession`` does not.

    Returns:
        The proxy, typed as ``session``. Wrapping twice gives the same proxy.

    Raises:
        TypeError: ``session`` is neither a ``ClientSession`` nor a ``Client``.
    """
    inc = None if include is None else frozenset(include)
    exc = frozenset(exclude or ())
    if isinstance(session, Client):
        peer = _Peer.of_client(session)
        if network_transport is not None:
            peer.transport = network_transport
        client: T = proxy_for(session, lambda c: _factory(c, peer, inc, exc))
        return client
    target: Any = session
    from rastir.wrap import unwrap

    if isinstance(unwrap(target), (Client, ClientSession)) and target is not unwrap(target):
        return session  # already a proxy
    if not isinstance(target, ClientSession):
        raise TypeError(
            f"rastir.mcp_bridge.wrap() takes an mcp.ClientSession or mcp.Client, "
            f"not {type(target).__name__}"
        )
    wrapped: T = _wrap_session(target, _Peer(network_transport), inc, exc)
    return wrapped
