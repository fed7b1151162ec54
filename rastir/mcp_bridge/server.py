"""``@mcp_endpoint``: an ``mcp.server`` span around an MCP server tool.

    server = MCPServer("calc")

    @server.tool()
    @mcp_endpoint
    async def add(a: int, b: int) -> int:
        return a + b

Each call is an ``mcp.server`` span (``tools/call add``), the child of the client's span
whose context arrived in ``params._meta`` (SEP-414). Spans the tool opens are its
children. The W3C baggage that came with the call is the current baggage while the
tool runs. When the call came over HTTP through :class:`rastir.middleware.RastirMiddleware`,
the HTTP request's ``http.server`` span is linked.

Parents, in order:

1. ``_meta`` holds a valid ``traceparent``: that remote span. If mcp's own
   OpenTelemetry server span (the ``OpenTelemetryMiddleware`` every MCP server runs)
   is recording and the OTel bridge is on, it sits between the two, as it is the
   child of the same remote span.
2. ``_meta`` holds a ``traceparent`` that is not valid W3C trace context: a new root
   (W3C Trace Context: an invalid ``traceparent`` restarts the trace), marked
   ``rastir.mcp.invalid_trace_context=true``.
3. No ``traceparent``: whatever is current, as for any span (the HTTP request's span,
   or with the bridge the OTel context mcp set up). A static resource, which gets no
   ``Context`` (``@mcp_endpoint(uri=...)``), takes the OTel context mcp set up.

While the span is open it is also OpenTelemetry's current span (see ``_otel``), so a
plain mcp client used in the tool sends the tool's context on, not the caller's.

**How the tool's ``_meta`` is reached.** MCPServer hands the request to a tool only
through a parameter annotated with its ``Context``. When the tool has one, it is read;
otherwise ``@mcp_endpoint`` adds a keyword-only ``rastir_mcp_context: Context = None``
to the signature it shows. MCPServer leaves ``Context`` parameters out of the input
schema, so the schema the client sees is unchanged, and the wrapper removes the
argument before calling the tool. Calling the tool directly (in a unit test) works as
before and gives a span whose parent is the current one.

Sync tools stay sync (MCPServer runs them in a worker thread, with the context copied),
async tools stay async.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any, Final, TypeVar, overload

from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp_types import CallToolResult

from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.mcp_bridge._errors import record_mcp_exception, record_result
from rastir.mcp_bridge._meta import read_meta
from rastir.mcp_bridge._otel import attach_for_mcp, detach_for_mcp, otel_parent
from rastir.spans import AttributeValue, Span, SpanContext

__all__ = ["HIDDEN_CONTEXT", "mcp_endpoint"]

F = TypeVar("F", bound=Callable[..., Any])

HIDDEN_CONTEXT: Final = "rastir_mcp_context"
"""The parameter ``@mcp_endpoint`` adds to a tool that has no ``Context`` parameter.
MCPServer refuses parameter names starting with ``_``, hence a plain name."""

_SESSION_HEADER: Final = "mcp-session-id"
_SSE_SESSION: Final = b"session_id="
_READ: Final = "resources/read"


_Opened = tuple[
    Span,
    Token[Span | SpanContext | None],
    Any,
    Token[tuple[tuple[str, str], ...]] | None,
]


def _close(opened: _Opened) -> None:
    span, token, otel, baggage = opened
    if baggage is not None:
        _current_baggage.reset(baggage)
    if otel is not None:
        bridge = PIPELINE.bridge
        if bridge is not None:
            bridge.detach(otel)
        else:
            detach_for_mcp(otel)
    _current_span.reset(token)
    span._t1 = time.perf_counter_ns()
    PIPELINE.on_end(span)


def _request_context(ctx: Any) -> Any:
    """The request behind MCPServer's ``Context``, or None (a direct call)."""
    if ctx is None:
        return None
    # Context keeps it as a pydantic private attribute; reading the property goes
    # through pydantic's attribute hooks (about 100 bytecodes), the private dict not.
    private = getattr(ctx, "__pydantic_private__", None)
    if type(private) is dict:
        return private.get("_request_context")
    if not isinstance(ctx, Context):
        return None
    try:
        return ctx.request_context
    except Exception:  # "Context is not available outside of a request"
        return None


def _peer(scope: Any, attrs: dict[str, Any]) -> None:
    """``client.address``/``client.port`` and ``network.protocol.version`` from the ASGI
    scope of the HTTP request that carried the message (Starlette's ``Request``).

    The address is the one the ASGI server reports: the peer's, or the original
    client's when the server is told to trust a proxy's forwarded headers.
    """
    if type(scope) is not dict:
        return
    version = scope.get("http_version")
    if type(version) is str:
        attrs["network.protocol.version"] = version
    client = scope.get("client")
    if client:
        host, port = client[0], client[1]
        if type(host) is str and host:
            attrs["client.address"] = host
            if type(port) is int:
                attrs["client.port"] = port


