"""Server-side evaluation: the collector scores the LLM spans it receives.

Configured evaluators run on selected LLM spans, off the ingest path, and their
results become ``evaluation`` spans (children of the evaluated spans) and metrics.
``POST /v1/scores`` brings scores from outside into the same shape. See
``docs/evaluation.md``.

Write your own evaluator by subclassing :class:`Evaluator`; name it in the config
file by import path (``type = "mypkg.evals:MyEvaluator"``) or register a type name in
an :class:`EvaluatorRegistry`.
"""

from __future__ import annotations

from rastir.collector.evaluation.base import (
    FAILURE_KINDS,
    EvalContext,
    EvaluationFailed,
    Evaluator,
    EvaluatorFactory,
    Sample,
    Verdict,
)
from rastir.collector.evaluation.config import (
    EvaluationConfig,
    EvaluatorConfig,
    RedactionConfig,
    load_config,
)
from rastir.collector.evaluation.deterministic import JsonValid, LengthBound, Policy
from rastir.collector.evaluation.judge import (
    HallucinationJudge,
    JudgeClient,
    JudgeEvaluator,
    JudgeScore,
    PromptJudge,
    RelevanceJudge,
    ToxicityJudge,
    parse_judge_reply,
)
from rastir.collector.evaluation.redaction import DEFAULT_PATTERNS, Redactor
from rastir.collector.evaluation.registry import EvaluatorRegistry
from rastir.collector.evaluation.service import EvaluationService, evaluation_span

__all__ = [
    "DEFAULT_PATTERNS",
    "FAILURE_KINDS",
    "EvalContext",
    "EvaluationConfig",
    "EvaluationFailed",
    "EvaluationService",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorFactory",
    "EvaluatorRegistry",
    "HallucinationJudge",
    "JsonValid",
    "JudgeClient",
    "JudgeEvaluator",
    "JudgeScore",
    "LengthBound",
    "Policy",
    "PromptJudge",
    "RedactionConfig",
    "Redactor",
    "RelevanceJudge",
    "Sample",
    "ToxicityJudge",
    "Verdict",
    "evaluation_span",
    "load_config",
    "parse_judge_reply",
]
