"""``@framework_agent``: the framework is found from the call's arguments.

The same decorator works for a LangGraph graph, a LlamaIndex agent, a CrewAI crew, an
ADK runner or a Strands agent passed to the function; with none, it is a plain agent.
"""

from __future__ import annotations

from typing import Any

import rastir


@rastir.framework_agent(agent_name="react_agent")
def run(graph: Any, query: str) -> Any:
    return graph.invoke({"messages": [("user", query)]})


if __name__ == "__main__":
    from langchain_openai import ChatOpenAI
    from langgraph_calculator import build_graph

    rastir.configure(service="react", push_url="http://127.0.0.1:8080")
    print(run(build_graph(ChatOpenAI(model="gpt-4o-mini")), "add 2 and 3, then multiply by 4"))
    rastir.shutdown()
