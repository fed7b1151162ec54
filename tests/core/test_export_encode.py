"""Strings that are not valid UTF-8 (lone surrogates) cost one character, not a batch."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rastir
from rastir._wire import batch_decoder
from rastir.export._encode import encode_batch
from rastir.spans import Span, SpanContext
from tests.recording_server import recording_server

BAD = os.fsdecode(b"report-\xff.pdf")  # what os.listdir gives for a non-UTF-8 name
FIXED = "report-?.pdf"


def _finished(span: Span) -> Span:
    span._t1 = span._t0 + 1_000
    return span


def _span_with(where: str) -> Span:
    name = BAD if where == "name" else "load"
    attrs: dict[str, Any] = {"ok": "fine", "n": 1}
    if where == "attribute value":
        attrs["file.path"] = BAD
    elif where == "attribute key":
        attrs[BAD] = "v"
    elif where == "list item":
        attrs["paths"] = ["a", BAD]
    s = Span(name, "tool", None, attrs)
    if where == "error message":
        s.set_error("validation_error", "ValueError", f"unsupported file {BAD}")
    elif where == "exception type":
        s.set_error("unknown", BAD, "boom")
    elif where == "event name":
        s.add_event(BAD, {"k": "v"})
    elif where == "event attribute":
        s.add_event("read", {"path": BAD})
    elif where == "link attribute":
        s.add_link(SpanContext(0x1234, 0x5678), {"path": BAD})
    return _finished(s)


@pytest.mark.parametrize(
    "where",
    [
        "name",
        "attribute value",
        "attribute key",
        "list item",
        "error message",
        "exception type",
        "event name",
        "event attribute",
        "link attribute",
        "resource",
    ],
)
def test_a_lone_surrogate_becomes_a_question_mark_and_the_rest_is_unchanged(where: str) -> None:
    good = _finished(Span("neighbour", "trace", None, {"q": "caf\u00e9 \u2603"}))
    bad = _span_with(where)
    attrs_before = dict(bad.attributes)
    resource = {"service.name": BAD if where == "resource" else "svc"}
    decoded = batch_decoder().decode(encode_batch([good, bad], resource, 2))
    text = repr(decoded)
    assert BAD not in text
    assert decoded.dropped == 2
    assert decoded.spans[0].name == "neighbour"
    assert decoded.spans[0].attributes == {"q": "caf\u00e9 \u2603"}  # valid text untouched
    one = decoded.spans[1]
    assert one.attributes.get("ok") == "fine"
    assert one.attributes.get("n") == 1
    if where == "name":
        assert one.name == FIXED
    elif where == "attribute value":
        assert one.attributes["file.path"] == FIXED
    elif where == "attribute key":
        assert one.attributes[FIXED] == "v"
    elif where == "list item":
        assert one.attributes["paths"] == ["a", FIXED]
    elif where == "error message":
        assert one.error is not None
        assert one.error.message == f"unsupported file {FIXED}"
    elif where == "exception type":
        assert one.error is not None
        assert one.error.exception_type == FIXED
    elif where == "event name":
        assert [e.name for e in one.events] == [FIXED]
    elif where == "event attribute":
        assert one.events[0].attributes == {"path": FIXED}
    elif where == "link attribute":
        assert one.links[0].attributes == {"path": FIXED}
    else:
        assert decoded.resource["service.name"] == FIXED
    # The span itself is not changed: only what goes on the wire.
    assert dict(bad.attributes) == attrs_before


# Surrogates are excluded from st.characters() unless asked for.
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=())), min_size=1, max_size=5))
def test_any_text_encodes_to_a_batch_the_collector_decodes(values: list[str]) -> None:
    span = _finished(Span(values[0], "tool", None, {f"k{i}": v for i, v in enumerate(values)}))
    decoded = batch_decoder().decode(encode_batch([span], {"service.name": "svc"}, 0))
    for i, v in enumerate(values):
        expected = v.encode("utf-8", "replace").decode("utf-8")[:8192]
        assert decoded.spans[0].attributes[f"k{i}"] == expected


@rastir.tool
def load(path: str) -> None:
    span = rastir.current_span()
    assert span is not None
    span.set_attribute("file.path", path)
    raise ValueError(f"unsupported file {path}")


def test_one_span_with_a_surrogate_does_not_cost_its_batch() -> None:
    with recording_server() as server:
        rastir.configure(service="files", push_url=server.url, batch_size=100, flush_interval=60)
        for _ in range(99):
            with rastir.span("ok"):
                pass
        with pytest.raises(ValueError):
            load(BAD)
        assert rastir.flush(10)
        assert len(server.spans()) == 100
        assert server.dropped() == 0
        [sent] = [s for s in server.spans() if s["name"] == "load"]
        assert sent["attributes"]["file.path"] == FIXED
        assert sent["error"]["message"] == f"unsupported file {FIXED}"
