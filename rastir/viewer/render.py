"""Text views of traces for a terminal: a list of summaries, and one trace as a tree.

Both read the JSON the collector's query API answers (``GET /v1/traces`` and
``GET /v1/traces/{id}``), so that ``rastir traces``, ``rastir trace`` and ``rastir demo``
show the same thing. Columns are aligned on the plain text, and colour (only when
:class:`Style` says so) is added afterwards, so it never shifts a column.
"""

from __future__ import annotations

import os
import time
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


def format_time(unix_ns: int) -> str:
    """Local wall-clock time of a Unix timestamp in nanoseconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_ns / 1e9))


def _clean(value: Any) -> str:
    """Text safe on one terminal row: control characters (a newline, an ANSI escape
    sent by a hostile client) are shown as ``?``, never interpreted."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _cut(text: str, width: int, style: Style) -> str:
    return text if len(text) <= width else text[: width - 1] + style.ellipsis


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def iter_spans(nodes: Iterable[Node]) -> Iterator[Node]:
    """Every node of a span tree, depth first, parents before children."""
    stack = list(reversed(list(nodes)))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.get("children") or ()))


def _span_cost(node: Node) -> float | None:
    return _number((node.get("attributes") or {}).get("rastir.cost.usd"))


def _counted_inside(node: Node) -> bool:
    return "rastir.llm.counted_in" in (node.get("attributes") or {})


