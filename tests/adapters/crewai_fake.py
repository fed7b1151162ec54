"""A faithful stand-in for the few ``crewai`` classes the CrewAI adapter reads.

Why a fake: ``crewai`` 1.x cannot be installed next to this project. It requires
``openai<3`` and ``mcp<2`` while rastir needs ``mcp>=2`` and tests against
``openai`` 3; its download is 137 wheels / 275 MB (chromadb, lancedb, tokenizers...).
Measured with ``pip download crewai`` on the CI-class machine (35 s).

The classes below have the real names, the real module paths (``__module__``) and the
fields the adapter reads, with the same types, taken from crewai 1.15.30:
``crewai/crews/crew_output.py``, ``crewai/tasks/task_output.py``,
``crewai/types/usage_metrics.py``, ``crewai/types/streaming.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field


class UsageMetrics(BaseModel):
    total_tokens: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    successful_requests: int = 0


class TaskOutput(BaseModel):
    description: str
    name: str | None = None
    expected_output: str | None = None
    summary: str | None = None
    raw: str = ""
    pydantic: BaseModel | None = None
    json_dict: dict[str, Any] | None = None
    agent: str


class CrewOutput(BaseModel):
    raw: str = ""
    pydantic: BaseModel | None = None
    json_dict: dict[str, Any] | None = None
    tasks_output: list[TaskOutput] = Field(default_factory=list)
    token_usage: UsageMetrics = Field(default_factory=UsageMetrics)


class LLM:
    """crewai.llm.LLM keeps the litellm-style model string and its provider."""

    def __init__(self, model: str, api_key: str | None = None) -> None:
        self.model = model
        self.api_key = api_key
        self.provider = model.partition("/")[0] if "/" in model else None


class Agent:
    def __init__(self, role: str, llm: LLM) -> None:
        self.role = role
        self.llm = llm


class Crew:
    def __init__(self, agents: list[Agent], result: CrewOutput) -> None:
        self.agents = agents
        self._result = result

    def kickoff(self) -> CrewOutput:
        return self._result

    def kickoff_streaming(self, pieces: list[str]) -> CrewStreamingOutput:
        chunks = [StreamChunk(content=p, agent_role=self.agents[0].role) for p in pieces]
        return CrewStreamingOutput(iter(chunks), self._result)


class StreamChunk(BaseModel):
    content: str
    task_index: int = 0
    task_name: str = ""
    agent_role: str = ""


class CrewStreamingOutput:
    """Iterates chunks; ``result`` is the CrewOutput once the stream is consumed."""

    def __init__(self, chunks: Iterator[StreamChunk], result: CrewOutput) -> None:
        self._chunks = chunks
        self._final = result
        self._completed = False

    def __iter__(self) -> Iterator[StreamChunk]:
        yield from self._chunks
        self._completed = True

    @property
    def is_completed(self) -> bool:
        return self._completed

    @property
    def result(self) -> CrewOutput:
        if not self._completed:
            raise RuntimeError("stream not complete")
        return self._final


for _cls, _module in (
    (UsageMetrics, "crewai.types.usage_metrics"),
    (TaskOutput, "crewai.tasks.task_output"),
    (CrewOutput, "crewai.crews.crew_output"),
    (LLM, "crewai.llm"),
    (Agent, "crewai.agent.core"),
    (Crew, "crewai.crew"),
    (StreamChunk, "crewai.types.streaming"),
    (CrewStreamingOutput, "crewai.types.streaming"),
):
    _cls.__module__ = _module
