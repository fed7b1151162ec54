"""Evaluator types by name, and the built-ins.

A config entry's ``type`` is either a registered name or an import path
``package.module:Attribute`` naming an evaluator class (or any factory taking the
entry's :class:`EvaluatorConfig`). The import path is how a collector started from
the command line runs the user's own evaluators; code that builds the app itself can
also :meth:`~EvaluatorRegistry.register` a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from rastir.collector.evaluation.base import Evaluator, EvaluatorFactory
from rastir.collector.evaluation.config import EvaluatorConfig

__all__ = ["EvaluatorRegistry"]


def _builtins() -> dict[str, EvaluatorFactory]:
    from rastir.collector.evaluation.deterministic import JsonValid, LengthBound, Policy
    from rastir.collector.evaluation.judge import (
        HallucinationJudge,
        PromptJudge,
        RelevanceJudge,
        ToxicityJudge,
    )

    return {
        "toxicity": ToxicityJudge,
        "hallucination": HallucinationJudge,
        "relevance": RelevanceJudge,
        "llm_judge": PromptJudge,
        "json_valid": JsonValid,
        "policy": Policy,
        "length": LengthBound,
    }


class EvaluatorRegistry:
    """Maps a type name to what makes the evaluator. Holds the built-ins by default."""

    def __init__(self, *, builtins: bool = True) -> None:
        self._factories: dict[str, EvaluatorFactory] = _builtins() if builtins else {}

    def register(self, type_name: str, factory: EvaluatorFactory, *, replace: bool = False) -> None:
        """Make ``type_name`` usable as a config entry's ``type``.

        Raises:
            ValueError: the name is taken (and ``replace`` is false) or contains ``:``.
        """
        if not type_name or ":" in type_name:
            raise ValueError(f"evaluator type {type_name!r}: give a name without ':'")
        if type_name in self._factories and not replace:
            raise ValueError(f"evaluator type {type_name!r} is already registered")
        self._factories[type_name] = factory

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._factories))

    def create(self, config: EvaluatorConfig) -> Evaluator:
        """The evaluator a config entry describes.

        Raises:
            ValueError: unknown type, an import path that does not resolve, a factory
                that does not return an :class:`Evaluator`, or invalid options.
        """
        factory = self._factories.get(config.type)
        if factory is None:
            if ":" not in config.type:
                raise ValueError(
                    f"evaluator {config.name!r}: unknown type {config.type!r}; use one of "
                    f"{', '.join(self)} or an import path 'package.module:Class'"
                )
            factory = _import(config)
        try:
            evaluator = factory(config)
        except ValueError:
            raise
        except Exception as e:  # a factory with another signature, or a bug in it
            raise ValueError(
                f"evaluator {config.name!r}: {config.type} failed to build it: "
                f"{type(e).__name__}: {e}"
            )
        if not isinstance(evaluator, Evaluator):
            raise ValueError(
                f"evaluator {config.name!r}: {config.type} made a "
                f"{type(evaluator).__name__}, not an Evaluator"
            )
        return evaluator


def _import(config: EvaluatorConfig) -> EvaluatorFactory:
    module_name, _, attr = config.type.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"evaluator {config.name!r}: cannot import {module_name!r} ({e})")
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"evaluator {config.name!r}: {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ValueError(f"evaluator {config.name!r}: {config.type} is not callable")
    factory: EvaluatorFactory = obj
    return factory
