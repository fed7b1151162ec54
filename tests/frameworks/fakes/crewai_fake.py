"""A faithful fake of CrewAI's event bus (``crewai`` 1.x) and the runtime that drives it.

Same module and class names as the SDK for what rastir and the tests touch:
``crewai.events.crewai_event_bus`` (``on(event_type)``, ``emit``, ``flush``) and the
crew, task, agent, LLM and tool-usage events with the SDK's fields; ``crewai.Agent``,
``Task``, ``Crew`` (``kickoff``, ``kickoff_async``), ``crewai.tools.tool`` and
``crewai.llms.base_llm.BaseLLM`` with its ``_emit_call_*`` helpers.

The bus behaves like the SDK's: ``emit`` stamps ``parent_event_id`` from a ContextVar
scope stack and pairs each ending event with its ``started_event_id``; synchronous
handlers run on a 10-thread pool, each with a copy of the emitting context (stream
chunk events run inline); ``flush`` waits for pending handlers. The agent loop is
CrewAI's ReAct text protocol (``Action:`` / ``Action Input:`` / ``Final Answer:``) inside
the ``AgentExecutor`` flow scope CrewAI 1.x opens for it;
a raising tool is reported with ``ToolUsageErrorEvent`` and its error handed back to
the model as the observation.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import types
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from threading import Lock
from typing import Any


# -- crewai.events -------------------------------------------------------------------------
class BaseEvent:
    type: str = "event"

    def __init__(self, **fields: Any) -> None:
        self.timestamp = datetime.now(timezone.utc)
        self.event_id = str(uuid.uuid4())
        self.parent_event_id: str | None = None
        self.started_event_id: str | None = None
        self.emission_sequence: int | None = None
        for key, value in fields.items():
            setattr(self, key, value)


def _event(name: str, kind: str, **defaults: Any) -> type[BaseEvent]:
    return type(name, (BaseEvent,), {"type": kind, **defaults})


CrewKickoffStartedEvent = _event("CrewKickoffStartedEvent", "crew_kickoff_started")
CrewKickoffCompletedEvent = _event("CrewKickoffCompletedEvent", "crew_kickoff_completed")
CrewKickoffFailedEvent = _event("CrewKickoffFailedEvent", "crew_kickoff_failed")
TaskStartedEvent = _event("TaskStartedEvent", "task_started")
TaskCompletedEvent = _event("TaskCompletedEvent", "task_completed")
TaskFailedEvent = _event("TaskFailedEvent", "task_failed")
AgentExecutionStartedEvent = _event("AgentExecutionStartedEvent", "agent_execution_started")
AgentExecutionCompletedEvent = _event("AgentExecutionCompletedEvent", "agent_execution_completed")
AgentExecutionErrorEvent = _event("AgentExecutionErrorEvent", "agent_execution_error")
LLMCallStartedEvent = _event("LLMCallStartedEvent", "llm_call_started")
LLMCallCompletedEvent = _event("LLMCallCompletedEvent", "llm_call_completed")
LLMCallFailedEvent = _event("LLMCallFailedEvent", "llm_call_failed")
LLMStreamChunkEvent = _event("LLMStreamChunkEvent", "llm_stream_chunk")
FlowStartedEvent = _event("FlowStartedEvent", "flow_started")
FlowFinishedEvent = _event("FlowFinishedEvent", "flow_finished")
ToolUsageStartedEvent = _event("ToolUsageStartedEvent", "tool_usage_started")
ToolUsageFinishedEvent = _event("ToolUsageFinishedEvent", "tool_usage_finished")
ToolUsageErrorEvent = _event("ToolUsageErrorEvent", "tool_usage_error", from_cache=False)

_STARTING = {
    "flow_started",
    "crew_kickoff_started",
    "task_started",
    "agent_execution_started",
    "llm_call_started",
    "tool_usage_started",
}
_ENDING = {
    "flow_finished",
    "crew_kickoff_completed",
    "crew_kickoff_failed",
    "task_completed",
    "task_failed",
    "agent_execution_completed",
    "agent_execution_error",
    "llm_call_completed",
    "llm_call_failed",
    "tool_usage_finished",
    "tool_usage_error",
}
_scopes: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "crewai_event_id_stack", default=()
)


class CrewAIEventsBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[Any, Any], Any]]] = {}
        self._executor = ThreadPoolExecutor(max_workers=10, thread_name_prefix="CrewAISync")
        self._pending: set[Future[None]] = set()
        self._lock = Lock()
        self._sequence = 0

    def on(self, event_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers.setdefault(event_type, []).append(handler)
            return handler

        return decorator

    def _prepare_event(self, event: BaseEvent) -> None:
        with self._lock:
            self._sequence += 1
            event.emission_sequence = self._sequence
        stack = _scopes.get()
        if event.type in _ENDING:
            event.parent_event_id = stack[-2] if len(stack) > 1 else None
            if stack:
                event.started_event_id = stack[-1]
                _scopes.set(stack[:-1])
        else:
            event.parent_event_id = stack[-1] if stack else None
            if event.type in _STARTING:
                _scopes.set((*stack, event.event_id))

    def _call_handlers(self, source: Any, event: BaseEvent, handlers: list[Any]) -> None:
        for handler in handlers:
            try:
                handler(source, event)
            except Exception as exc:  # the SDK prints handler errors and goes on
                print(f"[CrewAIEventsBus] Sync handler error in {handler.__name__}: {exc}")

    def emit(self, source: Any, event: BaseEvent) -> Future[None] | None:
        self._prepare_event(event)
        handlers = list(self._handlers.get(type(event), ()))
        if not handlers:
            return None
        if isinstance(event, LLMStreamChunkEvent):
            self._call_handlers(source, event, handlers)
            return None
        ctx = contextvars.copy_context()
        future = self._executor.submit(ctx.run, self._call_handlers, source, event, handlers)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self, timeout: float | None = 30.0) -> bool:
        with self._lock:
            pending = list(self._pending)
        return not wait(pending, timeout=timeout).not_done


crewai_event_bus = CrewAIEventsBus()


# -- crewai.tools, crewai.llms.base_llm ------------------------------------------------------
class BaseTool:
    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        self.name = name
        self.func = func

    def run(self, **kwargs: Any) -> Any:
        return self.func(**kwargs)


def tool(name: str) -> Callable[[Callable[..., Any]], BaseTool]:
    def decorator(func: Callable[..., Any]) -> BaseTool:
        return BaseTool(name, func)

    return decorator


class BaseLLM:
    def __init__(self, model: str, stream: bool = False) -> None:
        self.model = model
        self.stream = stream

    def call(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        raise NotImplementedError

    def _emit_call_started_event(
        self, messages: Any, from_task: Any = None, from_agent: Any = None, **kw: Any
    ) -> None:
        crewai_event_bus.emit(
            self,
            LLMCallStartedEvent(
                messages=messages,
                model=self.model,
                call_id=str(uuid.uuid4()),
                from_task=from_task,
                from_agent=from_agent,
                stream=self.stream,
            ),
        )

    def _emit_stream_chunk_event(self, chunk: str, **kw: Any) -> None:
        crewai_event_bus.emit(self, LLMStreamChunkEvent(chunk=chunk, model=self.model))

    def _emit_call_completed_event(
        self,
        response: Any,
        call_type: str = "llm_call",
        from_task: Any = None,
        from_agent: Any = None,
        messages: Any = None,
        usage: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        response_id: str | None = None,
    ) -> None:
        crewai_event_bus.emit(
            self,
            LLMCallCompletedEvent(
                response=response,
                call_type=call_type,
                model=self.model,
                usage=usage,
                finish_reason=finish_reason,
                response_id=response_id,
            ),
        )

    def _emit_call_failed_event(self, error: str, **kw: Any) -> None:
        crewai_event_bus.emit(self, LLMCallFailedEvent(error=error, model=self.model))


# -- crewai: Agent, Task, Crew ------------------------------------------------------------
_ACTION = re.compile(r"Action:\s*(?P<tool>.+?)\s*\nAction Input:\s*(?P<args>\{.*\})", re.S)


class Agent:
    def __init__(
        self, role: str, goal: str, backstory: str, llm: BaseLLM, tools: list[BaseTool]
    ) -> None:
        self.role = role
        self.goal = goal
        self.backstory = backstory
        self.llm = llm
        self.tools = {t.name: t for t in tools}

    def execute_task(self, task: Task) -> str:
        # CrewAI 1.x runs the agent loop as a flow named "AgentExecutor".
        crewai_event_bus.emit(self, FlowStartedEvent(flow_name="AgentExecutor"))
        try:
            return self._loop(task)
        finally:
            crewai_event_bus.emit(self, FlowFinishedEvent(flow_name="AgentExecutor"))

    def _loop(self, task: Task) -> str:
        messages = [{"role": "user", "content": task.description}]
        while True:
            text = self.llm.call(messages, from_task=task, from_agent=self)
            messages.append({"role": "assistant", "content": text})
            if "Final Answer:" in text:
                return text.split("Final Answer:", 1)[1].strip()
            match = _ACTION.search(text)
            if match is None:
                return text
            name, args = match["tool"], json.loads(match["args"])
            observation = self._use_tool(task, name, args)
            messages.append({"role": "user", "content": f"Observation: {observation}"})

    def _use_tool(self, task: Task, name: str, args: dict[str, Any]) -> str:
        fields = {"tool_name": name, "tool_args": args, "agent_role": self.role}
        started_at = datetime.now(timezone.utc)
        crewai_event_bus.emit(self, ToolUsageStartedEvent(**fields))
        try:
            output = self.tools[name].run(**args)
        except Exception as exc:
            crewai_event_bus.emit(self, ToolUsageErrorEvent(**fields, error=exc))
            return f"Error: {exc}"
        crewai_event_bus.emit(
            self,
            ToolUsageFinishedEvent(
                **fields,
                started_at=started_at,
                finished_at=datetime.now(timezone.utc),
                output=output,
            ),
        )
        return str(output)


class Task:
    def __init__(
        self, description: str, expected_output: str, agent: Agent, name: str | None = None
    ) -> None:
        self.description = description
        self.expected_output = expected_output
        self.agent = agent
        self.name = name


class CrewOutput:
    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __str__(self) -> str:
        return self.raw


class Crew:
    def __init__(self, agents: list[Agent], tasks: list[Task], name: str = "crew") -> None:
        self.agents = agents
        self.tasks = tasks
        self.name = name

    def kickoff(self, inputs: dict[str, Any] | None = None) -> CrewOutput:
        crewai_event_bus.emit(
            self, CrewKickoffStartedEvent(crew_name=self.name, crew=self, inputs=inputs)
        )
        output = ""
        try:
            for task in self.tasks:
                description = task.description.format(**(inputs or {}))
                task = Task(description, task.expected_output, task.agent, task.name)
                output = self._run_task(task)
        except Exception as exc:
            crewai_event_bus.emit(self, CrewKickoffFailedEvent(crew_name=self.name, error=str(exc)))
            raise
        crewai_event_bus.flush()
        crewai_event_bus.emit(
            self, CrewKickoffCompletedEvent(crew_name=self.name, output=output, total_tokens=0)
        )
        return CrewOutput(output)

    def _run_task(self, task: Task) -> str:
        crewai_event_bus.emit(self, TaskStartedEvent(context=None, task=task))
        agent = task.agent
        try:
            crewai_event_bus.emit(
                agent, AgentExecutionStartedEvent(agent=agent, task=task, tools=[], task_prompt="")
            )
            try:
                output = agent.execute_task(task)
            except Exception as exc:
                crewai_event_bus.emit(
                    agent, AgentExecutionErrorEvent(agent=agent, task=task, error=str(exc))
                )
                raise
            crewai_event_bus.emit(
                agent, AgentExecutionCompletedEvent(agent=agent, task=task, output=output)
            )
        except Exception as exc:
            crewai_event_bus.emit(self, TaskFailedEvent(task=task, error=str(exc)))
            raise
        crewai_event_bus.emit(self, TaskCompletedEvent(task=task, output=output))
        return output

    async def kickoff_async(self, inputs: dict[str, Any] | None = None) -> CrewOutput:
        # As the SDK: the synchronous kickoff on a worker thread (context copied).
        return await asyncio.to_thread(self.kickoff, inputs)


def modules() -> dict[str, types.ModuleType]:
    """The fake's modules, by the SDK's names."""
    layout: dict[str, dict[str, Any]] = {
        "crewai": {"Agent": Agent, "Task": Task, "Crew": Crew},
        "crewai.tools": {"tool": tool, "BaseTool": BaseTool},
        "crewai.llms": {},
        "crewai.llms.base_llm": {"BaseLLM": BaseLLM},
        "crewai.events": {
            name: value
            for name, value in globals().items()
            if name.endswith("Event") or name == "crewai_event_bus"
        },
    }
    made: dict[str, types.ModuleType] = {}
    for name, members in layout.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules resolve
        for attr, value in members.items():
            setattr(module, attr, value)
        made[name] = module
    # The classes report the SDK's modules, which @framework_agent detects.
    Crew.__module__ = "crewai.crew"
    Agent.__module__ = "crewai.agent"
    return made
