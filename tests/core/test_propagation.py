"""W3C Trace Context and Baggage: inject, extract and the parsers behind them."""

from __future__ import annotations

import email.message
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rastir
from rastir import propagation
from rastir.context import _current_baggage, _current_span, attach, current_trace_id, detach
from rastir.propagation import (
    BAGGAGE,
    TRACEPARENT,
    TRACESTATE,
    continue_trace,
    extract,
    format_baggage,
    format_traceparent,
    inject,
    parse_baggage,
    parse_traceparent,
    parse_tracestate,
)
from rastir.spans import Span, SpanContext, remote_child

TID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SID = 0x00F067AA0BA902B7
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.fixture(autouse=True)
def _no_current_context() -> Iterator[None]:
    """Each test runs outside any span and without baggage, and must leave it so."""
    span_token = _current_span.set(None)
    baggage_token = _current_baggage.set(())
    try:
        yield
        assert _current_span.get() is None
        assert _current_baggage.get() == ()
    finally:
        _current_baggage.reset(baggage_token)
        _current_span.reset(span_token)


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(propagation).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == propagation.__name__
    }
    assert public <= set(propagation.__all__)
    assert all(hasattr(propagation, name) for name in propagation.__all__)


def test_header_names_are_the_lowercase_w3c_names() -> None:
    assert (TRACEPARENT, TRACESTATE, BAGGAGE) == ("traceparent", "tracestate", "baggage")


