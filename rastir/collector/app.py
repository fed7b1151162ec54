"""``create_app``: the collector as a Starlette application (DESIGN §6).

Routes:

==========================  ==========================================  ===========
``POST /v1/telemetry``      ingest a batch (:mod:`.ingest`)              ingest token
``POST /v1/traces``         OTLP/HTTP receive (:mod:`.otlp.receive`)     ingest token
``POST /v1/scores``         a score from outside (:mod:`.evaluation`)    ingest token
``GET /v1/traces``          trace summaries, filtered and paged          query token
``GET /v1/traces/{id}``     one trace as a span tree                     query token
``GET /metrics``            Prometheus text format                       query token*
``GET /v1/schema``          JSON Schema of the wire format               none
``GET /health``             the process answers                          none
``GET /ready``              the store is open and intake is not refused  none
==========================  ==========================================  ===========

\\* unless ``public_metrics``: label values never carry ids, users or prompts, but
model, agent and tool names can still be worth keeping to the operator.

Everything the app owns is made here and released by its lifespan: the store (opened
and closed), the Prometheus ``CollectorRegistry`` (fresh per app, never the global
one) and the loop-lag watcher.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from itertools import chain
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from rastir._wire import json_schema
from rastir.collector.auth import OK, UNAUTHORIZED, check_bearer, find_authorization
from rastir.collector.evaluation import EvaluationService
from rastir.collector.evaluation.scores import ScoresEndpoint
from rastir.collector.ingest import IngestEndpoint
from rastir.collector.logs import AccessLogMiddleware
from rastir.collector.metrics import (
    CounterChild,
    Family,
    Metrics,
    collector_version,
    counter,
    gauge,
)
from rastir.collector.otlp.export import OtlpExporter, export_metrics
from rastir.collector.otlp.receive import OtlpReceiveEndpoint
from rastir.collector.query import QueryError, parse_trace_id, parse_trace_query
from rastir.collector.sampling import TailSampler, sampling_metrics, store_and_sink
from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState, watch_loop_lag
from rastir.collector.store.assemble import CHUNK_BYTES, TreePlan, encode_tree
from rastir.collector.store.base import TraceDetail, TraceStore
from rastir.collector.store.errors import StoreError

__all__ = ["create_app", "open_configured_store"]

logger = logging.getLogger("rastir.collector")

_json_encoder = msgspec.json.Encoder()

#: Worker threads assembling or encoding trace answers at once: a big trace's pieces
#: take turns with the other answers', and each assembly holds its trace's spans.
RENDER_THREADS: Final = 2
#: Seconds one piece of a streamed answer may wait for the client to take it (the
#: connection's write buffer stays full) before the answer is cut and the connection
#: closed. A 128 KiB piece waits only once the kernel's buffers and the transport's
#: are full, so this cuts a client reading less than about 2 KB/s.
SEND_STALL_TIMEOUT: Final = 30.0
#: Seconds, in all, one streamed answer may wait on its client. Time spent encoding
#: (the server's own) is not counted: a 28 MB answer is cut only below ~95 KB/s.
SEND_WAIT_BUDGET: Final = 300.0


class JSONResponse(Response):
    """JSON encoded with msgspec (dataclasses and Structs included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _json_encoder.encode(content)


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"error": reason, "message": message}, status_code=status, headers=headers)


def _not_ready(retry_after: dict[str, str]) -> Response:
    return _error(503, "not_ready", "the trace store is not open", retry_after)


def open_configured_store(settings: CollectorSettings) -> TraceStore:
    """The store ``settings`` names, not yet started."""
    from rastir.collector.store import open_store

    return open_store(settings.store, settings.data_dir, **settings.store_options())


