"""Prometheus metrics derived from ingested spans, and the collector's own health.

Why not ``prometheus_client.Counter``/``Histogram`` directly: each of their updates
takes a lock, and ``labels(...)`` costs about 1.4 µs (PERFORMANCE.md). Every update
here happens on the event loop thread, so the children below are plain lock-free
cells: the hot path is one dict lookup on the label tuple, then ``inc``/``observe``
on cached children. The families are exposed through a custom collector registered
in the app's own ``CollectorRegistry``; ``prometheus_client`` does the text format.

Cardinality guard: every label of every metric group is capped at
``max_label_values`` distinct values, and each group at ``max_series`` label
combinations. Values beyond the cap are folded into ``__other__`` and counted in
``rastir_label_overflow_total{metric,label}``. Folded combinations are never cached,
so a cardinality bomb cannot grow the cache either.

``docs/metrics.md`` documents every family; a test keeps the two in step.
"""

from __future__ import annotations

import math
import platform
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from rastir._wire import SDK_EVENTS, WireSpan

__all__ = ["OTHER", "Metrics", "collector_version"]

OTHER: Final = "__other__"
_INF: Final = math.inf
# Attribute values read as numbers must stay below this: JSON integers have no range,
# and one beyond a float's (10**400) would raise OverflowError when added. Any cost,
# duration or score that large is a sender's bug; it is ignored like a negative one.
_BIG: Final = 2.0**63
_SDK_EVENTS: Final = frozenset(SDK_EVENTS)
_MAX_LABEL_LEN: Final = 128  # longer label values are cut; a label is a name, not a text

# Buckets, in seconds unless named otherwise. LLM calls run from sub-second to many
# minutes (reasoning models, long generations); tools and MCP calls are mostly fast.
LLM_BUCKETS: Final = (
    0.1,
    0.25,
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    45,
    60,
    90,
    120,
    180,
    300,
    600,
)
TTFT_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30)
AGENT_BUCKETS: Final = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
TOOL_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RETRIEVAL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SCORE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
INGEST_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


def collector_version() -> str:
    """The installed rastir version, without importing the SDK facade's internals."""
    try:
        from importlib.metadata import version

        return version("rastir")
    except Exception:
        import rastir

        return str(getattr(rastir, "__version__", "0+unknown"))


_get_kind_status = attrgetter("kind", "status")


# --- children: lock-free cells, updated only on the event loop thread -----------------


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last cell is +Inf
        self.sum: float = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, which is Prometheus's "le" bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


_C = TypeVar("_C", bound="CounterChild | HistogramChild")


class Family(Generic[_C]):
    """One metric family: its metadata and its children keyed by label values."""

    __slots__ = ("buckets", "help", "kind", "labelnames", "make", "name", "series")

    def __init__(
        self,
        name: str,
        kind: str,
        help: str,
        labelnames: Sequence[str],
        make: Callable[[], _C],
        buckets: Sequence[float] = (),
    ) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.labelnames = tuple(labelnames)
        self.make: Callable[[], _C] = make
        self.buckets = tuple(float(b) for b in buckets)
        self.series: dict[tuple[str, ...], _C] = {}

    def child(self, labels: tuple[str, ...]) -> _C:
        c = self.series.get(labels)
        if c is None:
            c = self.make()
            self.series[labels] = c
        return c

    def metric(self) -> Metric:
        """The family as prometheus_client's exposition sees it."""
        labels = list(self.labelnames)
        items = list(self.series.items())
        if self.kind == "histogram":
            h = HistogramMetricFamily(self.name, self.help, labels=labels)
            les = [_fmt_le(b) for b in self.buckets] + ["+Inf"]
            for key, child in items:
                assert isinstance(child, HistogramChild)
                acc = 0
                cumulative: list[tuple[str, float]] = []
                for le, n in zip(les, child.counts, strict=True):
                    acc += n
                    cumulative.append((le, acc))
                h.add_metric(list(key), cumulative, child.sum)
            return h
        m: GaugeMetricFamily | CounterMetricFamily
        if self.kind == "gauge":
            m = GaugeMetricFamily(self.name, self.help, labels=labels)
        else:
            m = CounterMetricFamily(self.name, self.help, labels=labels)
        for key, child in items:
            assert isinstance(child, CounterChild)
            m.add_metric(list(key), child.value)
        return m


def _fmt_le(bound: float) -> str:
    return repr(float(bound))


