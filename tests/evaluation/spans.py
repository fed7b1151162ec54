"""LLM spans with captured content, as the SDK sends them with ``capture_content``."""

from __future__ import annotations

import json
from typing import Any

from tests.collector.spans import llm_span, span, trace_id


def messages(role: str, text: str) -> str:
    """One message in the OpenTelemetry GenAI format, as a JSON string."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def llm_with_text(
    prompt: str | None,
    completion: str | None,
    *,
    trace: str | None = None,
    parent: str | None = None,
    model: str = "gpt-4o",
    agent: str | None = "planner",
    provider: str = "openai",
) -> dict[str, Any]:
    s = llm_span(model)
    a = s["attributes"]
    a["gen_ai.response.model"] = model + "-2024-08-06"
    a["gen_ai.provider.name"] = provider
    if agent is not None:
        a["gen_ai.agent.name"] = agent
    if prompt is not None:
        a["gen_ai.input.messages"] = messages("user", prompt)
    if completion is not None:
        a["gen_ai.output.messages"] = messages("assistant", completion)
    if trace is not None:
        s["trace_id"] = trace
    if parent is not None:
        s["parent_span_id"] = parent
    return s


def agent_with_llms(*pairs: tuple[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """An agent span and one LLM child per ``(prompt, completion)``."""
    tid = trace_id()
    root = span(trace=tid, kind="agent", name="planner", gen_ai__agent__name="planner")
    out = [root]
    for prompt, completion in pairs:
        out.append(llm_with_text(prompt, completion, trace=tid, parent=root["span_id"]))
    return tid, out