def _sse_session(request: Any, scope: Any) -> Any:
    """The session of mcp's HTTP+SSE transport: the ``session_id`` query parameter of
    the POST that carried the message (mcp parsed the query already; Starlette keeps
    it). Streamable HTTP sends the ``Mcp-Session-Id`` header instead."""
    if type(scope) is dict:
        query = scope.get("query_string")
        if type(query) is bytes and _SSE_SESSION in query:
            return request.query_params.get("session_id")
    return None


def _attributes(
    rc: Any, default_method: str, default_target: str, static: dict[str, AttributeValue]
) -> tuple[str, dict[str, Any]]:
    """The span name and attributes for one request (``rc`` may be None)."""
    attrs: dict[str, Any] = static.copy()
    method = default_method
    target: Any = default_target
    if rc is not None:
        try:
            method = rc.method
            params = rc.params
            if type(params) is dict or isinstance(params, Mapping):
                target = params.get("uri" if method == "resources/read" else "name", target)
            request_id = rc.request_id
            if request_id is not None:
                attrs["jsonrpc.request.id"] = str(request_id)
            version = rc.protocol_version
            if version:
                attrs["mcp.protocol.version"] = version
            request = rc.request
            if request is not None:
                headers = getattr(request, "headers", None)
                if headers is not None:
                    # Only HTTP transports attach the request.
                    attrs["network.transport"] = "tcp"
                    attrs["network.protocol.name"] = "http"
                    scope = getattr(request, "scope", None)
                    session_id = headers.get(_SESSION_HEADER) or _sse_session(request, scope)
                    if session_id:
                        attrs["mcp.session.id"] = str(session_id)
                    _peer(scope, attrs)
        except Exception:
            pass
    attrs["mcp.method.name"] = method
    if type(target) is not str:
        target = str(target)
    if method == "tools/call":
        attrs["gen_ai.tool.name"] = target
        attrs["gen_ai.operation.name"] = "execute_tool"
        return f"tools/call {target}", attrs
    if method == "prompts/get":
        attrs["gen_ai.prompt.name"] = target
        return f"prompts/get {target}", attrs
    if method == "resources/read":
        attrs["mcp.resource.uri"] = target
    return str(method), attrs


def _parent(remote: SpanContext, bridge: Any, ambient: Span | SpanContext | None) -> Any:
    """The remote span, or mcp's OTel server span between it and us (see module doc)."""
    if bridge is None:
        return remote
    candidate = bridge.parent(ambient)
    if candidate is None or candidate is ambient:
        return remote
    if candidate.tid == remote.tid and candidate.sid != remote.sid:
        return candidate
    return remote


def _open(
    ctx: Any, default_method: str, default_target: str, static: dict[str, AttributeValue]
) -> _Opened:
    rc = _request_context(ctx)
    name, attrs = _attributes(rc, default_method, default_target, static)
    ambient = _current_span.get()
    bridge = PIPELINE.bridge
    remote, refused = read_meta(rc.meta if rc is not None else None)
    baggage = None
    parent: Any
    if remote is not None:
        parent = _parent(remote, bridge, ambient)
        if remote.baggage:
            baggage = _current_baggage.set(remote.baggage)
    elif refused:
        # A context that was sent but is invalid starts a trace of its own, rather
        # than the ambient one (W3C Trace Context: restart the trace).
        attrs["rastir.mcp.invalid_trace_context"] = True
        parent = None
    elif rc is None and default_method == _READ:
        # A static resource: MCPServer gives it no Context, so no _meta; the context
        # mcp's own server middleware extracted from _meta is in OpenTelemetry's.
        parent = otel_parent(ambient) if bridge is None else bridge.parent(ambient)
    else:
        parent = ambient if bridge is None else bridge.parent(ambient)
    span = Span(name, "mcp.server", parent, attrs)
    token = _current_span.set(span)
    # mcp's server middleware leaves the context it extracted from _meta (the caller's
    # span) as OpenTelemetry's current one, and mcp's client injects that into the
    # _meta of any request the tool sends: a plain ClientSession used in the tool
    # would attach its server to our caller. Our span is made current there too, as
    # on the client (_otel.attach_for_mcp; skipped when OpenTelemetry's context is
    # empty and there is no SDK: then nothing reads it).
    otel = attach_for_mcp(span, True) if bridge is None else bridge.attach(span)
    if type(ambient) is Span and ambient.kind == "http.server" and span.psid != ambient.sid:
        span.add_link(ambient.context, {"rastir.link.type": "http.request"})
    return span, token, otel, baggage


def _failed(span: Span, exc: BaseException) -> None:
    """Record the exception that ended the tool. A tool call that fails is answered
    with an ``isError`` result (MCPServer turns the exception into one), so its
    ``error.type`` is ``tool_error``, as the MCP semantic conventions name that answer
    on both sides; the error category stays the exception's own."""
    record_mcp_exception(span, exc, server=True)
    attributes = span.attributes
    if (
        span.status == "error"
        and "error.type" not in attributes
        and attributes.get("mcp.method.name") == "tools/call"
    ):
        attributes["error.type"] = "tool_error"


