"""The evaluation config file: which evaluators run on which LLM spans, and redaction.

JSON, TOML or YAML, chosen by the file's extension; decoded with msgspec Structs so
that a mistake is refused at startup with the path of the bad field, for example
``Expected `float`, got `str` - at `$.evaluators[0].sample```.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Final

import msgspec

__all__ = ["EvaluationConfig", "EvaluatorConfig", "RedactionConfig", "load_config"]

# Names become metric label values and span attributes: short, plain, printable.
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


class EvaluatorConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One evaluator and the LLM spans it runs on.

    ``services``, ``agents`` and ``models`` select spans (shell-style patterns such as
    ``gpt-4o*``; empty selects all); ``sample`` is the share of traces evaluated,
    decided from the trace id so every evaluator at the same ratio sees the same
    traces. ``threshold`` is the pass mark of scored evaluators; ``judge_model``
    overrides the judge's model; ``options`` are the evaluator's own settings.
    """

    name: str
    type: str
    threshold: float | None = None
    sample: float = 1.0
    services: list[str] = []
    agents: list[str] = []
    models: list[str] = []
    judge_model: str | None = None
    options: dict[str, Any] = {}


class RedactionConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What is masked in text before it leaves the collector (see ``redaction.py``).

    ``defaults`` keeps the built-in patterns (emails, API keys, tokens, long secrets)
    except those named in ``disable``; ``patterns`` adds regular expressions.
    """

    defaults: bool = True
    disable: list[str] = []
    patterns: list[str] = []
    replacement: str = "[REDACTED]"


class EvaluationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    evaluators: list[EvaluatorConfig] = []
    redaction: RedactionConfig = RedactionConfig()

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))


def _problems(config: EvaluationConfig) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, ev in enumerate(config.evaluators):
        where = f"evaluators[{i}]"
        if _NAME.fullmatch(ev.name) is None:
            out.append(
                f"{where}.name={ev.name!r}: use 1-64 letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or '_'"
            )
        elif ev.name in seen:
            out.append(f"{where}.name={ev.name!r} is used twice")
        seen.add(ev.name)
        if not ev.type.strip():
            out.append(f"{where}.type is empty")
        if not (math.isfinite(ev.sample) and 0.0 <= ev.sample <= 1.0):
            out.append(f"{where}.sample={ev.sample} must be in 0..1")
        if ev.threshold is not None and not (
            math.isfinite(ev.threshold) and 0.0 <= ev.threshold <= 1.0
        ):
            out.append(f"{where}.threshold={ev.threshold} must be in 0..1")
        for field in ("services", "agents", "models"):
            if any(not p.strip() for p in getattr(ev, field)):
                out.append(f"{where}.{field} has an empty pattern")
        if ev.judge_model is not None and not ev.judge_model.strip():
            out.append(f"{where}.judge_model is empty")
    for j, pattern in enumerate(config.redaction.patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            out.append(f"redaction.patterns[{j}]={pattern!r} is not a regular expression: {e}")
    return out


def load_config(path: Path) -> EvaluationConfig:
    """Read and check an evaluation config file (``.json``, ``.toml``, ``.yaml``/``.yml``).

    Raises:
        ValueError: the file is missing, unreadable or invalid; the message names it.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"evaluation config {path}: cannot read it ({e.strerror or e})")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return msgspec.json.decode(data, type=EvaluationConfig)
        if suffix == ".toml":
            return msgspec.toml.decode(data, type=EvaluationConfig)
        if suffix in (".yaml", ".yml"):
            return msgspec.yaml.decode(data, type=EvaluationConfig)
    except (msgspec.DecodeError, ValueError) as e:  # ValidationError is a DecodeError
        raise ValueError(f"evaluation config {path}: {e}")
    except ImportError as e:  # TOML on Python 3.10 needs tomli, YAML needs PyYAML
        raise ValueError(f"evaluation config {path}: {e}")
    raise ValueError(
        f"evaluation config {path}: unknown format {suffix!r}; use .json, .toml or .yaml"
    )