# -- traceparent ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, (TID, SID, 1)),
        (f"00-{TRACE}-{SPAN}-00", (TID, SID, 0)),
        (f"00-{TRACE}-{SPAN}-ff", (TID, SID, 0xFF)),
        (f"00-{TRACE}-{SPAN}-09", (TID, SID, 9)),
        (f"00-{'0' * 31}1-{'0' * 15}1-01", (1, 1, 1)),
        (f"00-{'f' * 32}-{'f' * 16}-01", (2**128 - 1, 2**64 - 1, 1)),
        # A future version of exactly 55 characters.
        (f"01-{TRACE}-{SPAN}-01", (TID, SID, 1)),
        # A future version with more fields: only the first four are read.
        (f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like", (TID, SID, 1)),
        (f"fe-{TRACE}-{SPAN}-01-", (TID, SID, 1)),
        # Leading and trailing OWS is not part of an HTTP field value.
        (f" {VALID}", (TID, SID, 1)),
        (f"{VALID} ", (TID, SID, 1)),
        (f"\t {VALID} \t", (TID, SID, 1)),
    ],
)
def test_parse_traceparent_accepts_valid_values(value: str, expected: tuple[int, int, int]) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(VALID[:-1], id="54 chars"),
        pytest.param(VALID.upper(), id="all uppercase"),
        pytest.param(f"00-{TRACE.upper()}-{SPAN}-01", id="uppercase trace id"),
        pytest.param(f"00-{TRACE}-{SPAN.upper()}-01", id="uppercase parent id"),
        pytest.param(f"00-{TRACE}-{SPAN}-0A", id="uppercase flags"),
        pytest.param(f"0A-{TRACE}-{SPAN}-01", id="uppercase version"),
        pytest.param(f"00-{'0' * 32}-{SPAN}-01", id="all-zero trace id"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", id="all-zero parent id"),
        pytest.param(f"ff-{TRACE}-{SPAN}-01", id="version ff"),
        pytest.param(f"ff-{TRACE}-{SPAN}-01-extra", id="version ff with extra field"),
        pytest.param(f"00-{TRACE}-{SPAN}-01-extra", id="version 00 with extra field"),
        pytest.param(f"00-{TRACE}-{SPAN}-01-", id="version 00 with trailing dash"),
        pytest.param(f"cc-{TRACE}-{SPAN}-01extra", id="future version without dash"),
        pytest.param(f"cc-{TRACE}-{SPAN}-0", id="future version too short"),
        pytest.param(f"cc-{TRACE}-{SPAN}-01-{'x' * 500}", id="longer than 512"),
        pytest.param(f"00-{TRACE}0-{SPAN}-01", id="33-digit trace id"),
        pytest.param(f"00-{TRACE[:-1]}-{SPAN}-01", id="31-digit trace id"),
        pytest.param(f"00-{TRACE}-{SPAN}0-01", id="17-digit parent id"),
        pytest.param(f"00-{TRACE}-{SPAN[:-1]}-01", id="15-digit parent id"),
        pytest.param(f"00-{TRACE}-{SPAN}-1", id="1-digit flags"),
        pytest.param(f"00-{TRACE}-{SPAN}-001", id="3-digit flags"),
        pytest.param(f"00-{TRACE}-{SPAN}-0g", id="non-hex flags"),
        pytest.param(f"00-{TRACE}-{SPAN}-+1", id="signed flags"),
        pytest.param(f"00-{TRACE}-{SPAN}--1", id="negative flags"),
        pytest.param(f"00-{TRACE}-{SPAN}-0x", id="0x flags"),
        pytest.param(f"0x-{TRACE}-{SPAN}-01", id="0x version"),
        pytest.param(f"00-{TRACE[:-1]}g-{SPAN}-01", id="non-hex trace id"),
        pytest.param(f"00-{TRACE[:4]}_{TRACE[5:]}-{SPAN}-01", id="underscore"),
        pytest.param(f"00-+{TRACE[1:]}-{SPAN}-01", id="sign in trace id"),
        pytest.param(f"00-{TRACE[:-1]}\u0663-{SPAN}-01", id="non-ascii digit"),
        pytest.param(f"{VALID[:-1]}\udc80", id="lone surrogate in flags"),
        pytest.param(f"00-{TRACE[:-1]}\udc80-{SPAN}-01", id="surrogate in trace id"),
        pytest.param(f"00_{TRACE}_{SPAN}_01", id="underscores as delimiters"),
        pytest.param(f"00-{TRACE[:-1]}-{TRACE[-1]}{SPAN}-01", id="dash misplaced"),
        pytest.param(f"00 {TRACE} {SPAN} 01", id="spaces as delimiters"),
        pytest.param(f"00-{TRACE}-{SPAN} -01", id="interior space"),
        pytest.param(f"{VALID}\n", id="trailing newline"),
        pytest.param(f"\n{VALID}", id="leading newline"),
        pytest.param(f"{VALID}\r\n", id="trailing crlf"),
        pytest.param(f"00-{TRACE}-{SPAN}-01,{VALID}", id="two values joined"),
    ],
)
def test_parse_traceparent_refuses_invalid_values(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize("value", [None, 55, b"\xff" * 55, ["x"], object()])
def test_parse_traceparent_returns_none_for_values_that_are_not_text(value: Any) -> None:
    assert parse_traceparent(value) is None


def test_parse_traceparent_reads_latin1_bytes_and_str_subclasses() -> None:
    class Text(str):
        def __len__(self) -> int:
            raise RuntimeError("nobody should call this")

    assert parse_traceparent(VALID.encode()) == (TID, SID, 1)  # type: ignore[arg-type]
    assert parse_traceparent(Text(VALID)) == (TID, SID, 1)


@pytest.mark.parametrize(
    ("tid", "sid", "flags", "expected"),
    [
        (TID, SID, 1, VALID),
        (1, 1, 0, f"00-{'0' * 31}1-{'0' * 15}1-00"),
        (2**128 - 1, 2**64 - 1, 255, f"00-{'f' * 32}-{'f' * 16}-ff"),
        (TID, SID, 0x101, f"00-{TRACE}-{SPAN}-01"),
    ],
)
def test_format_traceparent_writes_version_00_in_lowercase(
    tid: int, sid: int, flags: int, expected: str
) -> None:
    assert format_traceparent(tid, sid, flags) == expected


# -- tracestate -----------------------------------------------------------------------
def _members(count: int) -> str:
    return ",".join(f"k{i}=v" for i in range(count))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("congo=t61rcWkgMzE", "congo=t61rcWkgMzE"),
        ("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        (" rojo=1 ,\tcongo=2\t", "rojo=1,congo=2"),
        (",,rojo=1,, ,\t,congo=2,", "rojo=1,congo=2"),
        ("a=b c", "a=b c"),
        ("a= b", "a= b"),  # leading spaces belong to the value
        ("a=b   ", "a=b"),  # trailing spaces are OWS
        ("a=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", "a=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"),
        ("a0_-*/=1", "a0_-*/=1"),
        ("fw529a3039@dt=FzLjQ", "fw529a3039@dt=FzLjQ"),
        ("tenant@system=1", "tenant@system=1"),
        ("0tenant@s=1", "0tenant@s=1"),
        (f"{'t' * 241}@s=1", f"{'t' * 241}@s=1"),
        (f"t@{'s' * 14}=1", f"t@{'s' * 14}=1"),
        (f"{'a' * 256}=1", f"{'a' * 256}=1"),
        (f"a={'x' * 256}", f"a={'x' * 256}"),
        (_members(32), _members(32)),
        (_members(32) + ",,, ,", _members(32)),
        # 256 + 1 + 255 = 512 characters: the most that is kept.
        (f"a={'x' * 254},b={'x' * 253}", f"a={'x' * 254},b={'x' * 253}"),
        # OWS does not count towards the 512.
        (f"a={'x' * 254} ,  b={'x' * 253}", f"a={'x' * 254},b={'x' * 253}"),
    ],
)
def test_parse_tracestate_accepts_and_normalises_valid_lists(value: str, expected: str) -> None:
    assert parse_tracestate(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(" , ,\t", id="only empty members"),
        pytest.param(_members(33), id="33 members"),
        pytest.param(f"a={'x' * 254},b={'x' * 254}", id="513 characters"),
        pytest.param(",".join(f"k{i}={'x' * 200}" for i in range(3)), id="over 512"),
        pytest.param("a=1,b=2,a=3", id="duplicate keys"),
        pytest.param("t@s=1,t@s=2", id="duplicate multi-tenant keys"),
        pytest.param("Congo=1", id="uppercase key"),
        pytest.param("1abc=1", id="simple key starting with a digit"),
        pytest.param("_a=1", id="key starting with underscore"),
        pytest.param(f"{'a' * 257}=1", id="257-character key"),
        pytest.param("a b=1", id="space in key"),
        pytest.param("a.b=1", id="dot in key"),
        pytest.param("a =1", id="space before equals"),
        pytest.param("@s=1", id="empty tenant"),
        pytest.param("t@=1", id="empty system"),
        pytest.param("t@1s=1", id="system starting with a digit"),
        pytest.param("t@S=1", id="uppercase system"),
        pytest.param("t@s@x=1", id="two at signs"),
        pytest.param(f"{'t' * 242}@s=1", id="242-character tenant"),
        pytest.param(f"t@{'s' * 15}=1", id="15-character system"),
        pytest.param("a=", id="empty value"),
        pytest.param("a", id="no equals"),
        pytest.param("=1", id="empty key"),
        pytest.param("a=b=c", id="equals in value"),
        pytest.param(f"a={'x' * 257}", id="257-character value"),
        pytest.param("a=b\tc", id="tab in value"),
        pytest.param("a=caf\u00e9", id="non-ascii value"),
        pytest.param("a=\x7f", id="DEL in value"),
        pytest.param("good=1,bad key=2", id="one bad member spoils the list"),
    ],
)
def test_parse_tracestate_refuses_invalid_lists(value: str) -> None:
    assert parse_tracestate(value) is None


