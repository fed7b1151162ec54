"""Outbound propagation for ``httpx`` and ``httpx2`` clients, through their transports.

    client = httpx.AsyncClient()
    instrument_httpx(client)          # this client only; nothing global changes

    client = httpx.Client(transport=RastirTransport(httpx.HTTPTransport()))

Each request gets ``traceparent`` (and ``tracestate``/``baggage``) from the current
context. With ``span=True`` (the default) it is also timed as an ``http.client`` span,
which the server's span then has as its parent. The span ends when the response
headers arrive: a streamed body is not waited for, so the span of a long SSE stream
does not stay open for the stream's life.

Neither httpx nor httpx2 is imported: transports are duck-typed (``handle_request``
and ``handle_async_request``), so the same code serves both, and mcp 2.x's httpx2
client too.
"""

from __future__ import annotations

from typing import Any

from rastir._instrument import detach_span, end_span, record_exception, start_span
from rastir.context import _current_span
from rastir.errors import classify_status
from rastir.export._pipeline import PIPELINE
from rastir.middleware._http import KNOWN_METHODS
from rastir.propagation import TRACEPARENT, TRACESTATE, extract, inject
from rastir.spans import Span, SpanContext

__all__ = ["RastirAsyncTransport", "RastirTransport", "instrument_httpx"]

_MARK = "_rastir_instrumented"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDACTED_USERINFO = "REDACTED:REDACTED@"
# The request extension that counts this request's sends (see _count_send).
_SENDS = "rastir.sends"


def _attributes(request: Any) -> tuple[str, dict[str, Any]] | None:
    """The span name and attributes for a request; None if the request is unreadable."""
    try:
        url = request.url
        method = request.method
        attrs: dict[str, Any] = {"http.request.method": method}
        if method not in KNOWN_METHODS:
            attrs["http.request.method"] = "_OTHER"
            attrs["http.request.method_original"] = method
            method = "HTTP"
        scheme = url.scheme
        host = url.host
        port = url.port or _DEFAULT_PORTS.get(scheme)
        attrs["server.address"] = host
        if port is not None:
            attrs["server.port"] = port
        attrs["url.scheme"] = scheme
        # HTTP semconv asks for url.full with sensitive query values redacted; the
        # query often carries keys and tokens, so it is left out whole. Credentials in
        # the URL (httpx keeps them there, and sends them as basic auth) are replaced
        # as the URL conventions say.
        netloc = f"[{host}]" if ":" in host else host
        authority = f"{netloc}:{port}" if port is not None else netloc
        if getattr(url, "userinfo", None):
            authority = _REDACTED_USERINFO + authority
        # The path as sent (percent-encoded), so that url.full is a valid URL.
        raw_path = getattr(url, "raw_path", None)
        if isinstance(raw_path, bytes):
            path = raw_path.partition(b"?")[0].decode("ascii", "replace")
        else:
            path = url.path
        attrs["url.full"] = f"{scheme}://{authority}{path}"
    except Exception:
        return None
    _count_send(request, attrs)
    return method, attrs


def _count_send(request: Any, attrs: dict[str, Any]) -> None:
    """``http.request.resend_count``: how many times this request was sent before.

    httpx resends a request above the transport: the same ``Request`` again for an
    auth flow's second round (digest, a token refresh), a new one carrying a copy of
    its ``extensions`` for each redirect. So the sends are counted in the extensions:
    a request that arrives with a count is a resend, for whatever reason, as the HTTP
    conventions count them. httpcore ignores extension keys it does not know.
    """
    try:
        extensions = request.extensions
        sent = extensions.get(_SENDS)
        if type(sent) is int and sent > 0:
            attrs["http.request.resend_count"] = sent
            extensions[_SENDS] = sent + 1
        else:
            extensions[_SENDS] = 1
    except Exception:
        pass  # a request without a writable extensions dict: counted as a first send


def _open(request: Any) -> tuple[Span, Any, Any] | None:
    """Start the ``http.client`` span (current while the transport runs) and inject it.

    With no span current, a valid ``traceparent`` the caller put on the request
    (forwarding a context by hand) is the span's parent, so that trace goes on rather
    than being replaced by a new one. With a span current, the current span is the
    parent, whatever the request carries.

    None, and the request goes out untraced, when the request cannot be read or its
    headers cannot be written: telemetry never breaks the host.
    """
    described = _attributes(request)
    if described is None:
        return None
    parent = None
    if _current_span.get() is None:
        try:
            headers = request.headers
            if TRACEPARENT in headers:
                parent = extract(headers)
        except Exception:
            parent = None
    span, token, otel = start_span(described[0], "http.client", described[1], parent)
    try:
        _write(request.headers, span)
    except Exception:
        detach_span(token, otel)
        return None
    return span, token, otel


