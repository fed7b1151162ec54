"""``POST /v1/telemetry``: the hot path.

A pure ASGI endpoint, in this order, each step cheaper than the next:

1. bearer token (constant time) .............................. 401 / 403
2. ``Content-Length`` against the limit ...................... 413
3. saturation: store queue, requests in flight, loop lag ..... 429 + Retry-After
   (decided before a byte of the body is read: refusing must stay cheap, or an
   overloaded collector spends its CPU decoding what it then refuses; PERFORMANCE.md)
4. the body, counted while it streams in ..................... 413
5. gunzip, bounded: never more than the limit is inflated .... 413 / 400
6. msgspec decode with the wire Structs (int64 bounds too) ... 400
   (``sdk_events`` too: at most 64 names of at most 64 characters)
7. what the schema cannot say: hex ids, not all zero, end >= start ... 400;
   the span count ................................................ 413 (the SDK splits)
8. cut over-long strings, attribute maps, the service name and the resource, and
   count the cuts
9. the store, then metrics (cached children; the batch's ``sdk_events`` last) and
   sinks ........................................................ 202 {"accepted": n}
   (metrics only once the store has taken the spans: a 429 from a full store queue
   must not count spans the sender will send again)

Nothing here answers 500: an unexpected exception is logged, counted as
``internal_error`` and answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import chain, islice, repeat
from operator import attrgetter, gt
from time import monotonic, perf_counter
from typing import Any, Final

import msgspec

from rastir._wire import WIRE_VERSION, AttrValue, Scalar, WireBatch, WireSpan
from rastir.collector.auth import check_bearer
from rastir.collector.metrics import Metrics, label_value
from rastir.collector.settings import CollectorSettings
from rastir.collector.state import CollectorState
from rastir.collector.store.base import SpanRow, TraceStore
from rastir.collector.store.errors import StoreClosedError, StoreError, StoreFullError

__all__ = ["MAX_SERVICE_LEN", "TRUNCATION_MARK", "IngestEndpoint", "Rejection", "SpanGroup"]

logger = logging.getLogger("rastir.collector")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# W3C trace-context §3.2.2.3/§3.2.2.4: ids are lowercase hex and never all zeros.
# Lengths are already checked by the Structs; one regex over all ids of a batch
# joined is about 20x cheaper than one match per id.
_HEX: Final = re.compile(r"[0-9a-f]*")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
#: Ends every string cut to ``max_attr_value_len``; evaluation reads it to skip cut
#: texts (rastir.collector.evaluation.content.is_cut).
TRUNCATION_MARK: Final = "…"

_get_trace_id = attrgetter("trace_id")
_get_span_id = attrgetter("span_id")
_get_parent = attrgetter("parent_span_id")
_get_sampled = attrgetter("sampled")
_get_start = attrgetter("start_time_unix_nano")
_get_end = attrgetter("end_time_unix_nano")
_get_attributes = attrgetter("attributes")
_get_name = attrgetter("name")
_get_error = attrgetter("error")
_get_events = attrgetter("events")
_get_links = attrgetter("links")

# SpanRow is a frozen slotted dataclass: its generated __init__ goes through
# object.__setattr__ twice (~300 ns). The slot descriptors set the same fields in C.
_new_row = object.__new__
_set_row_service = SpanRow.__dict__["service"].__set__
_set_row_span = SpanRow.__dict__["span"].__set__

_JSON: Final = (b"content-type", b"application/json")

#: The longest service name (``resource["service.name"]``) kept; longer ones are cut.
#: It is stored with every span, and it is the longest ``service`` filter the query
#: API takes (rastir.collector.query), so every stored service can be queried.
MAX_SERVICE_LEN: Final = 256

#: ``(service, resource, spans, dropped)``: one batch of one sender, for
#: :meth:`IngestEndpoint.accept_groups`.
SpanGroup = tuple[str, dict[str, Any], list[WireSpan], int]


class Rejection(Exception):
    """An ingest request refused with a 4xx/503: the status, a reason code, a message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or []


class _Disconnected(Exception):
    pass


def _encode_error(reason: str, message: str) -> bytes:
    return msgspec.json.encode({"error": reason, "message": message})


