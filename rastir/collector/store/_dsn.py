"""Showing a PostgreSQL connection string without its password.

A DSN such as ``postgresql://rastir:s3cret@db/traces`` is a secret: it is shown,
logged and put in error messages only as ``postgresql://rastir:***@db/traces``.
Both forms libpq takes are handled: the URL (password after the user, or as the
``password`` query parameter) and the ``key=value`` string.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "dsn_password", "is_postgres_url", "redact_dsn", "scrub"]

MASK: Final = "***"
_SCHEMES: Final = ("postgresql://", "postgres://")
# key=value conninfo: password=secret or password='se cret' (quotes escape with \).
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)
_MASKED: Final = r"\g<1>" + MASK


def is_postgres_url(text: str) -> bool:
    """Whether ``text`` is a ``postgresql://`` or ``postgres://`` URL (any case)."""
    return text[:13].lower().startswith(_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (the rest left as it was).

    Any ``scheme://user:password@host`` URL is masked, so that a mistyped scheme
    is shown without its password too.
    """
    if "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        netloc_end = len(rest)
        for stop in "/?#":
            at = rest.find(stop)
            if at != -1:
                netloc_end = min(netloc_end, at)
        netloc, tail = rest[:netloc_end], rest[netloc_end:]
        userinfo, sep, hosts = netloc.rpartition("@")
        if sep and ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hosts}"
        return f"{scheme}://{netloc}{_QUERY_PASSWORD.sub(_MASKED, tail)}"
    return _KEYWORD_PASSWORD.sub(_MASKED, dsn)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn``, if any (to scrub it from other text)."""
    if is_postgres_url(dsn):
        try:
            parts = urlsplit(dsn)
            password = parts.password
        except ValueError:  # a malformed port: the password is still found below
            password = None
            userinfo = dsn.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
        if password:
            return unquote(password)
        for key, value in parse_qsl(dsn.partition("?")[2]):
            if key.lower() == "password" and value:
                return value
        return None
    match = _KEYWORD_PASSWORD.search(dsn)
    if match is None:
        return None
    value = match.group(2)
    if value.startswith("'"):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value or None


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message, say) without ``dsn``'s password in it."""
    password = dsn_password(dsn)
    if password:
        text = text.replace(dsn, redact_dsn(dsn)).replace(password, MASK)
        raw = _raw_url_password(dsn)
        if raw and raw != password:
            text = text.replace(raw, MASK)
    return text


def _raw_url_password(dsn: str) -> str | None:
    """The password as written in a URL (percent-encoded), if any."""
    if not is_postgres_url(dsn):
        return None
    userinfo = dsn.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None
