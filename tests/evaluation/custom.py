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
