"""``RastirWSGIMiddleware``: an ``http.server`` span for each WSGI request.

The span covers the whole response: it ends when the server closes the response
iterable (PEP 3333 requires servers to call ``close()`` when it has one, and ours
always has), so a streamed body is timed to its last chunk. The span is current while
the application runs and while each chunk of a lazy body is produced, so spans
started there have the right parent; it is not current between chunks.

    app.wsgi_app = RastirWSGIMiddleware(app.wsgi_app)   # Flask
    application = RastirWSGIMiddleware(application)      # Django, any WSGI app
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import Token
from typing import Any

from rastir._instrument import record_exception
from rastir.context import _current_baggage, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.middleware._http import (
    DEFAULT_EXCLUDED,
    KNOWN_METHODS,
    HeaderCapture,
    call_hook,
    header_names,
    remote_parent,
    server_error,
    split_host,
    stats,
    traceparent_ids,
)
from rastir.spans import Span, SpanContext, remote_child

__all__ = ["RastirWSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
RequestHook = Callable[[Span, Environ], None]
ResponseHook = Callable[[Span, str, list[tuple[str, str]]], None]
_Baggage = tuple[tuple[str, str], ...]

# Attributes left out when the environ has no value for them.
_OPTIONAL = ("server.address", "server.port", "client.address", "user_agent.original")
_perf_ns = time.perf_counter_ns
_CLOSED: list[bytes] = []  # a closed response's body (its own object: () is shared)
_on_end = PIPELINE.on_end


def _environ_headers(environ: Environ) -> Iterator[tuple[str, str]]:
    """The request headers back from a WSGI environ (PEP 3333 ``HTTP_*`` keys)."""
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-"), value
    if "CONTENT_TYPE" in environ:
        yield "content-type", environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ:
        yield "content-length", environ["CONTENT_LENGTH"]


def _route(environ: Environ) -> str | None:
    """The route template, once the application has routed the request.

    ``environ["rastir.route"]`` wins when an application sets it (Django:
    ``request.resolver_match.route``). Flask's request object, which werkzeug keeps in
    ``environ["werkzeug.request"]``, knows its ``url_rule``.
    """
    try:
        rule = environ.get("rastir.route")
        if isinstance(rule, str):
            return rule
        request = environ.get("werkzeug.request")
        if request is None:
            return None
        rule = getattr(getattr(request, "url_rule", None), "rule", None)
    except Exception:
        return None
    return rule if isinstance(rule, str) else None


class _Request:
    """One traced request: its span, the ``start_response`` the app sees, and how it
    ends. Shared by the body wrappers.

    Per-request state lives here rather than in a closure: one small object costs
    less than a function and the cells it would close over.
    """

    __slots__ = (
        "_body",
        "_start_response",
        "baggage",
        "environ",
        "middleware",
        "name",
        "route",
        "span",
        "status",
    )
    # Set only when the request is returned as the response (a complete body).
    _body: list[bytes] | tuple[bytes, ...]

    def __init__(
        self,
        span: Span,
        environ: Environ,
        baggage: _Baggage,
        start_response: StartResponse,
        middleware: RastirWSGIMiddleware,
    ) -> None:
        self.span = span
        # The name the span started with: the route is appended only while the span
        # still has it (a name a hook set is the user's).
        self.name = span.name
        self.environ = environ
        self.baggage = baggage
        self._start_response = start_response
        self.middleware = middleware
        self.status = 0
        # The route template, "" until start_response has looked (None: no route).
        self.route: str | None = ""

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        """The ``start_response`` the application calls: records status and route."""
        try:
            code = status[:3]
            self.status = int(code) if code.isascii() and code.isdigit() else 0
            # Read the route now: Flask forgets its request (and url_rule) when its
            # request context ends, which is before the server closes the body.
            self.route = _route(self.environ)
        except Exception:
            pass  # a status line this code cannot read is the server's to refuse
        middleware = self.middleware
        if middleware._response_headers is not None:
            middleware._response_headers.capture(headers, self.span.attributes)
        if middleware.response_hook is not None:
            call_hook(middleware.response_hook, self.span, status, headers)
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    # A response that is already complete (a list or tuple of bytes) is answered with
    # the request itself, one object fewer per request. Iterating it runs no
    # application code, so the span need not be made current; the server's
    # ``close()`` ends it. ``__len__`` is kept because PEP 3333 lets a server compute
    # Content-Length from a one-item body.
    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)

    def close(self) -> None:
        if self._body is not _CLOSED:
            self._body = _CLOSED
            self.end()

    def end(self) -> None:
        span = self.span
        attributes = span._attrs  # made with a dict; no property call per request
        if attributes is None:
            attributes = span.attributes
        route = self.route
        if route == "":  # the app never called start_response: look now
            route = _route(self.environ)
        if route:
            attributes["http.route"] = route
            # HTTP semconv span name: "{method} {http.route}".
            name = span.name
            if name is self.name:
                span.name = f"{name} {route}"
        status = self.status
        if status:
            attributes["http.response.status_code"] = status
            if status >= 500:
                server_error(span, status)
        span._t1 = _perf_ns()
        _on_end(span)


class _TracedBody:
    """A lazy response iterable: the span is current while each chunk is produced,
    and ends when the server closes the iterable."""

    __slots__ = ("_body", "_request")

    def __init__(self, body: Iterable[bytes], request: _Request) -> None:
        self._body = body
        self._request: _Request | None = request

    def __iter__(self) -> Iterator[bytes]:
        request = self._request
        if request is None:
            return iter(self._body)  # closed: what is left is not ours to trace
        return self._chunks(request)

    def _chunks(self, request: _Request) -> Iterator[bytes]:
        # A generator rather than __next__: resuming it costs less than a method call
        # per chunk, and the end of the body is a plain return, not a StopIteration.
        span = request.span
        baggage = request.baggage
        bridge = PIPELINE.bridge
        token: Token[Span | SpanContext | None] | None = _current_span.set(span)
        btoken = _current_baggage.set(baggage) if baggage else None
        # With the OpenTelemetry bridge on, OTel spans the body starts are children too.
        otel = None if bridge is None else bridge.attach(span)
        sent = False
        try:
            for chunk in self._body:
                # Current while the app produces a chunk, never across the yield
                # (DESIGN §4): the server's code between chunks is not the app's.
                if token is not None:
                    _current_span.reset(token)
                    token = None
                if btoken is not None:
                    _current_baggage.reset(btoken)
                    btoken = None
                if otel is not None and bridge is not None:
                    bridge.detach(otel)
                    otel = None
                yield chunk
                sent = True
                token = _current_span.set(span)
                if baggage:
                    btoken = _current_baggage.set(baggage)
                if bridge is not None:
                    otel = bridge.attach(span)
        except GeneratorExit:
            raise
        except BaseException as exc:
            if token is not None:  # raised by the app's body, not thrown in at a yield
                if not sent and isinstance(exc, Exception):
                    # Nothing was written yet, so the server answers 500 (PEP 3333).
                    request.status = 500
                record_exception(span, exc)
                if span.error is not None:
                    span.attributes["error.type"] = span.error["exception_type"]
            raise
        finally:
            if otel is not None and bridge is not None:
                bridge.detach(otel)
            if token is not None:
                _current_span.reset(token)
            if btoken is not None:
                _current_baggage.reset(btoken)

    def close(self) -> None:
        request = self._request
        if request is None:
            return
        self._request = None
        close = getattr(self._body, "close", None)
        if close is None:
            request.end()
            return
        # A generator's close() runs its finally blocks: user code, in the span.
        span = request.span
        token = _current_span.set(span)
        bridge = PIPELINE.bridge
        otel = None if bridge is None else bridge.attach(span)
        try:
            close()
        except BaseException as exc:
            record_exception(span, exc)
            if span.error is not None:
                span.attributes["error.type"] = span.error["exception_type"]
            raise
        finally:
            if otel is not None and bridge is not None:
                bridge.detach(otel)
            _current_span.reset(token)
            request.end()


class RastirWSGIMiddleware:
    """Trace each WSGI request as an ``http.server`` span, ended when the body closes.

    Args:
        app: The WSGI application to wrap.
        excluded_paths: Exact paths (``PATH_INFO``) served without a span (default
            ``/health`` and ``/metrics``).
        request_hook: ``hook(span, environ)``, called when the span starts. Failsafe:
            an exception is counted in ``stats.hook_errors`` and swallowed.
        response_hook: ``hook(span, status_line, headers)``, called from
            ``start_response``. Failsafe.
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
        app: WSGIApp,
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
        self._request_headers = request_headers if request_headers else None
        self._response_headers = response_headers if response_headers else None

    def _begin(self, environ: Environ) -> tuple[Span, _Baggage] | None:
        """The request's span, not yet current, and the baggage it came with.

        None for an excluded path, or when the environ cannot be read: telemetry never
        breaks the host, so an environ this code does not understand is served untraced.
        """
        try:
            path = environ.get("PATH_INFO") or "/"
            if path in self.excluded_paths:
                return None
            method = environ["REQUEST_METHOD"]
            protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
            address: str | None
            port: int | None
            host = environ.get("HTTP_HOST")
            if host:
                address, port = split_host(host)
            else:
                address = environ.get("SERVER_NAME")
                raw_port = environ.get("SERVER_PORT", "")
                ok = raw_port.isascii() and raw_port.isdigit() and len(raw_port) <= 5
                port = int(raw_port) if ok else None
            client = environ.get("REMOTE_ADDR")
            user_agent = environ.get("HTTP_USER_AGENT")
            # One dict display: cheaper than growing the dict key by key.
            attrs: dict[str, Any] = {
                "http.request.method": method,
                "url.path": environ.get("SCRIPT_NAME", "") + path,
                "url.scheme": environ.get("wsgi.url_scheme", "http"),
                "network.protocol.version": protocol[5:]
                if protocol.startswith("HTTP/")
                else protocol,
                "server.address": address,
                "server.port": port,
                "client.address": client,
                "user_agent.original": user_agent,
            }
            if method not in KNOWN_METHODS:
                attrs["http.request.method"] = "_OTHER"
                attrs["http.request.method_original"] = method
                method = "HTTP"
            if not (address and port and client and user_agent):
                for key in _OPTIONAL:
                    if not attrs[key]:
                        del attrs[key]
            if self._request_headers is not None:
                self._request_headers.capture(_environ_headers(environ), attrs)
            # WSGI servers join repeated headers with "," (PEP 3333 leaves it to CGI,
            # RFC 3875 §4.1.18): two traceparents then fail to parse, as they should.
            traceparent = environ.get("HTTP_TRACEPARENT")
            parent = None
            if traceparent is not None:
                tracestate = environ.get("HTTP_TRACESTATE")
                baggage = environ.get("HTTP_BAGGAGE")
                if tracestate is None and baggage is None:
                    # remote_parent() inlined for the common case. The span
                    # shares its inherited context (remote_child): no SpanContext.
                    ids = traceparent_ids(traceparent)
                    if ids is not None:
                        return (
                            remote_child(method, "http.server", ids[0], ids[1], ids[2], attrs),
                            (),
                        )
                    stats.count_invalid()
                else:
                    parent = remote_parent(traceparent, tracestate, baggage)
        except Exception:
            return None
        # The rest is start_span() inlined, as in the ASGI middleware.
        if parent is None:
            current = _current_span.get()
            bridge = PIPELINE.bridge
            span = Span(
                method, "http.server", current if bridge is None else bridge.parent(current), attrs
            )
            return span, ()
        return Span(method, "http.server", parent, attrs), parent.baggage

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        opened = self._begin(environ) if PIPELINE.enabled else None
        if opened is None:
            return self.app(environ, start_response)
        span, baggage = opened
        request = _Request(span, environ, baggage, start_response, self)
        token = _current_span.set(span)
        bridge = PIPELINE.bridge
        otel = None if bridge is None else bridge.attach(span)
        baggage_token = _current_baggage.set(baggage) if baggage else None
        if self.request_hook is not None:
            call_hook(self.request_hook, span, environ)
        try:
            body = self.app(environ, request.start_response)
        except BaseException as exc:
            if isinstance(exc, Exception):
                # Nothing is written before the app returns, so the server answers
                # 500 whatever status the app had started.
                request.status = 500
            record_exception(span, exc)
            if span.error is not None:
                span.attributes["error.type"] = span.error["exception_type"]
            request.end()
            raise
        finally:
            if otel is not None and bridge is not None:
                bridge.detach(otel)
            _current_span.reset(token)
            if baggage_token is not None:
                _current_baggage.reset(baggage_token)
        if type(body) is list or type(body) is tuple:
            request._body = body
            return request
        return _TracedBody(body, request)
