"""Masking text before it leaves the collector for a judge.

The built-in patterns aim at what commonly leaks into prompts: email addresses, API
keys of the big providers, bearer tokens, JWTs, ``password=...`` pairs, and long
random-looking strings (hex digests, generated tokens). They err on the side of
masking: a judge rarely needs an identifier to score a text, and a false positive
costs a slightly worse score while a miss sends a secret to a third party.
"""

from __future__ import annotations

import re
from typing import Final

from rastir.collector.evaluation.config import RedactionConfig

__all__ = ["DEFAULT_PATTERNS", "Redactor"]

#: name -> pattern; names can be disabled one by one in the config's ``disable``.
DEFAULT_PATTERNS: Final[dict[str, str]] = {
    # the lookbehinds make a match start only where a run starts: linear, not quadratic
    "email": (
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    ),
    # OpenAI (sk-..., sk-proj-...), Anthropic (sk-ant-...) and look-alikes
    "sk_key": r"\bsk-[A-Za-z0-9_-]{16,}",
    # AWS access key ids: AKIA (long-term) and ASIA (temporary)
    "aws_access_key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    "slack_token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "bearer": r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{8,})",
    # A match starts only where a run of token characters starts (the lookbehind),
    # and the lookahead finds "eyJ" in that run's first segment, so each run is tried
    # once, in time linear in its length. With ``\beyJ`` a match could start at each
    # "eyJ" inside one run: "eyJ-" * 3000 cost a scan of the rest of the run per
    # start, quadratic (0.4 s for 12,000 characters, on the event loop). The whole
    # run is masked, a prefix such as "id-" included.
    "jwt": (
        r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*?eyJ)"
        r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"
    ),
    "secret_assignment": (
        r"(?i:\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token)"
        r"\s*[:=]\s*[\"']?[^\s\"',;]{4,}[\"']?)"
    ),
    # 32+ characters of letters and digits mixed: digests, tokens, generated keys
    "long_secret": r"\b(?=[A-Za-z0-9_]*[0-9])(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{32,}\b",
}


class Redactor:
    """Applies the configured patterns, in order: the built-ins, then the user's."""

    __slots__ = ("_patterns", "_replacement")

    def __init__(self, config: RedactionConfig | None = None) -> None:
        config = config or RedactionConfig()
        unknown = set(config.disable) - set(DEFAULT_PATTERNS)
        if unknown:
            raise ValueError(
                f"redaction.disable names unknown patterns: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(DEFAULT_PATTERNS)})"
            )
        sources: list[str] = []
        if config.defaults:
            sources.extend(p for n, p in DEFAULT_PATTERNS.items() if n not in config.disable)
        sources.extend(config.patterns)
        self._patterns = [re.compile(p) for p in sources]
        self._replacement = config.replacement.replace("\\", "\\\\")  # literal in re.sub

    def __call__(self, text: str) -> str:
        """``text`` with every match of every pattern replaced."""
        for pattern in self._patterns:
            text = pattern.sub(self._replacement, text)
        return text
