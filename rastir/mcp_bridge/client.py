"""MCP client instrumentation: ``wrap(session)`` for ``mcp.ClientSession`` and ``mcp.Client``.

    async with rastir.wrap(Client("http://127.0.0.1:8000/mcp")) as client:
        await client.call_tool("add", {"a": 1, "b": 2})

Each ``tools/call``, ``resources/read``, ``prompts/get`` and listing becomes an
``mcp.client`` span named after the OpenTelemetry MCP conventions (``tools/call add``),
with ``mcp.method.name``, ``gen_ai.tool.name`` and ``gen_ai.operation.name=execute_tool``
(tools), ``gen_ai.prompt.name`` (prompts), ``mcp.resource.uri`` (reads),
``mcp.protocol.version``, ``network.transport`` (and ``network.protocol.name=http``,
``server.address``/``server.port`` over HTTP) where the transport is known,
``mcp.session.id`` for an ``mcp.Client`` over HTTP, and ``jsonrpc.request.id`` where it
can be known.

The span's context travels to the server in ``params._meta`` (SEP-414: ``traceparent``,
``tracestate``, ``baggage``), merged into the ``meta`` the caller passed: the caller's
keys are kept, the trace keys are the span's. ``mcp.Client``'s cached methods
(``read_resource`` and the listings) are the exception: an explicit ``meta`` turns a
cache hit into a fetch, so unless the caller passed one (or the client has no cache)
the context rides on mcp's own SEP-414 injection instead (see
:mod:`rastir.mcp_bridge._otel`), and a cache hit is a short span that sent nothing.

Outcomes: a result with ``isError`` is ``error.type=tool_error``; a JSON-RPC error is
mapped from its code (``-32001`` is a timeout, the request errors are
``validation_error``, a server failure is ``provider_error``); other exceptions by the
usual rules; cancellation is ``cancelled``. Every other method and attribute of the
session passes through untouched.

Requests the server sends back while a tool runs (sampling, elicitation, roots) reach
the callbacks the session or client was given. When it is wrapped, those callbacks are
replaced on it with traced ones, so that each answer is a span in the trace of the
tool call that asked for it: see :mod:`rastir.mcp_bridge._callbacks`.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Generator, Iterable
from typing import Any, Final, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp_types import PaginatedRequestParams, RequestParamsMeta

from rastir.context import _current_span
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge._callbacks import instrument_callbacks
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

    __slots__ = ("address", "client", "port", "protocol", "transport")

    def __init__(
        self,
        transport: str | None = None,
        address: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
    ) -> None:
        self.transport = transport
        self.address = address
        self.port = port
        self.protocol = protocol  # network.protocol.name: "http" for the HTTP transports
        # The mcp.Client wrapped, weakly (its callbacks, which hold this peer, are its
        # own fields): where its streamable-HTTP session id is found.
        self.client: weakref.ref[Any] | None = None

    @classmethod
    def of_url(cls, url: str) -> _Peer:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return cls("tcp", parts.hostname, port, "http")
        except ValueError:
            return cls("tcp", protocol="http")

    @classmethod
    def of_client(cls, client: Client) -> _Peer:
        peer = cls._of_server(client.server)
        if peer.protocol == "http":
            try:
                peer.client = weakref.ref(client)
            except TypeError:  # pragma: no cover - Client is a plain class
                pass
        return peer

    @classmethod
    def _of_server(cls, server: Any) -> _Peer:
        if isinstance(server, str):
            return cls.of_url(server)
        if isinstance(server, StdioServerParameters):
            return cls("pipe")
        # A transport made by mcp's own factories, e.g. streamable_http_client(url,
        # http_client=...) to pass an instrumented httpx2 client: an
        # @asynccontextmanager object, which keeps the factory and its arguments.
        factory = getattr(getattr(server, "func", None), "__name__", None)
        args = getattr(server, "args", None) or ()
        kwds = getattr(server, "kwds", None) or {}
        if factory in ("streamable_http_client", "sse_client"):
            url = args[0] if args else kwds.get("url")
            if isinstance(url, str):
                return cls.of_url(url)
            return cls("tcp", protocol="http")
        if factory == "stdio_client":
            return cls("pipe")
        return cls()  # in-process, or a transport we cannot see into

    def static_network(self) -> dict[str, Any]:
        """The transport attributes, which the server-initiated requests share."""
        attrs: dict[str, Any] = {}
        if self.transport is not None:
            attrs["network.transport"] = self.transport
        if self.protocol is not None:
            attrs["network.protocol.name"] = self.protocol
        return attrs

    def static(self) -> dict[str, Any]:
        attrs = self.static_network()
        if self.address:
            attrs["server.address"] = self.address
        if self.port is not None:
            attrs["server.port"] = self.port
        return attrs

    def http_transport(self) -> Any:
        """mcp's streamable-HTTP transport of the wrapped client's current connection."""
        client = self.client() if self.client is not None else None
        return None if client is None else _http_transport(client)

    def session_id(self) -> str | None:
        """The client's ``Mcp-Session-Id`` now (None outside a stateful HTTP session)."""
        return _session_id(self.http_transport())


