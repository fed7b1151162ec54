"""What an evaluator is: it reads a :class:`Sample` and answers a :class:`Verdict`.

An evaluator either gives a verdict or raises :class:`EvaluationFailed`; the service
turns both into an ``evaluation`` span. Anything else it raises is a bug in the
evaluator and is recorded as a failure of kind ``internal_error``, never as a pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from rastir.errors import RastirError

if TYPE_CHECKING:
    from rastir.collector.evaluation.config import EvaluatorConfig
    from rastir.collector.evaluation.judge import JudgeClient

__all__ = [
    "FAILURE_KINDS",
    "EvalContext",
    "EvaluationFailed",
    "Evaluator",
    "EvaluatorFactory",
    "FailureKind",
    "Sample",
    "Verdict",
]

#: Why an evaluation gave no verdict. These are also the span's ``error.type`` values,
#: so they stay inside the wire's error categories.
FailureKind = Literal[
    "timeout", "rate_limit", "provider_error", "validation_error", "internal_error"
]
FAILURE_KINDS: Final[tuple[str, ...]] = (
    "timeout",
    "rate_limit",
    "provider_error",
    "validation_error",
    "internal_error",
)


class EvaluationFailed(RastirError):
    """The evaluation could not give a verdict: the judge timed out, failed or babbled.

    ``kind`` is one of :data:`FAILURE_KINDS` and becomes the span's ``error.type``;
    the message becomes ``error.message``, so it must not quote the evaluated text.
    """

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Sample:
    """One LLM call to evaluate, as the collector received it.

    ``input`` is the prompt (every input message, one ``role: text`` line each) and
    ``output`` the completion text; either is ``None`` when the span did not carry it.
    ``attributes`` are the LLM span's attributes, read only.
    """

    service: str
    trace_id: str
    span_id: str
    input: str | None
    output: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an evaluator concluded.

    ``score`` is in 0..1 (``None`` when the evaluator only passes or fails);
    ``passed`` is the pass/fail against the evaluator's threshold; ``reason`` is a
    short explanation (cut to 500 characters on the span); ``judge_model`` names the
    model that judged, for LLM judges.
    """

    score: float | None
    passed: bool | None
    reason: str = ""
    judge_model: str | None = None


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What the collector lends an evaluator while it runs.

    ``judge`` is the configured OpenAI-compatible judge, or ``None`` when no judge is
    configured. ``redact`` applies the configured redaction: an evaluator that sends
    text anywhere itself must pass it through ``redact`` first (the judge client
    already does).
    """

    judge: JudgeClient | None
    redact: Callable[[str], str]


class Evaluator(ABC):
    """An evaluation the collector runs on selected LLM spans.

    Subclasses set ``needs_input``/``needs_output`` (a span without the text it
    needs is skipped and counted, not evaluated) and implement :meth:`evaluate`.
    The constructor of a registered evaluator takes its :class:`EvaluatorConfig`.
    """

    #: the evaluation reads the prompt
    needs_input: bool = False
    #: the evaluation reads the completion
    needs_output: bool = True

    def __init__(self, config: EvaluatorConfig) -> None:
        self.config = config
        self.name = config.name

    @abstractmethod
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        """Judge one sample.

        Raises:
            EvaluationFailed: no verdict could be reached; recorded as a failure.
        """

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release what the evaluator holds; called once at shutdown."""


#: What the registry stores: anything that makes an evaluator from its config,
#: usually the evaluator class itself.
EvaluatorFactory = Callable[["EvaluatorConfig"], Evaluator]
