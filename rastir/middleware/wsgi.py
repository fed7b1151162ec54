"""``RastirWSGIMiddleware``: an ``http.server`` span for each WSGI request.

The span covers the whole response: it ends when the server closes the response
iterable (PEP 3333 requires servers to call ``close()``), so a streamed body is
timed to its last chunk. The span is current while the application runs and while
each chunk is produced, so spans started by a lazy body have the right parent.

    app.wsgi_app = RastirWSGIMiddleware(app.wsgi_app)   # Flask
    application = RastirWSGIMiddleware(application)      # Django, any WSGI app
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rastir._instrument import detach_span, finish_span, record_exception, start_span
from rastir.context import _current_baggage, _current_span
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

__all__ = ["RastirWSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _environ_headers(environ: Environ) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").lower(), value
    if "CONTENT_TYPE" in environ:
        yield "content-type", environ["CONTENT_TYPE"]


def _route(environ: Environ) -> str | None:
    """The route template. Flask's request (werkzeug keeps it in the environ) knows
    its ``url_rule``; any other framework can set ``environ["rastir.route"]``."""
    rule = environ.get("rastir.route")
    if isinstance(rule, str):
        return rule
    request = environ.get("werkzeug.request")
    url_rule = getattr(request, "url_rule", None) if request is not None else None
    rule = getattr(url_rule, "rule", None)
    return rule if isinstance(rule, str) else None


class _TracedBody:
    """The application's response iterable, ending the span when the server closes it."""

    __slots__ = ("_baggage", "_finish", "_inner", "_iter", "_span")

    def __init__(
        self,
        inner: Iterable[bytes],
        span: Span,
        baggage: tuple[tuple[str, str], ...],
        finish: Callable[[BaseException | None], None],
    ) -> None:
        self._inner = inner
        self._iter: Iterator[bytes] | None = None
        self._span = span
        self._baggage = baggage
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iter is None:
            self._iter = iter(self._inner)
        token = _current_span.set(self._span)
        btoken = _current_baggage.set(self._baggage) if self._baggage else None
        try:
            return next(self._iter)
        except StopIteration:
            raise
        except BaseException as exc:
            record_exception(self._span, exc)
            raise
        finally:
            _current_span.reset(token)
            if btoken is not None:
                _current_baggage.reset(btoken)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(None)


class RastirWSGIMiddleware:
    """Trace each WSGI request. Options as for :class:`~rastir.middleware.RastirMiddleware`."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        excluded_paths: Iterable[str] = DEFAULT_EXCLUDED,
        request_hook: Callable[[Span, Environ], None] | None = None,
        response_hook: Callable[[Span, str, list[tuple[str, str]]], None] | None = None,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if not PIPELINE.enabled or path in self.excluded:
            return self.app(environ, start_response)
        parent = remote_parent(
            environ.get("HTTP_TRACEPARENT"),
            environ.get("HTTP_TRACESTATE"),
            environ.get("HTTP_BAGGAGE"),
        )
        attrs: dict[str, Any] = {
            "url.path": environ.get("SCRIPT_NAME", "") + path,
            "url.scheme": environ.get("wsgi.url_scheme", "http"),
        }
        method = method_attr(environ.get("REQUEST_METHOD", "GET"), attrs)
        protocol = environ.get("SERVER_PROTOCOL", "")
        if protocol.startswith("HTTP/"):
            attrs["network.protocol.version"] = protocol[5:]
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if host:
            h, _, port = host.rpartition(":") if host[-1:].isdigit() else (host, "", "")
            attrs["server.address"] = h or host
            if port:
                attrs["server.port"] = int(port)
        if environ.get("REMOTE_ADDR"):
            attrs["client.address"] = environ["REMOTE_ADDR"]
        if environ.get("HTTP_USER_AGENT"):
            attrs["user_agent.original"] = environ["HTTP_USER_AGENT"]
        if self.request_headers:
            self.request_headers.capture(_environ_headers(environ), attrs)
        span, token, otel = start_span(method, "http.server", attrs, parent)
        baggage = parent.baggage if parent is not None else ()
        call_hook(self.request_hook, span, environ)
        status: list[int] = []
        ended = False
        response_hook = self.response_hook
        response_headers = self.response_headers

        def finish(exc: BaseException | None) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            rule = _route(environ)
            if isinstance(rule, str):
                span.attributes["http.route"] = rule
                span.name = f"{method} {rule}"
            end_status(span, status[-1] if status else (500 if exc is not None else None))
            finish_span(span)

        def traced_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            try:
                status.append(int(status_line.split(" ", 1)[0]))
            except ValueError:
                pass
            if response_headers:
                response_headers.capture(headers, span.attributes)
            call_hook(response_hook, span, status_line, headers)
            if exc_info is None:
                return start_response(status_line, headers)
            return start_response(status_line, headers, exc_info)

        btoken = _current_baggage.set(baggage) if baggage else None
        try:
            body = self.app(environ, traced_start_response)
        except BaseException as exc:
            record_exception(span, exc)
            finish(exc)
            raise
        finally:
            detach_span(token, otel)
            if btoken is not None:
                _current_baggage.reset(btoken)
        return _TracedBody(body, span, baggage, finish)