# -- baggage --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("userId=alice", (("userId", "alice"),)),
        (
            "userId=alice,serverNode=DF%2028,isProduction=false",
            (("userId", "alice"), ("serverNode", "DF 28"), ("isProduction", "false")),
        ),
        (
            "userId =   alice, serverNode = DF%2028 ,\tisProduction\t=\tfalse",
            (("userId", "alice"), ("serverNode", "DF 28"), ("isProduction", "false")),
        ),
        ("k=%E2%82%AC", (("k", "\u20ac"),)),
        ("k=%e2%82%ac", (("k", "\u20ac"),)),
        ("k=%F0%9F%98%80", (("k", "\U0001f600"),)),
        ("k=%FF", (("k", "\ufffd"),)),  # Baggage: invalid UTF-8 becomes U+FFFD
        ("k=%E2%82", (("k", "\ufffd"),)),
        ("k=a%2Cb%3Bc%3Dd%25e", (("k", "a,b;c=d%e"),)),
        ("k=a+b", (("k", "a+b"),)),  # "+" is not a space here
        ("k=100%", (("k", "100%"),)),  # not an escape: kept as is
        ("k=%zz", (("k", "%zz"),)),
        ("k==x=", (("k", "=x="),)),
        ("k=", (("k", ""),)),
        ("k", ()),
        ("", ()),
        (",,, ,", ()),
        ("!#$%&'*+-.^_`|~=1", (("!#$%&'*+-.^_`|~", "1"),)),
        ("k=1,k=2", (("k", "1"), ("k", "2"))),  # duplicates are kept, in order
    ],
)
def test_parse_baggage_decodes_values(value: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_baggage(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("key1=value1;property1;property2", (("key1", "value1"),)),
        (
            "key1=value1;property1;property2, key2 = value2, "
            "key3=value3; propertyKey=propertyValue",
            (("key1", "value1"), ("key2", "value2"), ("key3", "value3")),
        ),
        ("k=v ; p = q ; r", (("k", "v"),)),
        ("k=v;", (("k", "v"),)),
        ("k=v;;;bad property\x00", (("k", "v"),)),
    ],
)
def test_parse_baggage_discards_properties(
    value: str, expected: tuple[tuple[str, str], ...]
) -> None:
    assert parse_baggage(value) == expected


@pytest.mark.parametrize(
    "member",
    [
        pytest.param("no-equals", id="no equals"),
        pytest.param("=v", id="empty key"),
        pytest.param("bad key=v", id="space in key"),
        pytest.param("k(=v", id="separator in key"),
        pytest.param("k\u00e9=v", id="non-ascii key"),
        pytest.param('k="v"', id="dquote in value"),
        pytest.param("k=a b", id="space inside value"),
        pytest.param("k=a\\b", id="backslash in value"),
        pytest.param("k=caf\u00e9", id="raw non-ascii value"),
        pytest.param("k=a\x01", id="control character"),
    ],
)
def test_parse_baggage_skips_invalid_members_and_keeps_the_rest(member: str) -> None:
    assert parse_baggage(f"a=1,{member},b=2") == (("a", "1"), ("b", "2"))


