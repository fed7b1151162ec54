"""``RastirMiddleware``: an ``http.server`` span for each request, as pure ASGI.

Built the way Starlette builds its own middleware (CONVENTIONS): the scope type is
checked first and ``lifespan`` passes straight through; per-request state lives in
locals and closures, never on ``self``; ``send`` is wrapped to see the status and the
last body message; bodies are never buffered or rewritten, so streaming and SSE (how
MCP streamable HTTP talks) flow through untouched, and the span ends with the last
body message.

    app.add_middleware(RastirMiddleware)          # Starlette / FastAPI
    app = RastirMiddleware(app)                   # any ASGI app
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from rastir._instrument import detach_span, finish_span, record_exception, start_span
from rastir.context import _current_baggage
from rastir.export._pipeline import PIPELINE
from rastir.middleware._http import (
    DEFAULT_EXCLUDED,
    HeaderCapture,
    call_hook,
    end_status,
    method_attr,
    remote_parent,
)
from rastir.spans import Span

__all__ = ["RastirMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RequestHook = Callable[[Span, Scope], None]
ResponseHook = Callable[[Span, Message], None]


def _route_template(scope: Scope, root_path: str) -> str | None:
    """The matched route's template, read after routing (Starlette and FastAPI set
    ``scope["route"]``; a Mount adds its prefix to ``root_path``)."""
    route = scope.get("route")
    path = getattr(route, "path", None) if route is not None else None
    if not isinstance(path, str):
        return None
    mounted = scope.get("root_path", "")
    if isinstance(mounted, str) and len(mounted) > len(root_path):
        return mounted[len(root_path) :] + path
    return path


class RastirMiddleware:
    """Trace each HTTP request (and each WebSocket connection) as an ``http.server`` span.

    Args:
        app: the ASGI application to wrap.
        excluded_paths: exact paths served without a span (default ``/health`` and
            ``/metrics``).
        request_hook: ``hook(span, scope)`` called when the span starts; failsafe.
        response_hook: ``hook(span, message)`` called with ``http.response.start``;
            failsafe.
        capture_request_headers: request header names to record as
            ``http.request.header.<name>``.
        capture_response_headers: response header names to record as
            ``http.response.header.<name>``.
        sanitize_headers: more header names whose captured values are redacted
            (authorization, cookies and API-key headers always are).
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
        self.excluded = frozenset(excluded_paths)
        self.request_hook = request_hook
        self.response_hook = response_hook
        sanitize = tuple(sanitize_headers)
        self.request_headers = HeaderCapture(
            capture_request_headers, sanitize, "http.request.header."
        )
        self.response_headers = HeaderCapture(
            capture_response_headers, sanitize, "http.response.header."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or not PIPELINE.enabled:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.excluded:
            await self.app(scope, receive, send)
            return

        # One pass over the headers (ASGI servers give lowercase names as bytes).
        traceparent = tracestate = baggage = user_agent = host = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
            elif name == b"baggage":
                baggage = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        parent = remote_parent(traceparent, tracestate, baggage)
        attrs: dict[str, Any] = {"url.path": path, "url.scheme": scope.get("scheme", "http")}
        if kind == "http":
            method = method_attr(scope.get("method", "GET"), attrs)
            version = scope.get("http_version")
            if version:
                attrs["network.protocol.version"] = version
        else:
            method = "WS"
            attrs["network.protocol.name"] = "websocket"
        if host:
            h, _, port = host.rpartition(":") if host[-1:].isdigit() else (host, "", "")
            attrs["server.address"] = h or host
            if port:
                attrs["server.port"] = int(port)
        else:
            server = scope.get("server")
            if server:
                attrs["server.address"] = server[0]
                if server[1] is not None:
                    attrs["server.port"] = server[1]
        client = scope.get("client")
        if client:
            attrs["client.address"] = client[0]
        if user_agent is not None:
            attrs["user_agent.original"] = user_agent
        if self.request_headers:
            self.request_headers.capture(
                ((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]),
                attrs,
            )
        span, token, otel = start_span(method, "http.server", attrs, parent)
        if parent is not None and parent.baggage:
            baggage_token = _current_baggage.set(parent.baggage)
        else:
            baggage_token = None
        call_hook(self.request_hook, span, scope)
        root_path = scope.get("root_path", "")
        response_hook = self.response_hook
        response_headers = self.response_headers
        status: int | None = None
        ended = False

        def finish() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            route = _route_template(scope, root_path)
            if route is not None:
                span.attributes["http.route"] = route
                span.name = f"{method} {route}"
            end_status(span, status)
            finish_span(span)

        async def traced_send(message: Message) -> None:
            nonlocal status
            mtype = message["type"]
            if mtype == "http.response.start":
                status = message["status"]
                if response_headers:
                    response_headers.capture(
                        (
                            (n.decode("latin-1"), v.decode("latin-1"))
                            for n, v in message.get("headers", ())
                        ),
                        span.attributes,
                    )
                call_hook(response_hook, span, message)
            elif mtype == "http.response.body":
                if not message.get("more_body", False):
                    await send(message)
                    finish()
                    return
            elif mtype == "websocket.close" or mtype == "websocket.http.response.start":
                code = message.get("code") or message.get("status")
                if isinstance(code, int):
                    span.attributes["rastir.websocket.close_code"] = code
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            if status is None and isinstance(exc, Exception):
                status = 500
            record_exception(span, exc)
            raise
        finally:
            detach_span(token, otel)
            if baggage_token is not None:
                _current_baggage.reset(baggage_token)
            finish()
