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

A big answer is never held whole: :class:`TreePlan` works out the tree's shape as
indexes into the spans, and :func:`encode_tree` writes the JSON from it in pieces,
one node object at a time (the collector streams them). :func:`build_tree` makes
the same tree as dicts, for callers that want objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgspec

from rastir.collector.store._aggregate import TraceAggregate
from rastir.collector.store.base import SpanRow, TraceDetail, TraceSummary

__all__ = ["CHUNK_BYTES", "MAX_NESTING", "TreePlan", "build_tree", "encode_tree", "summarize"]

#: The deepest span nesting answered as a tree; deeper traces are answered flat.
MAX_NESTING: Final = 100


def summarize(trace_id: str, rows: Iterable[SpanRow]) -> TraceSummary:
    """The summary of a trace from its spans (duplicates: last write wins).

    Raises:
        ValueError: ``rows`` is empty; a trace has at least one span.
    """
    latest = {row.span.span_id: row for row in rows}
    if not latest:
        raise ValueError(f"trace {trace_id} has no spans")
    return TraceAggregate.from_rows(latest.values()).summary(trace_id)


class _Node(msgspec.Struct, gc=False):
    """A node's own fields, in the answer's key order (``children`` is added around it).

    ``gc=False``: a node is encoded and dropped at once; it never holds a cycle.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ns: int
    status: str
    error: dict[str, str] | None
    attributes: dict[str, Any]
    events: list[Any]  # WireEvent: encoded as to_builtins gives it (omit_defaults)
    links: list[Any]
    orphan: bool


def _fields(row: SpanRow, orphan: bool) -> _Node:
    span = row.span
    error = span.error
    return _Node(
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.kind,
        row.service,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        max(0, span.end_time_unix_nano - span.start_time_unix_nano),
        span.status,
        None
        if error is None
        else {"type": error.type, "exception_type": error.exception_type, "message": error.message},
        span.attributes,
        span.events,
        span.links,
        orphan,
    )


class TreePlan:
    """The shape of a trace's tree, as indexes into its spans: no node built yet.

    Attributes:
        rows: one per ``span_id`` (last write wins), in first-write order.
        top: the top-level nodes, sorted (every node when ``flattened``).
        children: each parent's children, sorted (empty when ``flattened``).
        orphan: per row, whether it is shown as an orphan.
        flattened: the tree nests deeper than :data:`MAX_NESTING`.
    """

    __slots__ = ("children", "flattened", "orphan", "rows", "summary", "top")

    def __init__(self, detail: TraceDetail) -> None:
        latest: dict[str, SpanRow] = {}
        for row in detail.spans:
            latest[row.span.span_id] = row
        rows = self.rows = list(latest.values())
        index = {span_id: i for i, span_id in enumerate(latest)}
        del latest
        self.summary = detail.summary
        order = _Order(rows)
        parents = [-1] * len(rows)
        orphan = self.orphan = [False] * len(rows)
        children: dict[int, list[int]] = {}
        top: list[int] = []
        for i, row in enumerate(rows):
            parent_id = row.span.parent_span_id
            parent = (
                index.get(parent_id)
                if parent_id is not None and parent_id != row.span.span_id
                else None
            )
            if parent is None:
                orphan[i] = parent_id is not None
                top.append(i)
            else:
                parents[i] = parent
                kids = children.get(parent)
                if kids is None:
                    children[parent] = [i]
                else:
                    kids.append(i)

        placed = [False] * len(rows)
        depth = _place(top, children, placed, order)
        if not all(placed):
            # What is left is on a cycle or hangs off one: every such span has a parent
            # that is not placed either, so walking up from it must come round.
            for i in order.sorted([i for i, done in enumerate(placed) if not done]):
                if placed[i]:
                    continue
                cut = _earliest_on_cycle(i, parents, order)
                children[parents[cut]].remove(cut)
                orphan[cut] = True
                top.append(cut)
                depth = max(depth, _place([cut], children, placed, order))

        self.flattened = depth > MAX_NESTING
        if self.flattened:
            self.top = order.sorted(list(range(len(rows))))
            self.children: dict[int, list[int]] = {}
        else:
            order.sorted(top)
            self.top = top
            self.children = children

    def node(self, i: int) -> _Node:
        """Row ``i``'s node, without its children."""
        return _fields(self.rows[i], self.orphan[i])


