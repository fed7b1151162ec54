"""Opaque pagination cursors for ``GET /v1/traces``.

Traces are listed newest first, ordered by start time descending, ties broken by
a per-store key (the trace id in memory, the trace's row number in SQLite). A
cursor is the key of the last trace on a page, so the next page starts strictly
after it: traces inserted meanwhile (newer ones, at the top) never
shift later pages, and nothing is skipped or repeated. A trace whose start moves
earlier while a client pages (its root span arrived late) moves in that order, the
only way an item can be seen twice or not at all.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, TypeVar

import msgspec

from rastir._wire import INT64_MAX

__all__ = ["decode_cursor", "encode_cursor"]

T = TypeVar("T", int, str)

_encoder = msgspec.msgpack.Encoder()
# Both stores keep keys in 64-bit integers (SQLite's columns); msgpack carries up to
# 2**64 - 1, which SQLite cannot bind, so a forged cursor beyond is invalid here.
_Key = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
_decoder = msgspec.msgpack.Decoder(tuple[_Key, _Key | str])


def encode_cursor(start_ns: int, tiebreak: int | str) -> str:
    """The cursor that continues after the trace with this key."""
    return base64.urlsafe_b64encode(_encoder.encode((start_ns, tiebreak))).decode().rstrip("=")


def decode_cursor(cursor: str, tiebreak: type[T]) -> tuple[int, T]:
    """The ``(start_ns, tiebreak)`` key in ``cursor``.

    Raises:
        ValueError: the cursor was not made by :func:`encode_cursor` for this store.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start_ns, key = _decoder.decode(raw)
    except (binascii.Error, msgspec.DecodeError, UnicodeEncodeError, ValueError):
        raise ValueError(f"invalid cursor: {cursor[:64]!r}")
    if start_ns < 0 or not isinstance(key, tiebreak) or isinstance(key, bool):
        raise ValueError(f"invalid cursor: {cursor[:64]!r}")
    return start_ns, key
