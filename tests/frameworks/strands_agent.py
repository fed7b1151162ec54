"""A Strands agent with a scripted model and two tools, on Strands' public API.

With ``strands-agents`` installed this is the real SDK; otherwise the faithful fake in
``tests/frameworks/fakes/strands`` stands in under the same module names (see
``docs/decisions.md``, FW-3). The model is a ``strands.models.Model`` that streams the
SDK's event shapes and reports usage in its ``metadata`` event, as Bedrock does. The
``ask_tool`` helpers and ``build_team_orchestrator`` make Strands' agents-as-tools
pattern: an orchestrator whose plain ``@tool`` function calls a specialist agent.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tests.frameworks.fakes import install

install("strands")

F = TypeVar("F", bound=Callable[..., Any])

_strands = importlib.import_module("strands")
Agent: Any = _strands.Agent
tool: Callable[[F], F] = _strands.tool
if TYPE_CHECKING:
    _Model = object
else:
    _Model = importlib.import_module("strands.models").Model

MODEL = "scripted-1"
USAGE = ((15, 5), (40, 8))


class ToolFailure(RuntimeError):
    pass


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a == 13:
        raise ToolFailure("13 is unlucky")
    return a * b


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ModelFailure(RuntimeError):
    pass


class ScriptedModel(_Model):
    """Asks for ``multiply`` on the question's two numbers, then states the result.

    With ``ask``, asks the tool of that name instead (same arguments) and passes its
    answer on. With ``delegate``, asks the agent-as-tool of that name (Strands' agent
    tools take ``{"input": prompt}``) and passes its answer on. With ``fail``, raises
    instead of answering.
    """

    def __init__(
        self, delegate: str | None = None, *, ask: str | None = None, fail: bool = False
    ) -> None:
        self.config: dict[str, Any] = {"model_id": MODEL}
        self.delegate = delegate
        self.ask = ask
        self.fail = fail

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    def structured_output(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def stream(
        self, messages: Any, tool_specs: Any = None, system_prompt: Any = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        # This turn: from the latest question (the agent keeps earlier turns).
        start = max(
            i
            for i, m in enumerate(messages)
            if m["role"] == "user" and any("text" in b for b in m["content"])
        )
        # All its text blocks: Strands' Swarm puts its own context before the task.
        question = " ".join(b["text"] for b in messages[start]["content"] if "text" in b)
        results = [
            block["toolResult"]
            for message in messages[start:]
            for block in message["content"]
            if "toolResult" in block
        ]
        tokens_in, tokens_out = USAGE[min(len(results), 1)]
        if self.fail:
            raise ModelFailure("model unavailable")
        yield {"messageStart": {"role": "assistant"}}
        if results:
            text = results[-1]["content"][0].get("text", "")
            relay = self.delegate or self.ask
            answer = text.strip() if relay else f"The answer is {text}"
            for word in answer.split(" "):
                yield {"contentBlockDelta": {"delta": {"text": word + " "}}}
            yield {"contentBlockStop": {}}
            stop = "end_turn"
        else:
            if self.delegate:
                use = {"toolUseId": "tooluse_1", "name": self.delegate}
                args = json.dumps({"input": question})
            else:
                a, b = (int(n) for n in re.findall(r"-?\d+", question)[:2])
                use = {"toolUseId": "tooluse_1", "name": self.ask or "multiply"}
                args = json.dumps({"a": a, "b": b})
            yield {"contentBlockStart": {"start": {"toolUse": use}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": args}}}}
            yield {"contentBlockStop": {}}
            stop = "tool_use"
        yield {"messageStop": {"stopReason": stop}}
        usage = {"inputTokens": tokens_in, "outputTokens": tokens_out}
        usage["totalTokens"] = tokens_in + tokens_out
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 1}}}


def build_agent(name: str | None = None, model: Any = None, tools: Any = None) -> Any:
    return Agent(
        model=model or ScriptedModel(),
        tools=[multiply, add] if tools is None else tools,
        callback_handler=None,
        name=name,
    )


def build_orchestrator(specialist_tool: Any) -> Any:
    """An agent whose one tool is another agent (``Agent`` or ``agent.as_tool()``)."""
    return Agent(
        model=ScriptedModel(delegate="specialist"),
        tools=[specialist_tool],
        callback_handler=None,
        name="orchestrator",
    )


# Strands' "agents as tools" pattern with a plain ``@tool`` function: the orchestrator's
# tool calls the specialist agent, which nothing else links to the orchestrator.
def ask_tool(specialist: Any) -> Any:
    """A sync tool (Strands runs it on a worker thread) calling ``specialist(...)``."""

    @tool
    def ask_specialist(a: int, b: int) -> str:
        """Multiply two integers (asks the specialist agent)."""
        return str(specialist(f"multiply {a} and {b}")).strip()

    return ask_specialist


def ask_tool_async(specialist: Any) -> Any:
    """An async tool (Strands awaits it in the tool call's task) awaiting the specialist."""

    @tool
    async def ask_specialist(a: int, b: int) -> str:
        """Multiply two integers (asks the specialist agent)."""
        return str(await specialist.invoke_async(f"multiply {a} and {b}")).strip()

    return ask_specialist


def build_team_orchestrator(ask: Any) -> Any:
    """An agent whose one tool is ``ask``, a tool taking the question's two numbers."""
    return Agent(
        model=ScriptedModel(ask=ask.tool_name),
        tools=[ask],
        callback_handler=None,
        name="orchestrator",
    )
