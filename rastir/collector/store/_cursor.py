"""Opaque pagination cursors for ``GET /v1/traces``.

Traces are listed newest first, ordered by start time descending, ties broken by
a per-store key (the trace id in memory, the trace's row number in SQLite). A
cursor is the key of the last trace on a page, so the next page starts strictly
after it: traces inserted meanwhile (newer ones, at the top) and traces deleted
meanwhile (retention, eviction) never shift later pages, and nothing is skipped or
repeated. A trace whose start moves earlier while a client pages (its root span
arrived late) moves in that order, the only way an item can be seen twice or not
at all.

A cursor also carries a fingerprint of the filters of the query that made it, so
that a cursor sent with other filters is refused (400) rather than silently
continuing a different listing from the middle (as Google's AIP-158 asks of page
tokens). ``limit`` is not a filter: it may change from page to page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, TypeVar

import msgspec

from rastir._wire import INT64_MAX
from rastir.collector.store.base import TraceQuery

__all__ = ["CursorMismatchError", "decode_cursor", "encode_cursor", "query_fingerprint"]

T = TypeVar("T", int, str)

_encoder = msgspec.msgpack.Encoder()
# Both stores keep keys in 64-bit integers (SQLite's columns); msgpack carries up to
# 2**64 - 1, which SQLite cannot bind, so a forged cursor beyond is invalid here.
_Key = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
_Fingerprint = Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]
_decoder = msgspec.msgpack.Decoder(tuple[_Key, _Key | str, _Fingerprint])
# base64url without padding, as encode_cursor writes it. (The decoder would skip
# other characters: a cursor with junk in it must not pass for the one it was.)
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class CursorMismatchError(ValueError):
    """A well-formed cursor sent with other filters than the query that made it."""


def query_fingerprint(query: TraceQuery | None) -> int:
    """32 bits that tell the filters of ``query`` apart (stable across processes)."""
    if query is None:
        return 0
    filters = (
        query.service,
        query.agent,
        query.model,
        query.status,
        query.error_type,
        query.min_duration_ns,
        query.start_ns,
        query.end_ns,
    )
    digest = hashlib.blake2b(_encoder.encode(filters), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def encode_cursor(start_ns: int, tiebreak: int | str, query: TraceQuery | None = None) -> str:
    """The cursor that continues ``query``'s listing after the trace with this key."""
    raw = _encoder.encode((start_ns, tiebreak, query_fingerprint(query)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, tiebreak: type[T], query: TraceQuery | None = None) -> tuple[int, T]:
    """The ``(start_ns, tiebreak)`` key in ``cursor``.

    Raises:
        CursorMismatchError: the cursor was made for a query with other filters.
        ValueError: the cursor was not made by :func:`encode_cursor` for this store.
    """
    invalid = ValueError(
        f"invalid cursor {cursor[:64]!r}: send the next_cursor of an earlier answer as it came"
    )
    if _ALPHABET.fullmatch(cursor) is None:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start_ns, key, fingerprint = _decoder.decode(raw)
    except (binascii.Error, msgspec.DecodeError, ValueError):
        raise invalid from None
    if not isinstance(key, tiebreak) or isinstance(key, bool):
        raise invalid
    if fingerprint != query_fingerprint(query):
        raise CursorMismatchError(
            "cursor was made for a query with other filters: send it with the same "
            "service, agent, model, status, error_type, min_duration_ms, start and end "
            "as the request that returned it (limit may change), or start again without one"
        )
    return start_ns, key
