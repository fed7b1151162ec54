"""A small client for the collector's query API, on the standard library only.

``GET /v1/traces`` and ``GET /v1/traces/{id}`` answer JSON; this module turns every
way of failing (nothing listening, a token missing or wrong, an unknown trace, a
refused parameter) into a :class:`QueryAPIError` whose message says what to do.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from rastir.errors import RastirError

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
        timeout: seconds for one request.

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
            params["min_duration_ms"] = f"{min_duration_ms:g}"
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
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(_MAX_BODY + 1)
        except urllib.error.HTTPError as e:
            raise self._http_error(e, path, url) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                why = f"no answer within {self.timeout:g}s"
            else:
                why = str(reason) or type(reason).__name__
            raise CollectorUnreachable(
                f"cannot reach the collector at {self.url}: {why}. "
                "Is `rastir collector` running there? Give its address with --url "
                "or RASTIR_QUERY_URL.",
                url=url,
            ) from None
        if len(body) > _MAX_BODY:
            raise QueryAPIError(f"the answer from {url} is larger than 64 MiB", url=url)
        try:
            data = json.loads(body)
        except ValueError:
            raise QueryAPIError(
                f"{url} did not answer JSON: is {self.url} a rastir collector?", url=url
            ) from None
        if not isinstance(data, dict):
            raise QueryAPIError(f"{url} answered an unexpected shape of JSON", url=url)
        return data

    def _http_error(self, e: urllib.error.HTTPError, path: str, url: str) -> QueryAPIError:
        try:
            detail = json.loads(e.read(65536) or b"{}")
            message = str(detail.get("message", "")) if isinstance(detail, dict) else ""
        except (ValueError, OSError):
            message = ""
        finally:
            e.close()
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
        return QueryAPIError(
            f"the collector at {self.url} answered {status}"
            + (f": {message}" if message else f" ({e.reason})"),
            status=status,
            url=url,
        )
