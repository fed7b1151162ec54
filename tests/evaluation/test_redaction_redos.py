"""Redaction on crafted text: long near-misses of every built-in pattern.

Each input is a 100,000-character run that nearly matches one pattern: a match could
start at every repetition, or a quantifier could give back every character before
the match fails. With a backtracking pattern such a text costs seconds to minutes
of CPU, with the GIL held, in the process that ingests spans. Whether every
pattern is linear is measured by ``bench/redaction_bench.py`` (time at N and 4N);
here the outputs are checked: near-misses are left alone, and a secret glued to a
long run is still masked whole. The code-fence readers of evaluation, which once were
backtracking regexes too, are checked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from rastir.collector.evaluation.base import EvaluationFailed
from rastir.collector.evaluation.deterministic import _unfence
from rastir.collector.evaluation.judge import parse_judge_reply
from rastir.collector.evaluation.redaction import DEFAULT_PATTERNS, Redactor

N = 100_000
R = "[REDACTED]"

NEAR_MISSES: dict[str, Callable[[int], str]] = {
    "letters without a digit": lambda n: "a" * n,
    "jwt starts without a dot": lambda n: "eyJ-" * (n // 4),
    "secret words without a value": lambda n: "password" * (n // 8),
    "an unclosed quoted value": lambda n: "password='" + "a" * n,
    "spaces before no separator": lambda n: "password" + " " * n + "x",
    "addresses without a domain": lambda n: "a@" * (n // 2),
    "a domain without a top level": lambda n: "a@" + "b." * (n // 2) + "1",
    "a local part without an at": lambda n: "ö.ö" * (n // 3),
    "bearer without a token": lambda n: "Bearer" + " " * n,
    "basic without base64": lambda n: "basic " + "a" * n,
    "pem header without its words": lambda n: "-----BEGIN " + "A " * (n // 2),
    "base64 run too long for aws": lambda n: "aB1+" * (n // 4),
    "slack prefixes": lambda n: "xox-" * (n // 4),
    "github prefixes": lambda n: "gh_" * (n // 3),
}


@pytest.mark.parametrize("make", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_a_long_near_miss_is_left_alone(make: Callable[[int], str]) -> None:
    text = make(N)
    assert Redactor()(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the key is the whole run the secret word ends: masked with its value
        ("x" * (N // 2) + "password=" + "y" * (N // 2) + " end", R + " end"),
        # 100,000 letters and digits mixed: one long secret, not many
        ("a1" * (N // 2), R),
        # a token run as long as the text, three segments
        ("eyJ" + "a" * N + ".bbbbb.ccccc tail", R + " tail"),
        # the value of a key, up to the first separator
        ("api_key: " + "k" * N + ", next", R + ", next"),
        # a PEM block with a long body and no footer
        ("-----BEGIN PRIVATE KEY-----\n" + "QUJD\n" * (N // 5) + "~", R + "~"),
    ],
    ids=["key-after-a-long-run", "long-secret", "long-jwt", "long-value", "pem-without-footer"],
)
def test_a_secret_in_a_long_run_is_masked_whole(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


@pytest.mark.parametrize("name", DEFAULT_PATTERNS)
def test_no_pattern_matches_anywhere_in_a_near_miss(name: str) -> None:
    # Each pattern on its own, not only the chain: an earlier pattern's mask could
    # hide a later pattern's match.
    pattern = re.compile(DEFAULT_PATTERNS[name])
    for make in NEAR_MISSES.values():
        text = make(2_000)
        assert pattern.search(text) is None, (name, text[:40])


# -- code fences around JSON (json_valid's strip_code_fences, the judge's reply) ------------
@pytest.mark.parametrize(
    ("text", "inner"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("  ```\n[1, 2]\n```  ", "[1, 2]"),
        ('```json {"a": 1}```', '{"a": 1}'),
        ("```json```", ""),
        ('{"a": 1}', None),
        ("```", None),
        ('```json\n{"a": 1}', None),
    ],
)
def test_a_fence_is_unwrapped_by_string_operations(text: str, inner: str | None) -> None:
    assert _unfence(text) == inner


def test_fences_followed_by_long_blank_runs_are_read_whole() -> None:
    """Both regexes these replace backtracked on blanks after a fence (cubic for
    json_valid: 2,000 blanks took 8 s): a 200,000-blank run must simply be read."""
    blanks = " " * 200_000
    assert _unfence("```\n" + blanks + "x") is None
    assert _unfence("```\n" + blanks + "x\n```") == "x"
    score, reason = parse_judge_reply('```json\n{"score": 0.5, "reason": "ok"}' + blanks + "```")
    assert (score, reason) == (0.5, "ok")
    with pytest.raises(EvaluationFailed):
        parse_judge_reply("```" + blanks + "x")