def test_parse_baggage_keeps_at_most_180_entries() -> None:
    entries = parse_baggage(",".join(f"k{i}=v" for i in range(200)))
    assert entries == tuple((f"k{i}", "v") for i in range(180))


def test_parse_baggage_keeps_the_entries_that_fit_in_8192_bytes() -> None:
    big = [f"k{i}={'x' * 1000}" for i in range(10)]  # 1003 bytes each
    entries = parse_baggage(",".join([*big, "z=1"]))
    # 8 x 1003 + 7 commas = 8031 bytes; a ninth big entry would not fit, "z=1" does.
    assert [key for key, _ in entries] == [*(f"k{i}" for i in range(8)), "z"]
    assert len(format_baggage(entries)) <= 8192


def test_parse_baggage_drops_an_entry_larger_than_8192_bytes_alone() -> None:
    assert parse_baggage(f"a=1,huge={'x' * 9000},b=2") == (("a", "1"), ("b", "2"))


def test_parse_baggage_counts_bytes_as_they_would_be_sent_again() -> None:
    # "%FF" decodes to U+FFFD, which is sent again as 9 bytes, not 3.
    value = ",".join(["k=" + "%FF" * 1000, "z=1"])  # 3002 bytes in, 9002 out
    assert parse_baggage(value) == (("z", "1"),)
    assert format_baggage((("k", "\ufffd" * 1000),)) == ""


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([("userId", "alice")], "userId=alice"),
        (
            [("serverNode", "DF 28"), ("isProduction", "false")],
            "serverNode=DF%2028,isProduction=false",
        ),
        ([("k", 'a,b;c\\d"e%f')], "k=a%2Cb%3Bc%5Cd%22e%25f"),
        ([("k", "\u20ac")], "k=%E2%82%AC"),
        ([("k", "\t\n")], "k=%09%0A"),
        ([("k", "!#$&'()*+-./:<=>?@[]^_`{|}~")], "k=!#$&'()*+-./:<=>?@[]^_`{|}~"),
        ([("k", "")], "k="),
        ([], ""),
        # Not a token, not a pair of strings, not encodable: skipped.
        ([("bad key", "v"), ("k", "v")], "k=v"),
        ([("", "v"), ("k", "v")], "k=v"),
        ([("k", 1), (2, "v"), ("k", "v")], "k=v"),
        ([("k",), ("a", "b", "c"), None, "ab", ("k", "v")], "k=v"),
        ([["k", "v"]], "k=v"),
        ([("k", "\udc80"), ("k", "v")], "k=v"),
    ],
)
def test_format_baggage_percent_encodes_values(items: list[Any], expected: str) -> None:
    assert format_baggage(items) == expected


def test_format_baggage_writes_at_most_180_entries() -> None:
    header = format_baggage((f"k{i}", "v") for i in range(200))
    assert header == ",".join(f"k{i}=v" for i in range(180))


def test_format_baggage_writes_at_most_8192_bytes() -> None:
    items = [(f"k{i}", "x" * 1000) for i in range(10)] + [("z", "1")]
    header = format_baggage(items)
    assert len(header) <= 8192
    assert parse_baggage(header) == (*items[:8], ("z", "1"))


# -- extract --------------------------------------------------------------------------
def test_extract_reads_all_three_keys() -> None:
    context = extract(
        {
            "traceparent": VALID,
            "tracestate": "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE",
            "baggage": "userId=alice,serverNode=DF%2028",
        }
    )
    assert context is not None
    assert (context.tid, context.sid, context.flags) == (TID, SID, 1)
    assert context.trace_id == TRACE
    assert context.span_id == SPAN
    assert context.remote is True
    assert context.tracestate == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    assert context.baggage == (("userId", "alice"), ("serverNode", "DF 28"))


def test_extract_of_a_traceparent_alone_has_no_tracestate_or_baggage() -> None:
    context = extract({"traceparent": VALID})
    assert context == SpanContext(TID, SID, 1, None)
    assert context is not None
    assert context.remote is True
    assert context.baggage == ()


@pytest.mark.parametrize(
    "carrier",
    [
        pytest.param({}, id="empty"),
        pytest.param({"tracestate": "a=1", "baggage": "k=v"}, id="no traceparent"),
        pytest.param({"traceparent": VALID.upper(), "tracestate": "a=1"}, id="invalid"),
        pytest.param({"traceparent": None}, id="None value"),
        pytest.param({"traceparent": 1}, id="int value"),
        pytest.param({"traceparent": {"v": VALID}}, id="dict value"),
        pytest.param({"traceparent": ""}, id="empty value"),
        pytest.param({"traceparent": []}, id="empty list"),
        pytest.param({"traceparent": [VALID, OTHER]}, id="two distinct values"),
        pytest.param({"Traceparent": VALID, "TRACEPARENT": OTHER}, id="two distinct keys"),
    ],
)
def test_extract_returns_none_without_a_valid_traceparent(carrier: dict[Any, Any]) -> None:
    assert extract(carrier) is None


