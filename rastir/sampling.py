"""Head sampling: which traces are kept, decided from the trace id alone.

The decision is consistent: every process that sees a trace id decides alike,
whichever service starts the trace and whatever order the spans arrive in. It
follows the OpenTelemetry consistent-probability scheme built on W3C Trace Context
Level 2, which asks that the low 56 bits of a trace id be random:

* ``R`` is the trace id's low 56 bits (rastir's ids are 128 random bits);
* the ratio ``p`` gives a rejection threshold ``T = round((1 - p) * 2**56)``;
* the trace is sampled when ``R >= T``.

So ``p = 1`` keeps everything (``T = 0``), ``p = 0`` nothing (``T = 2**56``), and a
trace kept at ratio ``p`` is also kept at every ratio above ``p``: the collector's
tail sampler uses the same function for its ratio rule, so its ratio keeps a subset
of what head sampling kept, never a disjoint set.

This is not the rule of the OpenTelemetry Python SDK's ``TraceIdRatioBased`` (1.45
and earlier), which samples when the low 64 bits are *below* ``ratio * 2**64``: for
one trace id the two decide independently (``docs/sampling.md``). Parent-based
propagation, below, keeps each trace whole across the two all the same.

A span whose parent came from elsewhere (a ``traceparent`` header, MCP ``_meta``, an
OpenTelemetry span) is not decided here at all: it keeps the parent's sampled flag
(W3C Trace Context §3.2.2.5), so a continued trace is never cut in two.

Unsampled spans are still exported to the collector, flagged ``sampled: false``:
the collector derives metrics from every span, then neither stores nor exports them
(``docs/sampling.md``).

This module imports nothing from rastir: ``rastir.spans`` reads it on demand.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "RANDOM_BITS",
    "HeadSampler",
    "get_sample_ratio",
    "is_sampled",
    "rejection_threshold",
    "set_sample_ratio",
    "trace_id_sampled",
]

#: How many low bits of the trace id are read as the random value (W3C TC Level 2).
RANDOM_BITS: Final = 56
_SPACE: Final = 1 << RANDOM_BITS
_MASK: Final = _SPACE - 1


def rejection_threshold(ratio: float) -> int:
    """``T`` for a sampling ratio: traces whose low 56 bits are below it are dropped.

    Raises:
        ValueError: ``ratio`` is not a number between 0 and 1.
    """
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or not math.isfinite(ratio)
        or not 0.0 <= ratio <= 1.0
    ):
        raise ValueError(f"sample_ratio must be a number from 0 to 1, got {ratio!r}")
    # Rounded, not truncated: 0.5 gives exactly 2**55, and 1.0 exactly 0.
    return min(_SPACE, max(0, round((1.0 - float(ratio)) * _SPACE)))


def trace_id_sampled(trace_id: int | str, ratio: float) -> bool:
    """Whether a trace is kept at ``ratio``; ``trace_id`` is the int or its 32-hex form.

    Raises:
        ValueError: ``ratio`` is out of range, or ``trace_id`` is not hex.
    """
    tid = int(trace_id, 16) if isinstance(trace_id, str) else trace_id
    return (tid & _MASK) >= rejection_threshold(ratio)


class HeadSampler:
    """The process's head-sampling ratio, as the threshold the hot path compares to.

    There is one, :data:`HEAD`; :func:`rastir.configure` sets it (``sample_ratio``,
    ``RASTIR_SAMPLE_RATIO``). Reading it is one attribute load: no lock, because a
    reader that sees the old threshold during a reconfigure decides as it would
    have a moment earlier.
    """

    __slots__ = ("ratio", "threshold")

    def __init__(self) -> None:
        self.ratio = 1.0
        self.threshold = 0

    def set_ratio(self, ratio: float) -> None:
        """Sample ``ratio`` of new traces from now on.

        Raises:
            ValueError: ``ratio`` is not a number between 0 and 1.
        """
        self.threshold = rejection_threshold(ratio)
        self.ratio = float(ratio)

    def sampled(self, tid: int) -> bool:
        """The decision for a trace started in this process."""
        return (tid & _MASK) >= self.threshold

    def flags(self, tid: int) -> int:
        """W3C trace flags for a trace started here: ``01`` sampled, ``00`` not."""
        return 1 if (tid & _MASK) >= self.threshold else 0


HEAD: Final = HeadSampler()


def set_sample_ratio(ratio: float) -> None:
    """Set the head-sampling ratio of this process (``configure`` does it).

    Raises:
        ValueError: ``ratio`` is not a number between 0 and 1.
    """
    HEAD.set_ratio(ratio)


def get_sample_ratio() -> float:
    """The head-sampling ratio in force (1.0 unless configured)."""
    return HEAD.ratio


def is_sampled(tid: int) -> bool:
    """The head decision for a trace id started in this process, at the current ratio."""
    return (tid & _MASK) >= HEAD.threshold