class _Children(dict[str, _C]):
    """Children of one family that share a label prefix, keyed by a last, bounded label.

    The last label (status, error type, token type) is bounded by the wire schema, so
    a miss just creates the child: ``bundle.calls[status].inc()`` stays one lookup.
    """

    __slots__ = ("family", "prefix")

    def __init__(self, family: Family[_C], prefix: tuple[str, ...]) -> None:
        super().__init__()
        self.family: Family[_C] = family
        self.prefix = prefix

    def __missing__(self, key: str) -> _C:
        c = self.family.child((*self.prefix, key))
        self[key] = c
        return c


_B = TypeVar("_B")


class Group(Generic[_B]):
    """Metric families that share one label set, guarded together.

    ``bundles`` maps a label tuple to a bundle of cached children for every family of
    the group. Only unfolded tuples are keys, so it is bounded by ``max_series``.
    """

    __slots__ = (
        "bundles",
        "labelnames",
        "make",
        "max_series",
        "max_values",
        "name",
        "overflow",
        "seen",
    )

    def __init__(
        self,
        name: str,
        labelnames: Sequence[str],
        make: Callable[[tuple[str, ...]], _B],
        overflow: Family[CounterChild],
        max_values: int,
        max_series: int,
    ) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self.make = make
        self.overflow = overflow
        self.max_values = max_values
        self.max_series = max_series
        self.bundles: dict[tuple[str, ...], _B] = {}
        self.seen: list[set[str]] = [set() for _ in self.labelnames]

    def get(self, key: tuple[str, ...]) -> _B:
        b = self.bundles.get(key)
        if b is None:
            b = self.miss(key)
        return b

    def miss(self, key: tuple[str, ...]) -> _B:
        """The slow path: sanitize, apply the cardinality guard, create a bundle."""
        folded: list[str] = []
        for i, raw in enumerate(key):
            v = raw if raw.__class__ is str else label_value(raw)
            if len(v) > _MAX_LABEL_LEN:
                v = v[:_MAX_LABEL_LEN]
            seen = self.seen[i]
            if v not in seen:
                if len(seen) >= self.max_values:
                    self.overflow.child((self.name, self.labelnames[i])).inc()
                    v = OTHER
                else:
                    seen.add(v)
            folded.append(v)
        fkey = tuple(folded)
        b = self.bundles.get(fkey)
        if b is not None:
            return b
        if len(self.bundles) >= self.max_series:
            self.overflow.child((self.name, "__series__")).inc()
            fkey = (OTHER,) * len(fkey)
            b = self.bundles.get(fkey)
            if b is not None:
                return b
        b = self.make(fkey)
        self.bundles[fkey] = b
        return b


