"""LlamaIndex: one decorator on the function that runs the agent.

    python examples/frameworks/llamaindex_calculator.py   # needs llama-index-llms-openai

Workflow steps, model calls and tool calls become spans under ``calculator``.
"""

from __future__ import annotations

import asyncio

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool

import rastir


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_agent(llm: FunctionCallingLLM) -> FunctionAgent:
    return FunctionAgent(tools=[FunctionTool.from_defaults(multiply)], llm=llm)


@rastir.llamaindex_agent(agent_name="calculator")
async def ask(agent: FunctionAgent, question: str) -> str:
    return str(await agent.run(question))


if __name__ == "__main__":
    from llama_index.llms.openai import OpenAI

    rastir.configure(service="calculator", push_url="http://127.0.0.1:8080")
    print(asyncio.run(ask(build_agent(OpenAI(model="gpt-4o-mini")), "multiply 6 and 7")))
    rastir.shutdown()
