"""Outbound propagation for ``httpx`` and ``httpx2`` clients, through their transports.

    client = httpx.AsyncClient()
    instrument_httpx(client)          # this client only; nothing global changes

    client = httpx.Client(transport=RastirTransport(httpx.HTTPTransport()))

Each request gets ``traceparent`` (and ``tracestate``/``baggage``) from the current
context. With ``span=True`` (the default) it is also timed as an ``http.client`` span,
which the server's span then has as its parent. The span ends when the response
headers arrive; a streamed body is not waited for.

Neither httpx nor httpx2 is imported: transports are duck-typed (``handle_request``
and ``handle_async_request``), so the same code serves both, and mcp 2.x's httpx2
client too.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from rastir._instrument import end_span, record_exception, start_span
from rastir.errors import classify_status
from rastir.export._pipeline import PIPELINE
from rastir.middleware._http import method_attr
from rastir.propagation import inject
from rastir.spans import Span, SpanContext

__all__ = ["RastirAsyncTransport", "RastirTransport", "instrument_httpx"]

_MARK = "_rastir_instrumented"


_Opened = tuple[Span, Token[Span | SpanContext | None], Any]


def _start(request: Any, with_span: bool) -> _Opened | None:
    if not PIPELINE.enabled:
        return None
    if not with_span:
        inject(request.headers)
        return None
    url = request.url
    attrs: dict[str, Any] = {}
    method = method_attr(str(request.method), attrs)
    host = url.host
    if host:
        attrs["server.address"] = host
    port = url.port or (443 if url.scheme == "https" else 80)
    attrs["server.port"] = port
    # url.full without the query string, which often carries keys and tokens.
    attrs["url.full"] = f"{url.scheme}://{host}:{port}{url.path}"
    span, token, otel = start_span(method, "http.client", attrs)
    inject(request.headers, span)
    return span, token, otel


def _end(opened: _Opened, status: int | None) -> None:
    span = opened[0]
    if status is not None:
        span.attributes["http.response.status_code"] = status
        if status >= 400 and span.status == "ok":
            # HTTP semconv: 4xx and 5xx answers are errors on a client span.
            span.set_error(classify_status(status), str(status), f"HTTP {status}")
    end_span(*opened)


class RastirTransport:
    """Wraps a sync transport: propagation, and an ``http.client`` span per request."""

    def __init__(self, transport: Any, *, span: bool = True) -> None:
        self.transport = transport
        self.span = span

    def handle_request(self, request: Any) -> Any:
        opened = _start(request, self.span)
        if opened is None:
            return self.transport.handle_request(request)
        status = None
        try:
            response = self.transport.handle_request(request)
            status = response.status_code
            return response
        except BaseException as exc:
            record_exception(opened[0], exc)
            raise
        finally:
            _end(opened, status)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RastirTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.transport.__exit__(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class RastirAsyncTransport:
    """Wraps an async transport: propagation, and an ``http.client`` span per request."""

    def __init__(self, transport: Any, *, span: bool = True) -> None:
        self.transport = transport
        self.span = span

    async def handle_async_request(self, request: Any) -> Any:
        opened = _start(request, self.span)
        if opened is None:
            return await self.transport.handle_async_request(request)
        status = None
        try:
            response = await self.transport.handle_async_request(request)
            status = response.status_code
            return response
        except BaseException as exc:
            record_exception(opened[0], exc)
            raise
        finally:
            _end(opened, status)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> RastirAsyncTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.transport.__aexit__(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def instrument_httpx(client: Any, *, span: bool = True) -> Any:
    """Propagate the trace on every request of one ``httpx``/``httpx2`` client.

    Wraps the client's transport and its mounted transports. Calling it twice on the
    same client does nothing more.

    Args:
        client: an ``httpx.Client``/``AsyncClient`` or ``httpx2.Client``/``AsyncClient``.
        span: also record each request as an ``http.client`` span.

    Returns:
        The same client.

    Raises:
        TypeError: ``client`` does not look like an httpx client.
    """
    if getattr(client, _MARK, False):
        return client
    transport = getattr(client, "_transport", None)
    if transport is None:
        raise TypeError(f"instrument_httpx needs an httpx or httpx2 client, got {client!r}")
    is_async = hasattr(transport, "handle_async_request")
    wrap = RastirAsyncTransport if is_async else RastirTransport
    client._transport = wrap(transport, span=span)
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None:
                mounts[pattern] = wrap(mounted, span=span)
    setattr(client, _MARK, True)
    return client
