"""Text views of traces for a terminal: a list of summaries, and one trace as a tree.

Both read the JSON the collector's query API answers (``GET /v1/traces`` and
``GET /v1/traces/{id}``), so that ``rastir traces``, ``rastir trace`` and ``rastir demo``
show the same thing. Columns are aligned on the plain text, and colour (only when
:class:`Style` says so) is added afterwards, so it never shifts a column.

Everything shown comes from senders the operator does not control: control
characters (ANSI escapes, newlines, bidi overrides) are shown (``␛``, ``␊``,
``\\u202e``), never written to the terminal, and columns are measured in terminal
cells, so wide (CJK) and combining characters keep them aligned. Given a ``width``
(the terminal's), the columns that can shrink do, and each line is cut to fit, never
wrapped.
"""

from __future__ import annotations

import math
import os
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

__all__ = [
    "Style",
    "format_cost",
    "format_duration",
    "format_time",
    "iter_spans",
    "render_trace",
    "render_trace_list",
]

Node = Mapping[str, Any]

_NAME_WIDTH: Final = 56
_TIMELINE_WIDTH: Final = 20
_MESSAGE_WIDTH: Final = 90
_HEADER_WIDTH: Final = 160  # a root name or service list in the trace's header
_MODEL_WIDTH: Final = 48
# Tree guides shown before a deep span's name; deeper levels are counted instead.
_MAX_GUIDES: Final = 8
_RED, _GREEN, _YELLOW, _BLUE, _DIM, _BOLD = "31", "32", "33", "34", "2", "1"


@dataclass(frozen=True)
class Style:
    """How to draw: ANSI colour or not, box-drawing characters or plain ASCII."""

    color: bool = False
    unicode: bool = True

    @classmethod
    def for_stream(cls, stream: TextIO, color: str = "auto") -> Style:
        """The style for ``stream``: colour only on a terminal (and not under ``NO_COLOR``
        or ``TERM=dumb``) unless ``color`` is ``"always"`` or ``"never"``; box drawing
        when the stream's encoding can write it.
        """
        # A text buffer without an encoding (io.StringIO) holds any character.
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
        unicode = encoding.startswith("utf")
        if color == "always":
            return cls(color=True, unicode=unicode)
        if color == "never":
            return cls(color=False, unicode=unicode)
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        wanted = tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        return cls(color=wanted, unicode=unicode)

    def paint(self, text: str, *codes: str) -> str:
        if not self.color or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"

    @property
    def branch(self) -> str:
        return "├── " if self.unicode else "|-- "

    @property
    def last(self) -> str:
        return "└── " if self.unicode else "`-- "

    @property
    def pipe(self) -> str:
        return "│   " if self.unicode else "|   "

    @property
    def cross(self) -> str:
        return "✗" if self.unicode else "x"

    @property
    def tick(self) -> str:
        return "✓" if self.unicode else "+"

    @property
    def bar(self) -> str:
        return "█" if self.unicode else "="

    @property
    def ellipsis(self) -> str:
        return "…" if self.unicode else "~"


def format_duration(ns: float) -> str:
    """``0.42 ms``, ``12.3 ms``, ``1.25 s``, ``2m 03s``."""
    ms = ns / 1e6
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def format_cost(usd: float) -> str:
    """Dollars with enough digits to tell small LLM calls apart: ``$0.000135``."""
    if usd >= 1:
        return f"${usd:,.2f}"
    if usd >= 0.01:
        return f"${usd:.4f}"
    if usd >= 0.000001 or usd <= 0:
        return f"${usd:.6f}"
    # Below a millionth (a few embedding tokens): two significant digits, never $0.
    return f"${usd:.2g}"


def format_time(unix_ns: int, *, short: bool = False) -> str:
    """Local wall-clock time of a Unix timestamp in nanoseconds (``?`` if none):
    ``2025-06-15 17:06:40``, or ``06-15 17:06`` when ``short``."""
    try:
        when = time.localtime(unix_ns / 1e9)
        return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S", when)
    except (OverflowError, OSError, ValueError):  # beyond what the platform's time holds
        return "?"