class IngestEndpoint:
    """The ASGI app behind ``POST /v1/telemetry`` (Starlette treats an instance as ASGI)."""

    def __init__(
        self, settings: CollectorSettings, metrics: Metrics, state: CollectorState
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self._decoder = msgspec.json.Decoder(WireBatch)
        self._token = settings.ingest_token.encode() if settings.ingest_token else None
        self._max_body = settings.max_body_bytes
        self._max_spans = settings.max_spans_per_batch
        self._max_len = settings.max_attr_value_len
        self._max_attrs = settings.max_attrs_per_span
        self._committed = settings.ack == "committed"
        self._retry_after = [(b"retry-after", str(settings.retry_after).encode())]
        self._duration = metrics.ingest_duration.child(())
        self._head_dropped = metrics.sampled_out.child(("head",))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = perf_counter()
        state = self.state
        authorization = content_length = encoding = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                # Twice: no credentials (auth.find_authorization says why).
                authorization = value if authorization is None else b""
            elif name == b"content-length":
                content_length = value
            elif name == b"content-encoding":
                # Repeated lines are one list (RFC 9110 §5.3): "gzip" then "identity"
                # is "gzip, identity", which is refused, not read as plain.
                encoding = value if encoding is None else encoding + b", " + value
        admitted = False
        try:
            # 1. auth
            if self._token is not None:
                code = check_bearer(authorization, self._token)
                if code:
                    raise Rejection(
                        code,
                        "unauthorized" if code == 401 else "forbidden",
                        "missing bearer token" if code == 401 else "wrong bearer token",
                        [(b"www-authenticate", b'Bearer realm="rastir"')] if code == 401 else None,
                    )
            # 2. declared size and encoding
            if content_length is not None:
                try:
                    declared = int(content_length)
                except ValueError:
                    raise Rejection(400, "bad_request", "Content-Length is not an integer")
                if declared > self._max_body:
                    raise Rejection(
                        413,
                        "too_large",
                        f"body of {declared} bytes exceeds the limit of {self._max_body} bytes",
                    )
            gzipped = False
            if encoding is not None:
                enc = encoding.strip().lower()
                if enc == b"gzip" or enc == b"x-gzip":
                    gzipped = True
                elif enc and enc != b"identity":
                    raise Rejection(
                        415,
                        "unsupported_encoding",
                        f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; "
                        "use gzip or none",
                    )
            # 3. saturation, before the body is read or decoded
            arrived = scope.get("rastir.arrived")
            busy = state.saturation(0.0 if arrived is None else monotonic() - arrived)
            if busy is not None:
                raise Rejection(
                    503 if busy in ("shutting_down", "not_ready") else 429,
                    busy,
                    "collector is shutting down"
                    if busy == "shutting_down"
                    else f"collector is saturated ({busy}); retry later",
                    self._retry_after,
                )
            state.inflight += 1
            admitted = True
            accepted = await self._handle(scope, receive, gzipped)
        except Rejection as r:
            self.metrics.reject(r.reason)
            scope["rastir.reason"] = r.reason
            await self._reply_rejected(scope, send, r)
            return
        except _Disconnected:
            self.metrics.reject("client_disconnected")
            return
        except Exception:
            # Never a 500: our bug, not the sender's. Count it, log it, ask for a retry.
            logger.exception("ingest failed unexpectedly")
            self.metrics.reject("internal_error")
            scope["rastir.reason"] = "internal_error"
            await self._reply_rejected(
                scope,
                send,
                Rejection(
                    503,
                    "internal_error",
                    "internal error; the request may be retried",
                    self._retry_after,
                ),
            )
            return
        finally:
            if admitted:
                state.inflight -= 1
        scope["rastir.accepted"] = accepted
        await self._reply_accepted(scope, send, accepted)
        self._duration.observe(perf_counter() - t0)

    # Subclasses for other formats (OTLP receive, rastir.collector.otlp.receive)
    # override these three: the body's decoding and the two kinds of reply.
    async def _reply_accepted(self, scope: Scope, send: Send, accepted: int) -> None:
        await _reply(send, 202, b'{"accepted":%d}' % accepted)

    async def _reply_rejected(self, scope: Scope, send: Send, r: Rejection) -> None:
        await _reply(send, r.status, _encode_error(r.reason, r.message), r.headers)

    async def _handle(self, scope: Scope, receive: Receive, gzipped: bool) -> int:
        body = await self._read_body(receive)
        # 5. gunzip
        if gzipped:
            body = self._gunzip(body)
        # 6. decode
        try:
            batch = self._decoder.decode(body)
        except msgspec.ValidationError as e:
            raise Rejection(400, "invalid", f"invalid body: {_name_the_key(body, str(e))}")
        except msgspec.DecodeError as e:
            raise Rejection(400, "invalid", f"invalid body: {e}")
        if batch.version != WIRE_VERSION:
            raise Rejection(
                400,
                "invalid",
                f"invalid body: wire version {batch.version} is not supported; this "
                f"collector accepts version {WIRE_VERSION} - at `$.version`",
            )
        raw_service = batch.resource.get("service.name")
        service = raw_service if raw_service.__class__ is str else label_value(raw_service)
        service = service or "unknown_service"
        accepted = await self.accept(
            service,
            batch.resource,
            batch.spans,
            batch.dropped,
            strings_fit=_strings_fit(body, self._max_len),
        )
        # Counted once the batch is taken, as its spans are: a refused batch is sent
        # again (or its events carried to the sender's next one), never counted twice.
        if batch.sdk_events:
            self.metrics.record_client_events(service, batch.sdk_events)
        return accepted

    async def accept(
        self,
        service: str,
        resource: dict[str, Any],
        spans: list[WireSpan],
        dropped: int = 0,
        *,
        strings_fit: bool = False,
    ) -> int:
        """Steps 7 to 9 for decoded spans, whatever format they arrived in.

        Raises :class:`Rejection` like the HTTP path does. Every source of spans
        (this endpoint, OTLP receive, spans the collector makes itself) goes through
        here, so the checks, the metrics, the store and the sinks see them all alike.
        ``strings_fit`` is True when the caller has proved, from the raw body, that no
        string in the spans is longer than the value limit (:func:`_strings_fit`).
        """
        return await self.accept_groups([(service, resource, spans, dropped)], strings_fit)

    async def accept_groups(self, groups: list[SpanGroup], strings_fit: bool = False) -> int:
        """:meth:`accept` for several ``(service, resource, spans, dropped)`` groups at once.

        All or nothing: every group is checked and the store takes the spans of all
        of them in one call before anything is counted. A refusal (a 400, or a 429
        from a full store queue) therefore leaves no trace in the metrics, and the
        sender's retry of the whole request is counted once, not once per attempt.
        Returns the number of spans accepted.
        """
        # 7. semantic checks
        total = 0
        for group in groups:
            total += len(group[2])
        if total > self._max_spans:
            # 413, not 400: the batch is fine but too big, and rastir's SDK splits a
            # batch answered 413 (rastir/export/batch.py) where it drops one answered 400.
            raise Rejection(
                413,
                "too_many_spans",
                f"batch has {total} spans; the limit is {self._max_spans}",
            )
        max_attrs = self._max_attrs
        cut_groups: list[SpanGroup] | None = None
        for i, group in enumerate(groups):
            if group[2]:
                self._check(group[2], strings_fit)  # and 8. limits
            # The service is stored with every span and is a query filter: cut it
            # (and the resource) once per batch, before it is multiplied by the spans.
            resource = group[1]
            if (
                len(group[0]) > MAX_SERVICE_LEN
                or len(resource) > max_attrs
                or (not strings_fit and _has_long_str([resource], self._max_len))
            ):
                if cut_groups is None:
                    cut_groups = list(groups)  # the caller's list stays as it was
                cut_groups[i] = self._cut_group(group)
        if cut_groups is not None:
            groups = cut_groups
        # Head sampling (rastir.sampling): an unsampled span was sent for the metrics
        # only; it is neither stored nor exported.
        kept: list[list[WireSpan]] = []
        for group in groups:
            spans = group[2]
            kept.append(spans if all(map(_get_sampled, spans)) else [s for s in spans if s.sampled])
        sampler = self.state.sampler
        if sampler is None:
            rows: list[SpanRow] = []
            append = rows.append
            for (service, _, _, _), spans in zip(groups, kept, strict=True):
                for s in spans:
                    row = _new_row(SpanRow)
                    _set_row_service(row, service)
                    _set_row_span(row, s)
                    append(row)
            if rows:
                await self._store(rows)
        # 9. The spans are taken (the tail sampler never refuses): count them, once.
        # Metrics come from every span, sampled or not.
        record = self.metrics.record_batch
        sinks = self.state.sinks
        for (service, resource, spans, dropped), keep in zip(groups, kept, strict=True):
            record(service, spans, dropped)
            if len(keep) != len(spans):
                self._head_dropped.inc(len(spans) - len(keep))
            if not keep:
                continue
            if sampler is not None:
                # Tail sampling: the sampler buffers the trace and, once it decides to
                # keep it, hands it to the store and the sinks itself. Pre-sample sinks
                # (evaluation) see every trace first.
                for sink in self.state.presample_sinks:
                    try:
                        sink(service, resource, keep)
                    except Exception:
                        logger.exception("span sink %r failed", sink)
                sampler(service, resource, keep)
                continue
            for sink in sinks:
                try:
                    sink(service, resource, keep)
                except Exception:  # a sink's bug must not fail the ingest that already landed
                    logger.exception("span sink %r failed", sink)
        return total

    async def _store(self, rows: list[SpanRow]) -> None:
        """Hand rows to the store, or raise the :class:`Rejection` that says why not."""
        store = self.state.store
        assert store is not None  # saturation() answered not_ready otherwise
        if self._committed:
            try:
                await store.write(rows)
            except StoreFullError:
                raise self._queue_full(store, len(rows))
            except StoreClosedError:
                raise Rejection(
                    503, "shutting_down", "collector is shutting down", self._retry_after
                )
            except StoreError as e:
                logger.error("committed write failed: %s", e)
                raise Rejection(
                    503,
                    "store_error",
                    "the store could not write the spans; retry later",
                    self._retry_after,
                )
        elif not store.submit(rows):
            raise self._queue_full(store, len(rows))

    def _queue_full(self, store: TraceStore, count: int) -> Rejection:
        capacity = store.stats().queue_capacity
        if capacity and count > capacity:
            # It would never fit: a 429 would have the sender retry it until it gives
            # up. A 413 is final for OTLP senders and makes rastir's SDK split the batch.
            return Rejection(
                413,
                "too_large",
                f"batch of {count} spans is larger than the store's write queue "
                f"({capacity} spans); send smaller batches",
            )
        return Rejection(
            429,
            "queue_full",
            "the store's write queue is full; retry later",
            self._retry_after,
        )

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, refusing it as soon as it outgrows the limit (chunked too)."""
        limit = self._max_body
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise self._too_large(len(body))
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int) -> Rejection:
        return Rejection(
            413, "too_large", f"body of {size}+ bytes exceeds the limit of {self._max_body} bytes"
        )

    def _gunzip(self, body: bytes) -> bytes:
        """Inflate at most ``max_body_bytes``: a zip bomb costs us the limit, not memory."""
        limit = self._max_body
        out: list[bytes] = []
        size = 0
        data = body
        try:
            while True:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                part = d.decompress(data, limit - size + 1)
                size += len(part)
                if size > limit or d.unconsumed_tail:
                    raise Rejection(
                        413,
                        "too_large",
                        f"body inflates to more than the limit of {limit} bytes",
                    )
                out.append(part)
                if not d.eof:
                    raise Rejection(400, "invalid", "invalid body: gzip stream is truncated")
                data = d.unused_data
                if not data:
                    break  # RFC 1952 §2.2: a gzip file is a series of members
        except zlib.error as e:
            raise Rejection(400, "invalid", f"invalid body: not a valid gzip stream ({e})")
        return out[0] if len(out) == 1 else b"".join(out)

    def _check(self, spans: list[WireSpan], strings_fit: bool = False) -> None:
        """Refuse what the schema cannot: bad ids, end before start. Then apply limits.

        A few passes in C decide the common case (nothing wrong, nothing to cut); the slow
        paths find the exact culprit, or walk the spans that need cutting. With
        ``strings_fit`` the walk over every attribute value for over-long strings,
        the most costly check, is skipped.
        """
        # A batch holds few distinct trace and parent ids: check each once.
        tids = set(map(_get_trace_id, spans))
        sids = list(map(_get_span_id, spans))
        pids = set(map(_get_parent, spans))
        pids.discard(None)
        if (
            _HEX.fullmatch("".join(tids)) is None
            or _HEX.fullmatch("".join(sids)) is None
            or (pids and _HEX.fullmatch("".join(pids)) is None)
            or _ZERO_TRACE in tids
            or _ZERO_SPAN in sids
            or _ZERO_SPAN in pids
        ):
            _find_bad_id(spans)
        # The common case is decided by loops in C (map, any, max) and one flat loop
        # over the attribute values: a loop per span cost as much as the decoding.
        if any(map(gt, map(_get_start, spans), map(_get_end, spans))):
            _find_bad_time(spans)
        max_len = self._max_len
        attrs = list(map(_get_attributes, spans))
        cut = max(map(len, attrs)) > self._max_attrs
        if not (cut or strings_fit):
            cut = max(map(len, map(_get_name, spans))) > max_len or _has_long_str(attrs, max_len)
        # spans with an error, events or links: rare, so found in C, then walked
        extras: list[WireSpan] = []
        if (
            any(map(_get_error, spans))
            or any(map(_get_events, spans))
            or any(map(_get_links, spans))
        ):
            extras = [s for s in spans if s.error is not None or s.events or s.links]
        if cut:
            for s in spans:
                s.attributes = self._cut_attrs(s.attributes)
                if len(s.name) > max_len:
                    s.name = _cut(s.name, max_len)
                    self.metrics.truncated_count("span_name")
        for s in extras:
            self._check_extras(s, spans)

    def _check_extras(self, s: WireSpan, spans: list[WireSpan]) -> None:
        max_len = self._max_len
        err = s.error
        if err is not None:
            if len(err.message) > max_len:
                err.message = _cut(err.message, max_len)
                self.metrics.truncated_count("error_message")
            if len(err.exception_type) > max_len:
                err.exception_type = _cut(err.exception_type, max_len)
                self.metrics.truncated_count("error_message")
        for ev in s.events:
            ev.attributes = self._cut_attrs(ev.attributes)
            if len(ev.name) > max_len:
                ev.name = _cut(ev.name, max_len)
                self.metrics.truncated_count("event_name")
        for j, link in enumerate(s.links):
            if (
                _HEX.fullmatch(link.trace_id) is None
                or _HEX.fullmatch(link.span_id) is None
                or link.trace_id == _ZERO_TRACE
                or link.span_id == _ZERO_SPAN
            ):
                where = f"$.spans[{spans.index(s)}].links[{j}]"
                _check_id(link.trace_id, _ZERO_TRACE, f"{where}.trace_id")
                _check_id(link.span_id, _ZERO_SPAN, f"{where}.span_id")
            link.attributes = self._cut_attrs(link.attributes)

    def _cut_group(self, group: SpanGroup) -> SpanGroup:
        """``group`` with its service and resource cut to the limits, and the cuts counted."""
        service, resource, spans, dropped = group
        raw_name = resource.get("service.name")
        resource = dict(resource)
        if len(resource) > self._max_attrs:
            self.metrics.truncated_count("resource")
            resource = dict(islice(resource.items(), self._max_attrs))
        max_len = self._max_len
        for key, v in resource.items():
            if v.__class__ is str and len(v) > max_len:
                resource[key] = _cut(v, max_len)
                self.metrics.truncated_count("resource")
        if len(service) > MAX_SERVICE_LEN:
            self.metrics.truncated_count("service_name")
            cut = _cut(service, MAX_SERVICE_LEN)
            if raw_name == service:
                resource["service.name"] = cut  # exporters see the name the store has
            service = cut
        return (service, resource, spans, dropped)

    def _cut_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        max_len = self._max_len
        if len(attrs) > self._max_attrs:
            self.metrics.truncated_count("attribute_map")
            attrs = dict(islice(attrs.items(), self._max_attrs))
        cut = 0
        for key, v in attrs.items():
            if v.__class__ is str:
                if len(v) > max_len:
                    attrs[key] = _cut(v, max_len)
                    cut += 1
            elif v.__class__ is list and any(e.__class__ is str and len(e) > max_len for e in v):
                attrs[key] = [
                    _cut(e, max_len) if e.__class__ is str and len(e) > max_len else e for e in v
                ]
                cut += 1
        if cut:
            self.metrics.truncated_count("attribute_value", cut)
        return attrs


def _strings_fit(body: bytes, max_len: int) -> bool:
    """Whether no JSON string in ``body`` can decode to more than ``max_len`` characters.

    A sufficient test on the raw bytes, a few ``find`` calls in C instead of a Python
    loop over every attribute value. When the body holds no escaped quote (``\\"``),
    every ``"`` byte opens or closes a string, so a string's raw content is a run of
    bytes free of quotes; and a string never decodes to more characters than it has
    raw bytes (UTF-8 sequences and escapes only shrink). If every aligned chunk of
    ``step`` bytes holds a quote, no quote-free run reaches ``2 * step - 1`` bytes,
    which with ``step = (max_len + 2) // 2`` bounds every string by ``max_len``.
    Only whole chunks need a quote: a run that long always holds one, even at the end.
    False means "maybe not": the caller walks the decoded values.
    """
    step = (max_len + 2) // 2
    size = len(body)
    if step < 64 or size > step * 4096 or b'\\"' in body:
        return False  # tiny limits, huge bodies, escaped quotes: walk the values
    # One find per chunk, in C (memchr, stopping at the chunk's first quote): -1 for a
    # chunk without one.
    last = size - step + 1
    if last <= 0:
        return True  # shorter than one chunk, so shorter than max_len
    return (
        min(map(body.find, repeat(b'"'), range(0, last, step), range(step, last + step, step))) >= 0
    )


def _has_long_str(attrs: list[dict[str, Any]], max_len: int) -> bool:
    """Whether a string value (or list item) in ``attrs`` is longer than ``max_len``."""
    for v in chain.from_iterable(map(dict.values, attrs)):
        c = v.__class__
        if c is str:
            if len(v) > max_len:
                return True
        elif c is list:
            for e in v:
                if e.__class__ is str and len(e) > max_len:
                    return True
    return False


_ATTR_VALUE = msgspec.json.Decoder(AttrValue)
_RESOURCE_VALUE = msgspec.json.Decoder(Scalar)
_RAW_MAP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_PATH_STEP = re.compile(r"\.([A-Za-z_]+)|\[(\d+)\]")


def _name_the_key(body: bytes, message: str) -> str:
    """msgspec's ``message`` with the ``[...]`` of a map path replaced by the bad key.

    msgspec names a map value's path ``$.spans[0].attributes[...]``; a sender needs
    the key. Only refused bodies get here, so decoding the body again is affordable.
    """
    head, sep, tail = message.rpartition(" - at `$")
    if not sep or "[...]" not in tail:
        return message
    prefix, _, rest = tail.partition("[...]")
    try:
        # Walked as raw JSON: the bad value may be a number no decoder can hold.
        node = msgspec.Raw(body)
        for m in _PATH_STEP.finditer(prefix):
            if m.group(1):
                node = _RAW_MAP.decode(node)[m.group(1)]
            else:
                node = _RAW_LIST.decode(node)[int(m.group(2))]
        decoder = _RESOURCE_VALUE if prefix == ".resource" else _ATTR_VALUE
        for key, value in _RAW_MAP.decode(node).items():
            try:
                decoder.decode(value)
            except msgspec.DecodeError:
                return f"{head} - at `${prefix}[{msgspec.json.encode(key).decode()}]{rest}"
    except Exception:  # the body is refused anyway: keep msgspec's own message
        pass
    return message


def _find_bad_id(spans: list[WireSpan]) -> None:
    for i, s in enumerate(spans):
        _check_id(s.trace_id, _ZERO_TRACE, f"$.spans[{i}].trace_id")
        _check_id(s.span_id, _ZERO_SPAN, f"$.spans[{i}].span_id")
        if s.parent_span_id is not None:
            _check_id(s.parent_span_id, _ZERO_SPAN, f"$.spans[{i}].parent_span_id")


def _find_bad_time(spans: list[WireSpan]) -> None:
    for i, s in enumerate(spans):
        if s.end_time_unix_nano < s.start_time_unix_nano:
            raise Rejection(
                400,
                "invalid",
                "invalid span: end_time_unix_nano is before start_time_unix_nano "
                f"- at `$.spans[{i}]`",
            )


def _cut(text: str, max_len: int) -> str:
    return text[: max_len - 1] + TRUNCATION_MARK if max_len > 1 else text[:max_len]


def _check_id(value: str, zero: str, where: str) -> None:
    if _HEX.fullmatch(value) is None:
        raise Rejection(
            400, "invalid", f"invalid id: expected lowercase hex, got {value!r} - at `{where}`"
        )
    if value == zero:
        # W3C trace-context §3.2.2.3: an all-zero id is invalid.
        raise Rejection(400, "invalid", f"invalid id: all zeros - at `{where}`")


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    h = [_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        h.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": h})
    await send({"type": "http.response.body", "body": body})
