"""Opaque pagination cursors for ``GET /v1/traces``.

Traces are listed newest first, ordered by ``(start_time_unix_nano, trace_id)``
descending. A cursor is the key of the last trace on a page, so the next page
starts strictly after it: traces inserted meanwhile (newer ones, at the top) never
shift later pages, and nothing is skipped or repeated. A trace whose start moves
earlier while a client pages (its root span arrived late) moves in that order, the
only way an item can be seen twice or not at all.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

__all__ = ["decode_cursor", "encode_cursor"]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[int, str])


def encode_cursor(start_ns: int, trace_id: str) -> str:
    """The cursor that continues after the trace with this key."""
    return base64.urlsafe_b64encode(_encoder.encode((start_ns, trace_id))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The ``(start_ns, trace_id)`` key in ``cursor``.

    Raises:
        ValueError: the cursor was not made by :func:`encode_cursor`.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start_ns, trace_id = _decoder.decode(raw)
    except (binascii.Error, msgspec.DecodeError, UnicodeEncodeError, ValueError):
        raise ValueError(f"invalid cursor: {cursor[:64]!r}")
    if start_ns < 0 or len(trace_id) > 64:
        raise ValueError(f"invalid cursor: {cursor[:64]!r}")
    return start_ns, trace_id
