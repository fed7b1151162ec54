"""OTLP/HTTP export from the collector: every kept span, to Tempo, Jaeger or an OTel Collector.

The exporter is a span sink (``CollectorState.sinks``). Ingest calls it on the event
loop thread once the store has taken a batch, and all it does there is append the
batch to a bounded queue: no encoding, no I/O, no lock. One daemon thread drains
the queue, so the event loop never waits on the export target:

* batches of ``otlp_batch_size`` spans, or whatever is queued every
  ``otlp_flush_interval`` seconds; consecutive batches with equal resources share
  one ``ResourceSpans``, so each service keeps its own resource attributes;
* encoded as ``ExportTraceServiceRequest`` protobuf (:mod:`rastir.export.otlp`),
  uncompressed by default (as OTLP exporters are), gzip at level 1 with
  ``otlp_compression=gzip``;
* POSTed over one kept-alive ``http.client`` connection; one request (connect, send
  and the whole answer) ends after ``otlp_timeout`` seconds, however its bytes
  arrive: each read waits only for the time the request has left, so a target
  trickling its answer a byte at a time cannot hold the export thread (the request
  fails as a timeout and is retried like one);
* retried, per the OTLP/HTTP specification, after no answer and after 429, 502, 503
  and 504, with exponential backoff and full jitter, waiting at least what
  ``Retry-After`` asks (capped at 60 s), for at most ``otlp_retry_budget`` seconds
  per batch. Other answers are final. A 200 that reports ``partial_success`` counts
  its rejected spans as dropped.

Nothing is lost quietly. Each span that enters :meth:`OtlpExporter.__call__` ends
up in exactly one of: exported, dropped (by reason), still queued, or in flight.
Drop reasons: ``queue_full`` (the target is slower than ingest, or down, and the
queue is full), ``retries_exhausted``, ``rejected`` (a final error answer or a
partial success), ``encode_error`` and ``shutdown`` (not delivered by the drain at
exit, which gives each batch one attempt within the shutdown timeout).

While the target is down, ingest answers 202 as before; the queue fills to its bound
and the excess is dropped and counted; once the target answers again, the queue
drains and export resumes by itself. While it answers but more slowly than spans
arrive, :meth:`OtlpExporter.pressure` makes ingest answer 429 instead, so senders
retry later rather than lose spans.
"""

from __future__ import annotations

import http.client
import io
import logging
import math
import random
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from rastir._wire import WireSpan
from rastir.export.http import parse_retry_after

__all__ = ["DROP_REASONS", "Encoder", "OtlpExporter", "export_metrics"]

logger = logging.getLogger("rastir.collector.export")

#: ``(resource, spans)`` pairs to ``ExportTraceServiceRequest`` bytes.
Encoder = Callable[[Iterable[tuple[Mapping[str, Any], Sequence[WireSpan]]]], bytes]

DROP_REASONS: Final = ("queue_full", "retries_exhausted", "rejected", "encode_error", "shutdown")
# OTLP/HTTP specification, "Failures": these statuses are retryable, the rest final.
_RETRYABLE: Final = frozenset((429, 502, 503, 504))
_RETRY_AFTER_CAP: Final = 60.0
_Batch = list[tuple[Mapping[str, Any], list[WireSpan]]]


def _default_encoder() -> Encoder:
    from rastir.export.otlp import encode_request

    return encode_request


def _traces_url(endpoint: str) -> tuple[bool, str, int | None, str]:
    """``(https, host, port, path)``; a URL without a path gets ``/v1/traces``."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"otlp_endpoint {endpoint!r} must be an http:// or https:// URL")
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme == "https", parts.hostname, parts.port, path


class _DeadlineReader(io.RawIOBase):
    """A response's socket reads, each allowed only the time its request has left.

    ``http.client`` applies the socket timeout to each read alone: an answer sent a
    byte at a time, each within the timeout, could keep a request going for ever.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        # Unbuffered: the socket's own reader, which keeps it open while the
        # response is read (http.client closes its connection early on "close").
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its timeout")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(
        self,
        sock: socket.socket,
        deadline: float,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # nothing read from it yet
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


class _Deadline:
    """A connection whose answers are read by the request's deadline (``deadline``)."""

    deadline = math.inf

    def _respond(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None
    ) -> http.client.HTTPResponse:
        return _DeadlineResponse(sock, self.deadline, debuglevel, method)


