"""Prompt and completion text out of an LLM span's attributes.

The SDK records them only with ``capture_content``, as ``gen_ai.input.messages`` and
``gen_ai.output.messages``: JSON strings in the OpenTelemetry GenAI format, a list of
``{"role": ..., "parts": [{"type": "text", "content": ...}]}``. Other senders differ,
so reading is lenient: OpenAI-style ``{"role", "content"}`` messages (content a string
or a list of ``{"type": "text", "text": ...}``), a single message, plain strings, and
the older ``gen_ai.prompt``/``gen_ai.completion`` attributes are all taken. Parts
that are not text (tool calls, images) are left out.

Structured values received over OTLP (an ``arrayValue`` of ``kvlistValue`` messages)
arrive as a list whose items are JSON texts, and a message's ``parts`` as a list of
JSON texts (rastir.collector.otlp.receive keeps nested values as JSON): those items
are decoded when they hold a message or a part, so the text is evaluated, not its
JSON envelope.

Values cut at ingest (``max_attr_value_len``) are recognised by :func:`is_cut`: an
evaluation of a cut text would judge something the model never wrote (a cut JSON
envelope, a shortened answer), so such samples are skipped, never passed or failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from rastir.collector.ingest import TRUNCATION_MARK

__all__ = ["INPUT_KEYS", "OUTPUT_KEYS", "has_text", "input_text", "is_cut", "output_text"]

INPUT_KEYS: Final = ("gen_ai.input.messages", "gen_ai.prompt")
OUTPUT_KEYS: Final = ("gen_ai.output.messages", "gen_ai.completion")


def has_text(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """Cheap check (no parsing) that one of ``keys`` holds a non-empty value."""
    for key in keys:
        v = attributes.get(key)
        if v:
            return True
    return False


def is_cut(attributes: Mapping[str, Any], keys: tuple[str, ...], max_len: int) -> bool:
    """Whether the value the text is read from was cut at ingest to ``max_len``.

    Ingest cuts a longer string to ``max_len - 1`` characters and the mark ``…``
    (rastir.collector.ingest), list items one by one. An uncut value of exactly
    that length ending in the mark would be taken for a cut one: the evaluation is
    skipped, which is the safe side (a GenAI messages value ends in ``]`` anyway).
    """
    for key in keys:
        v = attributes.get(key)
        if not v:
            continue
        if isinstance(v, str):
            return _cut_str(v, max_len)
        if isinstance(v, list):
            return any(isinstance(e, str) and _cut_str(e, max_len) for e in v)
        return False
    return False


def _cut_str(v: str, max_len: int) -> bool:
    # below 2 characters ingest cuts without the mark
    return len(v) == max_len and (max_len < 2 or v.endswith(TRUNCATION_MARK))


def input_text(attributes: Mapping[str, Any]) -> str | None:
    """The prompt, one ``role: text`` line per message; ``None`` when there is none."""
    return _first(attributes, INPUT_KEYS, with_roles=True)


def output_text(attributes: Mapping[str, Any]) -> str | None:
    """The completion's text; ``None`` when there is none."""
    return _first(attributes, OUTPUT_KEYS, with_roles=False)


#: The older attributes hold plain text; some senders put messages in them as JSON.
_PLAIN_KEYS: Final = frozenset({"gen_ai.prompt", "gen_ai.completion"})


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...], *, with_roles: bool) -> str | None:
    for key in keys:
        raw = attributes.get(key)
        if not raw:
            continue
        value = _parse(raw)
        if key in _PLAIN_KEYS and isinstance(raw, str) and not _holds_messages(value):
            # A plain-text attribute whose text is JSON (a structured-output answer,
            # ``{"city": "Lisbon"}``): that JSON is the text, not an envelope.
            text = raw.strip()
        else:
            text = _render(value, with_roles)
        if text:
            return text
    return None


def _holds_messages(value: Any) -> bool:
    """Whether decoded JSON is messages: one ``{"role": ...}`` object or a list of them."""
    if isinstance(value, dict):
        return "role" in value
    if isinstance(value, list) and value:
        return all(isinstance(m, dict) and "role" in m for m in value)
    return False


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
            item = _nested(item, _MESSAGE_KEYS)
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


#: A JSON text among list items is decoded only when it is an object with one of
#: these keys: a completion that is itself JSON (``'{"a": 1}'``) stays text.
_MESSAGE_KEYS: Final = frozenset({"role", "parts", "content"})
_PART_KEYS: Final = frozenset({"type", "content", "text"})


def _nested(item: str, keys: frozenset[str]) -> str | dict[str, Any]:
    """``item`` decoded when it is a JSON object with one of ``keys`` (OTLP kvlists)."""
    if not item.startswith("{"):
        return item
    try:
        value = msgspec.json.decode(item)
    except msgspec.DecodeError:
        return item
    if isinstance(value, dict) and not keys.isdisjoint(value):
        return value
    return item


def _message_text(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if isinstance(parts, str):
        # GenAI ``parts`` is a list; as a string it is an OTLP array kept as JSON.
        decoded = _parse(parts)
        parts = decoded if isinstance(decoded, list) else [parts]
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
            part = _nested(part, _PART_KEYS)
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") == "text":
            t = part.get("content")
            if not isinstance(t, str):
                t = part.get("text")
            if isinstance(t, str):
                texts.append(t)
    return "\n".join(t.strip() for t in texts if t.strip())