def create_app(
    settings: CollectorSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    store: TraceStore | None = None,
) -> Starlette:
    """The collector app. ``store``, when given, is started and closed by the app too.

    Args:
        settings: the configuration; defaults to ``CollectorSettings()``.
        registry: where the metrics are registered; a fresh one by default.
        store: a trace store to use instead of the one ``settings`` names.
    """
    settings = settings or CollectorSettings()
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(
        max_label_values=settings.max_label_values, max_series=settings.max_series_per_metric
    )
    state = CollectorState(settings, store)
    metrics.add_source(lambda: _health_metrics(state))
    metrics.register(registry)
    ingest = IngestEndpoint(settings, metrics, state)
    otlp_receive = OtlpReceiveEndpoint(settings, metrics, state)
    evaluation = EvaluationService(settings, metrics, ingest.accept)  # reads eval_config
    if evaluation.enabled:
        # With tail sampling, evaluation still sees every trace, before the sampler
        # decides: evaluating kept traces only (errors, slow ones and a ratio) would
        # bias pass rates. Results of dropped traces reach the metrics only.
        if settings.tail_sampling:
            state.presample_sinks.append(evaluation.sink)
        else:
            state.sinks.append(evaluation.sink)
    # OTLP export is a span sink; tail sampling sits between ingest and the store and
    # sinks (docs/sampling.md). Their families exist, at zero, when they are off.
    exporter = (
        OtlpExporter.from_settings(settings, metrics.export_failures.child(("otlp",)))
        if settings.otlp_endpoint
        else None
    )
    if exporter is not None:
        state.sinks.append(exporter)
        state.pressure.append(exporter.pressure)
    sampler = (
        TailSampler(settings, metrics, store_and_sink(state)) if settings.tail_sampling else None
    )
    state.sampler = sampler
    metrics.add_source(lambda: export_metrics(exporter))
    metrics.add_source(lambda: sampling_metrics(sampler))
    retry_after = state.retry_after
    query_token = settings.query_token.encode() if settings.query_token else None
    metrics_token = None if settings.public_metrics else query_token
    schema = _json_encoder.encode(json_schema())
    render = _Render()

    def authorized(
        token: bytes | None,
    ) -> Callable[
        [Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]
    ]:
        def wrap(
            handler: Callable[[Request], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                if token is not None:
                    code = check_bearer(find_authorization(request.scope["headers"]), token)
                    if code != OK:
                        if code == UNAUTHORIZED:
                            return _error(
                                401,
                                "unauthorized",
                                "missing bearer token",
                                {"www-authenticate": 'Bearer realm="rastir"'},
                            )
                        return _error(403, "forbidden", "wrong bearer token")
                try:
                    return await handler(request)
                except QueryError as e:
                    return _error(400, "bad_request", str(e))
                except StoreError as e:
                    # The store's surroundings (a database restarting, a disk): its
                    # message says which, without secrets; no traceback to log.
                    logger.warning("%s %s: %s", request.method, request.url.path, e)
                    return _error(503, "store_error", str(e), retry_after)
                except Exception:
                    logger.exception("%s %s failed", request.method, request.url.path)
                    return _error(503, "internal_error", "internal error", retry_after)

            endpoint.__name__ = handler.__name__
            return endpoint

        return wrap

    @authorized(query_token)
    async def list_traces(request: Request) -> Response:
        query = parse_trace_query(request.query_params)
        store = state.store
        if store is None or not state.started:
            return _not_ready(retry_after)
        try:
            page = await store.list_traces(query)
        except ValueError as e:  # a cursor the store cannot read
            raise QueryError(str(e))
        body = _json_encoder.encode({"traces": page.traces, "next_cursor": page.next_cursor})
        return _answer(body, "application/json", metrics.slow_readers)

    @authorized(query_token)
    async def get_trace(request: Request) -> Response:
        trace_id = parse_trace_id(request.path_params["trace_id"])
        store = state.store
        if store is None or not state.started:
            return _not_ready(retry_after)
        detail = await store.get_trace(trace_id)
        if detail is None:
            return _error(404, "not_found", f"trace {trace_id} is unknown")
        if render.limiter is None:
            render.limiter = anyio.CapacityLimiter(RENDER_THREADS)
        # Assembly and encoding run in worker threads, not on the loop ingest runs
        # on; a big answer is streamed in pieces, never held whole (_render_tree).
        first, rest = await anyio.to_thread.run_sync(_render_tree, detail, limiter=render.limiter)
        if rest is None:
            return Response(first, media_type="application/json")
        return _GuardedStream(
            _stream(first, rest, render.limiter),
            metrics.slow_readers,
            media_type="application/json",
        )

    @authorized(metrics_token)
    async def metrics_endpoint(request: Request) -> Response:
        return _answer(generate_latest(registry), CONTENT_TYPE_LATEST, metrics.slow_readers)

    async def schema_endpoint(request: Request) -> Response:
        return Response(schema, media_type="application/schema+json")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": collector_version()})

    async def ready(request: Request) -> Response:
        reason = state.saturation()
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reason = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return _error(exc.status_code, reason, str(exc.detail), dict(exc.headers or {}))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        trace_store = state.store if state.store is not None else open_configured_store(settings)
        state.store = trace_store
        await trace_store.start()
        if exporter is not None:
            exporter.start()
        state.started = True
        logger.info(
            "collector started",
            extra={
                "store": settings.store_display if store is None else type(store).__name__,
                "ack": settings.ack,
            },
        )
        try:
            async with anyio.create_task_group() as tg:
                if settings.max_loop_lag is not None:
                    tg.start_soon(watch_loop_lag, state)
                await tg.start(evaluation.run)  # cancelled, like the watcher, before the store
                if sampler is not None:
                    tg.start_soon(sampler.run)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            # SIGTERM: uvicorn has stopped accepting and let open requests finish;
            # refuse anything still arriving, then let the store write its queue.
            state.started = False
            state.closing = True
            if sampler is not None:
                sampler.flush()  # decide what is buffered: kept traces reach the store
            with anyio.move_on_after(settings.shutdown_timeout + 1.0, shield=True) as scope:
                await trace_store.close(timeout=settings.shutdown_timeout)
            if scope.cancelled_caught:
                logger.error("store did not close within %.1fs", settings.shutdown_timeout + 1.0)
            if exporter is not None:
                # Off the loop: the drain may wait on the target for up to its timeout.
                with anyio.CancelScope(shield=True):
                    if not await anyio.to_thread.run_sync(
                        exporter.shutdown, settings.shutdown_timeout
                    ):
                        logger.error("OTLP exporter did not stop in time")
            logger.info("collector stopped")

    routes = [
        Route("/v1/telemetry", ingest, methods=["POST"], name="ingest"),
        Route("/v1/traces", otlp_receive, methods=["POST"], name="otlp_receive"),
        Route(
            "/v1/scores",
            authorized(settings.ingest_token.encode() if settings.ingest_token else None)(
                ScoresEndpoint(evaluation, state).post
            ),
            methods=["POST"],
        ),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/v1/traces", list_traces, methods=["GET"]),
        Route("/v1/traces/{trace_id}", get_trace, methods=["GET"]),
        Route("/v1/schema", schema_endpoint, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
    ]
    middleware = [Middleware(AccessLogMiddleware)] if settings.access_log else []
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.collector = state
    app.state.evaluation = evaluation
    app.state.otlp_exporter = exporter
    app.state.tail_sampler = sampler
    return app


class _Render:
    """The app's limiter of threads rendering traces, made on first use (on the loop)."""

    __slots__ = ("limiter",)

    def __init__(self) -> None:
        self.limiter: anyio.CapacityLimiter | None = None


def _render_tree(detail: TraceDetail) -> tuple[bytes, Iterator[bytes] | None]:
    """The answer's first piece, and an iterator of the rest (None: it is all there).

    Runs in a worker thread. Assembly (:class:`TreePlan`) keeps the tree as indexes
    into the spans, and :func:`encode_tree` writes it one node at a time, in pieces
    of about ``CHUNK_BYTES``, each handed out by a worker thread; the loop sends
    one while the next is encoded, and serves everyone else in between. Before, a
    50,000-span trace (27 MB of JSON) was built as one tree of dicts (4.4 objects
    the garbage collector tracks per span) and encoded in one call: the process
    held its whole body and every node at once (peak RSS +114 MB, now +43 to +52 MB)
    and the loop stalled about 150 ms. A trace deeper than ``MAX_NESTING`` is
    answered flat (``"flattened": true``, AUD-36).
    """
    pieces = encode_tree(TreePlan(detail))
    first = next(pieces)
    second = next(pieces, None)
    if second is None:
        return first, None
    return first, chain((second,), pieces)


async def _stream(
    first: bytes, rest: Iterator[bytes], limiter: anyio.CapacityLimiter
) -> AsyncIterator[bytes]:
    """The pieces of an answer, each after the first encoded in a worker thread."""
    yield first
    while (piece := await anyio.to_thread.run_sync(next, rest, None, limiter=limiter)) is not None:
        yield piece


def _answer(body: bytes, media_type: str, cuts: Family[CounterChild]) -> Response:
    """``body`` whole with its length, or, when larger than a piece, streamed guarded.

    Sent whole, a big body (a /metrics page of many series, a page of 1,000 trace
    summaries) goes into the connection's buffer at once: the handler is done, but
    the buffer holds the body until the client reads it, for ever if it never does.
    In pieces, it stays the app's, and a client that stops reading is cut as for a
    trace (:class:`_GuardedStream`); the body is then freed.
    """
    if len(body) <= CHUNK_BYTES:
        return Response(body, media_type=media_type)
    return _GuardedStream(_slices(body), cuts, media_type=media_type)


async def _slices(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(body), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])


class _GuardedStream(StreamingResponse):
    """A streamed answer that a client which stops reading cannot hold for ever.

    The server's ``send`` waits while the connection's write buffer is full (uvicorn
    pauses above the transport's high-water mark, 64 KiB), so a client that stops
    reading parks the answer in ``send``: with it the trace's spans, its plan and
    the generator (about 42 MB for a 50,000-span trace, measured), for as long as
    the client keeps the connection open. Here each ``send`` may wait
    ``SEND_STALL_TIMEOUT`` seconds and all of them ``SEND_WAIT_BUDGET``; past
    either, the answer is cut, counted in ``rastir_collector_slow_readers_total``,
    and left incomplete, so the server closes the connection (ASGI: a response not
    completed when the app returns). A server that puts ``rastir.abort`` in the
    scope (a callable that resets the connection) is asked to drop it at once,
    with whatever is still buffered for the client.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        cuts: Family[CounterChild],
        media_type: str,
    ) -> None:
        super().__init__(content, media_type=media_type)
        self._cuts = cuts
        self._scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope  # a Response serves one request
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        # Module globals read per answer, so an embedding (or a test) may set them.
        stall, budget = SEND_STALL_TIMEOUT, SEND_WAIT_BUDGET
        waited = 0.0

        async def within(message: Message) -> str | None:
            """Send ``message``; the reason it was cut, or None once sent."""
            nonlocal waited
            left = budget - waited
            began = anyio.current_time()
            with anyio.move_on_after(min(stall, left)) as scope:
                await send(message)
            waited += anyio.current_time() - began
            if not scope.cancelled_caught:
                return None
            return "stalled" if stall <= left else "too_slow"

        iterator = self.body_iterator
        reason = await within(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if reason is None:
            async for chunk in iterator:
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                if (reason := await within(message)) is not None:
                    break
            else:
                message = {"type": "http.response.body", "body": b"", "more_body": False}
                reason = await within(message)
        if reason is None:
            return
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()  # frees the plan and the spans now, not at the next GC
        self._cuts.child((reason,)).inc()
        client = self._scope.get("client")
        logger.info(
            "answer cut: the client stopped reading",
            extra={
                "reason": reason,
                "path": self._scope.get("path", ""),
                "client": f"{client[0]}:{client[1]}" if client else "?",
                "waited_s": round(waited, 1),
            },
        )
        abort = self._scope.get("rastir.abort")
        if callable(abort):
            abort()


# rastir_collector_store_failed_spans_total{reason}: the StoreStats.extra key of each.
_STORE_FAILURES = (
    ("write_error", "failed_spans"),
    ("invalid", "invalid_spans"),
    ("shutdown", "lost_spans"),
)


def _health_metrics(state: CollectorState) -> Iterable[Metric]:
    """Gauges read at scrape time: the store's counters and the collector's load."""
    yield gauge(
        "rastir_collector_inflight_requests", "Ingest requests being handled.", state.inflight
    )
    yield gauge(
        "rastir_collector_event_loop_lag_seconds",
        "How late the event loop woke from its last short sleep.",
        state.loop_lag,
    )
    yield gauge(
        "rastir_collector_up",
        "1 while the store is open and intake runs; 0 while starting or shutting down.",
        1.0 if state.started else 0.0,
    )
    store = state.store
    if store is None or not state.started:
        return
    try:
        st = store.stats()
    except Exception:
        logger.exception("store stats failed")
        return
    yield gauge(
        "rastir_collector_queue_depth", "Spans waiting in the store's write queue.", st.queue_depth
    )
    yield gauge(
        "rastir_collector_queue_capacity",
        "Capacity of the store's write queue, in spans.",
        st.queue_capacity,
    )
    yield gauge("rastir_collector_store_spans", "Spans held by the store.", st.spans_stored)
    yield gauge("rastir_collector_store_traces", "Traces held by the store.", st.traces_stored)
    yield gauge(
        "rastir_collector_store_size_bytes",
        "Size of the store on disk or in memory.",
        st.size_bytes,
    )
    yield gauge(
        "rastir_collector_store_lag_seconds",
        "Age of the oldest span not yet written.",
        st.lag_seconds,
    )
    yield counter(
        "rastir_collector_store_dropped_spans_total",
        "Spans the store dropped because its write queue was full.",
        st.dropped_spans,
    )
    yield counter(
        "rastir_collector_store_write_errors_total",
        "Store transactions that failed. A failure of the database's surroundings (locked, "
        "disk full or read-only, I/O error) is retried with the spans kept queued; other "
        "failures drop their spans (rastir_collector_store_failed_spans_total).",
        st.extra.get("write_errors", 0),
    )
    # Spans accepted (202, queued mode) that the store then lost: the SQLite store's
    # counts, under names a dashboard can read. The memory store loses none.
    failed = CounterMetricFamily(
        "rastir_collector_store_failed_spans_total",
        "Accepted spans the store could not keep, by reason: write_error (the "
        "transaction failed), invalid (times beyond 64-bit integers), shutdown "
        "(still queued when the store closed), tail_queue_full (a trace tail sampling "
        "kept, after its 202, found the store's queue full).",
        labels=["reason"],
    )
    extra = st.extra
    for reason, key in _STORE_FAILURES:
        failed.add_metric([reason], extra.get(key, 0))
    failed.add_metric(["tail_queue_full"], state.tail_store_lost)
    yield failed
