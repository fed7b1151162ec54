"""CrewAI: one decorator on the function that kicks the crew off.

    python examples/frameworks/crewai_calculator.py   # needs crewai and an OpenAI key

Crew, task, agent, model and tool spans appear under ``calculator``.
"""

from __future__ import annotations

from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import tool

import rastir


@tool("multiply")
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_crew(llm: Any) -> Any:
    agent = Agent(
        role="calculator",
        goal="Compute exactly",
        backstory="Careful with numbers.",
        llm=llm,
        tools=[multiply],
    )
    task = Task(description="{question}", expected_output="The number", agent=agent, name="compute")
    return Crew(agents=[agent], tasks=[task], name="math")


@rastir.crew_kickoff(agent_name="calculator")
def ask(crew: Any, question: str) -> str:
    return str(crew.kickoff(inputs={"question": question}))


if __name__ == "__main__":
    from crewai import LLM

    rastir.configure(service="calculator", push_url="http://127.0.0.1:8080")
    print(ask(build_crew(LLM(model="gpt-4o-mini")), "multiply 6 and 7"))
    rastir.shutdown()
