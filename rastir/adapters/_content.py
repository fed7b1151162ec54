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
from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters.base import get

__all__ = ["MAX_MESSAGES", "MAX_TEXT", "dumps", "input_messages", "to_messages", "to_parts"]

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


def _looks_like_messages(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        return (
            isinstance(first, str)
            or get(first, "role") is not None
            or (get(first, "content") is not None)
        )
    return False


def input_messages(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The prompt of a call: message-like keyword arguments, else the first positional
    argument that looks like a prompt."""
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
    for value in args:
        if _looks_like_messages(value):
            found.extend(to_messages(value))
            break
    return found or None


def dumps(messages: list[dict[str, Any]]) -> str:
    """JSON text for a span attribute."""
    return json.dumps(messages, ensure_ascii=False, default=str)
