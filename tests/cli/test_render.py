"""The text views on their own: styles, units, and the odd shapes a tree can take."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rastir.viewer.render import (
    Style,
    _text_width,
    format_cost,
    format_duration,
    iter_spans,
    render_trace,
    render_trace_list,
)


class _Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _node(name: str, start_ms: float, dur_ms: float, **kw: Any) -> dict[str, Any]:
    return {
        "span_id": name,
        "name": name,
        "kind": kw.pop("kind", "custom"),
        "service": kw.pop("service", "svc"),
        "start_time_unix_nano": int(start_ms * 1e6),
        "duration_ns": int(dur_ms * 1e6),
        "status": kw.pop("status", "ok"),
        "error": kw.pop("error", None),
        "attributes": kw.pop("attributes", {}),
        "orphan": kw.pop("orphan", False),
        "children": kw.pop("children", []),
    }


def _trace(*spans: dict[str, Any], **summary: Any) -> dict[str, Any]:
    return {"trace_id": "ab" * 16, "summary": {"trace_id": "ab" * 16, **summary}, "spans": spans}


def _name_cell(row: str, kind_at: int) -> str:
    """The start of ``row`` up to its kind column: the name cell and the two spaces."""
    for end in range(len(row) + 1):
        if _text_width(row[:end]) >= kind_at - 2:
            while end < len(row) and _text_width(row[end]) == 0:  # combining marks
                end += 1
            assert row[end : end + 2] == "  "
            return row[: end + 2]
    raise AssertionError(f"row shorter than the name column: {row!r}")


def _rows(text: str) -> list[str]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SPAN"))
    return lines[header + 1 :]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (420_000, "0.42 ms"),
        (12_345_000, "12.3 ms"),
        (1_250_000_000, "1.25 s"),
        (123_000_000_000, "2m 03s"),
    ],
)
def test_durations_read_in_the_unit_that_fits(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (0.000135, "$0.000135"),
        (0.0421, "$0.0421"),
        (1234.5, "$1,234.50"),
        (6e-08, "$6e-08"),  # a 3-token embedding call: a real cost, not $0.000000
        (0.0, "$0.000000"),
    ],
)
def test_costs_keep_the_digits_small_calls_need(usd: float, text: str) -> None:
    assert format_cost(usd) == text


def test_colour_only_on_a_terminal_and_never_under_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert Style.for_stream(_Terminal()).color
    assert not Style.for_stream(io.StringIO()).color
    assert Style.for_stream(io.StringIO(), "always").color
    assert not Style.for_stream(_Terminal(), "never").color
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Style.for_stream(_Terminal()).color


def test_a_stream_that_cannot_write_box_drawing_gets_ascii() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    style = Style.for_stream(stream)
    assert not style.unicode
    child = _node("child", 1, 2, status="error", error={"type": "timeout", "message": "slow"})
    text = render_trace(_trace(_node("root", 0, 10, children=[child])), style)
    text.encode("ascii")  # every character is ASCII
    assert "`-- child" in _rows(text)[1]
    assert "x timeout: slow" in _rows(text)[1]


def test_orphans_cancelled_spans_and_flattened_trees_are_marked() -> None:
    trace = _trace(
        _node("root", 0, 10),
        _node("late", 2, 1, orphan=True),
        _node("stopped", 3, 1, status="cancelled"),
    )
    trace["flattened"] = True
    text = render_trace(trace, Style())
    rows = _rows(text)
    assert "(parent span not received)" in rows[1]
    assert "cancelled" in rows[2]
    assert text.endswith("(sent flat, too deep for JSON: nested again here)")


def test_an_llm_span_counted_inside_is_marked_and_its_cost_not_added_again() -> None:
    usage = {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}
    inner = _node("call", 1, 5, kind="llm", attributes={**usage, "rastir.cost.usd": 0.5})
    outer_attrs = {**usage, "rastir.cost.usd": 0.5, "rastir.llm.counted_in": "call"}
    outer = _node("chat", 0, 8, kind="llm", attributes=outer_attrs, children=[inner])
    # No cost in the summary: the header falls back to the spans' costs.
    text = render_trace(_trace(outer), Style())
    rows = _rows(text)
    assert "(same call as below)" in rows[0]
    assert "(same call as below)" not in rows[1]
    assert "cost $0.50" in text


def test_long_names_are_cut_and_columns_stay_aligned() -> None:
    deep = _node("x" * 80, 1, 1)
    text = render_trace(_trace(_node("root", 0, 10, children=[deep])), Style())
    rows = _rows(text)
    assert rows[1].startswith("└── " + "x" * 51 + "…")
    assert rows[0].index("custom") == rows[1].index("custom")


def test_the_timeline_places_each_span_within_the_trace() -> None:
    early, late = _node("early", 0, 5), _node("late", 5, 5)
    rows = _rows(render_trace(_trace(_node("root", 0, 10, children=[early, late])), Style()))
    assert rows[0].count("█") == 20
    assert rows[1].count("█") == 10
    assert rows[2].count("█") == 10
    assert rows[1].index("█") < rows[2].index("█")


def test_an_empty_trace_and_an_empty_list_say_so() -> None:
    assert render_trace(_trace(), Style()).endswith("(no spans)")
    assert render_trace_list([], Style()) == "no traces match"


# Any text a sender may put in a name, control characters and escapes included.
_names = st.text(alphabet=st.characters(codec="utf-8"), max_size=70)


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kids = draw(st.lists(_trees(depth + 1), max_size=3)) if depth < 4 else []
    return _node(
        draw(_names),
        draw(st.floats(min_value=-1e3, max_value=1e6)),
        draw(st.floats(min_value=0, max_value=1e7)),
        kind=draw(st.sampled_from(["llm", "agent", "tool", "mcp.client", "http.server"])),
        service=draw(_names),
        status=draw(st.sampled_from(["ok", "error", "cancelled"])),
        error=draw(st.none() | st.fixed_dictionaries({"type": _names, "message": _names})),
        attributes=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "gen_ai.usage.input_tokens": st.integers(0, 10**9),
                    "rastir.cost.usd": st.floats(0, 1e6),
                    "http.response.status_code": st.integers(100, 599),
                },
            )
        ),
        children=kids,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_trees(), min_size=1, max_size=3))
def test_any_tree_renders_with_one_row_per_span_and_aligned_columns(
    roots: list[dict[str, Any]],
) -> None:
    text = render_trace(_trace(*roots), Style())
    rows = _rows(text)
    assert len(rows) == sum(1 for _ in iter_spans(roots))
    header = next(line for line in text.splitlines() if line.startswith("SPAN"))
    kind_at = header.index("KIND")
    # Names are cut to fit: the kind column starts at the same terminal cell on every
    # row (wide characters take two cells, combining ones none).
    assert all(_text_width(_name_cell(row, kind_at)) == kind_at for row in rows)
    # Control characters never reach the terminal: one row per span, no escapes.
    assert all(ch.isprintable() for ch in text.replace("\n", ""))
