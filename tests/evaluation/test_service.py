"""End to end: a real collector on uvicorn evaluates LLM spans with a real judge server."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

from rastir.sampling import trace_id_sampled
from tests.collector.spans import batch, encode, llm_span, trace_id
from tests.collector.store_kinds import EVERY_STORE, store_fixture  # noqa: F401 (the store fixture)
from tests.evaluation.conftest import RunCollector, wait_for
from tests.evaluation.judge_server import run_judge
from tests.evaluation.spans import agent_with_llms, llm_with_text

JUDGED = {
    "evaluators": [
        {"name": "toxicity", "type": "toxicity"},
        {"name": "relevance", "type": "relevance", "threshold": 0.7},
        {"name": "short", "type": "length", "options": {"max_chars": 40}},
    ]
}


def judge_settings(base_url: str, **more: Any) -> dict[str, Any]:
    return {"eval_judge_url": base_url, "eval_judge_model": "judge-1", **more}


def walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in nodes:
        out.append(n)
        out.extend(walk(n["children"]))
    return out


def evaluations_under(tree: dict[str, Any], span_id: str) -> dict[str, dict[str, Any]]:
    (node,) = [n for n in walk(tree["spans"]) if n["span_id"] == span_id]
    return {
        c["attributes"]["rastir.evaluation.name"]: c
        for c in node["children"]
        if c["kind"] == "evaluation"
    }


@pytest.mark.anyio
async def test_judge_scores_become_evaluation_spans_under_the_right_llm_spans(
    run_collector: RunCollector,
) -> None:
    async with (
        run_judge() as judge,
        run_collector(JUDGED, **judge_settings(judge.base_url)) as c,
    ):
        tid, spans = agent_with_llms(
            ("What is the weather in Lisbon?", "Sunny in Lisbon, 24 degrees."),
            ("Say something about the user.", "You are an idiot and nobody likes you at all."),
        )
        r = await c.post(encode(batch(spans, service="planner-svc")))
        assert r.status_code == 202, r.text
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 6)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()

    nice, rude = spans[1], spans[2]
    ev_nice = evaluations_under(tree, nice["span_id"])
    ev_rude = evaluations_under(tree, rude["span_id"])
    assert set(ev_nice) == set(ev_rude) == {"toxicity", "relevance", "short"}

    tox = ev_nice["toxicity"]
    assert tox["trace_id"] == tid
    assert tox["parent_span_id"] == nice["span_id"]
    assert tox["status"] == "ok"
    assert tox["service"] == "planner-svc"
    a = tox["attributes"]
    assert a["rastir.evaluation.score"] == 0.05
    assert a["rastir.evaluation.passed"] is True
    assert a["rastir.evaluation.judge_model"] == "judge-1-2025"
    assert a["rastir.evaluation.reason"] == "scripted"
    assert a["rastir.evaluation.source"] == "collector"
    assert a["rastir.evaluation.higher_is_better"] is False
    # Labels copied from the evaluated LLM span (seed 002 §6.2).
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.agent.name"] == "planner"

    assert ev_rude["toxicity"]["attributes"]["rastir.evaluation.score"] == 0.9
    assert ev_rude["toxicity"]["attributes"]["rastir.evaluation.passed"] is False
    assert ev_nice["relevance"]["attributes"]["rastir.evaluation.passed"] is True
    assert ev_rude["relevance"]["attributes"]["rastir.evaluation.passed"] is False
    assert ev_nice["short"]["attributes"]["rastir.evaluation.passed"] is True
    assert ev_rude["short"]["attributes"]["rastir.evaluation.passed"] is False
    assert "judge_model" not in str(ev_rude["short"]["attributes"])

    svc = {"service": "planner-svc"}
    for name in ("toxicity", "relevance", "short"):
        ev = {**svc, "evaluation": name}
        assert m.total("rastir_evaluations_total", **ev, result="passed") == 1
        assert m.total("rastir_evaluations_total", **ev, result="failed") == 1
        assert m.total("rastir_evaluation_score_count", **ev) == 2
        assert m.total("rastir_evaluation_duration_seconds_count", evaluation=name) == 2
    assert m.total("rastir_evaluation_score_bucket", **svc, evaluation="toxicity", le="0.1") == 1
    assert m.value("rastir_spans_total", **svc, kind="evaluation", status="ok") == 6
    assert m.total("rastir_evaluation_queue_depth") == 0
    assert m.total("rastir_evaluation_queue_capacity") == 1000
    assert m.total("rastir_evaluation_failures_total") == 0
    # Two LLM spans, two judge evaluators: four judge calls; the length bound needs none.
    assert judge.received() == 4
    assert {r["model"] for r in judge.requests} == {"judge-1"}


@pytest.mark.anyio
async def test_spans_without_text_or_not_llm_are_not_evaluated(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [
            {"name": "relevance", "type": "relevance"},
            {"name": "short", "type": "length", "options": {"max_chars": 400}},
        ]
    }
    async with (
        run_judge() as judge,
        run_collector(config, **judge_settings(judge.base_url)) as c,
    ):
        spans = [
            llm_span(),  # no content captured
            llm_with_text(None, "an answer without its prompt"),
            llm_with_text("a prompt", None),
        ]
        r = await c.post(encode(batch(spans)))
        assert r.status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
    skipped = "rastir_evaluation_skipped_total"
    # relevance needs both texts: all three skipped; the length bound only the output.
    assert m.value(skipped, evaluation="relevance", reason="no_content") == 3
    assert m.value(skipped, evaluation="short", reason="no_content") == 2
    assert m.total("rastir_evaluations_total", service="svc", evaluation="short", result="passed")
    assert judge.received() == 0


def _sampled(tid: str, ratio: float) -> bool:
    # The rule head and tail sampling use: an evaluated trace is one they keep too.
    return trace_id_sampled(tid, ratio)


@pytest.mark.anyio
async def test_selectors_pick_service_agent_model_and_sample_by_trace_id(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [
            {
                "name": "picky",
                "type": "length",
                "services": ["checkout", "pay*"],
                "agents": ["planner"],
                "models": ["gpt-4o*"],
                "options": {"max_chars": 1000},
            },
            {"name": "half", "type": "length", "sample": 0.5, "options": {"max_chars": 1000}},
            {"name": "never", "type": "length", "sample": 0.0, "options": {"max_chars": 1000}},
        ]
    }
    selected = [
        ("checkout", llm_with_text("q", "a")),
        ("payments", llm_with_text("q", "a", model="gpt-4o-mini")),
    ]
    not_selected = [
        ("search", llm_with_text("q", "a")),  # service
        ("checkout", llm_with_text("q", "a", agent="other")),  # agent
        ("checkout", llm_with_text("q", "a", agent=None)),  # no agent
        ("checkout", llm_with_text("q", "a", model="claude-3")),  # model
    ]
    sampled = [llm_with_text("q", "a", trace=trace_id()) for _ in range(40)]
    expected_half = sum(_sampled(s["trace_id"], 0.5) for s in sampled)
    assert 0 < expected_half < 40
    async with run_collector(config) as c:
        for service, s in selected + not_selected:
            assert (await c.post(encode(batch([s], service=service)))).status_code == 202
        assert (await c.post(encode(batch(sampled, service="other")))).status_code == 202
        total = 2 + expected_half + sum(_sampled(s["trace_id"], 0.5) for _, s in selected)
        total += sum(_sampled(s["trace_id"], 0.5) for _, s in not_selected)
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == total)
    assert m.total("rastir_evaluations_total", evaluation="picky") == 2
    assert (
        m.total("rastir_evaluations_total", service="checkout", evaluation="picky", result="passed")
        == 1
    )
    assert (
        m.total("rastir_evaluations_total", service="payments", evaluation="picky", result="passed")
        == 1
    )
    assert (
        m.total("rastir_evaluations_total", service="other", evaluation="half", result="passed")
        == expected_half
    )
    assert m.total("rastir_evaluations_total", evaluation="never") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("behaviour", "kind", "attempts"),
    [
        ({"mode": "error", "status": 503}, "provider_error", 2),  # retried once
        ({"mode": "error", "status": 429}, "rate_limit", 2),
        ({"mode": "error", "status": 401}, "provider_error", 1),  # final: a wrong key
        ({"mode": "garbage"}, "validation_error", 1),  # never retried
        ({"mode": "not_chat"}, "validation_error", 1),
        ({"mode": "slow"}, "timeout", 2),
    ],
)
async def test_a_failing_judge_is_recorded_as_a_failure_never_a_pass(
    run_collector: RunCollector, behaviour: dict[str, Any], kind: str, attempts: int
) -> None:
    config = {"evaluators": [{"name": "toxicity", "type": "toxicity"}]}
    async with (
        run_judge(**behaviour) as judge,
        run_collector(
            config,
            **judge_settings(judge.base_url, eval_judge_timeout=0.2, eval_judge_retries=1),
        ) as c,
    ):
        tid, spans = agent_with_llms(("hello", "hi there"))
        assert (await c.post(encode(batch(spans)))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    ev = evaluations_under(tree, spans[1]["span_id"])["toxicity"]
    assert ev["status"] == "error"
    assert ev["error"]["type"] == kind
    assert "rastir.evaluation.passed" not in ev["attributes"]
    assert "rastir.evaluation.score" not in ev["attributes"]
    labels = {"service": "svc", "evaluation": "toxicity"}
    assert m.total("rastir_evaluations_total", **labels, result="error") == 1
    assert m.total("rastir_evaluations_total", **labels, result="passed") == 0
    assert m.total("rastir_evaluation_failures_total", evaluation="toxicity", reason=kind) == 1
    assert judge.received() == attempts


@pytest.mark.anyio
async def test_a_stuck_judge_leaves_ingest_answering_and_the_queue_bounded(
    run_collector: RunCollector,
) -> None:
    config = {"evaluators": [{"name": "toxicity", "type": "toxicity"}]}
    async with (
        run_judge(mode="slow") as judge,
        run_collector(
            config,
            **judge_settings(
                judge.base_url, eval_judge_timeout=30, eval_queue_size=3, eval_workers=1
            ),
        ) as c,
    ):
        # One batch: the queue takes 3 and drops 17 before the worker gets to run.
        first = [llm_with_text("q", f"answer {i}") for i in range(20)]
        assert (await c.post(encode(batch(first)))).status_code == 202
        m = await wait_for(
            c, lambda m: judge.received() == 1 and m.total("rastir_evaluation_in_progress") == 1
        )
        assert m.total("rastir_evaluation_dropped_total", reason="queue_full") == 17
        # While the judge holds the only worker, ingest keeps taking everything; the
        # slot the worker freed takes one more evaluation, the other 29 are dropped.
        statuses = []
        for _ in range(30):
            more = [llm_with_text("q", "a"), llm_span()]
            statuses.append((await c.post(encode(batch(more)))).status_code)
        assert statuses == [202] * 30
        m = await c.scrape()
        assert m.total("rastir_evaluation_queue_depth") <= 3
        assert m.total("rastir_evaluation_queue_depth") == 3
        assert m.total("rastir_evaluation_dropped_total", reason="queue_full") == 17 + 29
        assert m.value("rastir_collector_ingested_spans_total", service="svc") == 20 + 60
        assert m.total("rastir_collector_rejected_requests_total") == 0
        # Released, the judge answers the one it holds and the three queued.
        judge.release.set()
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 4)
        assert m.total("rastir_evaluation_queue_depth") == 0
    assert judge.received() == 4


@pytest.mark.anyio
async def test_evaluations_queued_at_shutdown_are_counted_as_dropped(
    run_collector: RunCollector,
) -> None:
    config = {"evaluators": [{"name": "toxicity", "type": "toxicity"}]}
    async with run_judge(mode="slow") as judge:
        async with run_collector(
            config, **judge_settings(judge.base_url, eval_queue_size=10, eval_workers=1)
        ) as c:
            spans = [llm_with_text("q", f"a{i}") for i in range(5)]
            assert (await c.post(encode(batch(spans)))).status_code == 202
            await wait_for(c, lambda m: judge.received() == 1)
            metrics = c.app.state.metrics
        # The collector has stopped: one evaluation was running, four were queued.
        assert metrics.eval_dropped.child(("shutdown",)).value == 5
        assert metrics.eval_dropped.child(("queue_full",)).value == 0


@pytest.mark.anyio
async def test_text_is_redacted_before_it_reaches_the_judge(run_collector: RunCollector) -> None:
    secrets = [
        "jane.doe@example.com",
        "sk-proj-Zx81kQ0aa9PlmW3e5rT7yU1i",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
        "ACME-778899",
    ]
    config = {
        "evaluators": [
            {"name": "hallucination", "type": "hallucination"},
            {"name": "toxicity", "type": "toxicity"},
        ],
        "redaction": {"patterns": [r"ACME-\d{6}"], "replacement": "<hidden>"},
    }
    prompt = (
        f"My email is {secrets[0]} and my key is {secrets[1]}; "
        f"AWS {secrets[2]}; Authorization: Bearer {secrets[3]}; account {secrets[4]}."
    )
    completion = f"Noted, I will write to {secrets[0]} about account {secrets[4]}."
    async with (
        run_judge() as judge,
        run_collector(config, **judge_settings(judge.base_url)) as c,
    ):
        assert (await c.post(encode(batch([llm_with_text(prompt, completion)])))).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 2)
    bodies = judge.bodies()
    assert len(bodies) == 2
    for raw in bodies:
        text = raw.decode()
        for secret in secrets:
            assert secret not in text
            assert secret.split("@")[0] not in text  # not even the mailbox
        assert "<hidden>" in text
    # The rest of the text still reaches the judge.
    assert any("My email is <hidden>" in b.decode() for b in bodies)


@pytest.mark.anyio
async def test_evaluation_spans_are_not_evaluated_again(run_collector: RunCollector) -> None:
    config = {"evaluators": [{"name": "short", "type": "length", "options": {"max_chars": 5}}]}
    async with run_collector(config) as c:
        assert (
            await c.post(encode(batch([llm_with_text("q", "a long answer")])))
        ).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        # Give a looping implementation the chance to show itself: more ingest, same count.
        for _ in range(5):
            assert (await c.post(encode(batch([llm_span()])))).status_code == 202
        with anyio.move_on_after(0.3):
            await wait_for(c, lambda m: m.total("rastir_evaluations_total") > 1)
        m = await c.scrape()
    assert m.total("rastir_evaluations_total") == 1
    assert m.value("rastir_spans_total", service="svc", kind="evaluation", status="ok") == 1


# -- text cut at ingest ------------------------------------------------------------------

CUT_CONFIG = {
    "evaluators": [
        {"name": "short", "type": "length", "options": {"max_chars": 5000}},
        {"name": "is_json", "type": "json_valid"},
    ]
}
LONG_PLAIN = "word " * 1200  # 6000 characters: fails max_chars=5000
LONG_JSON = json.dumps({"items": ["x" * 40] * 110})  # 4851 characters of valid JSON


@pytest.mark.anyio
async def test_text_cut_at_ingest_is_skipped_never_passed_or_failed(
    run_collector: RunCollector,
) -> None:
    async with run_collector(CUT_CONFIG) as c:  # max_attr_value_len: 4096 by default
        spans = [
            llm_with_text("q", LONG_PLAIN),
            llm_with_text("q", LONG_JSON),
            llm_with_text("q", '{"a": 1}'),  # short: evaluated
        ]
        assert (await c.post(encode(batch(spans)))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 2)
        # The evaluations of the short text are done; give the cut ones no more time.
        m = await wait_for(
            c, lambda m: m.total("rastir_evaluation_skipped_total", reason="truncated") == 4
        )
    skipped = "rastir_evaluation_skipped_total"
    for name in ("short", "is_json"):
        assert m.value(skipped, evaluation=name, reason="truncated") == 2
        assert m.value(skipped, evaluation=name, reason="no_content") == 0
        assert m.total("rastir_evaluations_total", evaluation=name, result="passed") == 1
        assert m.total("rastir_evaluations_total", evaluation=name, result="failed") == 0
    assert m.value("rastir_collector_truncated_total", field="attribute_value") == 2


@pytest.mark.anyio
async def test_a_raised_value_limit_lets_long_text_be_evaluated_whole(
    run_collector: RunCollector,
) -> None:
    async with run_collector(CUT_CONFIG, max_attr_value_len=65_536) as c:
        tid = trace_id()
        plain = llm_with_text("q", LONG_PLAIN, trace=tid)
        as_json = llm_with_text("q", LONG_JSON, trace=tid)
        assert (await c.post(encode(batch([plain, as_json])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 4)
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    assert m.total("rastir_evaluation_skipped_total") == 0
    ev_plain = evaluations_under(tree, plain["span_id"])
    ev_json = evaluations_under(tree, as_json["span_id"])
    assert ev_plain["short"]["attributes"]["rastir.evaluation.passed"] is False
    assert (
        ev_plain["short"]["attributes"]["rastir.evaluation.reason"]
        == "5999 characters; the maximum is 5000"  # the text, stripped
    )
    assert ev_json["is_json"]["attributes"]["rastir.evaluation.passed"] is True
    assert ev_json["short"]["attributes"]["rastir.evaluation.passed"] is True


# -- evaluation spans and the application's trace ------------------------------------------


@pytest.mark.anyio
@EVERY_STORE
async def test_a_failing_judge_leaves_the_applications_trace_ok_and_its_duration_alone(
    run_collector: RunCollector, store: str
) -> None:
    config = {"evaluators": [{"name": "relevance", "type": "relevance"}]}
    async with (
        run_judge(mode="error", status=500) as judge,
        run_collector(
            config,
            store=store,
            retention=None,
            **judge_settings(judge.base_url, eval_judge_retries=0),
        ) as c,
    ):
        tid, spans = agent_with_llms(("What is the weather in Lisbon?", "Sunny."))
        assert (await c.post(encode(batch(spans)))).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total", result="error") == 1)
        with anyio.fail_after(5):  # the evaluation span is written by the store queue
            while True:
                tree = (await c.client.get(f"/v1/traces/{tid}")).json()
                if tree["summary"]["span_count"] == 3:
                    break
                await anyio.sleep(0.02)
        errors = (await c.client.get("/v1/traces", params={"status": "error"})).json()
        # The app's spans last 1.5 s (tests.collector.spans); the evaluation ran now,
        # long after them: counted, it would stretch the trace to months.
        slow = (await c.client.get("/v1/traces", params={"min_duration_ms": 1501})).json()
    (ev,) = evaluations_under(tree, spans[1]["span_id"]).values()
    assert ev["status"] == "error"  # the evaluation itself failed, and says so
    assert ev["error"]["type"] == "provider_error"
    summary = tree["summary"]
    assert (summary["status"], summary["error_count"]) == ("ok", 0)
    assert summary["duration_ns"] == 1_500_000_000
    assert errors["traces"] == []
    assert slow["traces"] == []


# -- tail sampling ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_with_tail_sampling_every_trace_is_evaluated_and_results_follow_the_decision(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [
            {"name": "is_json", "type": "json_valid"},
            # Fails on every span: a failed evaluation must not keep a trace as an error.
            {"name": "raises", "type": "tests.evaluation.custom:Raises"},
        ]
    }
    async with run_collector(
        config,
        tail_sampling=True,
        tail_ratio=0.0,  # keep errors only
        tail_decision_wait=600.0,  # decided by the test (flush), not by the clock
        tail_root_grace=600.0,
        retention=None,
    ) as c:
        ok = [trace_id() for _ in range(10)]
        failed = [trace_id() for _ in range(2)]
        spans = [llm_with_text("q", '{"valid": true}', trace=t) for t in ok]
        bad = [llm_with_text("q", "not json", trace=t) for t in failed]
        for s in bad:
            s["status"] = "error"
        assert (await c.post(encode(batch(spans + bad)))).status_code == 202
        # Every trace is evaluated while the sampler still holds it: unbiased counts.
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 24)
        assert m.total("rastir_evaluations_total", evaluation="is_json", result="passed") == 10
        assert m.total("rastir_evaluations_total", evaluation="is_json", result="failed") == 2

        # A score for a trace still waiting for its decision goes to the spans held.
        waiting = await c.client.post(
            "/v1/scores", json={"trace_id": ok[0], "name": "thumbs", "passed": True}
        )
        assert waiting.status_code == 202, waiting.text
        assert waiting.json()["parent_span_id"] == spans[0]["span_id"]

        sampler = c.app.state.tail_sampler
        sampler.flush()
        # Only the two traces with an application error are kept; the evaluation
        # failures (status error) on the other ten did not keep them.
        assert sampler.decisions[("kept", "error")] == 2
        assert sampler.decisions[("dropped", "ratio")] == 10

        dropped = await c.client.post(
            "/v1/scores", json={"trace_id": ok[1], "name": "thumbs", "passed": True}
        )
        assert dropped.status_code == 404
        assert dropped.json() == {
            "error": "sampled_out",
            "message": f"trace {ok[1]} was dropped by tail sampling: its spans are not "
            "stored, so there is nothing to attach a score to",
        }
        unknown = trace_id()
        never = await c.client.post(
            "/v1/scores", json={"trace_id": unknown, "name": "thumbs", "passed": True}
        )
        assert never.status_code == 404
        assert "were dropped by tail sampling" in never.json()["message"]

        with anyio.fail_after(5):  # kept: the store writes it from its queue
            while True:
                r = await c.client.get(f"/v1/traces/{failed[0]}")
                if r.status_code == 200:
                    break
                await anyio.sleep(0.02)
        tree = r.json()
        assert (await c.client.get(f"/v1/traces/{ok[0]}")).status_code == 404
        m = await c.scrape()
    # The kept trace has its evaluations stored; the score on the dropped trace counts.
    assert set(evaluations_under(tree, bad[0]["span_id"])) == {"is_json", "raises"}
    assert m.total("rastir_evaluations_total", evaluation="thumbs", result="passed") == 1


# -- redaction at the judge's clip ------------------------------------------------------


@pytest.mark.anyio
async def test_a_secret_cut_by_the_judges_length_limit_does_not_reach_it_in_part(
    run_collector: RunCollector,
) -> None:
    config = {"evaluators": [{"name": "relevance", "type": "relevance"}]}
    email, key = "jane.doe.private@example.com", "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    # 12,000 characters reach the judge: each secret straddles that clip.
    prompt = "a " * 5994 + email + " " + "b " * 100
    completion = "c " * 5995 + key + " the end"
    assert prompt.index(email) < 12_000 < prompt.index(email) + len(email)
    assert completion.index(key) < 12_000 < completion.index(key) + len(key)
    async with (
        run_judge() as judge,
        run_collector(config, max_attr_value_len=65_536, **judge_settings(judge.base_url)) as c,
    ):
        assert (await c.post(encode(batch([llm_with_text(prompt, completion)])))).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
    (body,) = judge.bodies()
    text = json.loads(body)["messages"][1]["content"]
    for fragment in ("jane", "jane.doe", "sk-proj", "sk-", "ABCDE"):
        assert fragment not in text
    assert text.count("[cut]") == 2  # both texts were clipped


# -- shutdown --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_evaluations_lost_at_shutdown_are_logged_as_a_warning(
    run_collector: RunCollector, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"evaluators": [{"name": "toxicity", "type": "toxicity"}]}
    caplog.set_level(logging.WARNING, logger="rastir.collector.evaluation")
    async with (
        run_judge(mode="slow") as judge,
        run_collector(
            config, **judge_settings(judge.base_url, eval_queue_size=10, eval_workers=1)
        ) as c,
    ):
        spans = [llm_with_text("q", f"a{i}") for i in range(5)]
        assert (await c.post(encode(batch(spans)))).status_code == 202
        await wait_for(c, lambda m: judge.received() == 1)
    (record,) = [r for r in caplog.records if "not done" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "evaluation stopped with 5 evaluation(s) not done (4 queued, 1 running): dropped, "
        'counted in rastir_evaluation_dropped_total{reason="shutdown"}'
    )
