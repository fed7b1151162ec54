"""``POST /v1/scores``: a score from outside (an application, a reviewer) on a trace or span.

The body is one JSON object::

    {"trace_id": "<32 hex>", "span_id": "<16 hex, optional>", "name": "helpfulness",
     "score": 0.8, "passed": true, "threshold": 0.5, "reason": "...", "source": "human"}

``name`` and at least one of ``score`` and ``passed`` are required. Without
``span_id`` the score goes to the trace's root span. The score becomes an
``evaluation`` span under that span, with the same attributes and metrics as the
collector's own evaluators (``rastir.evaluation.source`` tells them apart).

Auth: the ingest token, when one is set. A score is written data, like spans; the
query token only reads. Answers: 202 with the new span's ids, 400 naming the
problem, 401/403, 404 for a trace or span the store does not know (``sampled_out``
for a trace tail sampling dropped), 413 over 64 KiB, 503 while the store is not open.
With tail sampling, a trace still waiting for its decision is found among the
spans the sampler holds.
"""

from __future__ import annotations

import math
import re
from time import time_ns
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from rastir._wire import WireSpan
from rastir.collector.evaluation.base import Verdict
from rastir.collector.evaluation.service import EvaluationService, evaluation_span
from rastir.collector.ingest import Rejection
from rastir.collector.query import QueryError, parse_trace_id
from rastir.collector.sampling import TailSampler
from rastir.collector.state import CollectorState
from rastir.collector.store.base import SpanRow

__all__ = ["MAX_SCORE_BODY", "ScoreRequest", "ScoresEndpoint"]

MAX_SCORE_BODY: Final = 64 * 1024
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_SOURCE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}")
_encode = msgspec.json.Encoder().encode


class ScoreRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    trace_id: str
    name: str
    score: float | None = None
    passed: bool | None = None
    span_id: str | None = None
    threshold: float | None = None
    reason: str = ""
    source: str = "external"


_decoder = msgspec.json.Decoder(ScoreRequest)


class _BadRequest(Exception):
    pass


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _encode({"error": reason, "message": message}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class ScoresEndpoint:
    """The handler; ``create_app`` wraps :meth:`post` in the ingest-token check."""

    def __init__(self, evaluation: EvaluationService, state: CollectorState) -> None:
        self.evaluation = evaluation
        self.state = state

    async def post(self, request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SCORE_BODY:
                return _error(413, "too_large", f"a score body is at most {MAX_SCORE_BODY} bytes")
        try:
            score = _validate(_decoder.decode(body))
        except msgspec.DecodeError as e:
            return _error(400, "bad_request", f"invalid score: {e}")
        except _BadRequest as e:
            return _error(400, "bad_request", f"invalid score: {e}")
        store = self.state.store
        if store is None or not self.state.started:
            return _error(503, "not_ready", "the trace store is not open", self.state.retry_after)
        detail = await store.get_trace(score.trace_id)
        if detail is not None:
            rows = detail.spans
        else:
            found = self._awaiting_sampler(score.trace_id)
            if isinstance(found, Response):
                return found
            rows = found
        target = _target(rows, score.span_id)
        if target is None:
            return _error(
                404, "not_found", f"span {score.span_id} is not part of trace {score.trace_id}"
            )
        passed = score.passed
        if passed is None and score.score is not None and score.threshold is not None:
            passed = score.score >= score.threshold
        now = time_ns()
        span = evaluation_span(
            target.span,
            score.name,
            Verdict(score.score, passed, score.reason),
            start_ns=now,
            end_ns=now,
            source=score.source,
            threshold=score.threshold,
        )
        try:
            await self.evaluation.accept(target.service, {"service.name": target.service}, [span])
        except Rejection as e:
            # Saturated or closing: ingest's Retry-After goes with it.
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in e.headers or ()}
            return _error(e.status, e.reason, e.message, headers or None)
        return Response(
            _encode(
                {
                    "trace_id": span.trace_id,
                    "span_id": span.span_id,
                    "parent_span_id": span.parent_span_id,
                }
            ),
            status_code=202,
            media_type="application/json",
        )

    def _awaiting_sampler(self, trace_id: str) -> list[SpanRow] | Response:
        """A trace the store lacks: its spans held by the tail sampler, or why not.

        With ``--tail-sampling`` a trace reaches the store only once it is decided
        and kept. A score for a trace still waiting goes to the spans the sampler
        holds (the evaluation span then waits with them); a dropped trace is a 404
        that says so, not "unknown".
        """
        sampler = self.state.sampler
        if isinstance(sampler, TailSampler):
            kept, rows = sampler.find(trace_id)
            if rows:
                return rows
            if kept is False:
                return _error(
                    404,
                    "sampled_out",
                    f"trace {trace_id} was dropped by tail sampling: its spans are not "
                    "stored, so there is nothing to attach a score to",
                )
            if kept is True:  # decided a moment ago; the store has not written it yet
                return _error(
                    404, "not_found", f"trace {trace_id} is not stored yet: retry shortly"
                )
        sampled = ", were dropped by tail sampling" if sampler is not None else ""
        return _error(
            404,
            "not_found",
            f"trace {trace_id} is unknown: its spans have not reached this collector "
            f"(or are still in the store's write queue: retry), were not sent (the "
            f"sending service's head sampling){sampled}, or were deleted by retention",
        )


def _validate(s: ScoreRequest) -> ScoreRequest:
    try:
        trace_id = parse_trace_id(s.trace_id)
    except QueryError as e:
        raise _BadRequest(f"{e} - at `$.trace_id`")
    span_id = s.span_id
    if span_id is not None:
        span_id = span_id.lower()
        if _SPAN_ID.fullmatch(span_id) is None or span_id == "0" * 16:
            raise _BadRequest(
                f"span_id {span_id[:32]!r} must be 16 hex digits, not all zero - at `$.span_id`"
            )
    if _NAME.fullmatch(s.name) is None:
        raise _BadRequest(
            "name must be 1-64 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or '_' - at `$.name`"
        )
    if s.score is None and s.passed is None:
        raise _BadRequest("give a score (0..1), passed (true/false), or both")
    for field, value in (("score", s.score), ("threshold", s.threshold)):
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise _BadRequest(f"{field}={value!r} must be between 0 and 1 - at `$.{field}`")
    if _SOURCE.fullmatch(s.source) is None:
        raise _BadRequest(
            "source must be 1-64 letters, digits, '_', '.', ':' or '-' - at `$.source`"
        )
    return msgspec.structs.replace(s, trace_id=trace_id, span_id=span_id)


def _target(rows: list[SpanRow], span_id: str | None) -> SpanRow | None:
    """The span a score goes to: the one named, else the trace's root."""
    if span_id is not None:
        for row in rows:
            if row.span.span_id == span_id:
                return row
        return None
    ids = {row.span.span_id for row in rows}
    roots = [r for r in rows if r.span.parent_span_id is None or r.span.parent_span_id not in ids]
    return min(roots or rows, key=_start)


def _start(row: SpanRow) -> tuple[int, str]:
    s: WireSpan = row.span
    return (s.start_time_unix_nano, s.span_id)