def _http_transport(client: Any) -> Any:
    """What holds the MCP session id of an entered ``mcp.Client`` over HTTP, or None:
    an object whose ``session_id`` is that id (None while there is none).

    mcp keeps it where nothing public reaches: streamable HTTP on its
    ``StreamableHTTPTransport`` (the server's ``Mcp-Session-Id``, set at initialize), a
    local of the ``streamable_http_client`` generator; HTTP+SSE in the endpoint URL the
    server sent (its ``session_id`` query parameter), a local of ``sse_client``. The
    client's connector holds that generator while the client is entered. Looked up once
    per session, defensively: when the layout changes, no session id is recorded.
    """
    try:
        for cell in getattr(getattr(client, "_connect", None), "__closure__", None) or ():
            frame = getattr(getattr(cell.cell_contents, "gen", None), "ag_frame", None)
            if frame is None:
                continue
            local = frame.f_locals
            transport = local.get("transport")
            if type(transport).__name__ == "StreamableHTTPTransport":
                return transport
            endpoint = local.get("endpoint_url")
            if isinstance(endpoint, str):
                query = parse_qs(urlsplit(endpoint).query)
                found = query.get("session_id") or query.get("sessionId")
                return _SseSession(found[0] if found else None)
    except Exception:
        pass
    return None


class _SseSession:
    """The session id of an HTTP+SSE connection: fixed when the connection opens."""

    __slots__ = ("session_id",)

    def __init__(self, session_id: str | None) -> None:
        self.session_id = session_id


def _session_id(transport: Any) -> str | None:
    if transport is None:
        return None
    value = getattr(transport, "session_id", None)
    return value if type(value) is str and value else None


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


class _FirstRequest:
    """Awaits one call's coroutine and learns the id of the first request it sends.

    mcp does not hand the id it gives a request back to the caller, and several calls
    may share a session concurrently, so a count read before and after the call cannot
    tell whose request took which number. What can: mcp takes the number
    (``counter._next_id += 1``) and sends the request without yielding to the event
    loop in between; nothing else runs on the loop while one step of this call's
    coroutine runs. So the coroutine is driven here one step at a time, as ``await``
    would drive it (every value and exception passed through unchanged, on any event
    loop), and the counter is read before and after each step until it moves (other
    calls take numbers while this one is suspended): the step in which
    it moved by exactly one sent this call's first request, numbered with the
    counter's new value. It moved by more (two requests in one step, or ids skipped
    around a caller-supplied one): the id is not certain and is not recorded. It never
    moved (a cache hit sends nothing): no id either.
    """

    __slots__ = ("coro", "counter", "request_id")

    def __init__(self, coro: Any, counter: Any) -> None:
        self.coro = coro
        self.counter = counter
        self.request_id: str | None = None

    def __await__(self) -> Generator[Any, Any, Any]:
        step = self.coro.__await__()
        searching = True
        before: int | None = None
        value: Any = None
        error: BaseException | None = None
        while True:
            if searching:
                # Read at each step's start: other calls run (and take numbers) while
                # this one is suspended between steps.
                before = _count(self.counter)
            try:
                if error is None:
                    out = step.send(value)
                else:
                    out, error = step.throw(error), None
            except StopIteration as done:
                self._moved(before)
                return done.value
            except BaseException:
                self._moved(before)
                raise
            if searching and self._moved(before):
                searching = False  # found (or found uncertain): stop reading the counter
                before = None
            try:
                value = yield out
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:  # the event loop's cancellation, passed on
                value, error = None, exc

    def _moved(self, before: int | None) -> bool:
        """Whether the counter moved since ``before``; notes the id if certain."""
        if before is None:
            return True
        now = _count(self.counter)
        if now == before:
            return False
        if now == before + 1:
            self.request_id = str(now)
        return True


