"""Trace assembly on read: stored spans in, a span tree and a summary out.

Stores keep spans, never trees, because the spans of one trace arrive from several
services, out of order and late. Assembly is shared by every store so that they
all answer ``GET /v1/traces/{id}`` alike.

Rules:

* **Last write wins.** Spans are read in the order they were written; a later span
  with the same ``span_id`` replaces the earlier one (an SDK retrying a batch sends
  the same spans again, and a re-sent span is the newer truth).
* **Orphans.** A span whose parent is unknown (not arrived yet, or lost) is a
  top-level node with ``"orphan": true``.
* **Cycles.** Parent links that form a cycle (a broken or hostile sender) cannot
  reach a root. The earliest span of each such cycle is cut from its parent and
  shown at top level, also with ``"orphan": true``; every span appears once.
* Children, and top-level nodes, are sorted by start time (then ``span_id``).
* **Depth.** A tree nested deeper than :data:`MAX_NESTING` spans (only a broken or
  hostile sender makes one) is answered flat: every node at the top level with no
  children, ``"flattened": true``, and ``parent_span_id`` telling the shape. JSON
  readers bound nesting (Python's ``json`` near 1,000 levels, less with a deep
  stack; jq 1.6 at 256), and each span level is two JSON levels.

The tree is built without recursion, so a 10,000-deep chain is fine here.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any, Final

import msgspec

from rastir.collector.store._aggregate import TraceAggregate
from rastir.collector.store.base import SpanRow, TraceDetail, TraceSummary

__all__ = ["MAX_NESTING", "build_tree", "summarize"]

#: The deepest span nesting answered as a tree; deeper traces are answered flat.
MAX_NESTING: Final = 100

_order = itemgetter("start_time_unix_nano", "span_id")


def summarize(trace_id: str, rows: Iterable[SpanRow]) -> TraceSummary:
    """The summary of a trace from its spans (duplicates: last write wins).

    Raises:
        ValueError: ``rows`` is empty; a trace has at least one span.
    """
    latest = {row.span.span_id: row for row in rows}
    if not latest:
        raise ValueError(f"trace {trace_id} has no spans")
    return TraceAggregate.from_rows(latest.values()).summary(trace_id)


def _node(row: SpanRow) -> dict[str, Any]:
    span = row.span
    error = span.error
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "service": row.service,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "duration_ns": max(0, span.end_time_unix_nano - span.start_time_unix_nano),
        "status": span.status,
        "error": None
        if error is None
        else {"type": error.type, "exception_type": error.exception_type, "message": error.message},
        "attributes": dict(span.attributes),
        "events": msgspec.to_builtins(span.events) if span.events else [],
        "links": msgspec.to_builtins(span.links) if span.links else [],
        "orphan": False,
        "children": [],
    }


def build_tree(detail: TraceDetail) -> dict[str, Any]:
    """The trace as a JSON-ready dict: ``{"trace_id", "summary", "spans"}``.

    ``spans`` holds the top-level nodes (the root, then any orphans); every node is
    the span's fields plus ``duration_ns``, ``service``, ``orphan`` and its sorted
    ``children``. See the module docstring for duplicates, orphans, cycles and
    ``"flattened": true``.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for row in detail.spans:
        nodes[row.span.span_id] = _node(row)  # last write wins

    top: list[dict[str, Any]] = []
    for span_id, node in nodes.items():
        parent_id = node["parent_span_id"]
        parent = nodes.get(parent_id) if parent_id is not None and parent_id != span_id else None
        if parent is None:
            node["orphan"] = parent_id is not None
            top.append(node)
        else:
            parent["children"].append(node)

    placed: set[str] = set()
    depth = _place(top, placed)
    if len(placed) != len(nodes):
        # What is left is on a cycle or hangs off one: every such span has a parent
        # that is not placed either, so walking up from it must come round.
        for node in sorted((n for n in nodes.values() if n["span_id"] not in placed), key=_order):
            if node["span_id"] in placed:
                continue
            cut = _earliest_on_cycle(node, nodes)
            siblings = nodes[cut["parent_span_id"]]["children"]
            del siblings[next(i for i, child in enumerate(siblings) if child is cut)]
            cut["orphan"] = True
            top.append(cut)
            depth = max(depth, _place([cut], placed))

    tree: dict[str, Any] = {
        "trace_id": detail.summary.trace_id,
        "summary": msgspec.to_builtins(detail.summary),
    }
    if depth > MAX_NESTING:
        for node in nodes.values():
            node["children"] = []
        tree["spans"] = sorted(nodes.values(), key=_order)
        tree["flattened"] = True
    else:
        top.sort(key=_order)
        tree["spans"] = top
    return tree


def _earliest_on_cycle(node: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    while node["span_id"] not in seen:
        seen.add(node["span_id"])
        node = nodes[node["parent_span_id"]]
    cycle = [node]
    member = nodes[node["parent_span_id"]]
    while member is not node:
        cycle.append(member)
        member = nodes[member["parent_span_id"]]
    return min(cycle, key=_order)


def _place(start: list[dict[str, Any]], placed: set[str]) -> int:
    """Mark every node reachable from ``start`` and sort each one's children.

    Returns the depth of the deepest node, in spans (1 for ``start`` itself).
    """
    deepest = 0
    stack = [(node, 1) for node in start]
    while stack:
        node, depth = stack.pop()
        placed.add(node["span_id"])
        if depth > deepest:
            deepest = depth
        children = node["children"]
        if children:
            if len(children) > 1:
                children.sort(key=_order)
            stack.extend((child, depth + 1) for child in children)
    return deepest
