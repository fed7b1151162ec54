"""Reading captured span trees in assertions."""

from __future__ import annotations

from typing import Any

from rastir.spans import Span
from rastir.testing import CapturedSpans

Shape = tuple[str, str, tuple[Any, ...]]


def shape(spans: CapturedSpans, root: Span) -> Shape:
    """``(name, kind, (children...))``, children in start order."""
    return (root.name, root.kind, tuple(shape(spans, c) for c in spans.children(root)))


def leaf(name: str, kind: str) -> Shape:
    return (name, kind, ())


def react_tree(agent: str, model: str = "gpt-4o-mini", *, kind: str = "agent") -> Shape:
    """The tree of one run of ``react_graph``: three model turns, two tool calls."""
    llm = leaf(f"chat {model}", "llm")
    return (
        agent,
        kind,
        (
            ("node:agent", "trace", (llm,)),
            ("node:tools", "trace", (leaf("add", "tool"),)),
            ("node:agent", "trace", (llm,)),
            ("node:tools", "trace", (leaf("multiply", "tool"),)),
            ("node:agent", "trace", (llm,)),
        ),
    )
