"""A Google ADK agent with a scripted model and two function tools, on ADK's public API.

With ``google-adk`` installed this is the real SDK; otherwise the faithful fake in
``tests/frameworks/fakes/adk_fake.py`` stands in under the same module names
(docs/decisions.md, FW-3). The model is a ``BaseLlm`` answering like Gemini does:
a function call first, then text, with ``usage_metadata`` on each response.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.genai import types

from tests.frameworks.fakes import install

install("adk")

_agents = importlib.import_module("google.adk.agents")
_runners = importlib.import_module("google.adk.runners")
_sessions = importlib.import_module("google.adk.sessions")
LlmResponse: Any = importlib.import_module("google.adk.models.llm_response").LlmResponse
if TYPE_CHECKING:
    _BaseLlm = object
else:
    _BaseLlm = importlib.import_module("google.adk.models.base_llm").BaseLlm

MODEL = "gemini-scripted"
USAGE = ((21, 6), (44, 9))


class ToolFailure(RuntimeError):
    pass


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a == 13:
        raise ToolFailure("13 is unlucky")
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ScriptedLlm(_BaseLlm):
    """Calls ``multiply`` on the question's two numbers, then states the result."""

    async def generate_content_async(
        self, llm_request: Any, stream: bool = False
    ) -> AsyncIterator[Any]:
        contents = llm_request.contents
        start = max(
            i for i, c in enumerate(contents) if c.role == "user" and any(p.text for p in c.parts)
        )
        question = next(p.text for p in contents[start].parts if p.text)
        answers = [
            p.function_response
            for c in contents[start:]
            for p in c.parts or []
            if p.function_response
        ]
        tokens_in, tokens_out = USAGE[min(len(answers), 1)]
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=tokens_in,
            candidates_token_count=tokens_out,
            total_token_count=tokens_in + tokens_out,
        )
        if answers:
            result = answers[-1].response
            text = f"The answer is {result.get('result', result)}"
            if stream:
                words = text.split(" ")
                for i in range(1, len(words)):
                    part = types.Part(text=" ".join(words[:i]))
                    content = types.Content(role="model", parts=[part])
                    yield LlmResponse(content=content, partial=True)
            part = types.Part(text=text)
        else:
            a, b = (int(n) for n in re.findall(r"-?\d+", question)[:2])
            call = types.FunctionCall(id="adk-call-1", name="multiply", args={"a": a, "b": b})
            part = types.Part(function_call=call)
        yield LlmResponse(
            content=types.Content(role="model", parts=[part]),
            usage_metadata=usage,
            model_version=MODEL,
        )


def build_runner() -> Any:
    agent = _agents.LlmAgent(
        name="calculator_agent",
        model=ScriptedLlm(model=MODEL),  # type: ignore[call-arg]
        instruction="Use the tools.",
        tools=[multiply, add],
    )
    return _runners.Runner(
        app_name="calc",
        agent=agent,
        session_service=_sessions.InMemorySessionService(),
        auto_create_session=True,
    )


def user_message(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def final_text(events: list[Any]) -> str:
    texts = [
        p.text
        for e in events
        if e.content is not None and not getattr(e, "partial", False)
        for p in e.content.parts or []
        if p.text
    ]
    return str(texts[-1])
