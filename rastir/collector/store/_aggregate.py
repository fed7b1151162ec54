"""Per-trace aggregates, maintained incrementally as spans arrive.

Both stores keep one :class:`TraceAggregate` per trace: the memory store in a dict,
the SQLite store as a row of its ``traces`` table. Adding a span is O(1); a span
that *replaces* an earlier copy of itself (same ``span_id``) cannot be subtracted
from a min/max, so the stores rebuild that trace's aggregate from its spans
instead (:meth:`TraceAggregate.from_rows`). Duplicates are rare (an SDK retrying a
batch the collector had already accepted), so the common path stays O(1).

Evaluation spans (kind ``evaluation``, rastir.collector.evaluation) describe the
trace; they are not part of what the application did. They count as spans of the
trace, but neither their status, their error type nor their end time reaches the
aggregate: a failed or slow judge must not turn an application's trace into an
error trace or a slow one (``?status=error``, ``min_duration_ms``).

The aggregate also yields the trace's *tags*: the (key, value) pairs that
``GET /v1/traces`` filters on (service, agent, model, error type, and "has an
error"). Stores index traces by tag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import Any, Final

from rastir._wire import WireSpan
from rastir.collector.store.base import SpanRow, TraceQuery, TraceSummary

__all__ = [
    "AGENT",
    "COST_USD",
    "INPUT_TOKENS",
    "MAX_TOKENS",
    "OUTPUT_TOKENS",
    "REQUEST_MODEL",
    "RESPONSE_MODEL",
    "TAG_AGENT",
    "TAG_ERROR_TYPE",
    "TAG_HAS_ERROR",
    "TAG_MODEL",
    "TAG_SERVICE",
    "Tag",
    "TraceAggregate",
    "query_tags",
]

# OpenTelemetry GenAI semantic conventions, and our own cost attribute.
AGENT: Final = "gen_ai.agent.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
COST_USD: Final = "rastir.cost.usd"
# On an LLM span whose call is also reported by an LLM span inside it (the SDK's
# rastir.adapters._nested): its tokens and cost are counted there, not here.
COUNTED_IN: Final = "rastir.llm.counted_in"

# Tag keys are small integers: they are part of an SQLite index key.
TAG_SERVICE: Final = 1
TAG_AGENT: Final = 2
TAG_MODEL: Final = 3
TAG_ERROR_TYPE: Final = 4
TAG_HAS_ERROR: Final = 5  # value "error"; lets ``status=error`` use the tag index

Tag = tuple[int, str]

# Larger than any Unix-nanosecond start an int64 column can hold.
_NO_START: Final = 1 << 63
#: The span kind that judges a trace rather than being part of it.
_EVALUATION: Final = "evaluation"


# A token count beyond this is a sender's bug. Bounding each span's count keeps a
# trace's sum far inside the 64-bit integers SQLite stores.
MAX_TOKENS: Final = 1 << 40


_get_start = attrgetter("start_time_unix_nano")
_get_end = attrgetter("end_time_unix_nano")
_get_status = attrgetter("status")
_get_error = attrgetter("error")
_get_parent = attrgetter("parent_span_id")
_get_attributes = attrgetter("attributes")
_get_kind = attrgetter("kind")
_start_and_id = attrgetter("start_time_unix_nano", "span_id")
_not_none = partial(is_not, None)


def _count(value: object) -> int:
    # bool is an int subclass: ``True`` tokens is a sender's bug, not one token.
    if type(value) is float and math.isfinite(value):
        value = int(value)
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value
    return 0


def _usd(value: object) -> float:
    if type(value) is float:
        return value if math.isfinite(value) else 0.0
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:  # JSON integers have no range: 10**400 is no cost
            return 0.0
    return 0.0


class TraceAggregate:
    """What a trace summary and the trace filters need, without the spans.

    The root is the earliest span without a parent; while only spans with parents
    are known (orphans), the earliest span. Ties break on ``span_id`` so that an
    incrementally built aggregate and one rebuilt from the same spans agree.
    """

    __slots__ = (
        "agents",
        "cost_usd",
        "end_ns",
        "error_count",
        "error_types",
        "input_tokens",
        "models",
        "output_tokens",
        "root_name",
        "root_rank",
        "root_span_id",
        "root_start",
        "services",
        "span_count",
        "start_ns",
    )

    def __init__(self) -> None:
        self.start_ns = _NO_START
        self.end_ns = 0
        self.span_count = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.error_count = 0
        # The root is the smallest (rank, start, span_id); rank 0 for a span without
        # parent, 1 for one with; 2 while there is no span.
        self.root_rank = 2
        self.root_start = 0
        self.root_span_id = ""
        self.root_name = ""
        self.services: set[str] = set()
        self.agents: set[str] = set()
        self.models: set[str] = set()
        self.error_types: set[str] = set()

    @classmethod
    def from_rows(cls, rows: Iterable[SpanRow]) -> TraceAggregate:
        """Aggregate spans that are already unique by ``span_id``."""
        aggregate = cls()
        for row in rows:
            aggregate.add(row.service, row.span)
        return aggregate

    def add(self, service: str, span: WireSpan) -> None:
        """Count one span that this aggregate has not seen before."""
        # The hot path of every store write: keep it to plain comparisons.
        start = span.start_time_unix_nano
        if start < self.start_ns:
            self.start_ns = start
        self.span_count += 1
        self.services.add(service)
        if span.kind != _EVALUATION:  # see the module docstring
            end = span.end_time_unix_nano
            if end > self.end_ns:
                self.end_ns = end
            if span.status == "error":
                self.error_count += 1
            if span.error is not None:
                self.error_types.add(span.error.type)
        rank = 0 if span.parent_span_id is None else 1
        if rank < self.root_rank or (
            rank == self.root_rank and (start, span.span_id) < (self.root_start, self.root_span_id)
        ):
            self.root_rank = rank
            self.root_start = start
            self.root_span_id = span.span_id
            self.root_name = span.name
        attributes = span.attributes
        if attributes:
            get = attributes.get
            value = get(AGENT)
            if isinstance(value, str) and value:
                self.agents.add(value)
            value = get(REQUEST_MODEL)
            if isinstance(value, str) and value:
                self.models.add(value)
            value = get(RESPONSE_MODEL)
            if isinstance(value, str) and value:
                self.models.add(value)
            if COUNTED_IN in attributes:
                return
            value = get(INPUT_TOKENS)
            if value is not None:
                self.input_tokens += _count(value)
            value = get(OUTPUT_TOKENS)
            if value is not None:
                self.output_tokens += _count(value)
            value = get(COST_USD)
            if value is not None:
                self.cost_usd += _usd(value)

    def add_many(self, service: str, spans: list[WireSpan]) -> None:
        """:meth:`add` each of ``spans`` (unique, not seen before, from ``service``).

        The same result as adding them one by one, with most loops in C: a store
        write calls this once per trace of a batch.
        """
        if not spans:
            return
        start = min(map(_get_start, spans))
        if start < self.start_ns:
            self.start_ns = start
        self.span_count += len(spans)
        self.services.add(service)
        # Evaluation spans leave out end, status and error (module docstring). They
        # come alone, one per accept(), so the common batch has none: one pass in C.
        own = spans
        if _EVALUATION in list(map(_get_kind, spans)):
            own = [s for s in spans if s.kind != _EVALUATION]
        if own:
            end = max(map(_get_end, own))
            if end > self.end_ns:
                self.end_ns = end
            self.error_count += list(map(_get_status, own)).count("error")
            if any(map(_get_error, own)):
                for span in own:
                    if span.error is not None:
                        self.error_types.add(span.error.type)
        roots = list(compress(spans, map(is_, map(_get_parent, spans), repeat(None))))
        rank = 0 if roots else 1
        first = min(roots or spans, key=_start_and_id)
        start = first.start_time_unix_nano
        if rank < self.root_rank or (
            rank == self.root_rank and (start, first.span_id) < (self.root_start, self.root_span_id)
        ):
            self.root_rank = rank
            self.root_start = start
            self.root_span_id = first.span_id
            self.root_name = first.name
        attrs = list(filter(None, map(_get_attributes, spans)))
        if not attrs:
            return
        _add_names(self.agents, list(map(dict.get, attrs, repeat(AGENT))))
        _add_names(self.models, list(map(dict.get, attrs, repeat(REQUEST_MODEL))))
        _add_names(self.models, list(map(dict.get, attrs, repeat(RESPONSE_MODEL))))
        if any(map(dict.__contains__, attrs, repeat(COUNTED_IN))):
            attrs = [a for a in attrs if COUNTED_IN not in a]
        self.input_tokens += sum(
            map(_count, filter(_not_none, map(dict.get, attrs, repeat(INPUT_TOKENS))))
        )
        self.output_tokens += sum(
            map(_count, filter(_not_none, map(dict.get, attrs, repeat(OUTPUT_TOKENS))))
        )
        cost = self.cost_usd
        for value in filter(_not_none, map(dict.get, attrs, repeat(COST_USD))):
            cost += _usd(value)  # in span order, as add() sums: floats must agree
        self.cost_usd = cost

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns) if self.span_count else 0

    def tags(self) -> set[Tag]:
        """Every (key, value) this trace can be found by."""
        tags: set[Tag] = {(TAG_SERVICE, value) for value in self.services}
        tags.update((TAG_AGENT, value) for value in self.agents)
        tags.update((TAG_MODEL, value) for value in self.models)
        tags.update((TAG_ERROR_TYPE, value) for value in self.error_types)
        if self.error_count:
            tags.add((TAG_HAS_ERROR, "error"))
        return tags

    def summary(self, trace_id: str) -> TraceSummary:
        return TraceSummary(
            trace_id=trace_id,
            root_name=self.root_name,
            services=sorted(self.services),
            span_count=self.span_count,
            start_time_unix_nano=self.start_ns if self.span_count else 0,
            duration_ns=self.duration_ns,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            error_count=self.error_count,
            status="error" if self.error_count else "ok",
        )


def _add_names(into: set[str], values: list[Any]) -> None:
    """Add the non-empty strings among ``values`` to ``into``."""
    try:
        distinct = set(values)
    except TypeError:  # an unhashable (list) value among them
        distinct = {v for v in values if isinstance(v, str)}
    for value in distinct:
        if isinstance(value, str) and value:
            into.add(value)


def query_tags(query: TraceQuery) -> list[Tag]:
    """The tags a trace must all have to match ``query``, likely most selective first.

    The SQLite store walks the first tag's index range and checks the others per
    trace. Errors are the rarest (and an error type rarer than any error); a service
    is the commonest, most traces passing through the main one.
    """
    tags: list[Tag] = []
    if query.error_type is not None:
        tags.append((TAG_ERROR_TYPE, query.error_type))
    if query.status == "error":
        tags.append((TAG_HAS_ERROR, "error"))
    if query.agent is not None:
        tags.append((TAG_AGENT, query.agent))
    if query.model is not None:
        tags.append((TAG_MODEL, query.model))
    if query.service is not None:
        tags.append((TAG_SERVICE, query.service))
    return tags
