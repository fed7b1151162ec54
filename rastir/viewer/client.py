"""A small client for the collector's query API, on the standard library only.

``GET /v1/traces`` and ``GET /v1/traces/{id}`` answer JSON; this module turns every
way of failing (nothing listening, a token missing or wrong, an unknown trace, a
refused parameter) into a :class:`QueryAPIError` whose message says what to do.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from rastir.errors import RastirError
from rastir.viewer.render import _clean

__all__ = [
    "DEFAULT_URL",
    "CollectorUnreachable",
    "QueryAPIError",
    "QueryClient",
    "TraceNotFound",
    "Unauthorized",
    "check_trace_id",
]

DEFAULT_URL: Final = "http://127.0.0.1:8080"
_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
# Bounds a hostile or broken server cannot push us past.
_MAX_BODY: Final = 64 << 20


def _printable(text: str, most: int = 300) -> str:
    """Text from the server, safe to print: control characters escaped, bounded."""
    text = _clean(text[: most + 1])
    return text if len(text) <= most else text[: most - 1] + "…"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The query API never redirects; following one would send the bearer token to
    wherever the ``Location`` points (urllib keeps the Authorization header), so a
    redirect is answered as the error it is."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Watchdog:
    """Ends a request whose whole answer has not come within its time.

    A socket timeout bounds each read, not the answer: a server that sends a byte
    now and then (a stuck proxy, a hostile host) would hold the viewer forever. At
    the deadline the request's socket is shut down, which ends any read waiting on it.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies and all) whose connections ``watchdog`` can end."""

    class HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class HTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]

    return urllib.request.build_opener(_NoRedirects, HTTPHandler, HTTPSHandler)


class QueryAPIError(RastirError):
    """The query API could not answer; the message says why and what to try.

    Attributes:
        status: the HTTP status, or None when no answer came.
        url: the URL that was asked.
    """

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class CollectorUnreachable(QueryAPIError):
    """Nothing answered at the collector's address (refused, timed out, bad host)."""


class Unauthorized(QueryAPIError):
    """The collector wants a query token (401), or refused the one given (403)."""


class TraceNotFound(QueryAPIError):
    """The collector does not know this trace id (404)."""


def check_trace_id(raw: str) -> str:
    """A trace id as the collector stores it: 32 lowercase hex digits.

    Raises:
        ValueError: anything else; the message shows what was given.
    """
    tid = raw.strip().lower()
    if _TRACE_ID.fullmatch(tid) is None or tid == "0" * 32:
        raise ValueError(f"{raw[:64]!r} is not a trace id: expected 32 hex digits")
    return tid