def _clean(value: Any) -> str:
    """Text safe on one terminal row: control characters (a newline, an ANSI escape,
    a bidi override, sent by a hostile client) are shown, never interpreted.

    The reader sees that a sender tried to drive the terminal, and with what: C0
    controls and DEL as their Unicode control pictures, one cell each (``\\x1b[2J``
    prints as ``␛[2J``, a newline as ``␊``), and every other character
    ``str.isprintable`` refuses as its escape, ``\\x9b`` or ``\\u202e``: C1 controls,
    format characters (bidi overrides and isolates, zero-width spaces and joiners,
    the soft hyphen), line and paragraph separators, surrogates, private-use and
    unassigned code points, and every space but U+0020 (a no-break space would pass
    for a plain one).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _shown(ch) for ch in text)


def _shown(ch: str) -> str:
    """A character ``str.isprintable`` refuses, as printable text."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # SYMBOL FOR NULL ... SYMBOL FOR UNIT SEPARATOR
    if code == 0x7F:
        return "\u2421"  # SYMBOL FOR DELETE
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _char_width(ch: str) -> int:
    if ch < "\u0300":  # ASCII and Latin: one cell (the common case, kept cheap)
        return 1
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _text_width(text: str) -> int:
    """Terminal cells ``text`` takes: wide (CJK, emoji) characters two, combining none."""
    if text.isascii():
        return len(text)
    return sum(map(_char_width, text))


def _cut(text: str, width: int, style: Style) -> str:
    """``text`` in at most ``width`` cells, ending in an ellipsis when cut."""
    if len(text) <= width and (text.isascii() or _text_width(text) <= width):
        return text
    if width <= 0:
        return ""
    room = width - 1  # for the ellipsis
    used = 0
    for i, ch in enumerate(text):
        w = _char_width(ch)
        if used + w > room:
            return text[:i] + " " * (room - used) + style.ellipsis
        used += w
    return text  # only zero-width characters past the room


def _encodable(text: str, encoding: str | None) -> str:
    """``text`` as ``encoding`` can write it: a character it cannot is shown as ``?``
    in each cell the character took, so columns stay aligned (``LANG=C``,
    ``PYTHONIOENCODING=ascii``, a Windows console)."""
    if not encoding or text.isascii():
        return text
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        pass
    except LookupError:  # an encoding Python does not know: leave it to the stream
        return text
    else:
        return text
    out = []
    for ch in text:
        try:
            ch.encode(encoding)
        except UnicodeEncodeError:
            ch = "?" * _char_width(ch)
        out.append(ch)
    return "".join(out)


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _text_width(text))


def _rjust(text: str, width: int) -> str:
    return " " * (width - _text_width(text)) + text