def build_tree(detail: TraceDetail) -> dict[str, Any]:
    """The trace as a JSON-ready dict: ``{"trace_id", "summary", "spans"}``.

    ``spans`` holds the top-level nodes (the root, then any orphans); every node is
    the span's fields plus ``duration_ns``, ``service``, ``orphan`` and its sorted
    ``children``. See the module docstring for duplicates, orphans, cycles and
    ``"flattened": true``. :func:`encode_tree` gives the same as JSON, in pieces.
    """
    plan = TreePlan(detail)
    nodes: dict[int, dict[str, Any]] = {}
    # Children before parents: each node takes its children's finished dicts.
    for i in _postorder(plan):
        kids = plan.children.get(i, ())
        built = msgspec.to_builtins(plan.node(i))
        built["children"] = [nodes.pop(child) for child in kids]
        nodes[i] = built
    tree: dict[str, Any] = {
        "trace_id": detail.summary.trace_id,
        "summary": msgspec.to_builtins(detail.summary),
        "spans": [nodes.pop(i) for i in plan.top],
    }
    if plan.flattened:
        tree["flattened"] = True
    return tree


def _postorder(plan: TreePlan) -> Iterator[int]:
    stack = [(i, False) for i in reversed(plan.top)]
    while stack:
        i, expanded = stack.pop()
        if expanded:
            yield i
            continue
        stack.append((i, True))
        stack.extend((child, False) for child in reversed(plan.children.get(i, ())))


#: The size the pieces :func:`encode_tree` gives reach before each is given.
CHUNK_BYTES: Final = 128 * 1024

_encode = msgspec.json.Encoder().encode


def encode_tree(plan: TreePlan, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """:func:`build_tree`'s answer as JSON, byte for byte, in pieces of ``chunk_bytes`` or so.

    Only one node is an object at a time: memory holds a piece, not the answer (a
    50,000-span trace is about 27 MB of JSON), and each piece is a short run of work,
    so a caller can hand the next one to another thread, or yield between them. The
    tree is walked without recursion, however deep.
    """
    out = bytearray(b'{"trace_id":')
    out += _encode(plan.summary.trace_id)
    out += b',"summary":'
    out += _encode(plan.summary)
    out += b',"spans":['
    children = plan.children
    # Each entry: the sibling list being written and the index of the next one.
    stack: list[tuple[list[int], int]] = [(plan.top, 0)]
    while stack:
        siblings, at = stack[-1]
        if at == len(siblings):
            stack.pop()
            if stack:
                out += b"]}"  # the end of the parent's children and of the parent
            continue
        stack[-1] = (siblings, at + 1)
        if at:
            out += b","
        i = siblings[at]
        out += _encode(plan.node(i))[:-1]  # without its closing brace
        kids = children.get(i)
        if kids:
            out += b',"children":['
            stack.append((kids, 0))
        else:
            out += b',"children":[]}'
        if len(out) >= chunk_bytes:
            yield bytes(out)
            out.clear()
    out += b'],"flattened":true}' if plan.flattened else b"]}"
    yield bytes(out)


class _Order:
    """Sorts row indexes by (start time, span id), the order of siblings.

    Two stable sorts by one key each (span id, then start), not one by a key tuple:
    a tuple per span is an object the garbage collector tracks (until a collection
    looks at it), and a big trace has tens of thousands of them.
    """

    __slots__ = ("span_ids", "starts")

    def __init__(self, rows: list[SpanRow]) -> None:
        self.starts = [row.span.start_time_unix_nano for row in rows]
        self.span_ids = [row.span.span_id for row in rows]

    def sorted(self, ids: list[int]) -> list[int]:
        """``ids`` sorted in place, and returned."""
        ids.sort(key=self.span_ids.__getitem__)
        ids.sort(key=self.starts.__getitem__)
        return ids

    def key(self, i: int) -> tuple[int, str]:
        return self.starts[i], self.span_ids[i]


def _earliest_on_cycle(i: int, parents: list[int], order: _Order) -> int:
    seen: set[int] = set()
    while i not in seen:
        seen.add(i)
        i = parents[i]
    cycle = [i]
    member = parents[i]
    while member != i:
        cycle.append(member)
        member = parents[member]
    return min(cycle, key=order.key)


def _place(
    start: list[int],
    children: dict[int, list[int]],
    placed: list[bool],
    order: _Order,
) -> int:
    """Mark every node reachable from ``start`` and sort each one's children.

    Returns the depth of the deepest node, in spans (1 for ``start`` itself).
    """
    deepest = 0
    stack = [(i, 1) for i in start]
    while stack:
        i, depth = stack.pop()
        placed[i] = True
        if depth > deepest:
            deepest = depth
        kids = children.get(i)
        if kids:
            if len(kids) > 1:
                order.sorted(kids)
            stack.extend((child, depth + 1) for child in kids)
    return deepest
