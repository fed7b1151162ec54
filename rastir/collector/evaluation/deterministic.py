"""Evaluators that need no judge: JSON validity, a regex/keyword policy, a length bound.

Each is one pass over the text, so microseconds for ordinary texts; they run in a
worker thread all the same (``anyio.to_thread``, one per busy evaluation worker), so
a long text or a costly ``policy`` regex never stalls the event loop that ingests
spans. (A single regex call holds the GIL until it returns: a policy's patterns
must still be linear, with no nested quantifiers.) Their score is 1 (passed) or 0
(failed), and their reason names the rule, never the matched text, which may be the
very thing that should not be repeated.
"""

from __future__ import annotations

import re
import string
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import msgspec

from rastir.collector.evaluation.base import EvalContext, Evaluator, Sample, Verdict

if TYPE_CHECKING:
    from rastir.collector.evaluation.config import EvaluatorConfig

__all__ = ["JsonValid", "LengthBound", "Policy"]


def _options(config: EvaluatorConfig, kind: type[Any]) -> Any:
    """The evaluator's ``options`` as the typed Struct ``kind``, or a clear ValueError."""
    if config.threshold is not None:
        raise ValueError(
            f"evaluator {config.name!r}: threshold does not apply to {config.type} "
            "(it passes or fails by its rule)"
        )
    if config.judge_model is not None:
        raise ValueError(
            f"evaluator {config.name!r}: judge_model does not apply to {config.type} "
            "(it runs in the collector and asks no judge)"
        )
    try:
        return msgspec.convert(config.options, kind)
    except msgspec.ValidationError as e:
        raise ValueError(f"evaluator {config.name!r}: options: {e}")


def _verdict(passed: bool, reason: str) -> Verdict:
    return Verdict(1.0 if passed else 0.0, passed, reason)


class _Rule(Evaluator):
    """A deterministic check: :meth:`check` runs in a worker thread, off the loop."""

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> Verdict:
        # Not abandoned on cancellation: the thread finishes its one pass, so busy
        # threads stay bounded by the evaluation workers.
        return await anyio.to_thread.run_sync(self.check, sample)

    @abstractmethod
    def check(self, sample: Sample) -> Verdict:
        """The verdict for ``sample``; plain CPU work, called in a worker thread."""


class _JsonOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: also accept output wrapped in a Markdown code fence (```json ... ```)
    strip_code_fences: bool = False
    #: what the top-level value must be
    require: Literal["any", "object", "array"] = "any"


# The characters of a fence's language tag (```json).
_FENCE_TAG = string.ascii_letters + string.digits + "_-"


def _unfence(text: str) -> str | None:
    """The inside of a Markdown code fence (```json ... ```) wrapping the whole text,
    stripped; None when the text is not fenced. String operations, in linear time: the
    regex this replaces backtracked cubically on a fence followed by blanks, and span
    outputs are the senders' text."""
    s = text.strip()
    if len(s) < 6 or not s.startswith("```") or not s.endswith("```"):
        return None
    return s[3:-3].lstrip(_FENCE_TAG).strip()


class JsonValid(_Rule):
    """The completion is valid JSON (type ``json_valid``)."""

    needs_output = True

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__(config)
        self.options: _JsonOptions = _options(config, _JsonOptions)

    def check(self, sample: Sample) -> Verdict:
        text = sample.output or ""
        if self.options.strip_code_fences:
            inner = _unfence(text)
            if inner is not None:
                text = inner
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            return _verdict(False, f"not valid JSON: {e}")
        want = self.options.require
        if want == "object" and not isinstance(value, dict):
            return _verdict(False, f"valid JSON, but a {_json_type(value)}, not an object")
        if want == "array" and not isinstance(value, list):
            return _verdict(False, f"valid JSON, but a {_json_type(value)}, not an array")
        return _verdict(True, "valid JSON")


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _PolicyOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: regular expressions that must not match
    deny: list[str] = []
    #: regular expressions that must all match
    require: list[str] = []
    #: words that must not appear (whole words, case-insensitive)
    deny_keywords: list[str] = []
    #: which text the policy reads
    target: Literal["output", "input", "both"] = "output"
    #: regular expressions ignore case
    ignore_case: bool = True


class Policy(_Rule):
    """A regex and keyword policy over the completion or prompt (type ``policy``)."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__(config)
        o: _PolicyOptions = _options(config, _PolicyOptions)
        if not (o.deny or o.require or o.deny_keywords):
            raise ValueError(
                f"evaluator {config.name!r}: a policy needs deny, require or deny_keywords"
            )
        flags = re.IGNORECASE if o.ignore_case else 0
        try:
            self.deny = [(p, re.compile(p, flags)) for p in o.deny]
            self.require = [(p, re.compile(p, flags)) for p in o.require]
        except re.error as e:
            raise ValueError(f"evaluator {config.name!r}: bad regular expression: {e}")
        words = [w.strip() for w in o.deny_keywords if w.strip()]
        self.keywords = (
            re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
            if words
            else None
        )
        self.target = o.target
        self.needs_input = o.target in ("input", "both")
        self.needs_output = o.target in ("output", "both")

    def check(self, sample: Sample) -> Verdict:
        texts = []
        if self.needs_input:
            texts.append(sample.input or "")
        if self.needs_output:
            texts.append(sample.output or "")
        text = "\n".join(texts)
        for source, pattern in self.deny:
            if pattern.search(text):
                return _verdict(False, f"matches denied pattern {source!r}")
        if self.keywords is not None:
            m = self.keywords.search(text)
            if m is not None:
                return _verdict(False, f"contains denied keyword {m.group(0).lower()!r}")
        for source, pattern in self.require:
            if not pattern.search(text):
                return _verdict(False, f"does not match required pattern {source!r}")
        return _verdict(True, "complies with the policy")


class _LengthOptions(msgspec.Struct, forbid_unknown_fields=True):
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None


class LengthBound(_Rule):
    """The completion's length is within bounds, in characters or words (type ``length``)."""

    needs_output = True

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__(config)
        o: _LengthOptions = _options(config, _LengthOptions)
        bounds = (o.min_chars, o.max_chars, o.min_words, o.max_words)
        if all(b is None for b in bounds):
            raise ValueError(
                f"evaluator {config.name!r}: give min_chars, max_chars, min_words or max_words"
            )
        if any(b is not None and b < 0 for b in bounds):
            raise ValueError(f"evaluator {config.name!r}: length bounds must be >= 0")
        self.options = o

    def check(self, sample: Sample) -> Verdict:
        o = self.options
        text = sample.output or ""
        chars = len(text)
        if o.max_chars is not None and chars > o.max_chars:
            return _verdict(False, f"{chars} characters; the maximum is {o.max_chars}")
        if o.min_chars is not None and chars < o.min_chars:
            return _verdict(False, f"{chars} characters; the minimum is {o.min_chars}")
        if o.max_words is not None or o.min_words is not None:
            words = len(text.split())
            if o.max_words is not None and words > o.max_words:
                return _verdict(False, f"{words} words; the maximum is {o.max_words}")
            if o.min_words is not None and words < o.min_words:
                return _verdict(False, f"{words} words; the minimum is {o.min_words}")
        return _verdict(True, f"{chars} characters, within bounds")