def test_extract_keeps_the_traceparent_when_tracestate_is_invalid() -> None:
    context = extract({"traceparent": VALID, "tracestate": "a=1,a=2", "baggage": "k=v"})
    assert context == SpanContext(TID, SID, 1, None)
    assert context is not None
    assert context.baggage == (("k", "v"),)


@pytest.mark.parametrize(
    "traceparent", ["traceparent", "Traceparent", "TRACEPARENT", "TraceParent"]
)
@pytest.mark.parametrize("tracestate", ["tracestate", "Tracestate", "TRACESTATE", "TraceState"])
@pytest.mark.parametrize("baggage", ["baggage", "Baggage", "BAGGAGE"])
def test_extract_matches_keys_in_any_case(traceparent: str, tracestate: str, baggage: str) -> None:
    carrier = {
        "content-type": "application/json",
        traceparent: VALID,
        tracestate: "a=1",
        baggage: "k=v",
    }
    context = extract(carrier)
    assert context == SpanContext(TID, SID, 1, "a=1")
    assert context is not None
    assert context.baggage == (("k", "v"),)


def test_extract_prefers_the_exact_lowercase_key() -> None:
    assert extract({"TRACEPARENT": OTHER, "traceparent": VALID}) == SpanContext(TID, SID, 1)


def test_extract_accepts_the_same_traceparent_under_two_spellings() -> None:
    assert extract({"TraceParent": VALID, "TRACEPARENT": VALID}) == SpanContext(TID, SID, 1)


def test_extract_joins_other_spellings_of_tracestate_and_baggage_as_header_lines() -> None:
    context = extract(
        {
            "traceparent": VALID,
            "TraceState": "a=1",
            "TRACESTATE": ["b=2", "c=3"],
            "Baggage": "k=v",
            "BAGGAGE": "l=w",
        }
    )
    assert context is not None
    assert context.tracestate == "a=1,b=2,c=3"
    assert context.baggage == (("k", "v"), ("l", "w"))


def test_extract_reads_bytes_values_and_bytes_keys() -> None:
    carrier: dict[Any, Any] = {
        b"Traceparent": VALID.encode(),
        "tracestate": b"a=1",
        b"baggage": b"k=caf%C3%A9",
    }
    context = extract(carrier)
    assert context == SpanContext(TID, SID, 1, "a=1")
    assert context is not None
    assert context.baggage == (("k", "caf\u00e9"),)


def test_extract_reads_lists_of_header_lines() -> None:
    context = extract(
        {
            "traceparent": [VALID, f" {VALID}", b"", None],
            "tracestate": ("a=1", b"b=2", "", 3),
            "baggage": ["k=v", b"l=w;p", None],
        }
    )
    assert context == SpanContext(TID, SID, 1, "a=1,b=2")
    assert context is not None
    assert context.baggage == (("k", "v"), ("l", "w"))


def test_extract_reads_a_case_insensitive_carrier_like_email_message() -> None:
    message = email.message.Message()
    message["TraceParent"] = VALID
    message["TraceState"] = "a=1"
    assert extract(message) == SpanContext(TID, SID, 1, "a=1")  # type: ignore[arg-type]


class _EvilText(str):
    """A str subclass whose every override raises."""

    def __str__(self) -> str:
        raise RuntimeError("no")

    def __len__(self) -> int:
        raise RuntimeError("no")

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("no")

    def lower(self) -> str:
        raise RuntimeError("no")

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        raise RuntimeError("no")

    def split(self, sep: str | None = None, maxsplit: Any = -1) -> list[str]:
        raise RuntimeError("no")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_extract_reads_str_subclasses_without_calling_their_methods() -> None:
    carrier = {
        _EvilText("TraceParent"): _EvilText(VALID),
        "tracestate": _EvilText("a=1"),
        "baggage": _EvilText("k=v"),
    }
    context = extract(carrier)
    assert context == SpanContext(TID, SID, 1, "a=1")
    assert context is not None
    assert context.baggage == (("k", "v"),)


def test_extract_ignores_values_that_cannot_be_read_but_keeps_the_trace() -> None:
    carrier = {"traceparent": VALID, "tracestate": _Unprintable(), "baggage": _Unprintable()}
    assert extract(carrier) == SpanContext(TID, SID, 1)
    assert extract({"traceparent": _Unprintable()}) is None