def _number(value: Any) -> float | None:
    """A finite JSON number, or None for anything else (bools, strings, inf, nan)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


_INT64: Final = 1 << 63


def _int(value: Any) -> int:
    """A count or time from a JSON answer: 0 for anything that is not a finite
    number, and within 64 bits (what the collector keeps) for any that is."""
    number = _number(value)
    if number is None:
        return 0
    whole = value if isinstance(value, int) else int(number)
    return max(-_INT64, min(_INT64 - 1, whole))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    """A JSON array (a list or tuple), else nothing."""
    return list(value) if isinstance(value, (list, tuple)) else []


def _children(node: Node) -> list[Node]:
    return [child for child in _list(node.get("children")) if isinstance(child, Mapping)]


def iter_spans(nodes: Iterable[Node]) -> Iterator[Node]:
    """Every node of a span tree, depth first, parents before children."""
    stack = [node for node in reversed(list(nodes)) if isinstance(node, Mapping)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(_children(node)))


def _span_cost(node: Node) -> float | None:
    return _number(_mapping(node.get("attributes")).get("rastir.cost.usd"))


def _counted_inside(node: Node) -> bool:
    return "rastir.llm.counted_in" in _mapping(node.get("attributes"))


def _details(node: Node, style: Style) -> list[tuple[str, tuple[str, ...]]]:
    """The last column of a tree row, as (text, colour codes) pieces."""
    attrs = _mapping(node.get("attributes"))
    out: list[tuple[str, tuple[str, ...]]] = []
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    if node.get("kind") == "llm" and isinstance(model, str):
        out.append((_cut(_clean(model), _MODEL_WIDTH, style), ()))
    tokens_in = _number(attrs.get("gen_ai.usage.input_tokens"))
    tokens_out = _number(attrs.get("gen_ai.usage.output_tokens"))
    if tokens_in is not None or tokens_out is not None:
        arrow = "→" if style.unicode else "->"
        out.append((f"{_int(tokens_in)}{arrow}{_int(tokens_out)} tok", ()))
    cost = _span_cost(node)
    if cost is not None:
        out.append((format_cost(cost), ()))
    if _counted_inside(node):
        out.append(("(same call as below)", (_DIM,)))
    code = attrs.get("http.response.status_code")
    if isinstance(code, int) and not isinstance(code, bool):
        out.append((f"HTTP {code}", (_RED,) if code >= 500 else ()))
    status = node.get("status")
    error = node.get("error")
    if status == "error" or error:
        text = style.cross
        if isinstance(error, Mapping):
            kind = error.get("type") or "error"
            text += f" {_cut(_clean(kind), 40, style)}"
            message = error.get("message") or error.get("exception_type")
            # A 5xx server span's message only repeats the status shown beside it.
            if message and not str(message).startswith("HTTP "):
                text += f": {_cut(_clean(' '.join(str(message).split())), _MESSAGE_WIDTH, style)}"
        else:
            text += " error"
        out.append((text, (_RED, _BOLD)))
    elif status == "cancelled":
        out.append(("cancelled", (_YELLOW,)))
    if node.get("orphan"):
        out.append(("(parent span not received)", (_YELLOW,)))
    return out


def _timeline(node: Node, start: int, total: int, style: Style) -> str:
    if total <= 0:
        return " " * _TIMELINE_WIDTH
    s = (_int(node.get("start_time_unix_nano")) or start) - start
    e = s + max(0, _int(node.get("duration_ns")))
    a = min(_TIMELINE_WIDTH - 1, max(0, s * _TIMELINE_WIDTH // total))
    b = min(_TIMELINE_WIDTH, max(a + 1, -(-e * _TIMELINE_WIDTH // total)))
    return " " * a + style.bar * (b - a) + " " * (_TIMELINE_WIDTH - b)


Pieces = list[tuple[str, tuple[str, ...]]]


def _summary_lines(
    summary: Mapping[str, Any], style: Style, span_cost: float | None, width: int | None
) -> list[str]:
    status = summary.get("status", "ok")
    errors = _int(summary.get("error_count"))
    mark = (
        (f"{style.cross} error", (_RED, _BOLD))
        if status == "error"
        else (f"{style.tick} ok", (_GREEN,))
    )
    text_room = _HEADER_WIDTH if width is None else max(8, min(_HEADER_WIDTH, width - 12))
    trace_id = _cut(_clean(summary.get("trace_id", "?")), 64, style)
    services = _list(summary.get("services"))
    root = _cut(_clean(summary.get("root_name", "?")), text_room, style)
    listed = _cut(_clean(", ".join(map(str, services))), text_room, style)
    lines: list[Pieces] = [
        [("trace " + trace_id, (_BOLD,)), ("  ", ()), mark],
        [(f"  root      {root}", ())],
        [(f"  services  {listed or '?'}", ())],
    ]
    started = summary.get("start_time_unix_nano")
    facts: Pieces = []
    if isinstance(started, int) and not isinstance(started, bool):
        facts.append((f"started   {format_time(started)}", ()))
    facts.append((f"duration {format_duration(_int(summary.get('duration_ns')))}", ()))
    span_count = summary.get("span_count")
    facts.append((f"spans {_int(span_count) if _number(span_count) is not None else '?'}", ()))
    facts.append((f"errors {errors}", (_RED,) if errors else ()))
    joined = "   ".join(text for text, _ in facts)
    if width is not None and 2 + _text_width(joined) > width and len(facts) > 3:
        # Narrow: the start on a line of its own rather than the counts cut off.
        lines.append([("  ", ()), facts[0]])
        facts = facts[1:]
    line: Pieces = [("  ", ())]
    for i, fact in enumerate(facts):
        if i:
            line.append(("   ", ()))
        line.append(fact)
    lines.append(line)
    tokens_in = _int(summary.get("input_tokens"))
    tokens_out = _int(summary.get("output_tokens"))
    cost = _number(summary.get("cost_usd")) or 0.0
    if not cost and span_cost:
        cost = span_cost
    usage = f"  tokens    {tokens_in:,} in, {tokens_out:,} out"
    if cost:
        usage += f"   cost {format_cost(cost)}"
    lines.append([(usage, ())])
    return [_paint_fitted(pieces, width, style) for pieces in lines]


def _nest(nodes: Sequence[Node]) -> list[Node]:
    """A flattened trace (every node at the top level) nested again by parent_span_id.

    The collector answers a trace nested too deep for JSON flat; the tree is rebuilt
    here without recursion. A node marked ``orphan`` stays at the top (the collector
    cut it from a cycle or never received its parent).
    """
    by_id: dict[object, dict[str, Any]] = {}
    for node in nodes:
        copy = dict(node)
        copy["children"] = []
        span_id = node.get("span_id")
        by_id.setdefault(span_id if isinstance(span_id, str) else object(), copy)
    top: list[Node] = []
    for span_id, node in by_id.items():
        parent = None
        if not node.get("orphan"):
            parent_id = node.get("parent_span_id")
            if isinstance(parent_id, str) and parent_id != span_id:
                parent = by_id.get(parent_id)
        if parent is None:
            top.append(node)
        else:
            parent["children"].append(node)
    # A hostile answer may still link nodes in a cycle that no top node reaches:
    # cut each at its first node, so every node is shown once.
    reached: set[int] = {id(node) for node in iter_spans(top)}
    for node in by_id.values():
        if id(node) not in reached:
            parent = by_id[node.get("parent_span_id")]
            parent["children"] = [c for c in parent["children"] if c is not node]
            top.append(node)
            reached.update(id(n) for n in iter_spans([node]))
    return top


def _tree_rows(
    roots: Sequence[Node], style: Style, max_guides: int = _MAX_GUIDES
) -> list[tuple[str, Node]]:
    """(tree guides + name, node) for every node, depth first, without recursion.

    Past ``max_guides`` levels the outer guides are replaced by a count of the
    levels left out (``…+12``), so a deep span's name stays on screen.
    """
    rows: list[tuple[str, Node]] = []
    # (node, guides of its ancestors below the top level, its own branch)
    stack: list[tuple[Node, tuple[str, ...], str]] = [(root, (), "") for root in reversed(roots)]
    while stack:
        node, guides, branch = stack.pop()
        if len(guides) > max_guides:
            hidden = len(guides) - max_guides + 1
            shown = guides[len(guides) - max_guides + 1 :]
            prefix = f"{style.ellipsis}+{hidden} ".ljust(4) + "".join(shown)
        else:
            prefix = "".join(guides)
        rows.append((prefix + branch + _clean(node.get("name", "?")), node))
        children = _children(node)
        if not children:
            continue
        below = guides if not branch else (*guides, "    " if branch == style.last else style.pipe)
        last = len(children) - 1
        for i in range(last, -1, -1):
            stack.append((children[i], below, style.last if i == last else style.branch))
    return rows


def render_trace(
    trace: Mapping[str, Any], style: Style | None = None, *, width: int | None = None
) -> str:
    """One trace, as ``GET /v1/traces/{id}`` answers it, as a header and a span tree.

    Each row: the span's name under box-drawing branches, its kind, service and
    duration, a timeline bar across the whole trace, then the model, tokens, cost,
    HTTP status and error (``✗ tool_error: …``) where the span has them. A trace the
    collector answered flat (too deep to nest) is nested again from the parent ids.

    Args:
        trace: the answer of ``GET /v1/traces/{id}``.
        style: colour and box drawing; plain Unicode by default.
        width: the terminal's width in cells: names and services shrink and every
            line is cut to fit. None: no limit.
    """
    style = style or Style()
    spans = trace.get("spans")
    roots: Sequence[Node] = [n for n in _list(spans) if isinstance(n, Mapping)]
    flattened = bool(trace.get("flattened"))
    if flattened:
        roots = _nest(roots)
    nodes = list(iter_spans(roots))
    # A span counted in a span inside it (rastir.llm.counted_in) is the same call.
    costs = [c for c in (_span_cost(n) for n in nodes if not _counted_inside(n)) if c is not None]
    summary = dict(_mapping(trace.get("summary")))
    summary.setdefault("trace_id", trace.get("trace_id"))
    lines = _summary_lines(summary, style, sum(costs) if costs else None, width)
    if not nodes:
        return _fit_lines([*lines, "", "  (no spans)"], width, style)

    starts = [_int(n.get("start_time_unix_nano")) for n in nodes]
    ends = [s + max(0, _int(n.get("duration_ns"))) for s, n in zip(starts, nodes, strict=True)]
    start, total = min(starts), max(ends) - min(starts)

    rows = _tree_rows(roots, style)
    name_w = min(_NAME_WIDTH, max(4, *(_text_width(label) for label, _ in rows)))
    kinds = [_cut(_clean(n.get("kind", "")), 16, style) for _, n in rows]
    kind_w = max(4, *(_text_width(kind) for kind in kinds))
    service_w = min(24, max(7, *(_text_width(_clean(n.get("service", ""))) for _, n in rows)))
    durations = [format_duration(_int(n.get("duration_ns"))) for _, n in rows]
    dur_w = max(8, *(len(d) for d in durations))
    timeline_w = _TIMELINE_WIDTH
    if width is not None:
        # Narrow terminal: the name column gives way to 32 cells, then the timeline
        # goes, then the name to 24, the service to 7, the name to 16, keeping 20
        # cells for the details where it can; past that the lines are cut.
        def excess() -> int:
            timeline = timeline_w + 2 if timeline_w else 0
            # Keep room for the details (model, tokens, error) too.
            return name_w + kind_w + service_w + dur_w + timeline + 3 * 2 + 2 + 20 - width

        for column, least in (
            ("name", 32),
            ("timeline", 0),
            ("name", 24),
            ("service", 7),
            ("name", 16),
        ):
            over = excess()
            if over <= 0:
                break
            if column == "timeline":
                timeline_w = 0
            elif column == "service":
                service_w = max(least, service_w - over)
            elif name_w > least:
                name_w = max(least, name_w - over)
        # Deep guides must leave room for the name.
        guides = max(1, min(_MAX_GUIDES, (name_w - 12) // 4))
        if guides < _MAX_GUIDES:
            rows = _tree_rows(roots, style, guides)

    header = (
        f"{'SPAN':<{name_w}}  {'KIND':<{kind_w}}  {'SERVICE':<{service_w}}  "
        f"{'DURATION':>{dur_w}}  " + (f"{'TIMELINE':<{timeline_w}}  " if timeline_w else "")
    ) + "DETAILS"
    lines += ["", style.paint(_fit(header.rstrip(), width, style), _DIM)]
    for (label, node), kind, duration in zip(rows, kinds, durations, strict=True):
        failed = node.get("status") == "error"
        cells: list[tuple[str, tuple[str, ...]]] = [
            (_ljust(_cut(label, name_w, style), name_w), (_RED,) if failed else ()),
            (_ljust(kind, kind_w), ()),
            (_ljust(_cut(_clean(node.get("service", "")), service_w, style), service_w), (_DIM,)),
            (duration.rjust(dur_w), ()),
        ]
        if timeline_w:
            timeline = _timeline(node, start, total, style)
            cells.append((timeline, (_RED,) if failed else (_BLUE,)))
        details = _details(node, style)
        pieces: Pieces = []
        for i, cell in enumerate(cells):
            if i:
                pieces.append(("  ", ()))
            pieces.append(cell)
        for detail in details:
            pieces.append(("  ", ()))
            pieces.append(detail)
        lines.append(_paint_fitted(pieces, width, style))
    if flattened:
        notice = "(sent flat, too deep for JSON: nested again here)"
        lines.append(style.paint(_fit(notice, width, style), _YELLOW))
    return _fit_lines(lines, width, style)


def _fit(text: str, width: int | None, style: Style) -> str:
    return text if width is None else _cut(text, width, style)


def _fit_lines(lines: list[str], width: int | None, style: Style) -> str:
    """Lines joined; those that hold no colour are cut to ``width`` (the others were
    fitted before they were painted)."""
    if width is None:
        return "\n".join(lines)
    return "\n".join(line if "\x1b" in line else _cut(line, width, style) for line in lines)


def _paint_fitted(pieces: Pieces, width: int | None, style: Style) -> str:
    """Plain pieces cut to ``width`` cells in all, then painted, trailing spaces dropped."""
    if width is not None:
        total = sum(_text_width(text) for text, _ in pieces)
        if total > width:
            kept: Pieces = []
            room = width
            for text, codes in pieces:
                w = _text_width(text)
                if w < room:
                    kept.append((text, codes))
                    room -= w
                    continue
                kept.append((_cut(text, room, style) if w > room else text, codes))
                break
            pieces = kept
    # Trailing blanks (a row without details) are not written.
    out = list(pieces)
    while out and not out[-1][0].strip():
        out.pop()
    if out:
        out[-1] = (out[-1][0].rstrip(), out[-1][1])
    return "".join(style.paint(text, *codes) for text, codes in out)


def _narrow(
    table: list[tuple[list[str], bool]],
    traces: Sequence[Mapping[str, Any]],
    widths: list[int],
    shown: list[int],
    width: int,
) -> None:
    """Fit the list to ``width``: shrink, shorten and drop columns, least useful first.

    The outcome, trace id (to copy into ``rastir trace``), duration and root stay.
    """
    root_wanted = widths[9]

    def over() -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1) - width

    steps: list[tuple[str, int, int]] = [
        ("cap", 9, 24),  # root
        ("cap", 8, 16),  # services
        ("drop", 6, 0),  # tokens
        ("drop", 5, 0),  # errors (the mark says ✗)
        ("drop", 7, 0),  # cost
        ("drop", 4, 0),  # spans
        ("short", 2, 0),  # started: month-day hour:minute
        ("drop", 8, 0),  # services
        ("cap", 9, 12),  # root
    ]
    for action, column, least in steps:
        excess = over()
        if excess <= 0:
            break
        if action == "cap":
            widths[column] = max(min(least, widths[column]), widths[column] - excess)
        elif action == "drop":
            shown.remove(column)
        else:
            for (cells, _), t in zip(table, traces, strict=True):
                started = t.get("start_time_unix_nano")
                if isinstance(started, int) and not isinstance(started, bool):
                    cells[2] = format_time(started, short=True)
            widths[2] = max(len("STARTED"), *(len(cells[2]) for cells, _ in table))
    spare = -over()
    if spare > 0 and widths[9] < root_wanted:  # room left: the root name gets it back
        widths[9] = min(root_wanted, widths[9] + spare)


def render_trace_list(
    traces: Sequence[Mapping[str, Any]], style: Style | None = None, *, width: int | None = None
) -> str:
    """Trace summaries, as ``GET /v1/traces`` answers them, as an aligned table.

    Args:
        traces: the ``traces`` of a ``GET /v1/traces`` answer.
        style: colour and box drawing; plain Unicode by default.
        width: the terminal's width in cells: the services and root columns shrink
            and every line is cut to fit. None: no limit.
    """
    style = style or Style()
    traces = [t for t in traces if isinstance(t, Mapping)]
    if not traces:
        return "no traces match"
    table: list[tuple[list[str], bool]] = []
    for t in traces:
        failed = t.get("status") == "error"
        cost = _number(t.get("cost_usd")) or 0.0
        tokens = _int(t.get("input_tokens")) + _int(t.get("output_tokens"))
        started = t.get("start_time_unix_nano")
        services = _list(t.get("services"))
        span_count = t.get("span_count")
        table.append(
            (
                [
                    style.cross if failed else style.tick,
                    _cut(_clean(t.get("trace_id", "?")), 32, style),
                    format_time(started)
                    if isinstance(started, int) and not isinstance(started, bool)
                    else "?",
                    format_duration(_int(t.get("duration_ns"))),
                    str(_int(span_count)) if _number(span_count) is not None else "?",
                    str(_int(t.get("error_count"))),
                    f"{tokens:,}",
                    format_cost(cost) if cost else "-",
                    _clean(",".join(map(str, services))),
                    _clean(t.get("root_name", "?")),
                ],
                failed,
            )
        )
    heads = ["", "TRACE ID", "STARTED", "DURATION", "SPANS", "ERRORS", "TOKENS", "COST"]
    heads += ["SERVICES", "ROOT"]
    right = {3, 4, 5, 6, 7}
    most = {8: 32, 9: 48}  # services, root: cut to this, or less on a narrow terminal
    widths = [max(len(h), *(_text_width(row[i]) for row, _ in table)) for i, h in enumerate(heads)]
    for i, cap in most.items():
        widths[i] = min(widths[i], cap)
    shown = list(range(len(heads)))
    if width is not None:
        _narrow(table, traces, widths, shown, width)
    for cells, _ in table:
        for i in most:
            cells[i] = _cut(cells[i], widths[i], style)

    def line(cells: list[str]) -> str:
        padded = [
            _rjust(cells[i], widths[i]) if i in right else _ljust(cells[i], widths[i])
            for i in shown
        ]
        return "  ".join(padded).rstrip()

    out = [style.paint(_fit(line(heads), width, style), _DIM)]
    for cells, failed in table:
        text = _fit(line(cells), width, style)
        mark, rest = text[:1], text[1:]  # the outcome column is one cell wide
        out.append(
            style.paint(mark, _RED, _BOLD) + rest if failed else style.paint(mark, _GREEN) + rest
        )
    return "\n".join(out)
