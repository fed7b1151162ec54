"""Redaction against crafted text: is every pattern linear in the length of its input?

Run: ``python bench/redaction_bench.py [--quick] [--size N]``. Prints a table and
writes ``bench/results/redaction_bench.json``.

The evaluation service masks every text it sends to an LLM judge
(``rastir.collector.evaluation.redaction``), and that text comes from spans, so from
anyone who can send one. A pattern that backtracks turns a few kilobytes into
seconds of CPU. For each built-in pattern, and for the whole ``Redactor``, each
crafted input (a long run that nearly matches one pattern or another) is timed at
``N`` and ``4N`` characters: a linear pattern takes about 4 times as long on the
longer one, a quadratic one 16 times. The table shows that ratio, worst input first;
the peer is ``str.lower`` over the same text, which is linear by construction.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rastir.collector.evaluation.redaction import DEFAULT_PATTERNS, Redactor

RESULTS = Path(__file__).resolve().parent / "results" / "redaction_bench.json"

#: name -> text of about ``n`` characters. Each is a run that nearly matches some
#: pattern: a match could start at every repetition, or a quantifier could give back
#: every character before the match finally fails.
CRAFTED: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "a" * n,
    "letters, then a non-ASCII word character": lambda n: "a1" * (n // 2) + "é",
    "eyJ-": lambda n: "eyJ-" * (n // 4),
    "eyJ.": lambda n: "eyJa." * (n // 5),
    "password": lambda n: "password" * (n // 8),
    "password=' unclosed": lambda n: "password='" + "a" * n,
    "password = (spaces)": lambda n: "password" + " " * n + "=",
    "token:token:": lambda n: "token:" * (n // 6),
    "a@a@": lambda n: "a@" * (n // 2),
    "local part, no domain": lambda n: "a." * (n // 2) + "@",
    "domain with a numeric end": lambda n: "a@" + "b." * (n // 2) + "1",
    "unicode local part": lambda n: "ö.ö" * (n // 3) + "@",
    "bearer bearer": lambda n: "bearer " * (n // 7),
    "bearer, then spaces": lambda n: "Bearer" + " " * n,
    "basic, then letters": lambda n: "basic " + "a" * n,
    "basic basic": lambda n: "basic " * (n // 6),
    "PEM header, no key": lambda n: "-----BEGIN " + "A " * (n // 2),
    "PEM headers": lambda n: "-----BEGIN PRIVATE KEY-----" * (n // 27),
    "sk-sk-": lambda n: "sk-" * (n // 3),
    "xoxb-": lambda n: "xoxb-" * (n // 5),
    "ghp_": lambda n: "ghp_" * (n // 4),
    "AKIA": lambda n: "AKIA" * (n // 4),
    "aB1+": lambda n: "aB1+" * (n // 4),
    "spaces": lambda n: " " * n,
    "a=a=": lambda n: "a=" * (n // 2),
    "base64, one case": lambda n: "abc+/" * (n // 5),
}


def _time(fn: Callable[[str], object], text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--size", type=int, default=20_000, help="N, in characters")
    parser.add_argument("--no-json", action="store_true", help="do not write the results")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.size
    repeat = 3 if args.quick else 5
    subjects: dict[str, Callable[[str], object]] = {}
    for name, source in DEFAULT_PATTERNS.items():
        subjects[name] = functools.partial(re.compile(source).sub, "[REDACTED]")
    subjects["Redactor()"] = Redactor()
    subjects["peer: str.lower"] = str.lower
    rows: list[dict[str, Any]] = []
    for subject, fn in subjects.items():
        worst = ("", 0.0, 0.0, 0.0)
        for name, make in CRAFTED.items():
            small, large = make(n), make(4 * n)
            t_small = _time(fn, small, repeat)
            t_large = _time(fn, large, repeat)
            ratio = t_large / t_small if t_small > 0 else float("inf")
            if ratio > worst[3] or not worst[0]:
                worst = (name, t_small, t_large, ratio)
        rows.append(
            {
                "subject": subject,
                "worst_input": worst[0],
                "n": n,
                "us_at_n": worst[1] * 1e6,
                "us_at_4n": worst[2] * 1e6,
                "ratio": worst[3],
            }
        )
    print(f"{'pattern':20} {'worst crafted input':42} {'µs @N':>10} {'µs @4N':>10} {'4N/N':>6}")
    for r in sorted(rows, key=lambda r: -r["ratio"]):
        print(
            f"{r['subject']:20} {r['worst_input']:42} {r['us_at_n']:10.1f} "
            f"{r['us_at_4n']:10.1f} {r['ratio']:6.1f}"
        )
    print(f"N = {n} characters; linear is about 4, quadratic about 16")
    if not args.no_json:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"quick": args.quick, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
