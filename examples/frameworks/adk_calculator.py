"""Google ADK: one decorator on the function that drives the runner.

    python examples/frameworks/adk_calculator.py   # needs google-adk and a Gemini key

The agent, its model calls and its tool calls become spans under ``calculator``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

import rastir


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_runner(model: Any) -> Any:
    agent = LlmAgent(name="calculator_agent", model=model, tools=[multiply])
    return Runner(
        app_name="calculator",
        agent=agent,
        session_service=InMemorySessionService(),
        auto_create_session=True,
    )


@rastir.adk_agent(agent_name="calculator")
async def ask(runner: Any, question: str, session: str = "s1") -> str:
    message = types.Content(role="user", parts=[types.Part(text=question)])
    answer = ""
    async for event in runner.run_async(user_id="u", session_id=session, new_message=message):
        for part in (event.content.parts or []) if event.content else []:
            if part.text and not event.partial:
                answer = part.text
    return answer


if __name__ == "__main__":
    rastir.configure(service="calculator", push_url="http://127.0.0.1:8080")
    print(asyncio.run(ask(build_runner("gemini-2.5-flash"), "multiply 6 and 7")))
    rastir.shutdown()
