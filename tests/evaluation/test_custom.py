"""Users' own evaluators: the documented example, failures of custom code, judge access."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rastir.collector.evaluation import EvalContext, Evaluator, EvaluatorRegistry, Sample
from rastir.collector.evaluation.config import EvaluationConfig
from tests.collector.spans import batch, encode
from tests.evaluation.conftest import RunCollector, wait_for
from tests.evaluation.judge_server import run_judge
from tests.evaluation.spans import agent_with_llms, llm_with_text
from tests.evaluation.test_service import evaluations_under

DOCS = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOCS.read_text(), re.DOTALL)


@pytest.fixture
def documented_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The example of docs/evaluation.md, installed as ``mycompany.evals``; its config."""
    (code,) = [b for b in _doc_blocks("python") if b.startswith("# mycompany/evals.py")]
    package = tmp_path / "mycompany"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "evals.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mycompany", raising=False)
    monkeypatch.delitem(sys.modules, "mycompany.evals", raising=False)
    (toml,) = [b for b in _doc_blocks("toml") if "mycompany.evals:MentionsRefund" in b]
    config = msgspec.toml.decode(toml.encode())
    assert isinstance(config, dict)
    return config


@pytest.mark.anyio
async def test_the_documented_custom_evaluator_runs_in_the_collector(
    run_collector: RunCollector, documented_example: dict[str, Any]
) -> None:
    async with run_collector(documented_example) as c:
        tid, spans = agent_with_llms(
            ("My parcel is late.", "Sorry! We will send you a refund today."),
            ("Can I get a refund?", "Yes, a refund is possible within 30 days."),
            ("Hello", "Hi, how can I help?"),
        )
        assert (await c.post(encode(batch(spans, service="support")))).status_code == 202
        # Another service is not selected by the documented config.
        other = [llm_with_text("q", "refund!")]
        assert (await c.post(encode(batch(other, service="billing")))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 3)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    verdicts = [
        evaluations_under(tree, s["span_id"])["no_refund_promises"]["attributes"] for s in spans[1:]
    ]
    assert [v["rastir.evaluation.passed"] for v in verdicts] == [False, True, True]
    assert verdicts[0]["rastir.evaluation.reason"] == "promises 'refund' unprompted"
    assert verdicts[0]["rastir.evaluation.evaluator"] == "mycompany.evals:MentionsRefund"
    labels = {"service": "support", "evaluation": "no_refund_promises"}
    assert m.total("rastir_evaluations_total", **labels, result="failed") == 1
    assert m.total("rastir_evaluations_total", **labels, result="passed") == 2


def test_the_documented_example_checks_its_options(documented_example: dict[str, Any]) -> None:
    entry = dict(documented_example["evaluators"][0])
    entry["options"] = {"words": "refund"}
    config = msgspec.convert({"evaluators": [entry]}, EvaluationConfig)
    with pytest.raises(ValueError, match=r"options\.words must be a list of words"):
        EvaluatorRegistry().create(config.evaluators[0])


@pytest.mark.anyio
async def test_a_custom_evaluator_that_raises_or_hangs_is_a_failure(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [
            {"name": "raises", "type": "tests.evaluation.custom:Raises"},
            {"name": "hangs", "type": "tests.evaluation.custom:Hangs"},
        ]
    }
    async with run_collector(config) as c:
        c.app.state.evaluation.deadline = 0.2  # instead of 60 s without a judge
        tid, spans = agent_with_llms(("q", "a"))
        assert (await c.post(encode(batch(spans)))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 2)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    ev = evaluations_under(tree, spans[1]["span_id"])
    assert ev["raises"]["status"] == "error"
    assert ev["raises"]["error"]["type"] == "internal_error"
    assert ev["raises"]["error"]["message"] == "evaluator raised RuntimeError"
    assert ev["hangs"]["error"]["type"] == "timeout"
    assert "rastir.evaluation.passed" not in ev["hangs"]["attributes"]
    assert (
        m.total("rastir_evaluation_failures_total", evaluation="raises", reason="internal_error")
        == 1
    )
    assert m.total("rastir_evaluation_failures_total", evaluation="hangs", reason="timeout") == 1
    assert m.total("rastir_evaluation_in_progress") == 0


