"""Evaluators a user could write, named by import path in the tests' configs."""

from __future__ import annotations

import anyio

from rastir.collector.evaluation import EvalContext, Evaluator, Sample, Verdict


class Raises(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        raise RuntimeError("a bug in a user's evaluator")


class Hangs(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class AsksTheJudge(Evaluator):
    """Uses the configured judge with its own question."""

    needs_input = True

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        assert ctx.judge is not None
        result = await ctx.judge.score("Reply in JSON.", f"Rate this: {sample.output}")
        return Verdict(result.score, result.score >= 0.5, result.reason, result.model)


# Evaluators whose return value is not a valid Verdict: each is a bug in the evaluator,
# to be recorded as an internal_error failure, never as a pass.


class ReturnsNone(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return None  # type: ignore[return-value]  # forgot to return a verdict


class ReturnsDict(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return {"score": 1.0, "passed": True}  # type: ignore[return-value]


class ScoreOutOfRange(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return Verdict(7.5, True, "a score on a 0..10 scale")


class ScoreNaN(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return Verdict(float("nan"), True, "nan")


class PassedNotBool(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return Verdict(0.9, "yes", "a string for passed")  # type: ignore[arg-type]


class NoVerdict(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return Verdict(None, None, "neither a score nor passed")


class PassesWithoutScore(Evaluator):
    """Valid: a pass/fail without a score."""

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        return Verdict(None, True, "fine")