def _count(counter: Any) -> int | None:
    """The counter's value; None (nothing recorded) if it is no longer an int there."""
    value = getattr(counter, "_next_id", None)
    return value if type(value) is int else None


def _session_listing(kwargs: dict[str, Any], span: Span) -> dict[str, Any] | None:
    """A ``ClientSession`` listing's kwargs with the context merged into ``params._meta``."""
    params = kwargs.get("params")
    if params is None:
        params = PaginatedRequestParams(_meta=cast(RequestParamsMeta, merge_meta(None, span)))
    elif isinstance(params, PaginatedRequestParams):
        params = params.model_copy(update={"meta": merge_meta(params.meta, span)})
    else:
        return None
    return {**kwargs, "params": params}


class _Session:
    """The session behind a proxy and its request counter, looked up once per session
    (a ``Client`` gets a new session each time it is entered)."""

    __slots__ = ("counter", "http", "session", "session_id", "version")

    def __init__(self) -> None:
        self.session: Any = None
        self.counter: Any = None
        # The negotiated protocol version, once known: it is fixed for a session.
        self.version: str | None = None
        # The streamable-HTTP transport whose Mcp-Session-Id names this session, and
        # that id once the server has given one (fixed for a session too).
        self.http: Any = None
        self.session_id: str | None = None

    def switch(self, session: Any, peer: _Peer) -> None:
        """A new session (the client was entered again): look its counter up."""
        self.session = session
        self.counter = _id_counter(session) if isinstance(session, ClientSession) else None
        self.version = None
        self.http = peer.http_transport() if peer.client is not None else None
        self.session_id = None


def _wrap_operation(
    fn: Callable[..., Any], op_name: str, op: _Op, target: Any, peer: _Peer
) -> Callable[..., Any]:
    """The traced method. The span handling is inlined, as the core's own wrappers
    do (``rastir._instrument``): this runs on every MCP call."""
    is_client = not isinstance(target, ClientSession)
    static = peer.static()
    static["mcp.method.name"] = op.method
    if op.tool:
        static["gen_ai.operation.name"] = "execute_tool"
    # mcp.Client's cached reads take no meta from us unless the caller gave one or
    # the client has no cache (see the module docstring).
    cacheable = is_client and op_name in _CACHED
    session_listing = not is_client and op_name.startswith("list_")
    target_param = op.target
    target_attr: str = op.target_attr or ""
    by_name = target_param == "name"  # resource URIs stay out of the name (cardinality)
    method = op.method
    tool = op.tool
    pipeline = PIPELINE
    on_end = pipeline.on_end
    cur = _current_span
    perf = time.perf_counter_ns
    known = _Session()

    async def call(*args: Any, **kwargs: Any) -> Any:
        if not pipeline.enabled:
            return await fn(*args, **kwargs)
        attrs = static.copy()
        name = method
        if target_param is not None:
            what = args[0] if args else kwargs.get(target_param)
            if what is not None:
                if type(what) is not str:
                    what = str(what)
                attrs[target_attr] = what
                if by_name:
                    name = f"{method} {what}"
        bridge = pipeline.bridge
        parent = cur.get() if bridge is None else bridge.parent(cur.get())
        span = Span(name, "mcp.client", parent, attrs)
        token = cur.set(span)
        otel = None if bridge is None else bridge.attach(span)
        injected: dict[str, Any] | None = None
        try:
            if session_listing:
                injected = _session_listing(kwargs, span)
            else:
                meta = kwargs.get("meta")
                if not (
                    cacheable
                    and meta is None
                    and kwargs.get("cache_mode", "use") == "use"
                    and getattr(target, "cache", None) is not None
                ):
                    injected = {**kwargs, "meta": merge_meta(meta, span)}
        except Exception:  # telemetry never breaks the call: send it as it was
            injected = None
        mcp_otel = attach_for_mcp(span, injected is not None) if bridge is None else None
        session = target
        if is_client:
            try:
                session = target.session
            except Exception:  # mcp.Client outside ``async with``
                session = None
        if session is not known.session:
            known.switch(session, peer)
        if known.http is not None:
            session_id = known.session_id
            if session_id is None:
                session_id = known.session_id = _session_id(known.http)
            if session_id is not None:
                attrs["mcp.session.id"] = session_id
        # Cached methods too: a cache hit sends nothing, so the counter does not move
        # and no id is recorded; a fetch sends exactly one request.
        counter = known.counter
        numbered: _FirstRequest | None = None
        try:
            if counter is None:
                result = await fn(*args, **(kwargs if injected is None else injected))
            else:
                numbered = _FirstRequest(
                    fn(*args, **(kwargs if injected is None else injected)), counter
                )
                result = await numbered
        except BaseException as exc:
            record_mcp_exception(span, exc, server=False)
            raise
        else:
            if tool and getattr(result, "is_error", None) is not False:
                record_result(span, result)
            return result
        finally:
            if mcp_otel is not None:
                detach_for_mcp(mcp_otel)
            try:
                version = known.version if session is known.session else None
                if version is None and session is not None:
                    version = session.protocol_version
                    if version and session is known.session:
                        known.version = version
                if version:
                    attrs["mcp.protocol.version"] = version
                if numbered is not None and numbered.request_id is not None:
                    attrs["jsonrpc.request.id"] = numbered.request_id
            except Exception:
                pass
            if bridge is not None:
                bridge.detach(otel)
            cur.reset(token)
            span._t1 = perf()
            on_end(span)

    functools.update_wrapper(call, fn)
    return call


