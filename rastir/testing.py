"""Capture finished spans in memory, for your tests and ours.

    from rastir.testing import capture_spans

    def test_agent_calls_the_model():
        with capture_spans() as spans:
            run_agent("hi")
        llm = spans.one(kind="llm")
        assert llm.attributes["gen_ai.request.model"] == "gpt-4o"
        assert llm.parent_span_id == spans.one(kind="agent").span_id

With pytest the same is the fixture ``rastir_spans`` (registered through the
``pytest11`` entry point, so installing rastir is enough).

A capture sees every span that ends in the process while it is open, from any
thread, whether or not an exporter is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rastir.export._pipeline import PIPELINE
from rastir.spans import Span

__all__ = ["CapturedSpans", "capture_spans", "format_tree", "rastir_spans"]


class CapturedSpans(list[Span]):
    """The spans finished while the capture was open, in the order they ended."""

    def __init__(self) -> None:
        super().__init__()
        # Re-entrant: a span can end inside a garbage collection (an abandoned
        # stream finishing in __del__) that started while this thread held the lock.
        self._lock = threading.RLock()

    def _add(self, span: Span) -> None:
        with self._lock:
            self.append(span)

    def find(self, name: str | None = None, *, kind: str | None = None) -> list[Span]:
        """Every span with this name and/or kind."""
        return [
            s
            for s in list(self)
            if (name is None or s.name == name) and (kind is None or s.kind == kind)
        ]

    def one(self, name: str | None = None, *, kind: str | None = None) -> Span:
        """The single span with this name and/or kind.

        Raises:
            AssertionError: there is not exactly one; the message lists what there is.
        """
        found = self.find(name, kind=kind)
        if len(found) != 1:
            seen = ", ".join(f"{s.name}({s.kind})" for s in self)
            raise AssertionError(
                f"expected one span name={name!r} kind={kind!r}, found {len(found)}; "
                f"captured: {seen}"
            )
        return found[0]

    def roots(self) -> list[Span]:
        """Spans whose parent was not captured (local roots and remote children)."""
        ids = {s.sid for s in self}
        return [s for s in self if s.psid == 0 or s.psid not in ids]

    def children(self, parent: Span) -> list[Span]:
        """Direct children of ``parent``, in start order."""
        kids = [s for s in self if s.psid == parent.sid and s.tid == parent.tid]
        return sorted(kids, key=lambda s: s.start_time_unix_nano)

    def trace_ids(self) -> set[str]:
        return {s.trace_id for s in self}

    def tree(self) -> str:
        """The captured spans as an indented tree, for messages and examples."""
        return format_tree(self)


def format_tree(spans: Iterable[Span], *, durations: bool = True) -> str:
    """Render spans as an indented tree, one line each: ``name (kind) 1.2 ms``."""
    all_spans = list(spans)
    by_parent: dict[tuple[int, int], list[Span]] = {}
    ids = {(s.tid, s.sid) for s in all_spans}
    roots: list[Span] = []
    for s in all_spans:
        if s.psid and (s.tid, s.psid) in ids:
            by_parent.setdefault((s.tid, s.psid), []).append(s)
        else:
            roots.append(s)
    lines: list[str] = []

    def label(s: Span) -> str:
        text = f"{s.name} ({s.kind})"
        if s.status != "ok":
            err = f" {s.error['type']}" if s.error else ""
            text += f" [{s.status}{err}]"
        if durations:
            text += f" {s.duration_ns / 1e6:.2f} ms"
        return text

    def walk(s: Span, prefix: str, last: bool, top: bool) -> None:
        if top:
            lines.append(label(s))
            child_prefix = ""
        else:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label(s)}")
            child_prefix = prefix + ("    " if last else "│   ")
        kids = sorted(by_parent.get((s.tid, s.sid), ()), key=lambda k: k.start_time_unix_nano)
        for i, kid in enumerate(kids):
            walk(kid, child_prefix, i == len(kids) - 1, False)

    for root in sorted(roots, key=lambda r: r.start_time_unix_nano):
        walk(root, "", True, True)
    return "\n".join(lines)


@contextmanager
def capture_spans() -> Iterator[CapturedSpans]:
    """Collect every span that ends while the block runs."""
    captured = CapturedSpans()
    sink = captured._add
    # A process that captures spans is a test: its spans are read, not lost, so the
    # exit warning for a never-configured process stays quiet.
    PIPELINE.captured = True
    PIPELINE.add_sink(sink)
    try:
        yield captured
    finally:
        PIPELINE.remove_sink(sink)


try:  # the pytest plugin, when pytest is what imports us
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users
    pass
else:

    @pytest.fixture
    def rastir_spans() -> Iterator[CapturedSpans]:
        """The spans finished during the test (see :func:`capture_spans`)."""
        with capture_spans() as spans:
            yield spans


def __getattr__(name: str) -> Any:  # pragma: no cover - friendlier error
    if name == "rastir_spans":
        raise AttributeError("rastir_spans is a pytest fixture; install pytest to use it")
    raise AttributeError(name)
