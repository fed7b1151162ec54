"""Strands Agents: one decorator on the function that calls the agent.

    python examples/frameworks/strands_calculator.py   # needs strands-agents and AWS access

Model calls and tool calls become spans under ``calculator``.
"""

from __future__ import annotations

from typing import Any

from strands import Agent, tool

import rastir


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_agent(model: Any) -> Any:
    return Agent(model=model, tools=[multiply], callback_handler=None)


@rastir.strands_agent(agent_name="calculator")
def ask(agent: Any, question: str) -> str:
    return str(agent(question)).strip()


if __name__ == "__main__":
    from strands.models import BedrockModel

    rastir.configure(service="calculator", push_url="http://127.0.0.1:8080")
    print(ask(build_agent(BedrockModel()), "multiply 6 and 7"))
    rastir.shutdown()