def _factory(
    target: Any,
    peer: _Peer,
    include: frozenset[str] | None,
    exclude: frozenset[str],
    make_session: Callable[[Any], Factory],
) -> Factory:
    def factory(proxy: Any, name: str, value: Any) -> tuple[Any, bool]:
        if name == "session" and isinstance(value, ClientSession):
            # client.session.call_tool(...) is traced too, as the same session proxy,
            # kept while the client hands out that session: made again per read, it
            # cost 32,000 instructions. After exit it is kept until the next session
            # or the client's proxy goes (one closed session object, no connection).
            return proxy_for(value, make_session), True
        op = OPERATIONS.get(name)
        if op is None or (include is not None and name not in include) or name in exclude:
            return value, False
        if not callable(value):
            return value, False
        return _wrap_operation(value, name, op, target, peer), True

    return factory


def _make_factory(
    peer: _Peer, include: frozenset[str] | None, exclude: frozenset[str]
) -> Callable[[Any], Factory]:
    """What ``proxy_for`` calls once, when it first wraps an object: the callbacks for
    server-initiated requests are traced then (see :mod:`._callbacks`)."""

    def make(target: Any) -> Factory:
        try:  # once per object: instrument_callbacks skips one it has seen
            instrument_callbacks(
                target,
                peer.static_network(),
                include,
                exclude,
                peer.session_id if peer.client is not None else None,
            )
        except Exception:  # telemetry never breaks the host: the calls still are
            pass
        # The same maker for client.session's proxy: it is made again whenever the
        # last one is gone, and this closure exists once per wrap.
        return _factory(target, peer, include, exclude, make)

    return make


def _wrap_session(
    session: ClientSession, peer: _Peer, include: frozenset[str] | None, exclude: frozenset[str]
) -> Any:
    return proxy_for(session, _make_factory(peer, include, exclude))


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
        include: Only these are traced: names from :data:`OPERATIONS`, and
            ``sampling_callback``, ``elicitation_callback``, ``list_roots_callback``
            for the callbacks that answer the server's own requests.
        exclude: These are not traced (the same names).
        network_transport: ``network.transport`` for the spans (``"pipe"`` for stdio,
            ``"tcp"`` for HTTP). An ``mcp.Client`` knows it from what it connects to;
            a bare ``ClientSession`` does not: it holds only the two memory streams
            its transport gave it, alike for stdio, HTTP and in-memory, and nothing
            that leads back to the transport.

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
        client: T = proxy_for(session, _make_factory(peer, inc, exc))
        return client
    target: Any = session  # a proxy passes both checks and comes back as it is
    if not isinstance(target, ClientSession):
        raise TypeError(
            f"rastir.mcp_bridge.wrap() takes an mcp.ClientSession or mcp.Client, "
            f"not {type(target).__name__}"
        )
    wrapped: T = _wrap_session(target, _Peer(network_transport), inc, exc)
    return wrapped
