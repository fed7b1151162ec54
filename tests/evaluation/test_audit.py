"""Audit of server-side evaluation, as a demanding user runs it: real collector, real judge."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rastir.collector.evaluation.base import EvaluationFailed
from rastir.collector.evaluation.config import EvaluatorConfig
from rastir.collector.evaluation.content import input_text, output_text
from rastir.collector.evaluation.judge import parse_judge_reply
from rastir.collector.evaluation.redaction import DEFAULT_PATTERNS, Redactor
from rastir.collector.evaluation.registry import EvaluatorRegistry
from tests.collector.server import serving_async
from tests.collector.spans import batch, encode, llm_span, span, trace_id
from tests.evaluation.conftest import RunCollector, wait_for
from tests.evaluation.judge_server import run_judge
from tests.evaluation.spans import llm_with_text
from tests.evaluation.test_service import evaluations_under, judge_settings

# --- a judge that answers from a script ---------------------------------------------------


@dataclass
class ScriptedJudge:
    """Answers ``replies`` in order (the last one again once they run out)."""

    replies: list[tuple[int, dict[str, str], str]]
    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> int:
        with self.lock:
            return len(self.bodies)


def _chat(content: str) -> str:
    return json.dumps(
        {
            "model": "judge-1-2025",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    )


@asynccontextmanager
async def scripted_judge(*replies: tuple[int, dict[str, str], str]) -> AsyncIterator[ScriptedJudge]:
    judge = ScriptedJudge(list(replies))

    async def chat(request: Request) -> Response:
        body = await request.body()
        with judge.lock:
            judge.bodies.append(body)
            n = len(judge.bodies)
        status, headers, content = judge.replies[min(n, len(judge.replies)) - 1]
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    async with serving_async(app) as url:
        judge.url = url + "/v1"
        yield judge


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


TOXICITY = {"evaluators": [{"name": "toxicity", "type": "toxicity"}]}


# --- redaction ----------------------------------------------------------------------------

SECRETS = {
    "email": "jane.doe@example.com",
    "idn_email": "jöhn.døe@exämple.com",
    "sk": "sk-proj-AbCdEfGhIjKlMnOpQrSt0123",
    "akia": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "bearer": "Bearer abcDEF123ghiJKL456",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
    "basic": "Basic dXNlcjpwYXNzd29yZA==",
}
# fragments of secrets that only reach the judge if masking failed
FRAGMENTS = [
    "jane.doe",
    "jöhn",
    "AbCdEfGhIjKl",
    "IOSFODNN7",
    "wJalrXUtnFEMI",
    "bPxRfiCY",
    "abcDEF123",
    "dBjftJeZ4",
    "dXNlcjpw",
    "hunter2",
    "s3cr3t-db",
    "ghp_tool",
    "K7MDENG",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[REDACTED]"),
        (
            "the key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY leaked",
            "the key [REDACTED] leaked",
        ),
        ('{"password": "hunter2 hunter2", "user": "bob"}', '{"[REDACTED], "user": "bob"}'),
        ("{'api_key': 'abcd1234efgh'}", "{'[REDACTED]}"),
        ('"apiKey":"abcdef123456"', '"[REDACTED]'),
        ("client_secret=abcdefgh12 DB_PASSWORD=s3cr3tpassw0rd", "[REDACTED] [REDACTED]"),
        ("x-api-key: 0123456789abcdef", "[REDACTED]"),
        ("refresh_token=abcdef123456&GITHUB_TOKEN=ghp_x", "[REDACTED]&[REDACTED]"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: [REDACTED]"),
        ("write to jöhn.døe@exämple.com today", "write to [REDACTED] today"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq+/=\n"
            "-----END RSA PRIVATE KEY----- done",
            "[REDACTED] done",
        ),
    ],
)
def test_secrets_in_assignments_json_headers_and_pem_blocks_are_masked(
    text: str, expected: str
) -> None:
    assert Redactor()(text) == expected


@pytest.mark.parametrize(
    "plain",
    [
        "max_tokens: 1024, tokens=300, token_type: bearer, tokenizer: cl100k",
        "a basic understanding of basics helps",
        "see /usr/local/lib/python3/site/packages/foo/bar for details",
        "The meeting is at 10:30 in room 4B; call me at the front desk.",
        "the secretary said: fine",
    ],
)
def test_ordinary_text_that_looks_like_a_key_is_left_alone(plain: str) -> None:
    assert Redactor()(plain) == plain


def test_the_new_patterns_start_a_match_only_where_a_run_starts() -> None:
    # Linear by construction: on a crafted run, a match can start at one position
    # at most, never at each repetition inside it.
    import re

    crafted = {
        "secret_assignment": "password" * 500,
        "aws_secret_key": "aB1+" * 500,
        "email": "ö.ö" * 500 + "@",
    }
    for name, text in crafted.items():
        pattern = re.compile(DEFAULT_PATTERNS[name])
        starts = [p for p in range(len(text)) if pattern.match(text, p)]
        assert len(starts) <= 1, (name, starts[:5])


@pytest.mark.anyio
async def test_secrets_in_prompt_completion_and_tool_messages_never_reach_the_judge(
    run_collector: RunCollector,
) -> None:
    prompt = json.dumps(
        [
            {
                "role": "user",
                "parts": [
                    {
                        "type": "text",
                        "content": "Plan a trip to Lisbon. My mail is {email}, also {idn_email}; "
                        "key {sk}, aws {akia} with secret {aws_secret}; header {bearer}; "
                        "session {jwt}; proxy auth {basic}.".format(**SECRETS),
                    }
                ],
            },
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "name": "lookup",
                        "arguments": {"token": "ghp_tool0123456789012345678901234567"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [
                    {
                        "type": "text",
                        "content": '{"password": "hunter2 hunter2", "db": '
                        '"postgres://app:s3cr3t-db@db.internal:5432/x", '
                        '"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
                    }
                ],
            },
        ]
    )
    completion = (
        "Lisbon is lovely. I emailed {email} and used {sk}; token={jwt} "
        "and AWS_SECRET_ACCESS_KEY={aws_secret}.".format(**SECRETS)
    )
    llm = llm_with_text(None, completion)
    llm["attributes"]["gen_ai.input.messages"] = prompt
    # OpenAI-style messages in the older attribute: a tool call's arguments too
    openai_style = llm_with_text(None, "Done: {bearer}".format(**SECRETS))
    openai_style["attributes"]["gen_ai.prompt"] = json.dumps(
        [
            {"role": "user", "content": "Book Lisbon for {email}".format(**SECRETS)},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"function": {"name": "book", "arguments": '{"api_key": "hunter2-key"}'}}
                ],
            },
            {"role": "tool", "content": 'result: {"password": "hunter2"}'},
        ]
    )
    config = {"evaluators": [{"name": "grounded", "type": "hallucination"}]}
    async with (
        run_judge() as judge,
        run_collector(config, **judge_settings(judge.base_url)) as c,
    ):
        assert (await c.post(encode(batch([llm, openai_style])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 2)
    bodies = judge.bodies()
    assert len(bodies) == 2
    seen = "\n".join(
        json.loads(b)["messages"][0]["content"] + json.loads(b)["messages"][1]["content"]
        for b in bodies
    )
    assert "Lisbon" in seen  # the text arrives, only the secrets do not
    assert seen.count("[REDACTED]") >= 12
    for fragment in FRAGMENTS:
        assert fragment not in seen, fragment
    assert m.total("rastir_evaluations_total", result="passed") == 2


# --- reading the text ---------------------------------------------------------------------


def test_a_json_answer_in_a_plain_text_attribute_is_the_text() -> None:
    # Structured output recorded in gen_ai.completion / gen_ai.prompt: the JSON is what
    # the model wrote, not a message envelope to unpack (it used to read as no text).
    assert output_text({"gen_ai.completion": '{"city": "Lisbon"}'}) == '{"city": "Lisbon"}'
    assert output_text({"gen_ai.completion": "[1, 2]"}) == "[1, 2]"
    assert input_text({"gen_ai.prompt": '{"query": "x"}'}) == '{"query": "x"}'
    # Messages in those attributes are still unpacked.
    assert output_text({"gen_ai.completion": '[{"role": "assistant", "content": "hi"}]'}) == "hi"
    assert input_text({"gen_ai.prompt": '{"role": "user", "content": "q"}'}) == "user: q"


@pytest.mark.anyio
async def test_a_json_completion_in_the_older_attribute_is_validated_not_skipped(
    run_collector: RunCollector,
) -> None:
    config = {
        "evaluators": [{"name": "is_json", "type": "json_valid", "options": {"require": "object"}}]
    }
    good, bad = llm_span(), llm_span()
    good["attributes"]["gen_ai.completion"] = '{"city": "Lisbon"}'
    bad["attributes"]["gen_ai.completion"] = "[1, 2]"
    async with run_collector(config) as c:
        assert (await c.post(encode(batch([good, bad])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 2)
    assert m.total("rastir_evaluations_total", evaluation="is_json", result="passed") == 1
    assert m.total("rastir_evaluations_total", evaluation="is_json", result="failed") == 1
    assert m.total("rastir_evaluation_skipped_total") == 0


# --- the judge misbehaving ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_429_with_retry_after_is_retried_and_then_scored(
    run_collector: RunCollector,
) -> None:
    async with (
        scripted_judge(
            (429, {"retry-after": "0"}, '{"error": "slow down"}'),
            (200, {}, _chat('{"score": 0.1, "reason": "fine"}')),
        ) as judge,
        run_collector(TOXICITY, **judge_settings(judge.url, eval_judge_retries=2)) as c,
    ):
        s = llm_with_text("hi", "hello there")
        assert (await c.post(encode(batch([s])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
    assert judge.received() == 2
    assert m.total("rastir_evaluations_total", result="passed") == 1
    assert m.total("rastir_evaluation_failures_total") == 0
    ev = evaluations_under(tree, s["span_id"])["toxicity"]
    assert ev["attributes"]["rastir.evaluation.score"] == 0.1
    assert ev["attributes"]["rastir.evaluation.judge_model"] == "judge-1-2025"


@pytest.mark.anyio
async def test_a_refused_connection_is_a_provider_error_never_a_pass(
    run_collector: RunCollector,
) -> None:
    with refusing_port() as port:
        async with run_collector(
            TOXICITY,
            **judge_settings(f"http://127.0.0.1:{port}/v1", eval_judge_retries=1),
        ) as c:
            s = llm_with_text("hi", "hello there")
            assert (await c.post(encode(batch([s])))).status_code == 202
            m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
            tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
    ev = evaluations_under(tree, s["span_id"])["toxicity"]
    assert ev["status"] == "error"
    assert ev["error"]["type"] == "provider_error"
    assert "unreachable" in ev["error"]["message"]
    assert "(after 2 attempt(s))" in ev["error"]["message"]
    assert "rastir.evaluation.passed" not in ev["attributes"]
    assert m.total("rastir_evaluations_total", result="error") == 1
    assert (
        m.total("rastir_evaluation_failures_total", evaluation="toxicity", reason="provider_error")
        == 1
    )


@pytest.mark.anyio
async def test_a_final_http_error_says_how_many_attempts_were_made(
    run_collector: RunCollector,
) -> None:
    async with (
        scripted_judge((401, {}, '{"error": "bad key"}')) as judge,
        run_collector(TOXICITY, **judge_settings(judge.url, eval_judge_retries=2)) as c,
    ):
        s = llm_with_text("hi", "hello there")
        assert (await c.post(encode(batch([s])))).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
    assert judge.received() == 1
    ev = evaluations_under(tree, s["span_id"])["toxicity"]
    # one attempt: a 401 is final (it used to say "after 3 attempt(s)")
    assert ev["error"]["message"] == "judge answered HTTP 401 (after 1 attempt(s))"


@pytest.mark.anyio
async def test_an_oversized_judge_reply_is_refused_not_read_whole(
    run_collector: RunCollector,
) -> None:
    huge = _chat('{"score": 0.1, "reason": "' + "x" * (2 << 20) + '"}')
    async with (
        scripted_judge((200, {}, huge)) as judge,
        run_collector(TOXICITY, **judge_settings(judge.url)) as c,
    ):
        s = llm_with_text("hi", "hello there")
        assert (await c.post(encode(batch([s])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
    assert judge.received() == 1
    ev = evaluations_under(tree, s["span_id"])["toxicity"]
    assert ev["error"]["type"] == "validation_error"
    assert ev["error"]["message"] == "judge reply is over 1048576 bytes"
    assert m.total("rastir_evaluations_total", result="passed") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [
        '{"score": 1.5, "reason": "very"}',
        '{"score": -0.1, "reason": "negative"}',
        '{"score": 85, "reason": "percent"}',
        '{"score": "NaN"}',
        '{"score": true}',
        "I cannot grade this.",
    ],
)
async def test_an_unusable_judge_score_is_a_validation_error_not_retried(
    run_collector: RunCollector, content: str
) -> None:
    async with (
        scripted_judge((200, {}, _chat(content))) as judge,
        run_collector(TOXICITY, **judge_settings(judge.url, eval_judge_retries=2)) as c,
    ):
        s = llm_with_text("hi", "hello there")
        assert (await c.post(encode(batch([s])))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
    assert judge.received() == 1
    assert m.total("rastir_evaluations_total", result="error") == 1
    assert m.total("rastir_evaluations_total", result="passed") == 0
    assert m.total("rastir_evaluation_failures_total", reason="validation_error") == 1


@pytest.mark.anyio
async def test_a_long_judge_reason_is_cut_and_the_labels_are_copied(
    run_collector: RunCollector,
) -> None:
    reason = "because " + "word " * 1000
    async with (
        scripted_judge((200, {}, _chat(json.dumps({"score": 0.2, "reason": reason})))) as judge,
        run_collector(TOXICITY, **judge_settings(judge.url)) as c,
    ):
        s = llm_with_text("hi", "hello", model="gpt-4o", agent="planner", provider="openai")
        assert (await c.post(encode(batch([s], service="shop")))).status_code == 202
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        tree = (await c.client.get(f"/v1/traces/{s['trace_id']}")).json()
    a = evaluations_under(tree, s["span_id"])["toxicity"]["attributes"]
    assert len(a["rastir.evaluation.reason"]) == 500
    assert a["rastir.evaluation.reason"].endswith("…")
    assert a["rastir.evaluation.passed"] is True
    assert a["rastir.evaluation.threshold"] == 0.5
    assert a["rastir.evaluation.higher_is_better"] is False
    assert a["rastir.evaluation.evaluator"] == "toxicity"
    assert a["rastir.evaluation.source"] == "collector"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.agent.name"] == "planner"
    labels = {"service": "shop", "agent": "planner", "evaluation": "toxicity"}
    assert m.total("rastir_evaluations_total", **labels, result="passed") == 1
    assert m.total("rastir_evaluation_score_count", **labels) == 1


@pytest.mark.parametrize(
    ("content", "score"),
    [
        # a reasoning model thinks aloud first, braces and a draft score included
        (
            '<think>They want {"score": 0.9} or so; {maybe} lower.</think>\n'
            '{"score": 0.2, "reason": "mild", "detail": {"words": 3}}',
            0.2,
        ),
        ('Format: {score, reason}. Answer: {"score": 0.4, "reason": "ok"}', 0.4),
    ],
)
def test_a_reply_whose_prose_holds_braces_is_read_from_its_last_object(
    content: str, score: float
) -> None:
    assert parse_judge_reply(content)[0] == score


def test_a_reply_with_only_broken_objects_is_still_a_validation_error() -> None:
    with pytest.raises(EvaluationFailed) as e:
        parse_judge_reply("{a} " * 100 + '{"reason": "no score"}')
    assert e.value.kind == "validation_error"


# --- scores and the store -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_score_sent_before_its_span_is_a_404_then_lands_once_the_span_does(
    run_collector: RunCollector,
) -> None:
    tid = trace_id()
    llm = llm_with_text("q", "a", trace=tid)
    body = {"trace_id": tid, "span_id": llm["span_id"], "name": "thumbs", "passed": True}
    async with run_collector() as c:
        early = await c.client.post("/v1/scores", json=body)
        sent = await c.post(encode(batch([span(trace=tid, kind="agent"), llm])))
        assert sent.status_code == 202
        # the documented remedy: retry (the span may still be in the store's queue)
        late = early
        for _ in range(200):
            late = await c.client.post("/v1/scores", json=body)
            if late.status_code != 404:
                break
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    assert early.status_code == 404
    assert early.json()["error"] == "not_found"
    assert "retry" in early.json()["message"]
    assert late.status_code == 202, late.text
    ev = evaluations_under(tree, llm["span_id"])["thumbs"]
    assert ev["attributes"]["rastir.evaluation.passed"] is True
    assert ev["attributes"]["rastir.evaluation.source"] == "external"


@pytest.mark.anyio
async def test_evaluation_spans_and_scores_survive_a_restart_with_the_sqlite_store(
    run_collector: RunCollector,
) -> None:
    s = llm_with_text("hi", "hello there")
    tid = s["trace_id"]
    async with (
        run_judge() as judge,
        run_collector(TOXICITY, store="sqlite", **judge_settings(judge.base_url)) as c,
    ):
        assert (await c.post(encode(batch([s])))).status_code == 202
        await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        r = await c.client.post(
            "/v1/scores",
            json={"trace_id": tid, "span_id": s["span_id"], "name": "thumbs", "score": 0.9},
        )
        for _ in range(200):  # the span may still be in the SQLite write queue
            if r.status_code != 404:
                break
            r = await c.client.post(
                "/v1/scores",
                json={"trace_id": tid, "span_id": s["span_id"], "name": "thumbs", "score": 0.9},
            )
        assert r.status_code == 202, r.text
    async with run_collector(store="sqlite") as c:
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
    evs = evaluations_under(tree, s["span_id"])
    assert set(evs) == {"toxicity", "thumbs"}
    assert evs["toxicity"]["attributes"]["rastir.evaluation.source"] == "collector"
    assert evs["toxicity"]["attributes"]["rastir.evaluation.passed"] is True
    assert evs["thumbs"]["attributes"]["rastir.evaluation.score"] == 0.9


@pytest.mark.parametrize("kind", ["json_valid", "policy", "length"])
def test_a_judge_model_on_a_deterministic_evaluator_is_refused_not_ignored(kind: str) -> None:
    by_kind: dict[str, dict[str, Any]] = {"policy": {"deny": ["x"]}, "length": {"max_chars": 5}}
    options = by_kind.get(kind, {})
    config = EvaluatorConfig(name="e", type=kind, judge_model="gpt-4o", options=options)
    with pytest.raises(ValueError, match="judge_model does not apply to") as e:
        EvaluatorRegistry().create(config)
    assert "'e'" in str(e.value)
    # without it, the same entry is fine
    EvaluatorRegistry().create(EvaluatorConfig(name="e", type=kind, options=options))
