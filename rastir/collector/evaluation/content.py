"""Prompt and completion text out of an LLM span's attributes.

The SDK records them only with ``capture_content``, as ``gen_ai.input.messages`` and
``gen_ai.output.messages``: JSON strings in the OpenTelemetry GenAI format, a list of
``{"role": ..., "parts": [{"type": "text", "content": ...}]}``. Other senders differ,
so reading is lenient: OpenAI-style ``{"role", "content"}`` messages (content a string
or a list of ``{"type": "text", "text": ...}``), a single message, plain strings, and
the older ``gen_ai.prompt``/``gen_ai.completion`` attributes are all taken. Parts
that are not text (tool calls, images) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = ["INPUT_KEYS", "OUTPUT_KEYS", "has_text", "input_text", "output_text"]

INPUT_KEYS: Final = ("gen_ai.input.messages", "gen_ai.prompt")
OUTPUT_KEYS: Final = ("gen_ai.output.messages", "gen_ai.completion")


def has_text(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """Cheap check (no parsing) that one of ``keys`` holds a non-empty value."""
    for key in keys:
        v = attributes.get(key)
        if v:
            return True
    return False


def input_text(attributes: Mapping[str, Any]) -> str | None:
    """The prompt, one ``role: text`` line per message; ``None`` when there is none."""
    return _first(attributes, INPUT_KEYS, with_roles=True)


def output_text(attributes: Mapping[str, Any]) -> str | None:
    """The completion's text; ``None`` when there is none."""
    return _first(attributes, OUTPUT_KEYS, with_roles=False)


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...], *, with_roles: bool) -> str | None:
    for key in keys:
        raw = attributes.get(key)
        if not raw:
            continue
        text = _render(_parse(raw), with_roles)
        if text:
            return text
    return None


def _parse(raw: Any) -> Any:
    """A JSON string decoded; anything else (or text that is not JSON) as it is."""
    if isinstance(raw, str):
        head = raw.lstrip()[:1]
        if head in ("[", "{", '"'):
            try:
                return msgspec.json.decode(raw)
            except msgspec.DecodeError:
                return raw
        return raw
    return raw


def _render(value: Any, with_roles: bool) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return "" if isinstance(value, bool) or value is None else str(value)
    lines: list[str] = []
    for item in value:
        if isinstance(item, str):
            if item.strip():
                lines.append(item.strip())
            continue
        if not isinstance(item, dict):
            continue
        text = _message_text(item)
        if not text:
            continue
        role = item.get("role")
        if with_roles and isinstance(role, str) and role:
            lines.append(f"{role}: {text}")
        else:
            lines.append(text)
    return "\n".join(lines)


def _message_text(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if parts is None:
        parts = message.get("content")
    if isinstance(parts, str):
        return parts.strip()
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        return ""
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") == "text":
            t = part.get("content")
            if not isinstance(t, str):
                t = part.get("text")
            if isinstance(t, str):
                texts.append(t)
    return "\n".join(t.strip() for t in texts if t.strip())
