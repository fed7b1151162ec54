"""A small agent, traced in-process, printed as a tree. No network, no API keys.

    python examples/quickstart.py

The fake model returns the same shape as an OpenAI chat completion, so ``@llm``
reads its model and token counts the way it would from the real SDK.
"""

from __future__ import annotations

import asyncio
from typing import Any

import rastir
from rastir.testing import capture_spans


@rastir.llm(provider="openai")
async def chat(messages: list[dict[str, str]], model: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    last = messages[-1]["content"]
    return {
        "id": "chatcmpl-demo",
        "model": f"{model}-2024-08-06",
        "choices": [{"finish_reason": "stop", "message": {"content": f"echo: {last}"}}],
        "usage": {"prompt_tokens": 9 * len(messages), "completion_tokens": 4},
    }


@rastir.retrieval
async def search_docs(query: str) -> list[str]:
    await asyncio.sleep(0.005)
    return [f"doc about {query}", "faq"]


@rastir.tool(tool_name="weather")
async def weather(city: str) -> str:
    await asyncio.sleep(0.005)
    if city == "Atlantis":
        raise LookupError(f"no station in {city}")
    return f"sunny in {city}"


@rastir.agent(agent_name="trip_planner")
async def plan(city: str) -> str:
    docs = await search_docs(city)
    forecasts = await asyncio.gather(weather(city), weather("Atlantis"), return_exceptions=True)
    reply = await chat(
        [{"role": "user", "content": f"{city}: {docs[0]}; {forecasts[0]}"}], model="gpt-4o"
    )
    return str(reply["choices"][0]["message"]["content"])


def main() -> None:
    with capture_spans() as spans:
        answer = asyncio.run(plan("Lisbon"))
    print(f"answer: {answer}\n")
    print(spans.tree())
    llm_span = spans.one(kind="llm")
    print(
        "\nllm span:",
        {k: v for k, v in llm_span.attributes.items() if k.startswith("gen_ai.")},
    )


if __name__ == "__main__":
    main()