class QueryClient:
    """Reads traces from a collector.

    Args:
        url: the collector's base URL, e.g. ``http://127.0.0.1:8080``.
        token: the bearer token the collector's query API requires, if any.
        timeout: seconds for one request's whole answer.

    Raises:
        ValueError: the URL is not an http(s) URL.
    """

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{url!r} is not a collector URL (example: {DEFAULT_URL})")
        self.url = url.strip().rstrip("/")
        self.token = token or None
        self.timeout = timeout

    def list_traces(
        self,
        *,
        service: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        status: str | None = None,
        error_type: str | None = None,
        min_duration_ms: float | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/traces``: ``{"traces": [summary, ...], "next_cursor": str | None}``.

        Raises:
            QueryAPIError: the collector could not answer; see the subclasses.
        """
        params: dict[str, str] = {}
        for key, value in (
            ("service", service),
            ("agent", agent),
            ("model", model),
            ("status", status),
            ("error_type", error_type),
            ("start", start),
            ("end", end),
            ("cursor", cursor),
        ):
            if value is not None:
                params[key] = value
        if min_duration_ms is not None:
            # Every digit down to the nanosecond: ``:g`` kept six (20.5 min became
            # 1.23e+06 ms, and traces between the two were left out).
            text = f"{min_duration_ms:.6f}".rstrip("0").rstrip(".")
            params["min_duration_ms"] = text or "0"
        if limit is not None:
            params["limit"] = str(limit)
        return self._get("/v1/traces", params)

    def get_trace(self, trace_id: str) -> dict[str, Any]:
        """``GET /v1/traces/{id}``: ``{"trace_id", "summary", "spans": [tree, ...]}``.

        Raises:
            ValueError: ``trace_id`` is not 32 hex digits.
            TraceNotFound: the collector does not know it.
            QueryAPIError: the collector could not answer.
        """
        tid = check_trace_id(trace_id)
        return self._get(f"/v1/traces/{tid}", {})

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"accept": "application/json", "user-agent": "rastir-viewer"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers, method="GET")
        late = CollectorUnreachable(
            f"the collector at {self.url} did not answer in full within {self.timeout:g}s "
            "(--timeout)",
            url=url,
        )
        with _Watchdog(self.timeout) as watchdog:
            try:
                with _opener(watchdog).open(request, timeout=self.timeout) as response:
                    body = response.read(_MAX_BODY + 1)
            except urllib.error.HTTPError as e:
                error = self._http_error(e, path, url)  # reads the error body: timed too
                if watchdog.fired:
                    raise late from None
                raise error from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                if watchdog.fired:
                    raise late from None
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError):
                    why = f"no answer within {self.timeout:g}s"
                else:
                    why = _printable(str(reason)) or type(reason).__name__
                raise CollectorUnreachable(
                    f"cannot reach the collector at {self.url}: {why}. "
                    "Is `rastir collector` running there? Give its address with --url "
                    "or RASTIR_QUERY_URL.",
                    url=url,
                ) from None
            if watchdog.fired:  # the answer was cut short at the deadline
                raise late
        if len(body) > _MAX_BODY:
            raise QueryAPIError(f"the answer from {url} is larger than 64 MiB", url=url)
        try:
            data = json.loads(body)
        except ValueError:
            raise QueryAPIError(
                f"{url} did not answer JSON: is {self.url} a rastir collector?", url=url
            ) from None
        except RecursionError:  # the collector nests at most 100 spans deep
            raise QueryAPIError(
                f"the answer from {url} nests deeper than this Python can read", url=url
            ) from None
        if not isinstance(data, dict):
            raise QueryAPIError(f"{url} answered an unexpected shape of JSON", url=url)
        return data

    def _http_error(self, e: urllib.error.HTTPError, path: str, url: str) -> QueryAPIError:
        try:
            detail = json.loads(e.read(65536) or b"{}")
            message = str(detail.get("message", "")) if isinstance(detail, dict) else ""
        except (ValueError, OSError, RecursionError):
            message = ""
        finally:
            e.close()
        message = _printable(message)
        status = e.code
        if status == 401:
            return Unauthorized(
                f"the collector at {self.url} wants a query token: "
                "pass --token or set RASTIR_QUERY_TOKEN",
                status=status,
                url=url,
            )
        if status == 403:
            return Unauthorized(
                f"the collector at {self.url} refused the query token given",
                status=status,
                url=url,
            )
        if status == 404 and path.startswith("/v1/traces/"):
            tid = path.rsplit("/", 1)[-1]
            return TraceNotFound(
                f"trace {tid} is unknown to the collector at {self.url}"
                " (spans may still be on their way, or past the retention)",
                status=status,
                url=url,
            )
        if status == 404:
            return QueryAPIError(
                f"{url} does not exist: is {self.url} a rastir collector?", status=status, url=url
            )
        if status == 400:
            return QueryAPIError(f"the collector refused the query: {message}", status=400, url=url)
        if 300 <= status < 400:
            where = _printable(str(e.headers.get("location") or "?"), 200) if e.headers else "?"
            return QueryAPIError(
                f"the collector at {self.url} answered {status}, a redirect to {where}: "
                "give the collector's own address with --url (redirects are not followed, "
                "so the query token is never sent elsewhere)",
                status=status,
                url=url,
            )
        return QueryAPIError(
            f"the collector at {self.url} answered {status}"
            + (f": {message}" if message else f" ({_printable(str(e.reason), 80)})"),
            status=status,
            url=url,
        )
