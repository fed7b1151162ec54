"""The ``_meta`` helpers: merging the trace into the user's meta, reading it back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rastir
from rastir.context import _current_baggage
from rastir.mcp_bridge._meta import merge_meta, read_meta
from rastir.propagation import format_baggage, format_traceparent, parse_baggage
from rastir.spans import Span, SpanContext

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@contextmanager
def _baggage(entries: tuple[tuple[str, str], ...]) -> Iterator[None]:
    token = _current_baggage.set(entries)
    try:
        yield
    finally:
        _current_baggage.reset(token)


def test_merge_keeps_the_users_keys_and_writes_the_trace_keys() -> None:
    span = Span("call", "mcp.client", SpanContext(1, 2, 1, "vendor=x"))
    user = {"progressToken": 7, "traceparent": "00-user", "app/key": {"a": 1}}
    merged = merge_meta(user, span)
    assert merged == {
        "progressToken": 7,
        "app/key": {"a": 1},
        "traceparent": format_traceparent(span.tid, span.sid, 1),
        "tracestate": "vendor=x",
    }
    assert user["traceparent"] == "00-user"
    root = Span("call", "mcp.client", None)
    assert merge_meta(None, root) == {"traceparent": format_traceparent(root.tid, root.sid, 1)}


def test_merge_carries_the_current_baggage() -> None:
    with rastir.continue_trace({"traceparent": VALID, "baggage": "tenant=acme"}):
        span = Span("call", "mcp.client", None)
        assert merge_meta({}, span)["baggage"] == "tenant=acme"


@pytest.mark.parametrize(
    "context",
    [Span("call", "mcp.client", None), SpanContext(1, 2, 1)],
    ids=["span", "remote-context"],
)
def test_merge_drops_the_users_trace_keys_even_when_the_span_has_no_tracestate(
    context: Span | SpanContext,
) -> None:
    user = {"traceparent": "00-user", "tracestate": "vendor=another-trace", "k": "v"}
    merged = merge_meta(user, context)
    assert merged == {"k": "v", "traceparent": format_traceparent(context.tid, context.sid, 1)}
    assert user["tracestate"] == "vendor=another-trace"


@pytest.mark.parametrize(
    ("current", "passed", "sent"),
    [
        (None, "user=u%201", "user=u%201"),
        ("tenant=acme", "tenant=evil,user=u", "tenant=acme,user=u"),
        ("tenant=acme", "", "tenant=acme"),
        ("tenant=acme", 7, "tenant=acme"),
        (None, "not baggage", None),
    ],
    ids=["alone", "current-wins", "empty", "not-text", "invalid"],
)
@pytest.mark.parametrize("remote", [False, True], ids=["span", "remote-context"])
def test_merge_adds_the_users_baggage_after_the_current_one(
    current: str | None, passed: Any, sent: str | None, remote: bool
) -> None:
    carrier = (
        {"traceparent": VALID} if current is None else {"traceparent": VALID, "baggage": current}
    )
    with rastir.continue_trace(carrier) as upstream:
        assert upstream is not None
        context: Span | SpanContext = upstream if remote else Span("call", "mcp.client", None)
        merged = merge_meta({"baggage": passed}, context)
    assert merged.get("baggage") == sent


def test_merged_baggage_keeps_within_the_w3c_limits_dropping_the_users_entries_first() -> None:
    current = ",".join(f"c{i}=v" for i in range(100))
    passed = ",".join(f"u{i}=v" for i in range(150))
    with rastir.continue_trace({"traceparent": VALID, "baggage": current}):
        merged = merge_meta({"baggage": passed}, Span("call", "mcp.client", None))
    keys = [entry.partition("=")[0] for entry in merged["baggage"].split(",")]
    assert len(keys) == 180  # W3C Baggage §3.3.1: at most 180 list-members
    assert keys[:100] == [f"c{i}" for i in range(100)]
    assert keys[100:] == [f"u{i}" for i in range(80)]


_baggage_entries = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "tenant"]), st.text("xyz %", max_size=5)),
    max_size=5,
)


@given(current=_baggage_entries, passed=_baggage_entries, state=st.sampled_from([None, "v=1"]))
def test_merge_never_sends_a_foreign_trace_key_and_the_current_baggage_wins(
    current: list[tuple[str, str]], passed: list[tuple[str, str]], state: str | None
) -> None:
    user = {"baggage": format_baggage(passed), "tracestate": "other=1", "traceparent": "x"}
    parent = SpanContext(7, 9, 1, state)
    with _baggage(tuple(current)):
        span = Span("call", "mcp.client", parent)
        merged = merge_meta(user, span)
    assert merged["traceparent"] == format_traceparent(7, span.sid, 1)
    assert merged.get("tracestate") == state
    sent = dict(reversed(parse_baggage(merged.get("baggage", ""))))  # first of a key wins
    expected = {**dict(reversed(passed)), **dict(reversed(current))}
    assert sent == expected


def test_read_gives_the_remote_parent_with_its_baggage() -> None:
    context, refused = read_meta({"traceparent": VALID, "baggage": "k=v", "other": 1})
    assert refused is False
    assert context is not None
    assert (context.trace_id, context.span_id) == (VALID[3:35], VALID[36:52])
    assert context.baggage == (("k", "v"),)


def test_read_tells_a_refused_traceparent_from_an_absent_one() -> None:
    assert read_meta({"traceparent": "00-nope"}) == (None, True)
    assert read_meta({"TRACEPARENT": 5}) == (None, True)
    assert read_meta({"baggage": "k=v"}) == (None, False)
    assert read_meta({}) == (None, False)
    assert read_meta(None) == (None, False)
    assert read_meta("traceparent") == (None, False)
    assert read_meta([("traceparent", VALID)]) == (None, False)


def test_a_huge_meta_is_not_scanned_key_by_key() -> None:
    meta: dict[str, Any] = {f"k{i}": i for i in range(10_000)}
    meta["TraceParent"] = "broken"
    # The exact key is absent and the meta too large to scan: treated as absent.
    assert read_meta(meta) == (None, False)


class Hostile(Mapping[str, Any]):
    """A mapping whose every method raises."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no")

    def __len__(self) -> int:
        raise RuntimeError("no")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no")


def test_a_mapping_that_raises_is_refused_not_raised() -> None:
    assert read_meta(Hostile()) == (None, True)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "baggage", "TraceParent", "x"]) | st.text(),
        _values,
    )
)
def test_read_never_raises_and_only_accepts_a_valid_traceparent(meta: dict[str, Any]) -> None:
    context, refused = read_meta(meta)
    if context is not None:
        assert not refused
        assert isinstance(context, SpanContext)
        assert context.tid
        assert context.sid


@given(_values)
def test_read_never_raises_on_anything(value: Any) -> None:
    read_meta(value)


def test_the_bridge_needs_the_mcp_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["mcp"] = None  # as if mcp were not installed
        import rastir
        assert rastir.wrap(object()) is not None
        for attempt in ("import rastir.mcp_bridge", "rastir.mcp_endpoint"):
            try:
                exec(attempt)
            except ImportError as e:
                print(e)
            else:
                raise SystemExit(attempt + " did not fail")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("pip install 'rastir[mcp]'" in line for line in lines)