class _BrokenGet(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no")


class _BrokenItems(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("no")


class _Unsized:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def items(self) -> Any:
        return self._data.items()


class _EvilKey:
    def __hash__(self) -> int:
        return hash("traceparent")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    "carrier",
    [
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param(VALID, id="str"),
        pytest.param(VALID.encode(), id="bytes"),
        pytest.param([("traceparent", VALID)], id="list of pairs"),
        pytest.param(object(), id="object"),
        pytest.param(_Unprintable(), id="unprintable object"),
        pytest.param(_BrokenGet(traceparent=VALID), id="get raises"),
        pytest.param(_BrokenItems(Traceparent=VALID), id="items raises"),
        pytest.param({_EvilKey(): VALID}, id="key whose eq raises"),
        pytest.param({1: VALID, None: VALID, (1, 2): VALID, 2.5: VALID}, id="odd keys"),
        pytest.param({"traceparent": "0" * 1_000_000}, id="huge traceparent"),
        pytest.param({"traceparent": [VALID] * 100_000 + [OTHER]}, id="huge list"),
    ],
)
def test_extract_never_raises_on_hostile_carriers(carrier: Any) -> None:
    assert extract(carrier) is None


def test_extract_scans_a_carrier_that_has_no_len() -> None:
    assert extract(_Unsized({"TraceParent": VALID})) == SpanContext(TID, SID, 1)  # type: ignore[arg-type]


def test_extract_survives_huge_tracestate_and_baggage() -> None:
    context = extract(
        {"traceparent": VALID, "tracestate": "a=1," * 100_000, "baggage": "k=v," * 100_000}
    )
    assert context is not None
    assert context.tracestate is None
    assert len(context.baggage) == 180


# -- inject ---------------------------------------------------------------------------
def test_inject_without_a_current_span_writes_nothing() -> None:
    carrier: dict[str, Any] = {"content-type": "application/json"}
    inject(carrier)
    assert carrier == {"content-type": "application/json"}


def test_inject_writes_an_explicit_context() -> None:
    context = SpanContext(TID, SID, 1, "a=1,b=2", baggage=(("k", "v w"),))
    carrier: dict[str, Any] = {}
    inject(carrier, context)
    assert carrier == {"traceparent": VALID, "tracestate": "a=1,b=2", "baggage": "k=v%20w"}


def test_inject_writes_only_traceparent_when_tracestate_and_baggage_are_empty() -> None:
    carrier: dict[str, Any] = {}
    inject(carrier, SpanContext(TID, SID, 0))
    assert carrier == {"traceparent": f"00-{TRACE}-{SPAN}-00"}


def test_inject_overwrites_only_the_exact_lowercase_keys() -> None:
    carrier: dict[str, Any] = {"traceparent": OTHER, "tracestate": "old=1", "Traceparent": "x"}
    inject(carrier, SpanContext(TID, SID, 1, "a=1"))
    assert carrier == {"traceparent": VALID, "tracestate": "a=1", "Traceparent": "x"}


def test_inject_from_the_current_span() -> None:
    span = Span("x", "trace", None)
    token = attach(span)
    try:
        carrier: dict[str, Any] = {}
        inject(carrier)
    finally:
        detach(token)
    assert carrier == {"traceparent": f"00-{span.trace_id}-{span.span_id}-01"}
    assert extract(carrier) == SpanContext(span.tid, span.sid, 1)


def test_inject_from_a_span_sends_the_current_baggage() -> None:
    span = Span("x", "trace", SpanContext(TID, SID, 1, "a=1"))
    token = attach(span)
    baggage_token = _current_baggage.set((("k", "v"),))
    try:
        carrier: dict[str, Any] = {}
        inject(carrier)
    finally:
        _current_baggage.reset(baggage_token)
        detach(token)
    assert carrier == {
        "traceparent": f"00-{TRACE}-{span.span_id}-01",
        "tracestate": "a=1",
        "baggage": "k=v",
    }


def test_inject_prefers_the_baggage_of_a_span_context_over_the_current_baggage() -> None:
    baggage_token = _current_baggage.set((("current", "1"),))
    try:
        with_own: dict[str, Any] = {}
        inject(with_own, SpanContext(TID, SID, 1, baggage=(("own", "1"),)))
        without_own: dict[str, Any] = {}
        inject(without_own, SpanContext(TID, SID, 1))
    finally:
        _current_baggage.reset(baggage_token)
    assert with_own[BAGGAGE] == "own=1"
    assert without_own[BAGGAGE] == "current=1"


@pytest.mark.parametrize(
    ("tid", "sid"), [(0, SID), (TID, 0), (2**128, SID), (TID, 2**64), (-1, SID)]
)
def test_inject_writes_nothing_for_ids_a_receiver_must_refuse(tid: int, sid: int) -> None:
    carrier: dict[str, Any] = {}
    inject(carrier, SpanContext(tid, sid, 1, "a=1"))
    assert carrier == {}


# -- continue_trace -------------------------------------------------------------------
def test_continue_trace_makes_the_remote_context_current_and_resets_it() -> None:
    with continue_trace({"traceparent": VALID, "baggage": "k=v"}) as context:
        assert context is not None
        assert _current_span.get() is context
        assert _current_baggage.get() == (("k", "v"),)
        assert current_trace_id() == TRACE
        child = Span("child", "trace", _current_span.get())
        assert (child.tid, child.psid) == (TID, SID)
    assert _current_span.get() is None
    assert _current_baggage.get() == ()


def test_continue_trace_nests_and_restores_the_outer_context() -> None:
    with continue_trace({"traceparent": VALID, "baggage": "outer=1"}) as outer:
        with continue_trace({"traceparent": OTHER}) as inner:
            assert inner is not None
            assert _current_span.get() is inner
            # The inner carrier had no baggage: the outer baggage does not leak in.
            assert _current_baggage.get() == ()
        assert _current_span.get() is outer
        assert _current_baggage.get() == (("outer", "1"),)


def test_continue_trace_without_a_valid_traceparent_leaves_the_context_alone() -> None:
    span = Span("local", "trace", None)
    token = attach(span)
    baggage_token = _current_baggage.set((("k", "v"),))
    try:
        with continue_trace({"traceparent": "garbage", "baggage": "other=1"}) as context:
            assert context is None
            assert _current_span.get() is span
            assert _current_baggage.get() == (("k", "v"),)
    finally:
        _current_baggage.reset(baggage_token)
        detach(token)


def test_continue_trace_resets_the_context_when_the_body_raises() -> None:
    with pytest.raises(KeyError), continue_trace({"traceparent": VALID, "baggage": "k=v"}):
        raise KeyError("boom")
    assert _current_span.get() is None
    assert _current_baggage.get() == ()


def test_continue_trace_then_inject_passes_the_trace_on_unchanged() -> None:
    inbound = {"traceparent": VALID, "tracestate": "a=1", "baggage": "k=v%20w"}
    outbound: dict[str, Any] = {}
    with continue_trace(inbound):
        inject(outbound)
    assert outbound == inbound


# -- properties -----------------------------------------------------------------------
_names = st.sampled_from(
    ["traceparent", "Traceparent", "TRACEPARENT", "tracestate", "TraceState", "baggage", "BAGGAGE"]
)
_texts = st.one_of(
    st.text(max_size=80),
    st.from_regex(
        r"[0-9a-fA-F]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.{0,5})?", fullmatch=True
    ),
    st.text(alphabet="abc01=,;%@ \t-Ff", max_size=60),
)
_scalars = st.one_of(st.none(), st.integers(), st.floats(), _texts, st.binary(max_size=80))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=4), st.tuples(_scalars, _scalars))
_keys = st.one_of(_names, st.text(max_size=12), st.binary(max_size=12), st.integers(), st.none())


