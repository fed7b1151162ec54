"""Every example under ``examples/frameworks`` runs, with the scripted models of these
tests in place of a provider's, and gives the tree ``docs/frameworks.md`` describes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rastir.testing import CapturedSpans
from tests.frameworks import NEEDS_ASYNC_CONTEXT
from tests.frameworks.adk_agent import MODEL as ADK_MODEL
from tests.frameworks.adk_agent import ScriptedLlm
from tests.frameworks.crew_agent import MODEL as CREW_MODEL
from tests.frameworks.crew_agent import ScriptedLLM
from tests.frameworks.li_agent import MeteredMockLLM
from tests.frameworks.react_graph import ScriptedChatModel
from tests.frameworks.strands_agent import ScriptedModel
from tests.frameworks.trees import react_tree, shape

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "frameworks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"rastir_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def kinds_under(spans: CapturedSpans, root_name: str) -> set[str]:
    root = spans.one(root_name, kind="agent")
    return {s.kind for s in spans if s.trace_id == root.trace_id and s is not root}


def test_langgraph_example(rastir_spans: CapturedSpans) -> None:
    example = load("langgraph_calculator")
    graph = example.build_graph(ScriptedChatModel())
    assert example.ask(graph, "add 2 and 3, then multiply by 4") == "The answer is 20"
    root = rastir_spans.one("calculator", kind="agent")
    assert shape(rastir_spans, root) == react_tree("calculator")


@pytest.mark.anyio
@NEEDS_ASYNC_CONTEXT
async def test_langgraph_streaming_example(rastir_spans: CapturedSpans) -> None:
    example = load("langgraph_calculator")
    graph = example.build_graph(ScriptedChatModel())
    text = "".join([c async for c in example.ask_streaming(graph, "add 2 and 3, times 4")])
    assert text == "The answer is 20"
    root = rastir_spans.one("calculator", kind="agent")
    assert shape(rastir_spans, root) == react_tree("calculator")
    assert all("rastir.ttft_ms" in s.attributes for s in rastir_spans.find(kind="llm"))


def test_framework_agent_example(rastir_spans: CapturedSpans) -> None:
    example = load("framework_agent")
    graph = load("langgraph_calculator").build_graph(ScriptedChatModel())
    example.run(graph, "add 2 and 3, then multiply by 4")
    root = rastir_spans.one("react_agent", kind="agent")
    assert shape(rastir_spans, root) == react_tree("react_agent")


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")
async def test_llamaindex_example(rastir_spans: CapturedSpans) -> None:
    example = load("llamaindex_calculator")
    agent = example.build_agent(MeteredMockLLM())
    assert await example.ask(agent, "multiply 6 and 7") == "The answer is 42"
    assert kinds_under(rastir_spans, "calculator") == {"trace", "llm", "tool"}
    assert rastir_spans.one("multiply", kind="tool").status == "ok"


def test_strands_example(rastir_spans: CapturedSpans) -> None:
    example = load("strands_calculator")
    assert example.ask(example.build_agent(ScriptedModel()), "multiply 6 and 7") == (
        "The answer is 42"
    )
    assert [s.kind for s in rastir_spans] == ["llm", "tool", "llm", "agent"]


@pytest.mark.anyio
async def test_adk_example(rastir_spans: CapturedSpans) -> None:
    example = load("adk_calculator")
    runner: Any = example.build_runner(ScriptedLlm(model=ADK_MODEL))  # type: ignore[call-arg]
    assert await example.ask(runner, "multiply 6 and 7") == "The answer is 42"
    assert kinds_under(rastir_spans, "calculator") == {"trace", "llm", "tool"}
    assert len(rastir_spans.find(kind="llm")) == 2


def test_crewai_example(rastir_spans: CapturedSpans) -> None:
    example = load("crewai_calculator")
    crew = example.build_crew(ScriptedLLM(model=CREW_MODEL))  # type: ignore[call-arg]
    assert example.ask(crew, "multiply 6 and 7") == "The answer is 42"
    assert kinds_under(rastir_spans, "calculator") == {"trace", "llm", "tool"}
    assert len(rastir_spans.find(kind="llm")) == 2