class _HTTPConnection(_Deadline, http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.response_class = self._respond  # type: ignore[assignment]


class _HTTPSConnection(_Deadline, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.response_class = self._respond  # type: ignore[assignment]


class _Answer:
    __slots__ = ("body", "retry_after", "status")

    def __init__(self, status: int, retry_after: float | None = None, body: bytes = b"") -> None:
        self.status = status  # 0: no answer
        self.retry_after = retry_after
        self.body = body


class OtlpExporter:
    """A bounded queue of span batches and the thread that exports them.

    Args:
        endpoint: the OTLP/HTTP traces URL (``/v1/traces`` added when it has no path).
        headers: extra request headers (authentication, tenant).
        compression: ``gzip`` or ``none``.
        timeout: seconds for one request (connect, send, answer).
        batch_size: spans per request at most.
        queue_size: spans queued at most; more are dropped and counted.
        flush_interval: seconds a partial batch may wait.
        retry_budget: seconds one batch may be retried before it is dropped.
        failures: a counter cell incremented for each failed request (the
            ``rastir_collector_export_failures_total`` child); written only by the
            export thread.
        encoder: the OTLP encoder; :func:`rastir.export.otlp.encode_request` by default.
        backoff_base, backoff_cap: the exponential backoff, in seconds.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        compression: str = "none",
        timeout: float = 10.0,
        batch_size: int = 512,
        queue_size: int = 20_000,
        flush_interval: float = 1.0,
        retry_budget: float = 30.0,
        failures: Any = None,
        encoder: Encoder | None = None,
        backoff_base: float = 0.25,
        backoff_cap: float = 10.0,
        high_water: float = 0.9,
    ) -> None:
        if compression not in ("gzip", "none"):
            raise ValueError(f"compression must be gzip or none, not {compression!r}")
        if batch_size < 1 or queue_size < batch_size:
            raise ValueError("batch_size must be >= 1 and queue_size >= batch_size")
        self.endpoint = endpoint
        self._https, self._host, self._port, self._path = _traces_url(endpoint)
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": "rastir-collector",
        }
        self._headers.update(dict(headers))
        self._gzip = compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self.timeout = timeout
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.retry_budget = retry_budget
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._encoder = encoder
        self._failures = failures
        self._conn: _HTTPConnection | _HTTPSConnection | None = None

        self._queue: deque[tuple[Mapping[str, Any], list[WireSpan]]] = deque()
        # Spans in and out of the queue. Each is written by one thread only (the loop
        # thread adds, the export thread takes), so the depth needs no lock.
        self._in = 0
        self._out = 0
        self.inflight = 0
        self.exported = 0
        self.requests = 0
        self.failed_requests = 0
        # Written by the export thread, except queue_full (the loop thread's only).
        self._dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._refused_closed = 0  # the loop thread's shutdown drops
        self.last_error = ""
        # True while the last request succeeded: only a healthy target's slowness
        # pushes back on ingest (see pressure()).
        self.healthy = False
        # When the request being sent runs out of time: from then on the target no
        # longer counts as keeping up, even before the export thread has noticed
        # (pressure() reads it from the loop thread). inf while none is out.
        self._overdue_at = math.inf
        self._high_water = max(1, int(queue_size * high_water))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._closed = False
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Any, failures: Any = None) -> OtlpExporter:
        """An exporter configured by the collector's ``otlp_*`` settings."""
        return cls(
            settings.otlp_endpoint,
            headers=settings.otlp_headers,
            compression=settings.otlp_compression,
            timeout=settings.otlp_timeout,
            batch_size=settings.otlp_batch_size,
            queue_size=settings.otlp_queue_size,
            flush_interval=settings.otlp_flush_interval,
            retry_budget=settings.otlp_retry_budget,
            failures=failures,
            high_water=settings.queue_high_water,
        )

    # -- the loop thread ------------------------------------------------------------
    @property
    def dropped(self) -> dict[str, int]:
        """Spans dropped so far, by reason (a snapshot)."""
        out = dict(self._dropped)
        out["shutdown"] += self._refused_closed
        return out

    @property
    def depth(self) -> int:
        """Spans queued, not yet taken by the export thread."""
        return self._in - self._out

    def pressure(self) -> str | None:
        """``export_queue_full`` while a healthy target falls behind ingest, else None.

        A request that has taken longer than ``timeout`` ends the pushback: a target
        trickling its answer must not hold ingest back for as long as it trickles.

        The collector's saturation check reads it (a 429 before the body is read): a
        target that answers but slower than spans arrive makes senders back off and
        retry, rather than have the excess dropped here. A failing target never
        pushes back: ingest must not depend on it, so its spans are dropped, counted.
        """
        if (
            self.healthy
            and self._in - self._out >= self._high_water
            and time.monotonic() < self._overdue_at
        ):
            return "export_queue_full"
        return None

    def __call__(self, service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        """Queue one accepted batch for export. Never blocks; a full queue drops, counted."""
        n = len(spans)
        if not n:
            return
        if self._closed:
            self._refused_closed += n
            return
        depth = self._in - self._out
        room = self.queue_size - depth
        if n > room:
            if room <= 0:
                self._dropped["queue_full"] += n
                return
            self._dropped["queue_full"] += n - room
            spans = spans[:room]
            n = room
        if resource.get("service.name") != service:
            # OTLP needs service.name on the resource; the batch may have lacked it.
            resource = {**resource, "service.name": service}
        self._queue.append((resource, spans))
        self._in += n
        if depth + n >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the export thread (resolves the encoder first, so a missing one fails here).

        Raises:
            ImportError: no OTLP encoder is available.
        """
        if self._thread is not None:
            return
        if self._encoder is None:
            self._encoder = _default_encoder()
        self._thread = threading.Thread(target=self._run, name="rastir-otlp-export", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is exported or dropped. False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._in - self._out or self.inflight:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop taking spans, export what is queued within ``timeout``, stop the thread.

        Spans still queued when the time is up are counted as dropped (``shutdown``).
        Returns False when the thread did not finish in time (it is a daemon).
        """
        self._closed = True
        self._drain_until = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        thread = self._thread
        done = True
        if thread is not None:
            thread.join(timeout + self.timeout + 1.0)
            done = not thread.is_alive()
        else:
            self._drop_queued("shutdown")
        if done:
            # A batch queued while the thread was finishing: counted, not left behind.
            self._drop_queued("shutdown")
            self._close_connection()
        # The metrics die with the process: the losses of this run go to the log too.
        dropped = self.dropped
        stuck = 0 if done else self.depth + self.inflight
        if stuck or any(dropped.values()):
            logger.warning(
                "OTLP export stopped: %d spans exported, %d not delivered at shutdown%s; "
                "dropped since start: %s",
                self.exported,
                dropped["shutdown"] + stuck,
                f" ({stuck} still queued or in a request)" if stuck else "",
                ", ".join(f"{k}={v}" for k, v in dropped.items() if v) or "none",
            )
        return done

    # -- the export thread ----------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if not stopping and self._in - self._out < self.batch_size:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                stopping = self._stop.is_set()
            if stopping and time.monotonic() >= self._drain_until:
                self._drop_queued("shutdown")
                return
            batch, n = self._take()
            if n:
                try:
                    self._export(batch, n)
                except Exception:  # pragma: no cover - a bug must not kill the thread
                    logger.exception("OTLP export failed unexpectedly")
                    self._dropped["encode_error"] += n
                finally:
                    self.inflight = 0
                    with self._idle:
                        self._idle.notify_all()
            elif stopping:
                return

    def _drop_queued(self, reason: str) -> None:
        n = 0
        while self._queue:
            _, spans = self._queue.popleft()
            n += len(spans)
        self._out += n
        self._dropped[reason] += n
        with self._idle:
            self._idle.notify_all()

    def _take(self) -> tuple[_Batch, int]:
        """Up to ``batch_size`` spans off the queue, equal resources merged."""
        q = self._queue
        want = self.batch_size
        batch: _Batch = []
        n = 0
        while q and n < want:
            resource, spans = q.popleft()
            room = want - n
            if len(spans) > room:
                # Only this thread takes from the left, so the rest can go back there.
                q.appendleft((resource, spans[room:]))
                spans = spans[:room]
            if batch and (batch[-1][0] is resource or batch[-1][0] == resource):
                batch[-1][1].extend(spans)
            else:
                batch.append((resource, list(spans)))
            n += len(spans)
        self.inflight = n
        self._out += n
        return batch, n

    def _export(self, batch: _Batch, n: int) -> None:
        encoder = self._encoder
        assert encoder is not None
        try:
            body = encoder(batch)
        except Exception as e:
            logger.error("OTLP encoding failed, %d spans dropped: %s", n, e)
            self._dropped["encode_error"] += n
            return
        if self._gzip:
            comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip container
            body = comp.compress(body) + comp.flush()
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            answer = self._post(body)
            self.requests += 1
            if 200 <= answer.status < 300:
                self.healthy = True
                rejected = _rejected_spans(answer.body, n)
                if rejected:
                    logger.warning("OTLP target rejected %d of %d spans", rejected, n)
                    self._dropped["rejected"] += rejected
                self.exported += n - rejected
                return
            self.failed_requests += 1
            self.healthy = False
            if self._failures is not None:
                self._failures.value += 1
            self.last_error = f"HTTP {answer.status}" if answer.status else self.last_error
            if answer.status and answer.status not in _RETRYABLE:
                logger.error(
                    "OTLP target answered %d, %d spans dropped: %s",
                    answer.status,
                    n,
                    answer.body[:200].decode("utf-8", "replace"),
                )
                self._dropped["rejected"] += n
                return
            if self._stop.is_set():
                # Draining at exit: one attempt per batch, no backoff to sit out.
                self._dropped["shutdown"] += n
                return
            # Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"):
            # concurrent exporters that failed together do not retry together.
            delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, _RETRY_AFTER_CAP))
            if time.monotonic() + delay > deadline:
                logger.warning(
                    "OTLP export gave up after %d attempts, %d spans dropped (%s)",
                    attempt + 1,
                    n,
                    self.last_error,
                )
                self._dropped["retries_exhausted"] += n
                return
            # Shutdown interrupts the wait; the batch is then tried once more.
            self._stop.wait(delay)
            attempt += 1

    def _connection(self, deadline: float) -> _HTTPConnection | _HTTPSConnection:
        """The kept-alive connection (opened when there is none), bound to ``deadline``.

        Raises:
            TimeoutError: no time is left.
            OSError: the connection cannot be opened.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its timeout")
        conn = self._conn
        if conn is None:
            cls = _HTTPSConnection if self._https else _HTTPConnection
            conn = cls(self._host, self._port, timeout=left)
            self._conn = conn
        if conn.sock is None:
            conn.timeout = left
            conn.connect()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request took longer than its timeout")
        assert conn.sock is not None
        # sendall() gets this much in all (not per send); the answer's reads
        # shorten it as the deadline nears.
        conn.sock.settimeout(left)
        conn.deadline = deadline
        return conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _post(self, body: bytes) -> _Answer:
        """One POST, done or failed within ``timeout``; never raises.

        A kept-alive connection closed while idle is retried once, within the same
        ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        self._overdue_at = deadline
        for again in (False, True):
            try:
                conn = self._connection(deadline)
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                data = resp.read()
                answer = _Answer(
                    resp.status, parse_retry_after(resp.getheader("Retry-After")), data
                )
                if resp.will_close:
                    self._close_connection()
                self._overdue_at = math.inf
                return answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._close_connection()
                if again:
                    self.last_error = f"{type(e).__name__}: {e}"
            except Exception as e:
                self._close_connection()
                self.last_error = f"{type(e).__name__}: {e}"
                break
        self._overdue_at = math.inf
        return _Answer(0)


def _rejected_spans(body: bytes, n: int) -> int:
    """``partial_success.rejected_spans`` of an ExportTraceServiceResponse, else 0."""
    if not body:
        return 0
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        response = ExportTraceServiceResponse()
        response.ParseFromString(body)
        return max(0, min(n, int(response.partial_success.rejected_spans)))
    except Exception:
        return 0  # not protobuf (a JSON or text body): nothing reported


def export_metrics(exporter: OtlpExporter | None) -> Iterable[Metric]:
    """The exporter's families, at zero while export is off (so they always exist)."""
    labels = ["otlp"]
    depth = GaugeMetricFamily(
        "rastir_collector_export_queue_depth",
        "Spans waiting in the export queue, by exporter.",
        labels=["exporter"],
    )
    depth.add_metric(labels, 0 if exporter is None else exporter.depth + exporter.inflight)
    yield depth
    capacity = GaugeMetricFamily(
        "rastir_collector_export_queue_capacity",
        "Capacity of the export queue in spans, by exporter (0: export is off).",
        labels=["exporter"],
    )
    capacity.add_metric(labels, 0 if exporter is None else exporter.queue_size)
    yield capacity
    exported = CounterMetricFamily(
        "rastir_collector_exported_spans",
        "Spans the export target accepted, by exporter.",
        labels=["exporter"],
    )
    exported.add_metric(labels, 0 if exporter is None else exporter.exported)
    yield exported
    dropped = CounterMetricFamily(
        "rastir_collector_export_dropped_spans",
        "Spans that will never be exported, by exporter and reason: queue_full, "
        "retries_exhausted, rejected, encode_error, shutdown.",
        labels=["exporter", "reason"],
    )
    counts = None if exporter is None else exporter.dropped
    for reason in DROP_REASONS:
        dropped.add_metric(["otlp", reason], 0 if counts is None else counts[reason])
    yield dropped
