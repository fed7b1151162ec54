"""A CrewAI crew with a scripted LLM and two tools, on CrewAI's public API.

``crewai`` cannot be installed next to this project (it pins ``mcp<2``; see
docs/decisions.md, FW-3): the faithful fake in ``tests/frameworks/fakes/crewai_fake.py``
stands in under the SDK's module names whenever the real package is absent. The LLM is
a ``BaseLLM`` that emits CrewAI's LLM events through the SDK's ``_emit_call_*``
helpers, streaming when asked, with litellm-style usage.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.frameworks.fakes import install

install("crewai")

_crewai = importlib.import_module("crewai")
tool: Callable[[str], Callable[[Callable[..., Any]], Any]] = importlib.import_module(
    "crewai.tools"
).tool
if TYPE_CHECKING:
    _BaseLLM = object
else:
    _BaseLLM = importlib.import_module("crewai.llms.base_llm").BaseLLM

MODEL = "gpt-4o-mini"
USAGE = ((50, 12), (80, 10))


class ToolFailure(RuntimeError):
    pass


@tool("multiply")
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a == 13:
        raise ToolFailure("13 is unlucky")
    return a * b


@tool("add")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ScriptedLLM(_BaseLLM):
    """ReAct answers: an action on the question's two numbers, then the final answer."""

    def call(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        from_task, from_agent = kwargs.get("from_task"), kwargs.get("from_agent")
        self._emit_call_started_event(  # type: ignore[attr-defined]
            messages=messages, from_task=from_task, from_agent=from_agent
        )
        text = "\n".join(str(m.get("content", "")) for m in messages)
        observations = re.findall(r"Observation:\s*(.+)", text)
        tokens_in, tokens_out = USAGE[min(len(observations), 1)]
        if observations:
            text = f"Thought: done.\nFinal Answer: The answer is {observations[-1].strip()}"
        else:
            a, b = (int(n) for n in re.findall(r"multiply (-?\d+) and (-?\d+)", text)[0])
            args = json.dumps({"a": a, "b": b})
            text = f"Thought: multiply.\nAction: multiply\nAction Input: {args}"
        if self.stream:  # type: ignore[attr-defined]
            for word in text.split(" "):
                self._emit_stream_chunk_event(chunk=word + " ")  # type: ignore[attr-defined]
        usage = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        self._emit_call_completed_event(  # type: ignore[attr-defined]
            response=text,
            call_type="llm_call",
            from_task=from_task,
            from_agent=from_agent,
            messages=messages,
            usage=usage,
            finish_reason="stop",
        )
        return text


def build_crew(*, stream: bool = False) -> Any:
    agent = _crewai.Agent(
        role="calculator",
        goal="Compute exactly",
        backstory="Careful with numbers.",
        llm=ScriptedLLM(model=MODEL, stream=stream),  # type: ignore[call-arg]
        tools=[multiply, add],
    )
    task = _crewai.Task(
        description="{question}",
        expected_output="The number",
        agent=agent,
        name="compute",
    )
    return _crewai.Crew(agents=[agent], tasks=[task], name="math")