def _outcome(span: Span, result: Any) -> None:
    # Only a CallToolResult carries isError; anything else is the tool's output, a
    # dict with an "isError" key too (MCPServer makes it structured content).
    if isinstance(result, CallToolResult):
        record_result(span, result)


def _signature(fn: Callable[..., Any], hidden: bool) -> inspect.Signature:
    """The signature MCPServer will read: the tool's own, evaluated, plus the hidden
    ``Context`` parameter when needed."""
    try:
        sig = inspect.signature(fn, eval_str=True)
    except Exception:
        # Annotations that cannot be evaluated now; MCPServer reports them itself.
        sig = inspect.signature(fn)
    if not hidden:
        return sig
    params = list(sig.parameters.values())
    extra = inspect.Parameter(
        HIDDEN_CONTEXT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context
    )
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        params.insert(len(params) - 1, extra)
    else:
        params.append(extra)
    return sig.replace(parameters=params)


def _endpoint(
    fn: F, name: str | None, attributes: Mapping[str, AttributeValue] | None, uri: str | None
) -> F:
    if isinstance(fn, (staticmethod, classmethod)) or not callable(fn):
        raise TypeError(f"@mcp_endpoint goes on a tool function, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError("@mcp_endpoint: MCP tools return a result; generators are not supported")
    if uri is not None:
        # A static resource: MCPServer refuses any parameter on it, a Context included
        # ("Context injection for static resources is not supported").
        if _signature(fn, False).parameters:
            raise ValueError(
                f"@mcp_endpoint(uri={uri!r}) is for a static resource, which takes no "
                f"parameters; {getattr(fn, '__name__', fn)!r} has some. A template "
                f"resource (with {{...}} in its URI) needs no uri=."
            )
        context_param = None
        hidden = False
        default_method = _READ
        default_target = uri
    else:
        context_param = find_context_parameter(fn)
        hidden = context_param is None
        default_method = "tools/call"
        default_target = name or str(getattr(fn, "__name__", "tool"))
    key: str = HIDDEN_CONTEXT if context_param is None else context_param
    static: dict[str, AttributeValue] = dict(attributes or {})
    pipeline = PIPELINE

    if inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop(key, None) if hidden else kwargs.get(key)
            if not pipeline.enabled:
                return await fn(*args, **kwargs)
            opened = _open(ctx, default_method, default_target, static)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _failed(opened[0], exc)
                raise
            else:
                _outcome(opened[0], result)
                return result
            finally:
                _close(opened)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop(key, None) if hidden else kwargs.get(key)
            if not pipeline.enabled:
                return fn(*args, **kwargs)
            opened = _open(ctx, default_method, default_target, static)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _failed(opened[0], exc)
                raise
            else:
                _outcome(opened[0], result)
                return result
            finally:
                _close(opened)

        wrapper = sync_wrapper

    functools.update_wrapper(wrapper, fn)
    wrapper.__signature__ = _signature(fn, hidden)  # type: ignore[attr-defined]
    if hidden:
        # update_wrapper shares the tool's own __annotations__ dict: copy, never mutate.
        own: dict[str, Any] = dict(getattr(fn, "__annotations__", None) or {})
        returns = own.pop("return", inspect.Parameter.empty)
        own[HIDDEN_CONTEXT] = Context
        if returns is not inspect.Parameter.empty:
            own["return"] = returns  # kept last, as Python orders it
        wrapper.__annotations__ = own
    wrapper.__rastir_kind__ = "mcp.server"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@overload
def mcp_endpoint(fn: F, /) -> F: ...
@overload
def mcp_endpoint(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    uri: str | None = None,
) -> Callable[[F], F]: ...
def mcp_endpoint(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    uri: str | None = None,
) -> Any:
    """Trace an MCP server tool as an ``mcp.server`` span joined to the client's trace.

    Use it under ``@server.tool()`` (so MCPServer registers the traced function), bare
    or with arguments. Works on sync and async tools, on prompt functions and resource
    templates, and, with ``uri=``, on static resources.

    Args:
        fn: The tool function, when used bare.
        name: The tool name used when the request does not say it (direct calls);
            defaults to the function's name. The span takes the requested name.
        attributes: Constant attributes put on every span.
        uri: Only on a static resource (``@server.resource(uri)`` with no ``{...}``
            in the URI): its URI. MCPServer gives a static resource no ``Context``, so
            no parameter is added to it; the span is ``resources/read``, the child of
            the context mcp's own middleware extracted from ``_meta``.

    Returns:
        The traced function, with the same parameters as far as MCPServer can tell:
        the input schema it builds is the same, and ``Context`` is still injected.

    Raises:
        TypeError: ``fn`` is not a plain function, or is a generator.
        ValueError: ``name`` or ``uri`` is empty, or ``uri`` is given for a function
            with parameters (a static resource has none).
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if uri is not None and (not isinstance(uri, str) or not uri):
        raise ValueError(f"uri must be a non-empty string, got {uri!r}")
    if fn is None:
        return lambda f: _endpoint(f, name, attributes, uri)
    return _endpoint(fn, name, attributes, uri)