def _write(headers: Any, context: Span | SpanContext) -> None:
    """``inject``, and a ``tracestate`` already on the request removed when the context
    has none: it belonged to the ``traceparent`` just replaced (W3C Trace Context
    §3.3), and the two must travel together."""
    inject(headers, context)
    if not context.tracestate and TRACESTATE in headers:
        del headers[TRACESTATE]


def _inject_current(request: Any) -> None:
    try:
        current = _current_span.get()
        if current is not None:
            _write(request.headers, current)
    except Exception:
        pass  # read-only headers: the request goes out without them


def _close(span: Span, token: Any, otel: Any, status: int) -> None:
    if status:
        span.attributes["http.response.status_code"] = status
        if status >= 400:
            # HTTP semconv: on a client span, 4xx and 5xx answers are errors.
            span.attributes["error.type"] = str(status)
            if span.status == "ok":
                span.set_error(classify_status(status), str(status), f"HTTP {status}")
    end_span(span, token, otel)


# httpcore's ``http_version`` extension → HTTP semconv ``network.protocol.version``.
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0", b"HTTP/2": "2", b"HTTP/3": "3"}


def _protocol(span: Span, response: Any) -> None:
    try:
        version = _VERSIONS.get(response.extensions.get("http_version"))
    except Exception:
        return  # a transport whose response has no extensions
    if version is not None:
        span.attributes["network.protocol.version"] = version


def _failed(span: Span, exc: BaseException) -> None:
    record_exception(span, exc)
    if span.error is not None:
        span.attributes["error.type"] = span.error["exception_type"]


class RastirTransport:
    """Wraps a sync ``httpx``/``httpx2`` transport: propagation, and an ``http.client``
    span per request unless ``span=False``.

    Args:
        transport: The transport to wrap, for example ``httpx.HTTPTransport()``.
        span: Record each request as an ``http.client`` span (the server's span is
            then its child). With False, only the headers are added, from whatever
            span is current.
    """

    def __init__(self, transport: Any, *, span: bool = True) -> None:
        self.transport = transport
        self.span = span

    def handle_request(self, request: Any) -> Any:
        if not PIPELINE.enabled:
            return self.transport.handle_request(request)
        if not self.span:
            _inject_current(request)
            return self.transport.handle_request(request)
        opened = _open(request)
        if opened is None:
            return self.transport.handle_request(request)
        span, token, otel = opened
        status = 0
        try:
            response = self.transport.handle_request(request)
            status = response.status_code
            _protocol(span, response)
            return response
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            _close(span, token, otel, status)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RastirTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.transport.__exit__(*args)

    def __getattr__(self, name: str) -> Any:
        # Anything else (pool settings, private helpers) is the wrapped transport's.
        return getattr(self.transport, name)


class RastirAsyncTransport:
    """Wraps an async ``httpx``/``httpx2`` transport; see :class:`RastirTransport`."""

    def __init__(self, transport: Any, *, span: bool = True) -> None:
        self.transport = transport
        self.span = span

    async def handle_async_request(self, request: Any) -> Any:
        if not PIPELINE.enabled:
            return await self.transport.handle_async_request(request)
        if not self.span:
            _inject_current(request)
            return await self.transport.handle_async_request(request)
        opened = _open(request)
        if opened is None:
            return await self.transport.handle_async_request(request)
        span, token, otel = opened
        status = 0
        try:
            response = await self.transport.handle_async_request(request)
            status = response.status_code
            _protocol(span, response)
            return response
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            _close(span, token, otel, status)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> RastirAsyncTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.transport.__aexit__(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _wrap(transport: Any, span: bool) -> Any:
    if isinstance(transport, (RastirTransport, RastirAsyncTransport)):
        return transport  # already ours, given as transport=... by the user
    if hasattr(transport, "handle_async_request"):
        return RastirAsyncTransport(transport, span=span)
    return RastirTransport(transport, span=span)


def instrument_httpx(client: Any, *, span: bool = True) -> Any:
    """Propagate the trace on every request of one ``httpx``/``httpx2`` client.

    Wraps the client's transport and its mounted transports (proxies included).
    Nothing global is patched, and other clients are left alone. Calling it twice on
    the same client does nothing more.

    Args:
        client: An ``httpx.Client``/``AsyncClient`` or ``httpx2.Client``/``AsyncClient``.
        span: Also record each request as an ``http.client`` span.

    Returns:
        The same client.

    Raises:
        TypeError: ``client`` does not look like an httpx client.
    """
    if getattr(client, _MARK, False):
        return client
    transport = getattr(client, "_transport", None)
    if transport is None or not (
        hasattr(transport, "handle_request") or hasattr(transport, "handle_async_request")
    ):
        raise TypeError(f"instrument_httpx needs an httpx or httpx2 client, got {client!r}")
    client._transport = _wrap(transport, span)
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None:
                mounts[pattern] = _wrap(mounted, span)
    setattr(client, _MARK, True)
    return client
