"""The evaluation service: picks LLM spans at ingest, evaluates them off the request path.

Flow::

    accept() ── sink ──► bounded queue ──► N worker tasks ──► evaluator ──► judge
    (ingest)     │ select, sample,          (anyio, same        (deterministic
                 │ check the text           event loop)          or LLM judge)
                 └─ full: drop + count                 │
                                                       ▼
                          accept() ◄── ``evaluation`` span, child of the LLM span

The sink runs on the event loop inside ``accept()``. It never awaits and never
parses: per LLM span it tests the selectors and the presence of the text, then
appends to a bounded queue of ``eval_queue_size`` items. A full queue drops
the evaluation and counts it (``rastir_evaluation_dropped_total{reason="queue_full"}``);
ingest never waits for evaluation.

Workers are tasks on the collector's event loop; judge calls are async HTTP (httpx),
so a slow judge holds a worker, not the loop. CPU work on the evaluated text
(redaction, the deterministic evaluators, decoding a long text) runs in a worker
thread (``anyio.to_thread``), one per busy worker at most, so it never stalls ingest.
At most ``eval_workers`` evaluations run at once. Results are fed back through
``accept()`` (store, metrics, other sinks such as the OTLP exporter). They cannot
re-enter evaluation: their kind is ``evaluation``, and only ``llm`` spans are
selected.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from random import getrandbits
from time import perf_counter, time_ns
from types import MappingProxyType
from typing import Any, Final

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus
from prometheus_client.metrics_core import Metric

from rastir._wire import WireError, WireSpan
from rastir.collector.evaluation._queue import BoundedQueue
from rastir.collector.evaluation.base import (
    EvalContext,
    EvaluationFailed,
    Evaluator,
    Sample,
    Verdict,
)
from rastir.collector.evaluation.config import EvaluationConfig, EvaluatorConfig, load_config
from rastir.collector.evaluation.content import (
    INPUT_KEYS,
    OUTPUT_KEYS,
    has_text,
    input_text,
    is_cut,
    output_text,
)
from rastir.collector.evaluation.judge import JudgeClient, JudgeEvaluator
from rastir.collector.evaluation.redaction import Redactor
from rastir.collector.evaluation.registry import EvaluatorRegistry
from rastir.collector.metrics import Metrics, gauge
from rastir.collector.settings import CollectorSettings
from rastir.sampling import rejection_threshold

__all__ = ["COPIED_LABELS", "MAX_REASON", "EvaluationService", "evaluation_span"]

logger = logging.getLogger("rastir.collector.evaluation")

#: Seed 002 §6.2: an evaluation span carries the model, provider and agent of the LLM
#: span it evaluates, copied from it (the collector has no ContextVars to read).
COPIED_LABELS: Final = (
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.agent.name",
)
#: Longest reason kept on a span, in characters.
MAX_REASON: Final = 500
_MAX_ERROR_MESSAGE: Final = 300
#: Raw text (characters) beyond which a sample is decoded in a worker thread rather
#: than on the loop: below it msgspec takes microseconds, a thread hop more.
_OFF_LOOP_CHARS: Final = 16_384

Accept = Callable[[str, dict[str, Any], list[WireSpan]], Awaitable[int]]


class _Matcher:
    """Shell-style patterns against one label; no patterns matches everything."""

    __slots__ = ("exact", "regex")

    def __init__(self, patterns: list[str]) -> None:
        globs = [p for p in patterns if any(c in p for c in "*?[")]
        self.exact = frozenset(p for p in patterns if p not in globs)
        self.regex = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None

    def __call__(self, value: str) -> bool:
        if value in self.exact:
            return True
        return self.regex is not None and self.regex.match(value) is not None


class _Route:
    """One configured evaluator with its selectors and cached metric children."""

    __slots__ = (
        "agents",
        "config",
        "duration",
        "evaluator",
        "filters",
        "models",
        "name",
        "needs_input",
        "needs_output",
        "services",
        "skipped",
        "threshold",
        "truncated",
    )

    def __init__(self, evaluator: Evaluator, config: EvaluatorConfig, metrics: Metrics) -> None:
        self.evaluator = evaluator
        self.config = config
        self.name = config.name
        self.services = _Matcher(config.services) if config.services else None
        self.agents = _Matcher(config.agents) if config.agents else None
        self.models = _Matcher(config.models) if config.models else None
        # The same consistent-probability rule as head and tail sampling
        # (rastir.sampling): the trace id's low 56 bits (random under W3C trace
        # context level 2) at or above the ratio's threshold. Deterministic per trace,
        # the same traces for every evaluator at one ratio, and a trace evaluated at a
        # ratio no larger than the tail ratio is one the tail ratio keeps too.
        self.threshold = rejection_threshold(config.sample)
        self.needs_input = evaluator.needs_input
        self.needs_output = evaluator.needs_output
        self.filters = self.agents is not None or self.models is not None
        self.skipped = metrics.eval_skipped.child((config.name, "no_content"))
        self.truncated = metrics.eval_skipped.child((config.name, "truncated"))
        self.duration = metrics.eval_duration.child((config.name,))

    def selects(self, span: WireSpan) -> bool:
        """Agent and model selectors (sampling and service are decided by the caller)."""
        a = span.attributes
        if self.agents is not None:
            agent = a.get("gen_ai.agent.name")
            if not (isinstance(agent, str) and self.agents(agent)):
                return False
        if self.models is not None:
            request, response = a.get("gen_ai.request.model"), a.get("gen_ai.response.model")
            if not (
                (isinstance(response, str) and self.models(response))
                or (isinstance(request, str) and self.models(request))
            ):
                return False
        return True


#: ``(service, resource, span, route)``: a tuple, the cheapest thing to make per job
_Job = tuple[str, Mapping[str, Any], WireSpan, _Route]


def _span_id() -> str:
    return "%016x" % (getrandbits(64) or 1)


def evaluation_span(
    parent: WireSpan,
    name: str,
    verdict: Verdict | None,
    *,
    start_ns: int,
    end_ns: int,
    source: str,
    evaluator_type: str | None = None,
    threshold: float | None = None,
    higher_is_better: bool | None = None,
    failure: EvaluationFailed | None = None,
) -> WireSpan:
    """The ``evaluation`` span for one result (or failure), child of ``parent``.

    A failure gives ``status="error"`` with ``error.type`` the failure kind and no
    ``rastir.evaluation.passed`` or score: a failed evaluation is never a pass.
    """
    attrs: dict[str, Any] = {}
    pa = parent.attributes
    for key in COPIED_LABELS:
        v = pa.get(key)
        if v is not None:
            attrs[key] = v
    attrs["rastir.evaluation.name"] = name
    attrs["rastir.evaluation.source"] = source
    if evaluator_type is not None:
        attrs["rastir.evaluation.evaluator"] = evaluator_type
    if threshold is not None:
        attrs["rastir.evaluation.threshold"] = threshold
    if higher_is_better is not None:
        attrs["rastir.evaluation.higher_is_better"] = higher_is_better
    error: WireError | None = None
    if verdict is not None:
        if verdict.score is not None:
            attrs["rastir.evaluation.score"] = float(verdict.score)
        if verdict.passed is not None:
            attrs["rastir.evaluation.passed"] = verdict.passed
        if verdict.judge_model:
            attrs["rastir.evaluation.judge_model"] = verdict.judge_model
        if verdict.reason:
            attrs["rastir.evaluation.reason"] = _cut(verdict.reason, MAX_REASON)
    if failure is not None:
        error = WireError(
            type=failure.kind,
            exception_type=type(failure).__name__,
            message=_cut(failure.message, _MAX_ERROR_MESSAGE),
        )
    return WireSpan(
        trace_id=parent.trace_id,
        span_id=_span_id(),
        parent_span_id=parent.span_id,
        name=f"evaluation {name}",
        kind="evaluation",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=max(start_ns, end_ns),
        status="error" if failure is not None else "ok",
        error=error,
        attributes=attrs,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raw_chars(attributes: Mapping[str, Any], route: _Route) -> int:
    """Characters of the raw values a sample is decoded from (strings only)."""
    n = 0
    for keys, needed in ((INPUT_KEYS, route.needs_input), (OUTPUT_KEYS, route.needs_output)):
        if needed:
            for key in keys:
                v = attributes.get(key)
                if isinstance(v, str):
                    n += len(v)
                elif isinstance(v, list):
                    n += sum(len(e) for e in v if isinstance(e, str))
    return n


def _sample(service: str, span: WireSpan, route: _Route) -> Sample:
    a = span.attributes
    return Sample(
        service=service,
        trace_id=span.trace_id,
        span_id=span.span_id,
        input=input_text(a) if route.needs_input else None,
        output=output_text(a) if route.needs_output else None,
        attributes=MappingProxyType(a),  # read only for evaluators
    )


def _invalid_verdict(verdict: object) -> str | None:
    """What is wrong with an evaluator's return value, or ``None`` for a valid Verdict.

    Valid: a :class:`Verdict` whose ``score`` is ``None`` or a finite number in 0..1,
    whose ``passed`` is a bool or ``None``, not both ``None``, and whose ``reason``
    and ``judge_model`` are texts. The answer never quotes the evaluated text.
    """
    if not isinstance(verdict, Verdict):
        return f"returned {type(verdict).__name__}, not a Verdict"
    # Read as ``object``: a Verdict's annotations are not enforced at run time.
    score: object = verdict.score
    passed: object = verdict.passed
    reason: object = verdict.reason
    judge_model: object = verdict.judge_model
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, (int, float))
        or not math.isfinite(score)
        or not 0.0 <= score <= 1.0
    ):
        shown = repr(score) if isinstance(score, (int, float)) else type(score).__name__
        return f"returned score {_cut(shown, 40)}, not a number in 0..1"
    if passed is not None and not isinstance(passed, bool):
        return f"returned passed of type {type(passed).__name__}, not true, false or None"
    if score is None and passed is None:
        return "returned a Verdict with neither a score nor passed"
    if not isinstance(reason, str):
        return f"returned a reason of type {type(reason).__name__}, not a text"
    if judge_model is not None and not isinstance(judge_model, str):
        return f"returned a judge_model of type {type(judge_model).__name__}, not a text"
    return None


class EvaluationService:
    """Evaluators, their queue and workers, for one collector app.

    Made by ``create_app``; :meth:`sink` is registered as a span sink when at least
    one evaluator is configured, and :meth:`run` is the lifespan task that owns the
    queue and the workers. The service always exists, so ``POST /v1/scores`` and the
    evaluation metrics work without any evaluator.

    Raises:
        ValueError: the config file or an evaluator is invalid (at construction, so a
            bad config stops the collector at startup, never later).
    """

    def __init__(
        self,
        settings: CollectorSettings,
        metrics: Metrics,
        accept: Accept,
        *,
        config: EvaluationConfig | None = None,
        registry: EvaluatorRegistry | None = None,
    ) -> None:
        if config is None:
            config = (
                load_config(settings.eval_config)
                if settings.eval_config is not None
                else EvaluationConfig()
            )
        registry = registry or EvaluatorRegistry()
        self.metrics = metrics
        self.redact = Redactor(config.redaction)
        #: the ingest path's ``accept()``: where evaluation spans go
        self.accept = accept
        self.queue_size = settings.eval_queue_size
        self.max_len = settings.max_attr_value_len  # where ingest cuts a text
        self.workers = settings.eval_workers
        self.routes: list[_Route] = []
        for ev_config in config.evaluators:
            evaluator = registry.create(ev_config)
            self.routes.append(_Route(evaluator, ev_config, metrics))
        self.judge: JudgeClient | None = None
        judges = [r.name for r in self.routes if isinstance(r.evaluator, JudgeEvaluator)]
        if settings.eval_judge_url is not None:
            if settings.eval_judge_model is None:
                raise ValueError("eval_judge_url is set but eval_judge_model is not: name a model")
            self.judge = JudgeClient(
                settings.eval_judge_url,
                settings.eval_judge_model,
                key=settings.eval_judge_key,
                timeout=settings.eval_judge_timeout,
                retries=settings.eval_judge_retries,
                redact=self.redact,
                max_connections=settings.eval_workers,
            )
        elif judges:
            raise ValueError(
                f"evaluators {', '.join(judges)} need an LLM judge: set eval_judge_url "
                "and eval_judge_model (--eval-judge-url, --eval-judge-model)"
            )
        # One evaluation never runs longer than the judge's own worst case, or 60 s for
        # evaluators without a judge: a hung custom evaluator cannot hold a worker.
        self.deadline = self.judge.deadline if self.judge is not None else 60.0
        self._ctx = EvalContext(self.judge, self.redact)
        self._queue: BoundedQueue[_Job] | None = None
        self._by_service: dict[str, list[_Route]] = {}
        self._busy = 0
        self._dropped_full = metrics.eval_dropped.child(("queue_full",))
        self._dropped_shutdown = metrics.eval_dropped.child(("shutdown",))
        self._dropped_store = metrics.eval_dropped.child(("store_refused",))
        self._dropped_stopped = metrics.eval_dropped.child(("not_running",))
        metrics.add_source(self.health_metrics)

    @property
    def enabled(self) -> bool:
        """At least one evaluator is configured."""
        return bool(self.routes)

    # --- the ingest side: on the event loop, never blocking

    def sink(self, service: str, resource: Mapping[str, Any], spans: list[WireSpan]) -> None:
        """Queue the evaluations the batch's LLM spans are selected for.

        Per batch: the routes whose service selector accepts ``service`` (cached).
        Per LLM span: the trace's sample value once, the text checks once, then per
        route a comparison and the agent/model selectors.
        """
        routes = self._by_service.get(service)
        if routes is None:
            routes = self._routes_for(service)
        if not routes:
            return
        queue = self._queue
        last_trace = ""
        sample = 0
        for span in spans:
            if span.kind != "llm":
                continue
            a = span.attributes
            has_out = has_in = -1
            for route in routes:
                if route.threshold:
                    if span.trace_id != last_trace:  # a batch is mostly one trace
                        last_trace = span.trace_id
                        sample = int(last_trace[18:], 16)  # the low 56 bits
                    if sample < route.threshold:
                        continue
                if route.filters and not route.selects(span):
                    continue
                if route.needs_output:
                    if has_out < 0:
                        has_out = has_text(a, OUTPUT_KEYS)
                    if not has_out:
                        route.skipped.value += 1
                        continue
                if route.needs_input:
                    if has_in < 0:
                        has_in = has_text(a, INPUT_KEYS)
                    if not has_in:
                        route.skipped.value += 1
                        continue
                if queue is None:
                    self._dropped_stopped.value += 1
                elif not queue.put_nowait((service, resource, span, route)):
                    self._dropped_full.value += 1

    def _routes_for(self, service: str) -> list[_Route]:
        routes = [r for r in self.routes if r.services is None or r.services(service)]
        if len(self._by_service) < 4096:  # service names are few; a flood is not cached
            self._by_service[service] = routes
        return routes

    # --- the workers

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the queue and the workers until cancelled (the app's lifespan does that).

        At cancellation, queued and running evaluations are dropped, counted
        (``reason="shutdown"``) and logged as a warning: evaluation is best-effort,
        and shutdown must stay bounded by the store's flush, not by a judge.
        """
        if not self.routes:
            task_status.started()
            return
        queue: BoundedQueue[_Job] = BoundedQueue(self.queue_size)
        dropped_before = self._dropped_shutdown.value
        try:
            if self.judge is not None:
                await self.judge.open()
            async with anyio.create_task_group() as tg:
                for _ in range(self.workers):
                    tg.start_soon(self._worker, queue)
                self._queue = queue
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._queue = None
            # The workers have been cancelled by now, each counting its running one.
            running = int(self._dropped_shutdown.value - dropped_before)
            queued = queue.clear()
            self._dropped_shutdown.value += queued
            if running or queued:
                logger.warning(
                    "evaluation stopped with %d evaluation(s) not done (%d queued, %d "
                    "running): dropped, counted in "
                    'rastir_evaluation_dropped_total{reason="shutdown"}',
                    running + queued,
                    queued,
                    running,
                )
            with anyio.CancelScope(shield=True):
                if self.judge is not None:
                    await self.judge.aclose()
                for route in self.routes:
                    try:
                        await route.evaluator.aclose()
                    except Exception:
                        logger.exception("evaluator %s failed to close", route.name)

    async def _worker(self, queue: BoundedQueue[_Job]) -> None:
        while True:
            job = await queue.get()
            self._busy += 1
            try:
                await self._run(job)
            except anyio.get_cancelled_exc_class():
                self._dropped_shutdown.value += 1
                raise
            except Exception:  # never lose a worker to a bug
                logger.exception("evaluation %s failed unexpectedly", job[3].name)
            finally:
                self._busy -= 1

    async def _run(self, job: _Job) -> None:
        service, resource, span, route = job
        a = span.attributes
        max_len = self.max_len
        if (route.needs_output and is_cut(a, OUTPUT_KEYS, max_len)) or (
            route.needs_input and is_cut(a, INPUT_KEYS, max_len)
        ):
            # Cut at ingest: a verdict on part of a text (a cut JSON envelope, a
            # shortened answer) would be wrong either way. Skipped and counted.
            route.truncated.value += 1
            return
        if _raw_chars(a, route) > _OFF_LOOP_CHARS:
            sample = await anyio.to_thread.run_sync(_sample, service, span, route)
        else:
            sample = _sample(service, span, route)
        if (route.needs_input and not sample.input) or (route.needs_output and not sample.output):
            route.skipped.value += 1  # the attribute was there, but held no text
            return
        start_ns = time_ns()
        t0 = perf_counter()
        verdict: Verdict | None = None
        failure: EvaluationFailed | None = None
        with anyio.move_on_after(self.deadline) as scope:
            try:
                verdict = await route.evaluator.evaluate(sample, self._ctx)
            except EvaluationFailed as e:
                failure = e
            except Exception as e:
                logger.exception("evaluator %s raised", route.name)
                failure = EvaluationFailed("internal_error", f"evaluator raised {type(e).__name__}")
            else:
                problem = _invalid_verdict(verdict)
                if problem is not None:
                    # A bug in the evaluator, recorded as a failure: an out-of-range
                    # score or a missing verdict must never be stored as a pass.
                    logger.warning("evaluator %s %s", route.name, problem)
                    failure = EvaluationFailed("internal_error", f"evaluator {problem}")
        if scope.cancelled_caught:
            failure = EvaluationFailed(
                "timeout", f"evaluation did not finish within {self.deadline:.0f}s"
            )
        elapsed = perf_counter() - t0
        route.duration.observe(elapsed)
        if failure is not None:
            verdict = None
            self.metrics.eval_failures.child((route.name, failure.kind)).inc()
        evaluator = route.evaluator
        judge = evaluator if isinstance(evaluator, JudgeEvaluator) else None
        result = evaluation_span(
            span,
            route.name,
            verdict,
            start_ns=start_ns,
            end_ns=start_ns + int(elapsed * 1e9),
            source="collector",
            evaluator_type=route.config.type,
            threshold=judge.threshold if judge is not None else None,
            higher_is_better=judge.higher_is_better if judge is not None else None,
            failure=failure,
        )
        await self.record(service, dict(resource), result)

    async def record(self, service: str, resource: dict[str, Any], span: WireSpan) -> bool:
        """Feed one evaluation span through ``accept()``; False (and counted) if refused."""
        try:
            await self.accept(service, resource, [span])
        except Exception as e:  # Rejection (store full, shutting down) or a bug
            self._dropped_store.value += 1
            logger.warning("evaluation result not stored: %s", e)
            return False
        return True

    # --- the collector's own metrics

    def health_metrics(self) -> Iterable[Metric]:
        queue = self._queue
        depth = len(queue) if queue is not None else 0
        yield gauge(
            "rastir_evaluation_queue_depth", "Evaluations waiting for a worker.", float(depth)
        )
        yield gauge(
            "rastir_evaluation_queue_capacity",
            "Evaluations the queue holds before more are dropped.",
            float(self.queue_size),
        )
        yield gauge("rastir_evaluation_in_progress", "Evaluations running now.", float(self._busy))
