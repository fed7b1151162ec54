"""Bearer tokens for ingest and query, compared in constant time (DESIGN §6)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

__all__ = ["FORBIDDEN", "OK", "UNAUTHORIZED", "check_bearer", "find_authorization"]

OK: Final = 0
UNAUTHORIZED: Final = 401  # no credentials, or not a bearer token
FORBIDDEN: Final = 403  # a bearer token, but the wrong one


def check_bearer(header: bytes | None, expected: bytes) -> int:
    """:data:`OK` when ``header`` carries the expected bearer token, else 401 or 403.

    RFC 6750 §2.1 and RFC 9110 §11.1: the scheme is case-insensitive. The token is
    compared with :func:`hmac.compare_digest`, so timing does not reveal it.
    """
    if header is None:
        return UNAUTHORIZED
    scheme, _, credentials = header.strip().partition(b" ")
    credentials = credentials.strip()
    if scheme.lower() != b"bearer" or not credentials:
        return UNAUTHORIZED
    if hmac.compare_digest(credentials, expected):
        return OK
    return FORBIDDEN


def find_authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The ``Authorization`` header of an ASGI scope, or ``None``.

    A request carrying it twice carries no credentials (``b""``: 401): which copy a
    proxy in front checked cannot be known, so neither is trusted.
    """
    found = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None:
                return b""
            found = value
    return found