@given(st.dictionaries(_keys, _values, max_size=6))
def test_extract_never_raises_on_arbitrary_dicts(carrier: dict[Any, Any]) -> None:
    context = extract(carrier)
    assert context is None or isinstance(context, SpanContext)


def _is_traceparent_key(key: object) -> bool:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    return isinstance(key, str) and key.lower() == "traceparent"


_spellings = st.lists(st.booleans(), min_size=11, max_size=11).map(
    lambda upper: "".join(c.upper() if u else c for c, u in zip("traceparent", upper, strict=True))
)


@given(
    st.dictionaries(_keys, _values, max_size=6).map(
        lambda d: {k: v for k, v in d.items() if not _is_traceparent_key(k)}
    ),
    _spellings,
)
def test_extract_finds_a_valid_traceparent_whatever_else_the_carrier_holds(
    junk: dict[Any, Any], spelling: str
) -> None:
    context = extract({**junk, spelling: VALID})
    assert context is not None
    assert (context.tid, context.sid, context.flags) == (TID, SID, 1)


@given(st.one_of(_scalars, st.lists(_values, max_size=4), st.sets(st.integers(), max_size=3)))
def test_extract_never_raises_on_carriers_that_are_not_dicts(carrier: Any) -> None:
    assert extract(carrier) is None


_key_tail = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
_simple_keys = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet=_key_tail, max_size=7),
)
_tenant_keys = st.builds(
    lambda tenant, tail, system, rest: f"{tenant}{tail}@{system}{rest}",
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
    st.text(alphabet=_key_tail, max_size=2),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet=_key_tail, max_size=2),
)
_state_values = st.from_regex(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,5}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", fullmatch=True
)


@st.composite
def _tracestates(draw: st.DrawFn) -> str | None:
    # Keys of at most 8 and values of at most 6 characters: 32 members fit in 512.
    keys = draw(st.lists(st.one_of(_simple_keys, _tenant_keys), max_size=32, unique=True))
    return ",".join(f"{key}={draw(_state_values)}" for key in keys) or None