INVALID_VERDICTS = {
    "returns_none": ("ReturnsNone", "evaluator returned NoneType, not a Verdict"),
    "returns_dict": ("ReturnsDict", "evaluator returned dict, not a Verdict"),
    "out_of_range": ("ScoreOutOfRange", "evaluator returned score 7.5, not a number in 0..1"),
    "nan": ("ScoreNaN", "evaluator returned score nan, not a number in 0..1"),
    "passed_str": (
        "PassedNotBool",
        "evaluator returned passed of type str, not true, false or None",
    ),
    "no_verdict": ("NoVerdict", "evaluator returned a Verdict with neither a score nor passed"),
}


@pytest.mark.anyio
async def test_an_invalid_verdict_is_an_internal_error_never_a_pass(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [
            *(
                {"name": name, "type": f"tests.evaluation.custom:{cls}"}
                for name, (cls, _) in INVALID_VERDICTS.items()
            ),
            {"name": "valid", "type": "tests.evaluation.custom:PassesWithoutScore"},
        ]
    }
    async with run_collector(config) as c:
        tid, spans = agent_with_llms(("q", "a"))
        assert (await c.post(encode(batch(spans)))).status_code == 202
        n = len(INVALID_VERDICTS) + 1
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == n)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    ev = evaluations_under(tree, spans[1]["span_id"])
    for name, (_, message) in INVALID_VERDICTS.items():
        attrs = ev[name]["attributes"]
        assert ev[name]["status"] == "error", name
        assert ev[name]["error"]["type"] == "internal_error"
        assert ev[name]["error"]["message"] == message
        assert "rastir.evaluation.score" not in attrs
        assert "rastir.evaluation.passed" not in attrs
        labels = {"evaluation": name}
        assert m.total("rastir_evaluations_total", **labels, result="error") == 1, name
        assert m.total("rastir_evaluations_total", **labels) == 1
        assert m.total("rastir_evaluation_score_count", **labels) == 0
        assert m.total("rastir_evaluation_failures_total", **labels, reason="internal_error") == 1
    # A pass/fail without a score is a valid verdict.
    assert ev["valid"]["status"] == "ok"
    assert ev["valid"]["attributes"]["rastir.evaluation.passed"] is True
    assert m.total("rastir_evaluations_total", evaluation="valid", result="passed") == 1


@pytest.mark.anyio
async def test_a_custom_evaluator_can_ask_the_judge_and_text_is_still_redacted(
    run_collector: RunCollector,
) -> None:
    config = {"evaluators": [{"name": "asks", "type": "tests.evaluation.custom:AsksTheJudge"}]}
    async with (
        run_judge(score=lambda system, user: 0.8) as judge,
        run_collector(config, eval_judge_url=judge.base_url, eval_judge_model="j") as c,
    ):
        secret = "bob@example.org"
        spans = [llm_with_text("q", f"write to {secret}")]
        assert (await c.post(encode(batch(spans)))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
    assert (
        m.total("rastir_evaluations_total", service="svc", evaluation="asks", result="passed") == 1
    )
    (body,) = judge.bodies()
    assert secret not in body.decode()
    assert "write to [REDACTED]" in body.decode()


class _Plain(Evaluator):
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Any:
        raise NotImplementedError


def test_an_evaluator_defaults_to_reading_the_completion_only() -> None:
    from rastir.collector.evaluation import EvaluatorConfig

    e = _Plain(EvaluatorConfig(name="p", type="x"))
    assert (e.name, e.needs_input, e.needs_output) == ("p", False, True)