def label_value(value: Any) -> str:
    """A label from an attribute of any wire type; ids and texts never get here."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "__invalid__"


# --- bundles: the cached children of one label combination -----------------------------


class _LLM:
    __slots__ = ("calls", "cost", "duration", "errors", "key", "tokens_in", "tokens_out", "ttft")

    def __init__(self, m: Metrics, key: tuple[str, ...]) -> None:
        self.key = key
        self.calls = _Children(m.llm_calls, key)
        self.errors = _Children(m.llm_errors, key)
        self.duration = m.llm_duration.child(key)
        # Made on first use: most calls do not stream, and an empty histogram is noise.
        self.ttft: HistogramChild | None = None
        self.tokens_in = m.llm_tokens.child((*key, "input"))
        self.tokens_out = m.llm_tokens.child((*key, "output"))
        self.cost = m.llm_cost.child(key)


class _Timed:
    """Calls by status, errors by category and a duration histogram."""

    __slots__ = ("calls", "duration", "errors")

    def __init__(
        self,
        calls: Family[CounterChild],
        errors: Family[CounterChild],
        duration: Family[HistogramChild],
        key: tuple[str, ...],
    ) -> None:
        self.calls = _Children(calls, key)
        self.errors = _Children(errors, key)
        self.duration = duration.child(key)


class _Retrieval(_Timed):
    __slots__ = ("documents",)

    def __init__(self, m: Metrics, key: tuple[str, ...]) -> None:
        super().__init__(m.retrieval_calls, m.retrieval_errors, m.retrieval_duration, key)
        self.documents = m.retrieval_documents.child(key)


class _HTTP:
    __slots__ = ("duration", "requests")

    def __init__(self, m: Metrics, key: tuple[str, ...]) -> None:
        self.requests = m.http_requests.child(key)
        self.duration = m.http_duration.child(key[:3])


class _Eval:
    __slots__ = ("results", "score")

    def __init__(self, m: Metrics, key: tuple[str, ...]) -> None:
        self.results = _Children(m.eval_results, key)
        self.score = m.eval_score.child(key)


class _Service:
    __slots__ = ("batches", "client_dropped", "key", "spans", "spans_by_kind")

    def __init__(self, m: Metrics, key: tuple[str, ...]) -> None:
        self.key = key
        self.spans = m.ingested_spans.child(key)
        self.batches = m.ingested_batches.child(key)
        self.client_dropped = m.client_dropped.child(key)
        self.spans_by_kind: dict[str, _Children[CounterChild]] = {}

    def kind(self, m: Metrics, kind: str) -> _Children[CounterChild]:
        c = self.spans_by_kind.get(kind)
        if c is None:
            c = _Children(m.spans, (*self.key, kind))
            self.spans_by_kind[kind] = c
        return c


StatsFn = Callable[[], Iterable[Metric]]


class Metrics(Collector):
    """Every family the collector exposes, and the hot-path update :meth:`record`.

    Register it in the app's own registry with :meth:`register`.
    """

    def __init__(self, *, max_label_values: int = 1000, max_series: int = 10_000) -> None:
        self.max_label_values = max_label_values
        self.max_series = max_series
        self.families: list[Family[Any]] = []
        self._extra: list[StatsFn] = []
        C, H = self._counter, self._histogram

        # LLM calls
        llm = ("service", "model", "provider", "agent")
        self.llm_calls = C("rastir_llm_calls_total", "LLM calls, by outcome.", (*llm, "status"))
        self.llm_errors = C(
            "rastir_llm_errors_total", "Failed LLM calls, by error category.", (*llm, "error_type")
        )
        self.llm_duration = H(
            "rastir_llm_duration_seconds", "Duration of LLM calls.", llm, LLM_BUCKETS
        )
        self.llm_ttft = H(
            "rastir_llm_ttft_seconds",
            "Time to first token of streaming LLM calls.",
            llm,
            TTFT_BUCKETS,
        )
        self.llm_tokens = C(
            "rastir_llm_tokens_total",
            "Tokens used by LLM calls; token_type is input or output.",
            (*llm, "token_type"),
        )
        self.llm_cost = C("rastir_llm_cost_usd_total", "Estimated cost of LLM calls in USD.", llm)
        guard = ("service", "agent", "model", "provider", "action", "category")
        self.guardrail = C(
            "rastir_guardrail_violations_total",
            "LLM calls where a guardrail intervened.",
            guard,
        )
        # agents
        agent = ("service", "agent")
        self.agent_runs = C(
            "rastir_agent_runs_total", "Agent runs, by outcome.", (*agent, "status")
        )
        self.agent_errors = C(
            "rastir_agent_errors_total",
            "Failed agent runs, by error category.",
            (*agent, "error_type"),
        )
        self.agent_duration = H(
            "rastir_agent_duration_seconds", "Duration of agent runs.", agent, AGENT_BUCKETS
        )
        # tools
        tool = ("service", "tool", "agent")
        self.tool_calls = C("rastir_tool_calls_total", "Tool calls, by outcome.", (*tool, "status"))
        self.tool_errors = C(
            "rastir_tool_errors_total",
            "Failed tool calls, by error category.",
            (*tool, "error_type"),
        )
        self.tool_duration = H(
            "rastir_tool_duration_seconds", "Duration of tool calls.", tool, TOOL_BUCKETS
        )
        # retrieval
        ret = ("service", "agent")
        self.retrieval_calls = C(
            "rastir_retrieval_calls_total", "Retrieval calls, by outcome.", (*ret, "status")
        )
        self.retrieval_errors = C(
            "rastir_retrieval_errors_total",
            "Failed retrieval calls, by error category.",
            (*ret, "error_type"),
        )
        self.retrieval_duration = H(
            "rastir_retrieval_duration_seconds",
            "Duration of retrieval calls.",
            ret,
            RETRIEVAL_BUCKETS,
        )
        self.retrieval_documents = C(
            "rastir_retrieval_documents_total", "Documents returned by retrieval calls.", ret
        )
        # MCP
        mcp = ("service", "side", "method", "tool")
        self.mcp_requests = C(
            "rastir_mcp_requests_total",
            "MCP operations; side is client or server.",
            (*mcp, "status"),
        )
        self.mcp_errors = C(
            "rastir_mcp_errors_total",
            "Failed MCP operations, by error category.",
            (*mcp, "error_type"),
        )
        self.mcp_duration = H(
            "rastir_mcp_duration_seconds", "Duration of MCP operations.", mcp, TOOL_BUCKETS
        )
        # HTTP server
        http = ("service", "method", "route", "status_code")
        self.http_requests = C(
            "rastir_http_server_requests_total", "HTTP requests served by instrumented apps.", http
        )
        self.http_duration = H(
            "rastir_http_server_duration_seconds",
            "Duration of HTTP requests served by instrumented apps.",
            http[:3],
            HTTP_BUCKETS,
        )
        # @metric functions
        fn = ("service", "function")
        self.fn_calls = C(
            "rastir_function_calls_total",
            "Calls of @metric functions, by outcome.",
            (*fn, "status"),
        )
        self.fn_errors = C(
            "rastir_function_errors_total",
            "Failed calls of @metric functions, by error category.",
            (*fn, "error_type"),
        )
        self.fn_duration = H(
            "rastir_function_duration_seconds", "Duration of @metric functions.", fn, TOOL_BUCKETS
        )
        # evaluations
        ev = ("service", "agent", "model", "evaluation")
        self.eval_results = C(
            "rastir_evaluations_total",
            "Evaluations run; result is passed, failed, error (no verdict) or none.",
            (*ev, "result"),
        )
        self.eval_score = H(
            "rastir_evaluation_score", "Scores of evaluations (usually 0..1).", ev, SCORE_BUCKETS
        )
        # the collector's own evaluation runs (rastir.collector.evaluation); the
        # evaluation label takes configured names only, so no guard is needed
        self.eval_duration = H(
            "rastir_evaluation_duration_seconds",
            "Time the collector took to run one evaluation, judge retries included.",
            ("evaluation",),
            LLM_BUCKETS,
        )
        self.eval_failures = C(
            "rastir_evaluation_failures_total",
            "Evaluations that gave no verdict (timeout, judge error, unreadable reply), by reason.",
            ("evaluation", "reason"),
        )
        self.eval_skipped = C(
            "rastir_evaluation_skipped_total",
            "Selected LLM spans not evaluated because they lack the text, by reason.",
            ("evaluation", "reason"),
        )
        self.eval_dropped = C(
            "rastir_evaluation_dropped_total",
            "Evaluations dropped: queue full, shutdown, or the result refused by the store.",
            ("reason",),
        )
        # every span
        self.spans = C(
            "rastir_spans_total",
            "Spans received, by kind and status.",
            ("service", "kind", "status"),
        )

        # the collector's own health
        svc = ("service",)
        self.ingested_spans = C(
            "rastir_collector_ingested_spans_total", "Spans accepted by the collector.", svc
        )
        self.ingested_batches = C(
            "rastir_collector_ingested_batches_total", "Batches accepted by the collector.", svc
        )
        self.client_dropped = C(
            "rastir_collector_client_dropped_spans_total",
            "Spans senders report they dropped before sending (the batch's dropped field).",
            svc,
        )
        self.client_events = C(
            "rastir_collector_client_events_total",
            "Health events senders report (the batch's sdk_events field): inbound trace "
            "context their middleware or MCP bridge refused, hooks that raised.",
            ("service", "event"),
        )
        self.rejected = C(
            "rastir_collector_rejected_requests_total",
            "Ingest requests refused, by reason.",
            ("reason",),
        )
        self.slow_readers = C(
            "rastir_collector_slow_readers_total",
            "Streamed query answers cut because the client stopped reading: stalled (one "
            "piece waited 30 s) or too_slow (the answer waited 300 s in all).",
            ("reason",),
        )
        self.truncated = C(
            "rastir_collector_truncated_total",
            "Values the collector cut to its limits, by field.",
            ("field",),
        )
        self.export_failures = C(
            "rastir_collector_export_failures_total",
            "Export requests that failed (no answer or an error status; each retry counts), "
            "by exporter.",
            ("exporter",),
        )
        self.sampled_out = C(
            "rastir_collector_sampled_out_spans_total",
            "Spans counted in the metrics but neither stored nor exported, because head "
            "sampling (the span's sampled flag) or tail sampling dropped their trace.",
            ("stage",),
        )
        self.ingest_duration = H(
            "rastir_collector_ingest_duration_seconds",
            "Time to handle an accepted ingest request, from headers to reply.",
            (),
            INGEST_BUCKETS,
        )
        self.label_overflow = C(
            "rastir_label_overflow_total",
            "Label values folded into __other__ by the cardinality guard; metric names the "
            "metric group, label the folded label (__series__: the group's series cap).",
            ("metric", "label"),
        )
        self.build_info = self._gauge(
            "rastir_collector_build_info",
            "Always 1; the labels tell the collector's version and Python.",
            ("version", "python"),
        )
        self.build_info.child((collector_version(), platform.python_version())).value = 1.0
        self.export_failures.child(("otlp",))  # announce the family at 0
        self.slow_readers.child(("stalled",))
        self.slow_readers.child(("too_slow",))
        self.sampled_out.child(("head",))
        self.sampled_out.child(("tail",))

        # groups: a dict lookup on the label tuple yields cached children
        G = self._group
        self.g_llm: Group[_LLM] = G("rastir_llm", llm, lambda k: _LLM(self, k))
        self.g_guard: Group[CounterChild] = G("rastir_guardrail", guard, self.guardrail.child)
        self.g_agent: Group[_Timed] = G(
            "rastir_agent",
            agent,
            lambda k: _Timed(self.agent_runs, self.agent_errors, self.agent_duration, k),
        )
        self.g_tool: Group[_Timed] = G(
            "rastir_tool",
            tool,
            lambda k: _Timed(self.tool_calls, self.tool_errors, self.tool_duration, k),
        )
        self.g_retrieval: Group[_Retrieval] = G(
            "rastir_retrieval", ret, lambda k: _Retrieval(self, k)
        )
        self.g_mcp: Group[_Timed] = G(
            "rastir_mcp",
            mcp,
            lambda k: _Timed(self.mcp_requests, self.mcp_errors, self.mcp_duration, k),
        )
        self.g_http: Group[_HTTP] = G("rastir_http_server", http, lambda k: _HTTP(self, k))
        self.g_fn: Group[_Timed] = G(
            "rastir_function",
            fn,
            lambda k: _Timed(self.fn_calls, self.fn_errors, self.fn_duration, k),
        )
        self.g_eval: Group[_Eval] = G("rastir_evaluation", ev, lambda k: _Eval(self, k))
        self.g_service: Group[_Service] = G("rastir_collector", svc, lambda k: _Service(self, k))
        self.g_client_events: Group[CounterChild] = G(
            "rastir_collector_client_events", ("service", "event"), self.client_events.child
        )
        self._llm_bundles = self.g_llm.bundles
        self._tool_bundles = self.g_tool.bundles
        self._handlers: dict[str, Callable[[str, WireSpan, float, dict[str, Any]], None]] = {
            "llm": self._llm,
            "tool": self._tool,
            "agent": self._agent,
            "retrieval": self._retrieval,
            "mcp.client": self._mcp_client,
            "mcp.server": self._mcp_server,
            "http.server": self._http_server,
            "custom": self._custom,
            "evaluation": self._evaluation,
        }

    # --- construction helpers

    def _counter(self, name: str, help: str, labels: Sequence[str]) -> Family[CounterChild]:
        f = Family(name, "counter", help, labels, CounterChild)
        self.families.append(f)
        return f

    def _gauge(self, name: str, help: str, labels: Sequence[str]) -> Family[CounterChild]:
        f = Family(name, "gauge", help, labels, CounterChild)
        self.families.append(f)
        return f

    def _histogram(
        self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Family[HistogramChild]:
        bounds = tuple(float(b) for b in buckets)
        f = Family(name, "histogram", help, labels, lambda: HistogramChild(bounds), bounds)
        self.families.append(f)
        return f

    def _group(
        self, name: str, labels: Sequence[str], make: Callable[[tuple[str, ...]], _B]
    ) -> Group[_B]:
        return Group(
            name, labels, make, self.label_overflow, self.max_label_values, self.max_series
        )

    # --- exposition

    def add_source(self, fn: StatsFn) -> None:
        """Add families computed at scrape time (gauges read from the store, say)."""
        self._extra.append(fn)

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse duplicates without a scrape.
        return [_empty(f) for f in self.families]

    def collect(self) -> Iterable[Metric]:
        for f in self.families:
            yield f.metric()
        for fn in self._extra:
            yield from fn()

    # --- the hot path

    def record_batch(self, service: str, spans: list[WireSpan], dropped: int) -> None:
        """Update every metric for one accepted batch. Call on the event loop thread."""
        svc = self.g_service.bundles.get((service,))
        if svc is None:
            svc = self.g_service.miss((service,))
        svc.spans.inc(len(spans))
        svc.batches.inc()
        if dropped:
            svc.client_dropped.inc(dropped)
        # Spans by (kind, status), counted in C: a batch has a handful of pairs.
        by_kind = svc.spans_by_kind
        for (kind, status), n in Counter(map(_get_kind_status, spans)).items():
            counts = by_kind.get(kind)
            if counts is None:
                counts = svc.kind(self, kind)
            counts[status].value += n
        get_handler = self._handlers.get
        for s in spans:
            h = get_handler(s.kind)
            if h is not None:
                h(service, s, (s.end_time_unix_nano - s.start_time_unix_nano) * 1e-9, s.attributes)

    def _llm(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        if "rastir.llm.counted_in" in a:
            # The same call as an LLM span inside it, which is counted (the SDK's
            # rastir.adapters._nested): once, with the inner span's numbers.
            return
        get = a.get
        model = get("gen_ai.response.model") or get("gen_ai.request.model") or "unknown"
        provider = get("gen_ai.provider.name") or "unknown"
        key = (service, model, provider, get("gen_ai.agent.name") or "")
        try:
            b = self._llm_bundles.get(key)
        except TypeError:  # an unhashable (list) attribute: sanitize on the slow path
            b = None
        if b is None:
            b = self.g_llm.miss(key)
        status = s.status
        b.calls[status].value += 1
        h = b.duration
        h.counts[bisect_left(h.bounds, dur)] += 1
        h.sum += dur
        if status == "error":
            err = s.error
            b.errors[err.type if err is not None else "unknown"].value += 1
        # Token counts are ints: only one beyond a float's range (10**400) fails, and a
        # try costs nothing until it does (a bound check here costs every LLM span).
        v = get("gen_ai.usage.input_tokens")
        if v.__class__ is int and v > 0:
            try:
                b.tokens_in.value += v
            except OverflowError:
                pass
        v = get("gen_ai.usage.output_tokens")
        if v.__class__ is int and v > 0:
            try:
                b.tokens_out.value += v
            except OverflowError:
                pass
        v = get("rastir.cost.usd")
        if v is not None and (v.__class__ is float or v.__class__ is int) and 0 < v < _BIG:
            b.cost.value += v
        v = get("rastir.ttft_ms")
        if v is not None and (v.__class__ is float or v.__class__ is int) and 0 <= v < _BIG:
            ttft = b.ttft
            if ttft is None:
                ttft = b.ttft = self.llm_ttft.child(b.key)
            ttft.observe(v * 0.001)
        if a.get("rastir.guardrail.intervened") is True:
            gkey = (
                service,
                key[3],
                model,
                provider,
                a.get("rastir.guardrail.action") or "unknown",
                a.get("rastir.guardrail.category") or "unknown",
            )
            try:
                g = self.g_guard.bundles.get(gkey)
            except TypeError:
                g = None
            if g is None:
                g = self.g_guard.miss(gkey)
            g.inc()

    def _timed(self, group: Group[Any], key: tuple[Any, ...], s: WireSpan, dur: float) -> Any:
        try:
            b = group.bundles.get(key)
        except TypeError:
            b = None
        if b is None:
            b = group.miss(key)
        status = s.status
        b.calls[status].value += 1
        h = b.duration
        h.counts[bisect_left(h.bounds, dur)] += 1
        h.sum += dur
        if status == "error":
            err = s.error
            b.errors[err.type if err is not None else "unknown"].value += 1
        return b

    def _agent(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        self._timed(self.g_agent, (service, a.get("gen_ai.agent.name") or s.name), s, dur)

    def _tool(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        # _timed inlined: tool calls are the second most common span.
        key = (service, a.get("gen_ai.tool.name") or s.name, a.get("gen_ai.agent.name") or "")
        try:
            b = self._tool_bundles.get(key)
        except TypeError:
            b = None
        if b is None:
            b = self.g_tool.miss(key)
        status = s.status
        b.calls[status].value += 1
        h = b.duration
        h.counts[bisect_left(h.bounds, dur)] += 1
        h.sum += dur
        if status == "error":
            err = s.error
            b.errors[err.type if err is not None else "unknown"].value += 1

    def _retrieval(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        b = self._timed(self.g_retrieval, (service, a.get("gen_ai.agent.name") or ""), s, dur)
        n = a.get("rastir.retrieval.documents")
        if n.__class__ is int and n > 0:
            try:
                b.documents.inc(n)
            except OverflowError:  # beyond a float's range, as tokens
                pass

    def _mcp_client(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        key = (
            service,
            "client",
            a.get("mcp.method.name") or "unknown",
            a.get("gen_ai.tool.name") or "",
        )
        self._timed(self.g_mcp, key, s, dur)

    def _mcp_server(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        key = (
            service,
            "server",
            a.get("mcp.method.name") or "unknown",
            a.get("gen_ai.tool.name") or "",
        )
        self._timed(self.g_mcp, key, s, dur)

    def _http_server(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        code = a.get("http.response.status_code")
        key = (
            service,
            a.get("http.request.method") or "unknown",
            a.get("http.route") or "",  # never url.path: unbounded
            code if code.__class__ is str else label_value(code),
        )
        try:
            b = self.g_http.bundles.get(key)
        except TypeError:
            b = None
        if b is None:
            b = self.g_http.miss(key)
        b.requests.inc()
        b.duration.observe(dur)

    def _custom(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        name = a.get("rastir.metric.name")
        if name:
            self._timed(self.g_fn, (service, name), s, dur)

    def _evaluation(self, service: str, s: WireSpan, dur: float, a: dict[str, Any]) -> None:
        key = (
            service,
            a.get("gen_ai.agent.name") or "",
            a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or "",
            a.get("rastir.evaluation.name") or s.name,
        )
        try:
            b = self.g_eval.bundles.get(key)
        except TypeError:
            b = None
        if b is None:
            b = self.g_eval.miss(key)
        passed = a.get("rastir.evaluation.passed")
        if s.status == "error":  # the evaluator failed: never a pass, nor a verdict
            b.results["error"].inc()
        else:
            b.results["passed" if passed is True else "failed" if passed is False else "none"].inc()
        score = a.get("rastir.evaluation.score")
        if (score.__class__ is float or score.__class__ is int) and -_BIG < score < _BIG:
            b.score.observe(score)

    # --- the collector's own health, off the span path

    def record_client_events(self, service: str, events: dict[str, int]) -> None:
        """Count the ``sdk_events`` of one accepted batch under its service.

        A name outside ``SDK_EVENTS`` (a newer sender's, or garbage) is counted under
        ``__other__`` and the fold in ``rastir_label_overflow_total``: the ``event``
        label never takes more than ``len(SDK_EVENTS) + 1`` values.
        """
        group = self.g_client_events
        for name, n in events.items():
            if not n:
                continue
            if name not in _SDK_EVENTS:
                self.label_overflow.child((group.name, "event")).inc()
                name = OTHER
            group.get((service, name)).inc(n)

    def reject(self, reason: str) -> None:
        self.rejected.child((reason,)).inc()

    def truncated_count(self, field: str, n: int = 1) -> None:
        self.truncated.child((field,)).inc(n)


def _empty(f: Family[Any]) -> Metric:
    if f.kind == "histogram":
        return HistogramMetricFamily(f.name, f.help, labels=list(f.labelnames))
    if f.kind == "gauge":
        return GaugeMetricFamily(f.name, f.help, labels=list(f.labelnames))
    return CounterMetricFamily(f.name, f.help, labels=list(f.labelnames))


def gauge(name: str, help: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    """A one-sample gauge family, for sources added with :meth:`Metrics.add_source`."""
    if labels:
        g = GaugeMetricFamily(name, help, labels=list(labels))
        g.add_metric(list(labels.values()), value)
        return g
    return GaugeMetricFamily(name, help, value=value)


def counter(name: str, help: str, value: float) -> Metric:
    """A one-sample counter family, for sources added with :meth:`Metrics.add_source`."""
    return CounterMetricFamily(name, help, value=value)


def iter_names(metrics: Metrics) -> Iterator[str]:
    for f in metrics.families:
        yield f.name
