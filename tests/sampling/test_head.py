"""Head sampling in the SDK: the decision, the flags it sends, and what it exports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rastir
from rastir.export._encode import to_wire
from rastir.sampling import (
    HEAD,
    RANDOM_BITS,
    get_sample_ratio,
    rejection_threshold,
    trace_id_sampled,
)
from rastir.spans import Span, SpanContext
from rastir.testing import capture_spans

_LOW = (1 << RANDOM_BITS) - 1
ratios = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
trace_ids = st.integers(min_value=1, max_value=(1 << 128) - 1)


@given(trace_ids, ratios)
def test_the_decision_compares_the_low_56_bits_with_the_rejection_threshold(
    tid: int, ratio: float
) -> None:
    expected = (tid & _LOW) >= round((1 - ratio) * 2**56)
    assert trace_id_sampled(tid, ratio) is expected
    assert trace_id_sampled(f"{tid:032x}", ratio) is expected
    # The high 72 bits play no part: ids that share the low 56 bits decide alike.
    assert trace_id_sampled(tid ^ (0xABCDEF << 100), ratio) is expected


@given(trace_ids, ratios, ratios)
def test_a_trace_kept_at_one_ratio_is_kept_at_every_higher_ratio(
    tid: int, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    if trace_id_sampled(tid, low):
        assert trace_id_sampled(tid, high)


@given(trace_ids)
def test_ratio_one_keeps_every_trace_and_ratio_zero_none(tid: int) -> None:
    assert trace_id_sampled(tid, 1.0)
    assert not trace_id_sampled(tid, 0.0)


def test_the_kept_share_is_the_ratio() -> None:
    # Evenly spread low bits: exactly the ratio's share of them is kept.
    step = 2**56 // 1000
    for ratio in (0.1, 0.25, 0.5, 0.9):
        kept = sum(trace_id_sampled(i * step, ratio) for i in range(1000))
        assert kept == pytest.approx(1000 * ratio, abs=1)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5"])
def test_a_ratio_outside_zero_to_one_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="sample_ratio"):
        rejection_threshold(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_ratio"):
        rastir.configure(service="s", sample_ratio=bad)  # type: ignore[arg-type]


def test_configure_takes_the_ratio_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert rastir.configure(service="s").sample_ratio == 1.0
    monkeypatch.setenv("RASTIR_SAMPLE_RATIO", "0.25")
    assert rastir.configure(service="s").sample_ratio == 0.25
    assert get_sample_ratio() == 0.25
    assert HEAD.threshold == 3 * 2**54
    assert rastir.configure(service="s", sample_ratio=0.75).sample_ratio == 0.75
    monkeypatch.setenv("RASTIR_SAMPLE_RATIO", "half")
    with pytest.raises(ValueError, match="RASTIR_SAMPLE_RATIO"):
        rastir.configure(service="s")


def test_local_traces_carry_the_decision_in_flags_outgoing_traceparent_and_wire() -> None:
    rastir.configure(service="s", sample_ratio=0.5)
    sent: dict[str, str] = {}
    with capture_spans() as spans:
        for _ in range(200):
            with rastir.span("root"), rastir.span("child") as child:
                assert child is not None
                headers: dict[str, str] = {}
                rastir.inject(headers)
                sent[child.trace_id] = headers["traceparent"]
    decisions = {s.trace_id: s.sampled for s in spans}
    assert len(decisions) == 200
    # Both outcomes occur (each has probability 2**-200 of not occurring).
    assert set(decisions.values()) == {True, False}
    for s in spans:
        expected = trace_id_sampled(s.trace_id, 0.5)
        assert s.sampled is expected
        assert s.flags == int(expected)
        assert s.context.flags == int(expected)
        assert sent[s.trace_id].endswith("-01" if expected else "-00")
        assert to_wire(s).sampled is expected


@pytest.mark.parametrize(("ratio", "flags"), [(1.0, 0), (0.0, 1), (0.5, 1), (0.5, 0)])
def test_a_continued_trace_keeps_the_parents_decision_whatever_the_ratio(
    ratio: float, flags: int
) -> None:
    rastir.configure(service="s", sample_ratio=ratio)
    # A trace id this process would decide the other way at 0.5.
    low = 0 if flags else _LOW
    carrier = {"traceparent": f"00-{(7 << 100) | low:032x}-00f067aa0ba902b7-{flags:02x}"}
    with (
        capture_spans() as spans,
        rastir.continue_trace(carrier),
        rastir.span("handler") as span,
    ):
        assert span is not None
        out: dict[str, str] = {}
        rastir.inject(out)
    (s,) = spans
    assert s.sampled is bool(flags)
    assert out["traceparent"].endswith(f"-{flags:02x}")
    assert to_wire(s).sampled is bool(flags)


def test_unsampled_spans_are_still_encoded_for_the_collector_flagged_false() -> None:
    HEAD.set_ratio(0.0)
    span = Span("x", "trace", None)
    span.finish()
    wire = to_wire(span)
    assert wire.sampled is False
    from rastir.export._encode import encode_batch

    assert b'"sampled":false' in encode_batch([span], {"service.name": "s"}, 0)
    HEAD.set_ratio(1.0)
    # Sampled spans leave the field out: the wire stays what older collectors read.
    assert b"sampled" not in encode_batch([span], {"service.name": "s"}, 0)


def test_a_remote_parent_sets_flags_on_its_local_descendants() -> None:
    parent = SpanContext(1 << 70 | 5, 9, flags=0)
    child = Span("c", "tool", parent)
    grandchild = Span("g", "tool", child)
    assert not child.sampled
    assert not grandchild.sampled
    assert grandchild.context.flags == 0