def _details(node: Node, style: Style) -> list[tuple[str, tuple[str, ...]]]:
    """The last column of a tree row, as (text, colour codes) pieces."""
    attrs: Mapping[str, Any] = node.get("attributes") or {}
    out: list[tuple[str, tuple[str, ...]]] = []
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    if node.get("kind") == "llm" and isinstance(model, str):
        out.append((_clean(model), ()))
    tokens_in = _number(attrs.get("gen_ai.usage.input_tokens"))
    tokens_out = _number(attrs.get("gen_ai.usage.output_tokens"))
    if tokens_in is not None or tokens_out is not None:
        arrow = "→" if style.unicode else "->"
        out.append((f"{int(tokens_in or 0)}{arrow}{int(tokens_out or 0)} tok", ()))
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
            text += f" {_clean(kind)}"
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
    s = int(node.get("start_time_unix_nano") or start) - start
    e = s + max(0, int(node.get("duration_ns") or 0))
    a = min(_TIMELINE_WIDTH - 1, max(0, s * _TIMELINE_WIDTH // total))
    b = min(_TIMELINE_WIDTH, max(a + 1, -(-e * _TIMELINE_WIDTH // total)))
    return " " * a + style.bar * (b - a) + " " * (_TIMELINE_WIDTH - b)


def _summary_lines(summary: Mapping[str, Any], style: Style, span_cost: float | None) -> list[str]:
    status = summary.get("status", "ok")
    errors = int(summary.get("error_count") or 0)
    mark = (
        style.paint(f"{style.cross} error", _RED, _BOLD)
        if status == "error"
        else style.paint(f"{style.tick} ok", _GREEN)
    )
    lines = [f"{style.paint('trace ' + _clean(summary.get('trace_id', '?')), _BOLD)}  {mark}"]
    services = summary.get("services") or []
    lines.append(f"  root      {_clean(summary.get('root_name', '?'))}")
    lines.append(f"  services  {_clean(', '.join(map(str, services))) or '?'}")
    started = summary.get("start_time_unix_nano")
    facts = []
    if isinstance(started, int):
        facts.append(f"started   {format_time(started)}")
    facts.append(f"duration {format_duration(int(summary.get('duration_ns') or 0))}")
    facts.append(f"spans {summary.get('span_count', '?')}")
    facts.append(style.paint(f"errors {errors}", _RED) if errors else "errors 0")
    lines.append("  " + "   ".join(facts))
    tokens_in = int(summary.get("input_tokens") or 0)
    tokens_out = int(summary.get("output_tokens") or 0)
    cost = _number(summary.get("cost_usd")) or 0.0
    if not cost and span_cost:
        cost = span_cost
    usage = f"  tokens    {tokens_in:,} in, {tokens_out:,} out"
    if cost:
        usage += f"   cost {format_cost(cost)}"
    lines.append(usage)
    return lines


def render_trace(trace: Mapping[str, Any], style: Style | None = None) -> str:
    """One trace, as ``GET /v1/traces/{id}`` answers it, as a header and a span tree.

    Each row: the span's name under box-drawing branches, its kind, service and
    duration, a timeline bar across the whole trace, then the model, tokens, cost,
    HTTP status and error (``✗ tool_error: …``) where the span has them.
    """
    style = style or Style()
    roots: Sequence[Node] = trace.get("spans") or []
    nodes = list(iter_spans(roots))
    # A span counted in a span inside it (rastir.llm.counted_in) is the same call.
    costs = [c for c in (_span_cost(n) for n in nodes if not _counted_inside(n)) if c is not None]
    summary = dict(trace.get("summary") or {})
    summary.setdefault("trace_id", trace.get("trace_id"))
    lines = _summary_lines(summary, style, sum(costs) if costs else None)
    if not nodes:
        return "\n".join([*lines, "", "  (no spans)"])

    starts = [int(n.get("start_time_unix_nano") or 0) for n in nodes]
    ends = [s + max(0, int(n.get("duration_ns") or 0)) for s, n in zip(starts, nodes, strict=True)]
    start, total = min(starts), max(ends) - min(starts)

    rows: list[tuple[str, Node]] = []  # (tree prefix + name, node)

    def walk(node: Node, prefix: str, branch: str) -> None:
        rows.append((prefix + branch + _clean(node.get("name", "?")), node))
        children = list(node.get("children") or ())
        below = prefix + ("" if not branch else ("    " if branch == style.last else style.pipe))
        for i, child in enumerate(children):
            walk(child, below, style.last if i == len(children) - 1 else style.branch)

    # Recursion depth is bounded by the tree's depth; the collector flattens any tree
    # too deep for its JSON encoder, so this stays far below Python's limit.
    for root in roots:
        walk(root, "", "")

    name_w = min(_NAME_WIDTH, max(4, *(len(label) for label, _ in rows)))
    kind_w = max(4, *(len(_clean(n.get("kind", ""))) for _, n in rows))
    service_w = min(24, max(7, *(len(_clean(n.get("service", ""))) for _, n in rows)))
    durations = [format_duration(int(n.get("duration_ns") or 0)) for _, n in rows]
    dur_w = max(8, *(len(d) for d in durations))

    header = (
        f"{'SPAN':<{name_w}}  {'KIND':<{kind_w}}  {'SERVICE':<{service_w}}  "
        f"{'DURATION':>{dur_w}}  {'TIMELINE':<{_TIMELINE_WIDTH}}  DETAILS"
    )
    lines += ["", style.paint(header.rstrip(), _DIM)]
    for (label, node), duration in zip(rows, durations, strict=True):
        failed = node.get("status") == "error"
        name = _cut(label, name_w, style).ljust(name_w)
        cells = [
            style.paint(name, _RED) if failed else name,
            _clean(node.get("kind", "")).ljust(kind_w),
            style.paint(
                _cut(_clean(node.get("service", "")), service_w, style).ljust(service_w), _DIM
            ),
            duration.rjust(dur_w),
            style.paint(_timeline(node, start, total, style), _RED if failed else _BLUE),
        ]
        details = "  ".join(style.paint(text, *codes) for text, codes in _details(node, style))
        lines.append("  ".join([*cells, details]).rstrip())
    if trace.get("flattened"):
        lines.append(style.paint("(tree too deep to nest: shown flat)", _YELLOW))
    return "\n".join(lines)


def render_trace_list(traces: Sequence[Mapping[str, Any]], style: Style | None = None) -> str:
    """Trace summaries, as ``GET /v1/traces`` answers them, as an aligned table."""
    style = style or Style()
    if not traces:
        return "no traces match"
    table: list[tuple[list[str], bool]] = []
    for t in traces:
        failed = t.get("status") == "error"
        cost = _number(t.get("cost_usd")) or 0.0
        tokens = int(t.get("input_tokens") or 0) + int(t.get("output_tokens") or 0)
        started = t.get("start_time_unix_nano")
        services = _clean(",".join(map(str, t.get("services") or [])))
        table.append(
            (
                [
                    style.cross if failed else style.tick,
                    _clean(t.get("trace_id", "?")),
                    format_time(started) if isinstance(started, int) else "?",
                    format_duration(int(t.get("duration_ns") or 0)),
                    str(t.get("span_count", "?")),
                    str(t.get("error_count", 0)),
                    f"{tokens:,}",
                    format_cost(cost) if cost else "-",
                    _cut(services, 32, style),
                    _cut(_clean(t.get("root_name", "?")), 48, style),
                ],
                failed,
            )
        )
    heads = ["", "TRACE ID", "STARTED", "DURATION", "SPANS", "ERRORS", "TOKENS", "COST"]
    heads += ["SERVICES", "ROOT"]
    right = {3, 4, 5, 6, 7}
    widths = [max(len(h), *(len(row[i]) for row, _ in table)) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(padded)

    out = [style.paint(line(heads).rstrip(), _DIM)]
    for cells, failed in table:
        text = line(cells).rstrip()
        mark, rest = text[: widths[0]], text[widths[0] :]
        out.append(
            style.paint(mark, _RED, _BOLD) + rest if failed else style.paint(mark, _GREEN) + rest
        )
    return "\n".join(out)
