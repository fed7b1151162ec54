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
    # ``\w`` is Unicode: internationalised addresses (jöhn@exämple.com) are masked too
    "email": r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}",
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
    # A key naming a secret, then ``:`` or ``=``, then its value: env files
    # (AWS_SECRET_ACCESS_KEY=...), configs (client_secret: ...), JSON ("password":
    # "..."), headers (x-api-key: ...). The key is one run of name characters that
    # contains a secret word (``token``, ``pwd`` only at its end: max_tokens is not a
    # secret); a match starts only where such a run starts, and the lookahead looks
    # for the word inside that run only, so each run is scanned a bounded number of
    # times. A quoted value is masked up to its closing quote, spaces included; an
    # unquoted one up to a space, quote, ``,``, ``;`` or ``&`` (URL queries).
    "secret_assignment": (
        r"(?i:(?<![\w.-])"
        r"(?=[\w.-]*?(?:passw(?:or)?d|passphrase|secret|api[_-]?key|private[_-]?key"
        r"|access[_-]?key|(?:token|pwd|credentials?)(?![\w.-])))"
        r"[\w.-]+[\"']?\s*[:=]\s*"
        r"(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&]{4,}))"
    ),
    # ``Authorization: Basic <base64>``: the value must hold a digit, ``+``, ``/`` or
    # ``=``, so that "basic understanding" stays text
    "basic_auth": r"(?i:\bbasic\s+)(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}",
    # PEM private keys, header to footer (or to the end of the key's base64 when the
    # footer is missing); the body class stops at the footer's dashes
    "private_key": (
        r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[A-Za-z0-9+/=\s:,]*"
        r"(?:-----END [A-Z ]{0,40}PRIVATE KEY-----)?"
    ),
    # 40 base64 characters mixing upper and lower case letters and digits, alone: the
    # shape of an AWS secret access key (its ``/`` and ``+`` split long_secret's runs)
    "aws_secret_key": (
        r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*?[0-9])(?=[A-Za-z0-9+/]*?[a-z])"
        r"(?=[A-Za-z0-9+/]*?[A-Z])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])"
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
