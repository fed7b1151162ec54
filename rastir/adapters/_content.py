"""Prompt and response content in the OTel GenAI message shape.

Used only when ``capture_content`` is on. Messages become
``[{"role": ..., "parts": [{"type": "text", "content": ...}, ...]}, ...]`` and are
stored as a JSON string under ``gen_ai.input.messages`` / ``gen_ai.output.messages``.
Only message-like arguments are read (``messages``, ``contents``, ``prompt`` and
similar), never the whole argument list, so keys, headers and clients never reach a
span.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters.base import get

__all__ = [
    "MAX_MESSAGES",
    "MAX_TEXT",
    "dumps",
    "input_messages",
    "is_secret_name",
    "looks_like_secret",
    "positional_names",
    "to_messages",
    "to_parts",
]

MAX_TEXT: Final = 8192  # characters kept per text part
MAX_MESSAGES: Final = 64  # the most recent messages kept

# Keyword arguments that carry the prompt, in the SDKs we know.
_INPUT_KWARGS: Final = ("messages", "contents", "prompt", "input", "inputs", "query", "message")
_SYSTEM_KWARGS: Final = ("system", "system_instruction", "preamble")
# LangChain message ``type`` -> OTel role.
_ROLES: Final = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _text(value: str) -> dict[str, Any]:
    return {"type": "text", "content": value[:MAX_TEXT]}


def to_parts(content: Any) -> list[dict[str, Any]]:
    """Content of one message (a string, or a list of blocks) as OTel parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    if isinstance(content, (list, tuple)):
        parts: list[dict[str, Any]] = []
        for block in content:
            if isinstance(block, str):
                parts.append(_text(block))
                continue
            text = get(block, "text")
            if isinstance(text, str):
                parts.append(_text(text))
                continue
            kind = get(block, "type")
            name = get(block, "name")
            part: dict[str, Any] = {"type": str(kind) if kind else "unknown"}
            if isinstance(name, str):
                part["name"] = name
            parts.append(part)
        return parts
    text = get(content, "text")
    if isinstance(text, str):
        return [_text(text)]
    return [_text(str(content))]


def _message(item: Any, default_role: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"role": default_role, "parts": [_text(item)]}
    role = get(item, "role")
    if not isinstance(role, str):
        kind = get(item, "type")
        role = _ROLES.get(kind, default_role) if isinstance(kind, str) else default_role
    content = get(item, "content")
    if content is None:
        content = get(item, "parts")
    if content is None and isinstance(item, Mapping):
        content = item.get("text")
    return {"role": role, "parts": to_parts(content)}


def to_messages(value: Any, default_role: str = "user") -> list[dict[str, Any]]:
    """A prompt (string, message, list of messages) as OTel messages."""
    if isinstance(value, (list, tuple)):
        items = list(value)[-MAX_MESSAGES:]
        return [_message(item, default_role) for item in items]
    return [_message(value, default_role)]


# -- secrets among positional arguments ----------------------------------------------------
# A positional argument is taken as the prompt only when nothing says it is a secret:
# its parameter's name (``api_key``, ``token``, ``authorization``...) or its shape
# (a credential prefix, a scheme such as ``Bearer``, one long opaque word).
_SECRET_WORDS: Final = re.compile(
    r"(?:^|_)(?:keys?|apikey|token|secrets?|passwords?|passwd|pwd|passphrase|auth|"
    r"authorization|credentials?|cookies?|bearer|jwt|signature|private)(?:_|$)"
)
_SECRET_PREFIXES: Final = (
    "sk-",
    "sk_",
    "rk_",
    "pk_",
    "xox",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "glpat-",
    "hf_",
    "akia",
    "asia",
    "aiza",
    "ya29.",
    "eyj",  # a JWT: base64 of '{"'
    "bearer ",
    "basic ",
    "token ",
    "apikey ",
)
_OPAQUE: Final = re.compile(r"[A-Za-z0-9+/=_\-.:~]{24,}")
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAMES: dict[Any, tuple[str, ...]] = {}
_SECRET_NAMES: dict[str, bool] = {}


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` carries a credential (``api_key``,
    ``token``, ``Authorization``, ``password``, ``client_secret``...)."""
    found = _SECRET_NAMES.get(name)
    if found is None:
        snake = _CAMEL.sub("_", name).lower()
        found = _SECRET_WORDS.search(snake) is not None
        if len(_SECRET_NAMES) >= 4096:
            _SECRET_NAMES.clear()
        _SECRET_NAMES[name] = found
    return found


def looks_like_secret(value: str) -> bool:
    """Whether a string looks like a key or token rather than a prompt: a known
    credential prefix (``sk-``, ``Bearer ``...) or one long word without spaces that
    mixes letters and digits."""
    text = value.strip()
    if text.lower().startswith(_SECRET_PREFIXES):
        return True
    return (
        _OPAQUE.fullmatch(text) is not None
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def positional_names(fn: Any) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters, read once per code object."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    names = _NAMES.get(code)
    if names is None:
        names = tuple(code.co_varnames[: code.co_argcount])
        if len(_NAMES) >= 4096:
            _NAMES.clear()
        _NAMES[code] = names
    return names


def _is_message_list(value: Any) -> bool:
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        return (
            isinstance(first, str)
            or get(first, "role") is not None
            or (get(first, "content") is not None)
        )
    return False


def _positional_prompt(args: tuple[Any, ...], names: tuple[str, ...] | None) -> Any:
    """The positional argument that is the prompt: a list of messages first, else a
    string. Arguments whose parameter is named like a secret, and strings that look
    like a key or token, are never taken."""
    text: str | None = None
    for i, value in enumerate(args):
        if names is not None and i < len(names) and is_secret_name(names[i]):
            continue
        if _is_message_list(value):
            return value
        if text is None and isinstance(value, str) and value and not looks_like_secret(value):
            text = value
    return text


def input_messages(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    names: tuple[str, ...] | None = None,
) -> list[dict[str, Any]] | None:
    """The prompt of a call: message-like keyword arguments, else the positional
    argument that looks like a prompt (see :func:`_positional_prompt`).

    ``names`` are the function's positional parameter names
    (:func:`positional_names`), when known.
    """
    found: list[dict[str, Any]] = []
    for key in _SYSTEM_KWARGS:
        value = kwargs.get(key)
        if value is not None:
            found.append({"role": "system", "parts": to_parts(value)})
    for key in _INPUT_KWARGS:
        value = kwargs.get(key)
        if value is not None:
            found.extend(to_messages(value))
            return found
    if args:
        value = _positional_prompt(args, names)
        if value is not None:
            found.extend(to_messages(value))
    return found or None


def dumps(messages: list[dict[str, Any]]) -> str:
    """JSON text for a span attribute."""
    return json.dumps(messages, ensure_ascii=False, default=str)
