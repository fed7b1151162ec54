"""Wire payloads for the collector tests: spans, batches and their encodings."""

from __future__ import annotations

import gzip
from random import getrandbits
from typing import Any

import msgspec

T0 = 1_750_000_000_000_000_000  # 2025-06-15T15:06:40Z, in Unix nanoseconds


def trace_id() -> str:
    return "%032x" % (getrandbits(128) | 1)


def span_id() -> str:
    return "%016x" % (getrandbits(64) | 1)


def span(
    *,
    trace: str | None = None,
    sid: str | None = None,
    parent: str | None = None,
    kind: str = "llm",
    name: str | None = None,
    start: int = T0,
    duration_ms: float = 1500.0,
    status: str = "ok",
    error_type: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """One wire span; keyword attributes use ``__`` for dots (``gen_ai__agent__name``)."""
    out: dict[str, Any] = {
        "trace_id": trace or trace_id(),
        "span_id": sid or span_id(),
        "name": name or kind,
        "kind": kind,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + int(duration_ms * 1_000_000),
        "status": status,
        "attributes": {k.replace("__", "."): v for k, v in attributes.items()},
    }
    if parent is not None:
        out["parent_span_id"] = parent
    if error_type is not None:
        out["error"] = {"type": error_type, "exception_type": "Boom", "message": "it broke"}
    return out


def llm_span(model: str = "gpt-4o", **kw: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai__request__model": model,
        "gen_ai__provider__name": "openai",
        "gen_ai__usage__input_tokens": 100,
        "gen_ai__usage__output_tokens": 20,
        "rastir__cost__usd": 0.25,
    }
    attrs.update(kw)
    return span(kind="llm", name=f"chat {model}", **attrs)


def batch(spans: list[dict[str, Any]], service: str = "svc", dropped: int = 0) -> dict[str, Any]:
    return {"resource": {"service.name": service}, "spans": spans, "dropped": dropped}


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


def gzipped(value: Any) -> bytes:
    return gzip.compress(value if isinstance(value, bytes) else encode(value))


def agent_trace(service: str = "svc", n_llm: int = 2) -> tuple[str, list[dict[str, Any]]]:
    """A small trace: an agent with LLM calls and a tool call under it."""
    tid = trace_id()
    root = span(trace=tid, kind="agent", name="planner", gen_ai__agent__name="planner")
    spans = [root]
    for i in range(n_llm):
        s = llm_span(gen_ai__agent__name="planner")
        s.update(trace_id=tid, parent_span_id=root["span_id"])
        s["start_time_unix_nano"] += i * 1_000_000
        s["end_time_unix_nano"] += i * 1_000_000
        spans.append(s)
    tool = span(trace=tid, parent=root["span_id"], kind="tool", gen_ai__tool__name="search")
    spans.append(tool)
    return tid, spans