_tokens = st.text(alphabet=TCHARS, min_size=1, max_size=10)
_unicode = st.text(st.characters(codec="utf-8"), max_size=20)
_baggages = st.lists(st.tuples(_tokens, _unicode), max_size=8).map(tuple)


@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
    _tracestates(),
    _baggages,
)
def test_inject_then_extract_gives_the_context_back(
    tid: int,
    sid: int,
    flags: int,
    tracestate: str | None,
    baggage: tuple[tuple[str, str], ...],
) -> None:
    carrier: dict[str, Any] = {}
    inject(carrier, SpanContext(tid, sid, flags, tracestate, baggage=baggage))
    context = extract(carrier)
    assert context is not None
    assert (context.tid, context.sid, context.flags) == (tid, sid, flags)
    assert context.tracestate == tracestate
    assert context.baggage == baggage
    assert context.remote is True


@given(_baggages)
def test_format_then_parse_baggage_round_trips_unicode_values(
    items: tuple[tuple[str, str], ...],
) -> None:
    header = format_baggage(items)
    assert header.isascii()
    assert parse_baggage(header) == items


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.integers(0, 255))
def test_format_then_parse_traceparent_round_trips(tid: int, sid: int, flags: int) -> None:
    assert parse_traceparent(format_traceparent(tid, sid, flags)) == (tid, sid, flags)


@given(st.one_of(st.text(), _texts))
def test_parse_traceparent_never_raises_on_arbitrary_text(value: str) -> None:
    ids = parse_traceparent(value)
    if ids is not None:
        tid, sid, flags = ids
        assert 0 < tid < 2**128
        assert 0 < sid < 2**64
        assert 0 <= flags < 256


@given(st.one_of(st.text(), _texts, st.text(alphabet="ab@01=, \t~", max_size=40)))
def test_parse_tracestate_never_raises_and_its_output_is_stable(value: str) -> None:
    state = parse_tracestate(value)
    if state is not None:
        assert len(state) <= 512
        assert parse_tracestate(state) == state


@given(st.one_of(st.text(), _texts, st.text(alphabet="ab=;,% \t2EFf", max_size=40)))
def test_parse_baggage_never_raises_and_its_output_formats_back(value: str) -> None:
    entries = parse_baggage(value)
    assert len(entries) <= 180
    assert parse_baggage(format_baggage(entries)) == entries


@pytest.mark.parametrize("flags", [0, 1, 2, 3, 0x81])
def test_remote_child_is_the_span_a_remote_parent_would_give(flags: int) -> None:
    # remote_child() is the middleware's shortcut for Span(name, kind, SpanContext(...)):
    # everything a reader, a child, an exporter or inject() sees must be the same.
    tid, psid = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    attrs = {"http.request.method": "GET"}
    quick = remote_child("GET", "http.server", tid, psid, flags, attrs)
    slow = Span("GET", "http.server", SpanContext(tid, psid, flags, None), dict(attrs))
    for span in (quick, slow):
        assert (span.trace_id, span.parent_span_id) == (f"{tid:032x}", f"{psid:016x}")
        assert span._t0
        assert not span._t1
        assert span.status == "ok"
    assert quick.attributes is attrs
    assert (quick.flags, quick.sampled, quick.tracestate) == (slow.flags, slow.sampled, None)
    assert quick.sid != slow.sid
    assert quick.sid
    assert quick._ctx is not None
    assert quick._ctx.baggage == ()
    # remote_child() sets each slot Span.__init__ sets: a slot added to one and not the
    # other fails here (an unset slot raises AttributeError).
    for slot in Span.__slots__:
        if slot != "__dict__":
            assert type(getattr(quick, slot)) is type(getattr(slow, slot)), slot
    child = Span("child", "tool", quick, None)
    assert (child.tid, child.psid, child.flags) == (tid, quick.sid, flags)
    carrier: dict[str, str] = {}
    propagation.inject(carrier, quick)
    assert carrier["traceparent"] == f"00-{tid:032x}-{quick.sid:016x}-{flags:02x}"


def test_inject_merges_a_baggage_header_already_in_the_carrier() -> None:
    headers = {"baggage": "user.id=42,tenant=mine"}
    with rastir.continue_trace(
        {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "baggage": "tenant=acme",
        }
    ):
        rastir.inject(headers)
    # The context's entries first and winning on "tenant"; the caller's others kept.
    assert headers["baggage"] == "tenant=acme,user.id=42"


def test_inject_without_context_baggage_leaves_the_callers_baggage_alone() -> None:
    headers = {"baggage": "user.id=42"}
    with rastir.span("call"):
        rastir.inject(headers)
    assert headers["baggage"] == "user.id=42"
    assert "traceparent" in headers
