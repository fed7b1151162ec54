"""``RastirMiddleware``: an ``http.server`` span for each request, as pure ASGI.

Built the way Starlette builds its own middleware (CONVENTIONS):

* the scope type is checked first, and ``lifespan`` (or any type it does not trace)
  passes straight through with the original ``receive`` and ``send``; once the
  app's lifespan has returned (the app has shut down), queued spans are flushed,
  since uvicorn ends a process it stopped on SIGTERM without running ``atexit``;
* per-request state lives in locals and in one per-request object (``_Response``),
  never on the middleware, so concurrent requests cannot swap statuses or spans;
* ``send`` is wrapped only to read the status and to see the last body message, and
  the wrapper hands back the server's own awaitable;
* bodies are never buffered or rewritten, so streaming and SSE (how MCP streamable
  HTTP talks) flow through message by message, and the span ends when the last body
  message has been handed to the server.

    app.add_middleware(RastirMiddleware)          # Starlette / FastAPI
    app = RastirMiddleware(app)                   # any ASGI app
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from rastir import _config
from rastir._instrument import record_exception
from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.middleware._http import (
    _HOSTS,
    DEFAULT_EXCLUDED,
    KNOWN_METHODS,
    SPAN_NAMES,
    HeaderCapture,
    call_hook,
    header_names,
    remote_parent,
    server_error,
    split_host,
    stats,
    traceparent_ids,
)
from rastir.spans import Span, remote_child

__all__ = ["RastirMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RequestHook = Callable[[Span, Scope], None]
ResponseHook = Callable[[Span, Message], None]

_perf_ns = time.perf_counter_ns
_on_end = PIPELINE.on_end


def _repeated(headers: Iterable[tuple[bytes, bytes]]) -> tuple[Any, Any, Any, Any, Any]:
    """``(host, user-agent, traceparent, tracestate, baggage)`` when a name repeats."""
    traceparent = tracestate = baggage = user_agent = host = None
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"user-agent":
            user_agent = value
        elif name == b"traceparent":
            # W3C Trace Context test suite: two different traceparent headers are
            # invalid together (b"-" fails to parse and is counted).
            same = traceparent is None or traceparent == value
            traceparent = value if same else b"-"
        elif name == b"tracestate":
            # RFC 9110 §5.3: repeated list headers combine with commas.
            tracestate = value if tracestate is None else tracestate + b"," + value
        elif name == b"baggage":
            baggage = value if baggage is None else baggage + b"," + value
    return host, user_agent, traceparent, tracestate, baggage


def _is_mount(route: Any) -> bool:
    """A Starlette ``Mount`` (or a subclass), known by class name: nothing is imported."""
    return any(cls.__name__ == "Mount" for cls in type(route).__mro__)


def _route_template(route: Any, path: str, scope: Scope, root_path: str) -> str | None:
    """The matched route's template when routing went through a ``Mount``.

    Starlette's router (and so FastAPI's) stores the matched route in
    ``scope["route"]``. Under a ``Mount`` the route's path is relative to the mount,
    whose matched prefix the router appends to ``root_path``.
    """
    mounted = scope.get("root_path", "")
    if not isinstance(mounted, str) or not mounted.startswith(root_path):
        return path
    # A Mount whose own path has parameters ("/users/{uid}") puts their values in
    # root_path, and a template built from them would be one per user. Such a route
    # gets no http.route rather than an unbounded one.
    params = scope.get("path_params")
    convertors = getattr(route, "param_convertors", None)
    if params and isinstance(convertors, dict) and any(k not in convertors for k in params):
        return None
    prefix = mounted[len(root_path) :]
    if _is_mount(route):
        # A Mount of an app without routes of its own (StaticFiles, a plain ASGI app)
        # is itself the match: root_path already ends with its path. Its convertors
        # hold the "{path}" of what lies below it, and any of its own parameters.
        if (convertors and any(k != "path" for k in convertors)) or not prefix.endswith(path):
            return None
        return prefix or None
    return prefix + path


def _template(scope: Scope, root_path: str) -> str | None:
    """``http.route``: the router's match, or what the application put in the scope.

    Frameworks without ``scope["route"]`` (Django's ASGI handler, for one) can set
    ``scope["rastir.route"]`` to the template themselves.
    """
    route = scope.get("route")
    if route is None:
        rule = scope.get("rastir.route")
        if isinstance(rule, str):
            return rule
        # FastAPI (0.16x) routes into a mounted app without setting scope["route"]:
        # the mount is then known by the prefix it added to root_path, a template
        # only when it matched no path parameter.
        mounted = scope.get("root_path", "")
        if (
            type(mounted) is str
            and len(mounted) > len(root_path)
            and mounted.startswith(root_path)
            and not scope.get("path_params")
        ):
            return mounted[len(root_path) :]
        return None
    path = getattr(route, "path", None)
    fastapi = scope.get("fastapi")
    if fastapi is not None:
        # FastAPI (0.16x) includes routers lazily: the route in the scope is the
        # router's own, without the prefixes of include_router(), and the full path
        # is on the inclusion's context.
        context = fastapi.get("effective_route_context") if type(fastapi) is dict else None
        if context is not None and getattr(context, "original_route", None) is route:
            full = getattr(context, "path", None)
            if isinstance(full, str):
                path = full
    if type(path) is not str:
        return None
    if scope.get("root_path", "") == root_path:
        return path  # the common case: no Mount in between
    return _route_template(route, path, scope, root_path)


class _Response:
    """One request's response as it passes through: status, and when the span ends.

    Per-request state lives here (the shape of Starlette's ``GZipResponder``), never
    on the middleware. One small object costs less than the closures and cells that
    would hold the same state.
    """

    __slots__ = (
        "_send",
        "done",
        "middleware",
        "name",
        "root_path",
        "scope",
        "span",
        "status",
        "trailers",
    )

    def __init__(self, span: Span, scope: Scope, send: Send, middleware: RastirMiddleware) -> None:
        self.span = span
        # The name the span started with (the method). A name a hook set is the
        # user's: the route is appended only while the span still has this one.
        self.name = span.name
        self.scope = scope
        self._send = send
        self.middleware = middleware
        self.root_path = scope.get("root_path", "")
        self.status = 0
        self.trailers = False
        self.done = False

    def send(self, message: Message) -> Awaitable[None]:
        """The ``send`` the app sees: a plain function handing back the server's own
        awaitable, so no coroutine of ours sits between the app and the server."""
        mtype = message["type"]
        if mtype == "http.response.body":
            # The span ends as the last body message is handed to the server. A 5xx
            # span ends when the app returns instead, so the exception that usually
            # follows (Starlette's ServerErrorMiddleware re-raises after sending its
            # 500) is recorded on it.
            if not (
                message.get("more_body", False) or self.trailers or self.status >= 500 or self.done
            ):
                self.end()
            return self._send(message)
        if mtype == "http.response.start":
            code = message.get("status")
            if type(code) is not int:
                # mcp's streamable HTTP transport answers with http.HTTPStatus members:
                # recorded as plain ints, as every exporter and query expects.
                code = int(code) if isinstance(code, int) else 0
            self.status = code
            if message.get("trailers", False):
                self.trailers = True
            middleware = self.middleware
            if middleware._response_headers is not None:
                middleware._response_headers.capture(
                    message.get("headers", ()), self.span.attributes
                )
            if middleware.response_hook is not None:
                call_hook(middleware.response_hook, self.span, message)
        elif mtype == "http.response.trailers":
            if not message.get("more_trailers", False) and self.status < 500 and not self.done:
                self.end()
        elif mtype == "http.response.pathsend" and self.status < 500 and not self.done:
            self.end()
        return self._send(message)

    def end(self) -> None:
        """Finish the span: route, status, end time, hand-off."""
        self.done = True
        span = self.span
        attributes = span._attrs  # made with a dict; no property call per request
        if attributes is None:
            attributes = span.attributes
        scope = self.scope
        template = _template(scope, self.root_path)
        if template is not None:
            attributes["http.route"] = template
            # HTTP semconv span name: "{method} {http.route}".
            name = span.name
            if name is self.name:
                span.name = f"{name} {template}"
        status = self.status
        if status:
            attributes["http.response.status_code"] = status
            if status >= 500:
                server_error(span, status)
        span._t1 = _perf_ns()
        _on_end(span)


def _flush_at_shutdown() -> None:
    """``rastir.flush()``, bounded by ``shutdown_timeout``; never raises.

    It blocks the event loop, which has no request left to serve then (servers run
    the lifespan shutdown after the last connection closed or was given up).
    """
    try:
        _config.flush(_config.get_settings().shutdown_timeout)
    except Exception:  # pragma: no cover - telemetry never breaks the host's shutdown
        pass


class RastirMiddleware:
    """Trace each HTTP request, and each WebSocket connection, as an ``http.server`` span.

    The incoming ``traceparent``, ``tracestate`` and ``baggage`` are continued when
    valid (W3C Trace Context); invalid ones are ignored and counted in
    :data:`rastir.middleware.stats`, and the request starts a new trace.

    Args:
        app: The ASGI application to wrap.
        excluded_paths: Exact paths served without a span (default ``/health`` and
            ``/metrics``).
        request_hook: ``hook(span, scope)``, called when the span starts. Failsafe:
            an exception is counted in ``stats.hook_errors`` and swallowed.
        response_hook: ``hook(span, message)``, called with the
            ``http.response.start`` message. Failsafe.
        capture_request_headers: Request header names to record as
            ``http.request.header.<name>`` (lists of strings).
        capture_response_headers: Response header names to record as
            ``http.response.header.<name>``.
        sanitize_headers: More header names whose captured values are replaced by
            ``[redacted]`` (authorization, cookies and API-key headers always are).

    Raises:
        ValueError: A header option is a single string rather than a list of names.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_paths: Iterable[str] = DEFAULT_EXCLUDED,
        request_hook: RequestHook | None = None,
        response_hook: ResponseHook | None = None,
        capture_request_headers: Iterable[str] = (),
        capture_response_headers: Iterable[str] = (),
        sanitize_headers: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.excluded_paths = frozenset(header_names(excluded_paths, "excluded_paths"))
        self.request_hook = request_hook
        self.response_hook = response_hook
        sanitize = header_names(sanitize_headers, "sanitize_headers")
        request_headers = HeaderCapture(
            header_names(capture_request_headers, "capture_request_headers"),
            sanitize,
            "http.request.header.",
        )
        response_headers = HeaderCapture(
            header_names(capture_response_headers, "capture_response_headers"),
            sanitize,
            "http.response.header.",
        )
        # None when off, so the request path tests one local for each.
        self._request_headers = request_headers if request_headers else None
        self._response_headers = response_headers if response_headers else None

    def _begin(self, scope: Scope, http: bool) -> Span | None:
        """The request's span, not yet current. A remote parent, with the baggage that
        came with it, is the span's ``_ctx`` (shared, see ``remote_child``, when it is
        only flags).

        None for an excluded path, or when the scope cannot be read: telemetry never
        breaks the host, so a scope this code does not understand is served untraced.
        """
        try:
            path = scope["path"]
            if path in self.excluded_paths:
                return None
            # ASGI servers give lowercase names as bytes. Building a dict of the
            # headers is done in C; when no name repeats (the common case) five
            # lookups then replace a Python loop over every header.
            headers = scope["headers"]
            by_name = dict(headers) if type(headers) is list else None
            if by_name is not None and len(by_name) == len(headers):
                host = by_name.get(b"host")
                user_agent = by_name.get(b"user-agent")
                traceparent = by_name.get(b"traceparent")
                tracestate = by_name.get(b"tracestate")
                baggage = by_name.get(b"baggage")
            else:
                host, user_agent, traceparent, tracestate, baggage = _repeated(headers)
            address: str | None
            port: int | None
            if host is not None:
                found = _HOSTS.get(host)
                if found is None:
                    found = split_host(host)
                address, port = found
            else:
                server = scope.get("server") or (None, None)
                address, port = server[0], server[1]
            client = scope.get("client")
            # One dict display: cheaper than growing the dict key by key.
            if http:
                method = scope["method"]
                attrs: dict[str, Any] = {
                    "http.request.method": method,
                    "url.path": path,
                    "url.scheme": scope.get("scheme", "http"),
                    "network.protocol.version": scope.get("http_version", "1.1"),
                    "server.address": address,
                    "server.port": port,
                    "client.address": client[0] if client else None,
                    "user_agent.original": user_agent,
                }
                if method not in KNOWN_METHODS:
                    # HTTP semconv: unknown methods are "_OTHER", the original kept aside.
                    attrs["http.request.method"] = "_OTHER"
                    attrs["http.request.method_original"] = method
                    method = "HTTP"
            else:
                method = "WEBSOCKET"
                attrs = {
                    "url.path": path,
                    "url.scheme": scope.get("scheme", "ws"),
                    "network.protocol.name": "websocket",
                    "server.address": address,
                    "server.port": port,
                    "client.address": client[0] if client else None,
                    "user_agent.original": user_agent,
                }
            if user_agent is not None:
                attrs["user_agent.original"] = user_agent.decode("latin-1")
            else:
                del attrs["user_agent.original"]
            if port is None:
                del attrs["server.port"]
            if address is None:
                del attrs["server.address"]
            if attrs["client.address"] is None:
                del attrs["client.address"]
            if self._request_headers is not None:
                self._request_headers.capture(scope["headers"], attrs)
            parent = None
            if traceparent is not None:
                if tracestate is None and baggage is None:
                    # remote_parent() inlined for the common case, on the raw bytes. The span
                    # shares its inherited context (remote_child): no SpanContext.
                    ids = traceparent_ids(traceparent)
                    if ids is not None:
                        return remote_child(method, "http.server", ids[0], ids[1], ids[2], attrs)
                    stats.count_invalid()
                else:
                    parent = remote_parent(traceparent, tracestate, baggage)
        except Exception:
            return None
        # The rest is start_span() inlined: this is the hottest path in the package.
        if parent is None:
            current = _current_span.get()
            bridge = PIPELINE.bridge
            return Span(
                method, "http.server", current if bridge is None else bridge.parent(current), attrs
            )
        return Span(method, "http.server", parent, attrs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and PIPELINE.enabled:
                await self._websocket(scope, receive, send)
            elif kind == "lifespan":
                await self.app(scope, receive, send)
                # The app has shut down: deliver what is queued now. uvicorn ends a
                # SIGTERM'd process by raising the signal again with the default
                # handler once the lifespan is over, so atexit never runs there.
                _flush_at_shutdown()
            else:
                await self.app(scope, receive, send)
            return
        span = self._begin(scope, True) if PIPELINE.enabled else None
        if span is None:
            await self.app(scope, receive, send)
            return
        token = _current_span.set(span)
        bridge = PIPELINE.bridge
        otel = None if bridge is None else bridge.attach(span)
        ctx = span._ctx
        baggage_token = None
        if ctx is not None and ctx.baggage:
            baggage_token = _current_baggage.set(ctx.baggage)
        response = _Response(span, scope, send, self)
        if self.request_hook is not None:
            call_hook(self.request_hook, span, scope)
        try:
            await self.app(scope, receive, response.send)
        except BaseException as exc:
            # After the last body message the response is complete and the span is
            # already handed over: what fails later (a background task) is not it.
            if not response.done:
                if not response.status and isinstance(exc, Exception):
                    response.status = 500  # what the server answers for an app that raised
                record_exception(span, exc)
                if span.error is not None:
                    span.attributes["error.type"] = span.error["exception_type"]
            raise
        finally:
            if otel is not None and bridge is not None:
                bridge.detach(otel)
            _current_span.reset(token)
            if baggage_token is not None:
                _current_baggage.reset(baggage_token)
            if not response.done:
                response.end()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One span for the whole WebSocket connection, ended when the app returns."""
        span = self._begin(scope, False)
        if span is None:
            await self.app(scope, receive, send)
            return
        token = _current_span.set(span)
        bridge = PIPELINE.bridge
        otel = None if bridge is None else bridge.attach(span)
        ctx = span._ctx
        baggage_token = None
        if ctx is not None and ctx.baggage:
            baggage_token = _current_baggage.set(ctx.baggage)
        if self.request_hook is not None:
            call_hook(self.request_hook, span, scope)
        root_path = scope.get("root_path", "")
        attributes = span.attributes
        response_hook = self.response_hook

        async def traced_send(message: Message) -> None:
            mtype = message.get("type")
            if mtype == "websocket.accept":
                attributes["http.response.status_code"] = 101
            elif mtype == "websocket.close":
                attributes["rastir.websocket.close_code"] = message.get("code", 1000)
            elif mtype == "websocket.http.response.start":
                # The WebSocket Denial Response extension: an HTTP answer instead.
                code = message.get("status")
                if isinstance(code, int):
                    attributes["http.response.status_code"] = int(code)
                if response_hook is not None:
                    call_hook(response_hook, span, message)
            await send(message)

        async def traced_receive() -> Message:
            message = await receive()
            if message.get("type") == "websocket.disconnect":
                attributes.setdefault("rastir.websocket.close_code", message.get("code", 1005))
            return message

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as exc:
            record_exception(span, exc)
            if span.error is not None:
                attributes["error.type"] = span.error["exception_type"]
            raise
        finally:
            if otel is not None and bridge is not None:
                bridge.detach(otel)
            _current_span.reset(token)
            if baggage_token is not None:
                _current_baggage.reset(baggage_token)
            template = _template(scope, root_path)
            if template is not None:
                attributes["http.route"] = template
                if span.name in SPAN_NAMES:
                    span.name = f"{span.name} {template}"
            span._t1 = _perf_ns()
            _on_end(span)
