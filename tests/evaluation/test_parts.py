"""The parts on their own: text extraction, judge replies, redaction, config, evaluators."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rastir.collector import CollectorSettings, create_app
from rastir.collector.evaluation import (
    DEFAULT_PATTERNS,
    EvalContext,
    EvaluationConfig,
    EvaluationFailed,
    EvaluatorConfig,
    EvaluatorRegistry,
    JsonValid,
    LengthBound,
    Policy,
    RedactionConfig,
    Redactor,
    Sample,
    Verdict,
    load_config,
    parse_judge_reply,
)
from rastir.collector.evaluation.content import (
    INPUT_KEYS,
    OUTPUT_KEYS,
    input_text,
    is_cut,
    output_text,
)
from rastir.collector.evaluation.judge import (
    HALLUCINATION_PROMPT,
    RELEVANCE_PROMPT,
    SYSTEM_PROMPT,
    TOXICITY_PROMPT,
    JudgeClient,
    _clip,
    _fill,
)
from rastir.collector.otlp.receive import decode_json
from tests.evaluation.judge_server import run_judge

CTX = EvalContext(judge=None, redact=str)


def sample(output: str | None = None, input: str | None = None) -> Sample:
    return Sample("svc", "a" * 32, "b" * 16, input, output)


# --- content -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
            "user: hi",
        ),
        (
            json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": "one"},
                            {"type": "tool_call", "name": "f", "arguments": {}},
                            {"type": "text", "content": "two"},
                        ],
                    },
                ]
            ),
            "system: be brief\nuser: one\ntwo",
        ),
        (json.dumps([{"role": "user", "content": "openai style"}]), "user: openai style"),
        (
            json.dumps([{"role": "user", "content": [{"type": "text", "text": "parts"}]}]),
            "user: parts",
        ),
        (json.dumps({"role": "user", "content": "one message"}), "user: one message"),
        ("just a plain prompt", "just a plain prompt"),
        ("[not json at all", "[not json at all"),
        (json.dumps("a JSON string"), "a JSON string"),
    ],
)
def test_prompt_text_is_read_leniently(value: str, text: str) -> None:
    assert input_text({"gen_ai.input.messages": value}) == text


def test_completion_text_has_no_role_prefix_and_falls_back_to_old_attributes() -> None:
    out = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}])
    assert output_text({"gen_ai.output.messages": out}) == "Sunny."
    assert output_text({"gen_ai.completion": "old style"}) == "old style"
    assert output_text({"gen_ai.output.messages": "[]", "gen_ai.completion": "x"}) == "x"
    assert output_text({}) is None
    assert output_text({"gen_ai.output.messages": json.dumps([{"role": "a"}])}) is None


def _otlp_string(text: str) -> dict[str, Any]:
    return {"stringValue": text}


def _otlp_kvlist(**values: dict[str, Any]) -> dict[str, Any]:
    return {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in values.items()]}}


def _otlp_messages(*messages: tuple[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """GenAI messages as structured OTLP values: an array of kvlists, parts likewise."""
    return {
        "arrayValue": {
            "values": [
                _otlp_kvlist(
                    role=_otlp_string(role),
                    parts={
                        "arrayValue": {
                            "values": [
                                _otlp_kvlist(type=_otlp_string(kind), content=_otlp_string(text))
                                for kind, text in parts
                            ]
                        }
                    },
                )
                for role, parts in messages
            ]
        }
    }


def test_structured_genai_messages_received_over_otlp_are_read_as_text() -> None:
    span = {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "00f067aa0ba902b7",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1750000000000000000",
        "endTimeUnixNano": "1750000001000000000",
        "attributes": [
            {
                "key": "gen_ai.input.messages",
                "value": _otlp_messages(
                    ("system", [("text", "be brief")]),
                    ("user", [("text", "hello?"), ("text", "anyone")]),
                ),
            },
            {
                "key": "gen_ai.output.messages",
                "value": _otlp_messages(("assistant", [("text", '{"answer": "hello there"}')])),
            },
        ],
    }
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    ((_, (wire,)),) = decode_json(json.dumps(body).encode()).groups
    a = wire.attributes
    # What the OTLP receiver makes of them: a list of JSON texts, nested likewise.
    assert isinstance(a["gen_ai.output.messages"], list)
    assert input_text(a) == "system: be brief\nuser: hello?\nanyone"
    # The completion's own JSON is its text, not decoded any further.
    assert output_text(a) == '{"answer": "hello there"}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (['{"a": 1}', "plain"], '{"a": 1}\nplain'),  # JSON texts that are no message
        (['{"role": "user", "parts": "[\\"hi\\"]"}'], "user: hi"),  # parts kept as JSON
        (['{"role": "user", "content": "[1, 2]"}'], "user: [1, 2]"),  # content is the text
        (["{not json"], "{not json"),
    ],
)
def test_json_texts_in_lists_are_decoded_only_when_they_hold_a_message(
    value: list[str], text: str
) -> None:
    assert input_text({"gen_ai.input.messages": value}) == text


@pytest.mark.parametrize(
    ("value", "cut"),
    [
        ("x" * 99 + "…", True),  # what ingest makes of a longer text at max_len=100
        ("x" * 100, False),
        ("x" * 98 + "…", False),  # shorter than the limit: never cut
        (["short", "x" * 99 + "…"], True),  # a list item cut
        (["short", "x" * 100], False),
        ("", False),
    ],
)
def test_a_text_cut_at_ingest_is_recognised(value: str | list[str], cut: bool) -> None:
    assert is_cut({"gen_ai.output.messages": value}, OUTPUT_KEYS, 100) is cut
    assert is_cut({"gen_ai.prompt": value}, INPUT_KEYS, 100) is cut
    # The first key holding a value is the one read.
    assert not is_cut(
        {"gen_ai.input.messages": "fine", "gen_ai.prompt": "x" * 99 + "…"}, INPUT_KEYS, 100
    )


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["role", "parts", "content", "type", "text"]), inner)
        ),
        max_leaves=20,
    )
)
def test_reading_text_never_raises_on_any_json(value: Any) -> None:
    raw = json.dumps(value)
    for attrs in ({"gen_ai.input.messages": raw}, {"gen_ai.output.messages": raw}):
        for text in (input_text(attrs), output_text(attrs)):
            assert text is None or isinstance(text, str)


# --- judge replies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "score", "reason"),
    [
        ('{"score": 0.3, "reason": "mild"}', 0.3, "mild"),
        ('```json\n{"score": 1, "reason": "ok"}\n```', 1.0, "ok"),
        ('Here you go: {"score": "0.75", "reason": " spaced "} Thanks.', 0.75, "spaced"),
        ('{"score": 0}', 0.0, ""),
    ],
)
def test_judge_replies_are_read_from_their_json_object(
    content: str, score: float, reason: str
) -> None:
    assert parse_judge_reply(content) == (score, reason)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("It looks fine to me.", "holds no JSON object"),
        ("{score: 0.5}", "no valid JSON object"),
        ('{"reason": "forgot"}', "no numeric score"),
        ('{"score": true}', "no numeric score"),
        ('{"score": "high"}', "no numeric score"),
        ('{"score": 7}', "judge score 7.0 is outside 0..1"),
        ('{"score": -0.5}', "outside 0..1"),
    ],
)
def test_unreadable_judge_replies_are_validation_failures(content: str, message: str) -> None:
    with pytest.raises(EvaluationFailed, match=message) as e:
        parse_judge_reply(content)
    assert e.value.kind == "validation_error"


def test_the_built_in_prompts_use_their_placeholders() -> None:
    assert "{output}" in TOXICITY_PROMPT
    assert "{input}" not in TOXICITY_PROMPT
    for prompt in (HALLUCINATION_PROMPT, RELEVANCE_PROMPT):
        assert "{input}" in prompt
        assert "{output}" in prompt
    assert "JSON" in SYSTEM_PROMPT


# --- redaction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("email", "first.last+tag@mail.example.co.uk"),
        ("sk_key", "sk-ant-api03-abcDEF123456789_xyz"),
        ("aws_access_key", "ASIAIOSFODNN7EXAMPLE"),
        ("google_api_key", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
        ("github_token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("slack_token", "xoxb-1234567890-abcdefghij"),
        ("bearer", "Bearer abc123def456ghi789"),
        ("jwt", "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"),
        ("secret_assignment", "password=hunter2hunter2"),
        ("secret_assignment", 'api_key: "q1w2e3r4"'),
        ("long_secret", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ],
)
def test_default_patterns_mask_common_secrets(name: str, secret: str) -> None:
    text = f"before {secret} after"
    assert Redactor()(text) == "before [REDACTED] after"
    only = RedactionConfig(disable=[n for n in DEFAULT_PATTERNS if n != name])
    assert secret not in Redactor(only)(text)


def test_redaction_keeps_ordinary_text_and_can_be_configured() -> None:
    plain = "The meeting is at 10:30 in room 4B; call me at the front desk."
    assert Redactor()(plain) == plain
    assert Redactor(RedactionConfig(defaults=False))("a@b.io") == "a@b.io"
    custom = Redactor(RedactionConfig(defaults=False, patterns=[r"\d{3}-\d{4}"], replacement="#"))
    assert custom("call 555-1234 now") == "call # now"
    assert Redactor(RedactionConfig(replacement=r"\1"))("x a@b.io") == r"x \1"
    with pytest.raises(ValueError, match="unknown patterns: nope"):
        Redactor(RedactionConfig(disable=["nope"]))


def test_the_jwt_pattern_starts_a_match_only_where_a_token_run_starts() -> None:
    # Why this makes redaction linear: each run of token characters is tried once,
    # and that attempt scans the run a bounded number of times. The old pattern
    # (``\beyJ...``) also started a match at every "eyJ" inside a run: "eyJ-" * 3000
    # meant 3000 scans of the rest of the run, 0.4 s on the event loop.
    jwt = re.compile(DEFAULT_PATTERNS["jwt"])
    crafted = "eyJ-" * 3000
    assert [p for p in range(len(crafted)) if jwt.match(crafted, p)] == []
    token = crafted + ".abcdefgh.ijklmnop"
    assert [p for p in range(len(token)) if jwt.match(token, p)] == [0]
    assert jwt.fullmatch(token) is not None  # the whole run, as one match
    # A token glued to a prefix is still masked, prefix included.
    glued = "id-eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"
    assert Redactor()(f"see {glued}.") == "see [REDACTED]."
    # Each dotted segment is its own run: matches take three segments each.
    dotted = ".".join(["eyJhbGciOi"] * 50)
    assert [m.span() for m in jwt.finditer(dotted)] == [(33 * i, 33 * i + 32) for i in range(16)]


@pytest.mark.parametrize(
    ("text", "clipped"),
    [
        ("short text", "short text"),
        ("one two threefour", "one two [cut]"),  # "three" of "threefour" is dropped
        ("one two three", "one two three"),  # exactly the limit
        ("one two thre four", "one two thre [cut]"),  # the limit falls on a space
        ("onetwothreefour", "[cut]"),  # one token: nothing of it is kept
        ("one\ntwo\tthreefour", "one\ntwo [cut]"),
    ],
)
def test_clipping_for_the_judge_drops_the_word_the_limit_falls_in(text: str, clipped: str) -> None:
    assert _clip(text, limit=13) == clipped


def test_texts_are_redacted_before_they_are_clipped_for_the_judge() -> None:
    email = "jane.doe.private@example.com"
    text = "a " * 5994 + email + " and more"  # the email straddles the 12,000 clip
    filled = _fill("<r>{output}</r>", sample(text), Redactor())
    assert "jane" not in filled
    assert filled.endswith("a a [REDACTED] [cut]</r>")
    # Clipped first, the fragment "jane.doe.pri" would match no pattern.
    assert "jane" in Redactor()(text[:12_000])


@pytest.mark.anyio
async def test_redaction_and_deterministic_rules_run_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def redact(text: str) -> str:
        threads.append(threading.get_ident())
        return text

    class Recording(LengthBound):
        def check(self, sample: Sample) -> Verdict:
            threads.append(threading.get_ident())
            return super().check(sample)

    rule = Recording(EvaluatorConfig(name="n", type="length", options={"max_chars": 5}))
    assert (await rule.evaluate(sample("abc"), CTX)).passed is True
    async with run_judge() as judge:
        client = JudgeClient(judge.base_url, "j", redact=redact)
        await client.open()
        try:
            await client.score("system", "user")
        finally:
            await client.aclose()
    assert len(threads) == 3  # the rule, then the system and the user message
    assert loop_thread not in threads


# --- config --------------------------------------------------------------------------


def test_config_is_read_from_toml_json_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "e.toml"
    toml.write_text(
        '[[evaluators]]\nname = "tox"\ntype = "toxicity"\nsample = 0.25\nmodels = ["gpt-*"]\n'
        '[redaction]\npatterns = ["x+"]\n'
    )
    config = load_config(toml)
    assert config.evaluators[0].sample == 0.25
    assert config.redaction.patterns == ["x+"]
    as_json = tmp_path / "e.json"
    as_json.write_bytes(msgspec.json.encode(config))
    assert load_config(as_json) == config
    as_yaml = tmp_path / "e.yml"
    as_yaml.write_text("evaluators:\n  - name: tox\n    type: toxicity\n")
    assert load_config(as_yaml).evaluators[0].name == "tox"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"evaluators": [{"name": "a"}]}', "missing required field `type`"),
        ('{"evaluators": [{"name": "a", "type": "t", "sample": 2}]}', "sample=2.0 must be in 0..1"),
        ('{"evaluators": [{"name": "a b", "type": "t"}]}', "name='a b'"),
        (
            '{"evaluators": [{"name": "a", "type": "t"}, {"name": "a", "type": "u"}]}',
            "name='a' is used twice",
        ),
        ('{"evaluators": [{"name": "a", "type": "t", "threshold": -1}]}', "threshold=-1.0"),
        ('{"evaluators": [{"name": "a", "type": "t", "models": [""]}]}', "empty pattern"),
        ('{"redaction": {"patterns": ["("]}}', "is not a regular expression"),
        ('{"evaluatorz": []}', "unknown field `evaluatorz`"),
    ],
)
def test_bad_config_files_are_refused_with_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "e.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"evaluation config .*e\.json") as e:
        load_config(path)
    assert message in str(e.value)


def test_missing_or_unknown_config_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        load_config(tmp_path / "absent.toml")
    ini = tmp_path / "e.ini"
    ini.write_text("")
    with pytest.raises(ValueError, match=r"unknown format '\.ini'"):
        load_config(ini)


def _app_with(tmp_path: Path, config: dict[str, Any], **settings: Any) -> None:
    path = tmp_path / "e.json"
    path.write_bytes(msgspec.json.encode(config))
    create_app(CollectorSettings(store="memory", eval_config=path, **settings))


@pytest.mark.parametrize(
    ("config", "settings", "message"),
    [
        (
            {"evaluators": [{"name": "t", "type": "toxicity"}]},
            {},
            "evaluators t need an LLM judge: set eval_judge_url and eval_judge_model",
        ),
        ({}, {"eval_judge_url": "http://127.0.0.1:1/v1"}, "eval_judge_model is not"),
        ({"evaluators": [{"name": "t", "type": "nope"}]}, {}, "unknown type 'nope'; use one of"),
        (
            {"evaluators": [{"name": "t", "type": "no.such.module:X"}]},
            {},
            "cannot import 'no.such.module'",
        ),
        (
            {"evaluators": [{"name": "t", "type": "json:Nope"}]},
            {},
            "'json' has no 'Nope'",
        ),
        (
            {"evaluators": [{"name": "t", "type": "builtins:repr"}]},
            {},
            "builtins:repr made a str, not an Evaluator",
        ),
        (
            {"evaluators": [{"name": "t", "type": "json:dumps"}]},
            {},
            "json:dumps failed to build it: TypeError",
        ),
        (
            {"evaluators": [{"name": "t", "type": "length", "options": {"max": 3}}]},
            {},
            "options: Object contains unknown field `max`",
        ),
        (
            {"evaluators": [{"name": "t", "type": "length", "options": {}}]},
            {},
            "give min_chars, max_chars, min_words or max_words",
        ),
        (
            {"evaluators": [{"name": "t", "type": "length", "threshold": 0.5}]},
            {},
            "threshold does not apply to length",
        ),
        (
            {"evaluators": [{"name": "t", "type": "policy", "options": {"deny": ["("]}}]},
            {},
            "bad regular expression",
        ),
        (
            {"evaluators": [{"name": "t", "type": "llm_judge", "options": {"prompt": "no slot"}}]},
            {"eval_judge_url": "http://127.0.0.1:1/v1", "eval_judge_model": "m"},
            "options.prompt must contain {input} or {output}",
        ),
        (
            {"evaluators": [{"name": "t", "type": "toxicity", "options": {"x": 1}}]},
            {"eval_judge_url": "http://127.0.0.1:1/v1", "eval_judge_model": "m"},
            "unknown options x",
        ),
    ],
)
def test_an_unusable_evaluation_setup_stops_the_collector_at_startup(
    tmp_path: Path, config: dict[str, Any], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as e:
        _app_with(tmp_path, config, **settings)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"eval_judge_url": "ftp://judge"}, "must be an http:// or https:// URL"),
        ({"eval_judge_timeout": 0}, "eval_judge_timeout=0 must be > 0"),
        ({"eval_judge_retries": 11}, "eval_judge_retries=11 must be in 0..10"),
        ({"eval_queue_size": 0}, "eval_queue_size=0 must be in 1..1000000"),
        ({"eval_workers": 0}, "eval_workers=0 must be in 1..256"),
    ],
)
def test_bad_evaluation_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="invalid collector settings") as e:
        CollectorSettings(**settings)
    assert message in str(e.value)


def test_evaluation_settings_come_from_the_environment_and_the_command_line(
    tmp_path: Path,
) -> None:
    from rastir.collector.cli import build_parser, settings_from_args

    env = {
        "RASTIR_COLLECTOR_EVAL_CONFIG": str(tmp_path / "e.toml"),
        "RASTIR_COLLECTOR_EVAL_JUDGE_URL": "https://judge.example/v1",
        "RASTIR_COLLECTOR_EVAL_JUDGE_MODEL": "m1",
        "RASTIR_COLLECTOR_EVAL_JUDGE_KEY": "k",
        "RASTIR_COLLECTOR_EVAL_JUDGE_TIMEOUT": "2.5",
        "RASTIR_COLLECTOR_EVAL_QUEUE_SIZE": "10",
    }
    s = CollectorSettings.from_env(env)
    assert s.eval_config == tmp_path / "e.toml"
    assert (s.eval_judge_url, s.eval_judge_model, s.eval_judge_key) == (
        "https://judge.example/v1",
        "m1",
        "k",
    )
    assert (s.eval_judge_timeout, s.eval_queue_size, s.eval_workers) == (2.5, 10, 2)
    args = build_parser().parse_args(
        ["--eval-config", "x.json", "--eval-workers", "4", "--eval-judge-retries", "0"]
    )
    s = settings_from_args(args)
    assert (s.eval_config, s.eval_workers, s.eval_judge_retries) == (Path("x.json"), 4, 0)


# --- deterministic evaluators ----------------------------------------------------------


def make(kind: type[Any], **options: Any) -> Any:
    return kind(EvaluatorConfig(name="e", type="t", options=options))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "output", "passed", "reason"),
    [
        ({}, '{"a": 1}', True, "valid JSON"),
        ({}, "[1, 2]", True, "valid JSON"),
        ({}, '{"a": 1', False, "not valid JSON: "),
        ({}, '```json\n{"a": 1}\n```', False, "not valid JSON"),
        ({"strip_code_fences": True}, '```json\n{"a": 1}\n```', True, "valid JSON"),
        ({"require": "object"}, "[1]", False, "valid JSON, but a array, not an object"),
        ({"require": "array"}, '"s"', False, "valid JSON, but a string, not an array"),
    ],
)
async def test_json_validity(
    options: dict[str, Any], output: str, passed: bool, reason: str
) -> None:
    verdict = await make(JsonValid, **options).evaluate(sample(output), CTX)
    assert verdict.passed is passed
    assert verdict.score == (1.0 if passed else 0.0)
    assert verdict.reason.startswith(reason)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "input", "output", "passed", "reason"),
    [
        (
            {"deny": [r"\bSSN\b"]},
            None,
            "my ssn is 1",
            False,
            "matches denied pattern '\\\\bSSN\\\\b'",
        ),
        ({"deny": [r"\bSSN\b"], "ignore_case": False}, None, "my ssn", True, "complies"),
        ({"deny_keywords": ["Refund"]}, None, "a REFUND now", False, "denied keyword 'refund'"),
        ({"deny_keywords": ["fund"]}, None, "a refund now", True, "complies"),
        ({"require": ["^Dear "]}, None, "Hello", False, "does not match required pattern"),
        ({"require": ["^Dear "]}, None, "Dear Ann", True, "complies"),
        ({"deny": ["secret"], "target": "input"}, "a secret", "fine", False, "matches denied"),
        ({"deny": ["secret"], "target": "output"}, "a secret", "fine", True, "complies"),
        ({"deny": ["secret"], "target": "both"}, "fine", "secret!", False, "matches denied"),
    ],
)
async def test_regex_and_keyword_policy(
    options: dict[str, Any], input: str | None, output: str, passed: bool, reason: str
) -> None:
    policy = make(Policy, **options)
    verdict = await policy.evaluate(sample(output, input), CTX)
    assert verdict.passed is passed
    assert reason in verdict.reason
    assert output not in verdict.reason  # the rule is named, never the text


def test_a_policy_needs_a_rule_and_reads_what_its_target_says() -> None:
    with pytest.raises(ValueError, match="a policy needs deny, require or deny_keywords"):
        make(Policy)
    both = make(Policy, deny=["x"], target="both")
    assert (both.needs_input, both.needs_output) == (True, True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "output", "passed", "reason"),
    [
        ({"max_chars": 5}, "12345", True, "5 characters, within bounds"),
        ({"max_chars": 5}, "123456", False, "6 characters; the maximum is 5"),
        ({"min_chars": 3}, "12", False, "2 characters; the minimum is 3"),
        ({"max_words": 2}, "one two three", False, "3 words; the maximum is 2"),
        ({"min_words": 2}, "one", False, "1 words; the minimum is 2"),
        ({"min_words": 2, "max_words": 3}, "one two", True, "7 characters, within bounds"),
    ],
)
async def test_output_length_bound(
    options: dict[str, Any], output: str, passed: bool, reason: str
) -> None:
    verdict = await make(LengthBound, **options).evaluate(sample(output), CTX)
    assert (verdict.passed, verdict.reason) == (passed, reason)


def test_the_registry_lists_the_built_ins_and_takes_new_names() -> None:
    registry = EvaluatorRegistry()
    assert list(registry) == [
        "hallucination",
        "json_valid",
        "length",
        "llm_judge",
        "policy",
        "relevance",
        "toxicity",
    ]
    registry.register("len2", LengthBound)
    made = registry.create(EvaluatorConfig(name="n", type="len2", options={"max_chars": 1}))
    assert isinstance(made, LengthBound)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("len2", LengthBound)
    with pytest.raises(ValueError, match="without ':'"):
        registry.register("a:b", LengthBound)
    assert "len2" not in EvaluatorRegistry()  # each registry is its own


def test_configs_build_directly_and_check_themselves() -> None:
    with pytest.raises(ValueError, match="used twice"):
        EvaluationConfig(
            evaluators=[EvaluatorConfig(name="a", type="t"), EvaluatorConfig(name="a", type="t")]
        )
    assert Verdict(0.5, True).reason == ""


def test_the_cli_refuses_an_unusable_evaluation_config_with_status_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from rastir.collector.cli import main

    bad = tmp_path / "e.toml"
    bad.write_text('[[evaluators]]\nname = "t"\ntype = "nope"\n')
    argv = ["--store", "memory", "--port", "0", "--eval-config", str(bad), "--log-level", "error"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main(argv) == 2
    finally:  # main() configures the process's logging: give pytest its handlers back
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    assert "invalid configuration: evaluator 't': unknown type 'nope'" in capfd.readouterr().err
