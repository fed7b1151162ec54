"""A CrewAI crew with a scripted LLM and two tools, on CrewAI's public API.

``crewai`` cannot be installed next to this project (it pins ``mcp<2``; see
docs/decisions.md, FW-3): the faithful fake in ``tests/frameworks/fakes/crewai_fake.py``
stands in under the SDK's module names whenever the real package is absent. With the
real SDK (tested against 1.15.30), the same crew runs CrewAI's own agent loop.

The LLM is a custom ``BaseLLM`` written as CrewAI's providers write theirs: ``call``
has the SDK's signature, runs inside ``llm_call_context()`` (the scope that gives its
events one ``call_id``), emits the LLM events through the ``_emit_call_*`` helpers,
streams when asked, and reports litellm-style usage. It reads the conversation the way
a model would: an ``Observation:`` only counts in the assistant turns CrewAI records
(the system prompt's format instructions contain the literal "Observation: the result
of the action"), and it answers with the observation's first line.
"""

from __future__ import annotations

import importlib
import json
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.frameworks.fakes import install

install("crewai")

with warnings.catch_warnings():
    # The real SDK (1.15.30) replaces ``crewai.rag`` in sys.modules by an object that
    # refuses attribute writes, so importing its submodules warns (ImportWarning) when
    # the import system tries to bind them as attributes of the package.
    warnings.filterwarnings(
        "ignore", "Cannot set an attribute on 'crewai.rag'", category=ImportWarning
    )
    _crewai = importlib.import_module("crewai")
_base_llm = importlib.import_module("crewai.llms.base_llm")
tool: Callable[[str], Callable[[Callable[..., Any]], Any]] = importlib.import_module(
    "crewai.tools"
).tool
if TYPE_CHECKING:
    _BaseLLM = object
else:
    _BaseLLM = _base_llm.BaseLLM

MODEL = "gpt-4o-mini"
USAGE = ((50, 12), (80, 10))
_OBSERVATION = re.compile(r"^Observation:\s*(.+)", re.M)
_QUESTION = re.compile(r"multiply (-?\d+) and (-?\d+)")


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


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def reply(messages: str | list[dict[str, Any]]) -> tuple[str, int]:
    """The ReAct turn for this conversation, and how many observations it has seen."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    observations = [
        found
        for m in messages
        if m.get("role") == "assistant"
        for found in _OBSERVATION.findall(_text(m.get("content")))
    ]
    conversation = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
    if observations and "keep trying" not in conversation:
        answer = observations[-1].strip()
        return f"Thought: I now know the final answer\nFinal Answer: The answer is {answer}", 1
    a, b = (int(n) for n in _QUESTION.findall(conversation)[-1])
    args = json.dumps({"a": a, "b": b})
    return f"Thought: I should multiply.\nAction: multiply\nAction Input: {args}", 0


class ScriptedLLM(_BaseLLM):
    """ReAct answers: an action on the question's two numbers, then the final answer.

    Told to "keep trying", it repeats the action whatever the observation.
    """

    def call(
        self,
        messages: str | list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str:
        with _base_llm.llm_call_context():
            self._emit_call_started_event(  # type: ignore[attr-defined]
                messages=messages,
                tools=tools,
                callbacks=callbacks,
                available_functions=available_functions,
                from_task=from_task,
                from_agent=from_agent,
            )
            text, seen = reply(messages)
            tokens_in, tokens_out = USAGE[seen]
            if self.stream:  # type: ignore[attr-defined]
                for word in text.split(" "):
                    self._emit_stream_chunk_event(  # type: ignore[attr-defined]
                        chunk=word + " ",
                        from_task=from_task,
                        from_agent=from_agent,
                        call_type="llm_call",
                    )
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

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        """A native count (the SDK's fallback estimates and logs a warning)."""
        text = messages if isinstance(messages, str) else json.dumps(messages, default=str)
        return len(text.split())


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
