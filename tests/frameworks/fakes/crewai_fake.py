"""A faithful fake of CrewAI's event bus (``crewai`` 1.x) and the runtime that drives it.

Same module and class names as the SDK for what rastir and the tests touch:
``crewai.events.crewai_event_bus`` (``on(event_type)``, ``emit``, ``flush``) and the
crew, task, agent, flow, LLM and tool-usage events with the SDK's fields;
``crewai.Agent``, ``Task``, ``Crew`` (``kickoff``, ``kickoff_async``, ``copy``),
``crewai.tools.tool`` and ``crewai.llms.base_llm`` (``BaseLLM`` with its ``_emit_*``
helpers, ``llm_call_context``). Checked against the real SDK, 1.15.30, by running the
same tests with it installed (docs/decisions.md, AUD-25).

The bus behaves like the SDK's: ``emit`` stamps ``parent_event_id`` from a ContextVar
scope stack and pairs each ending event with its ``started_event_id``; synchronous
handlers run on a 10-thread pool, each with a copy of the emitting context (stream
chunk events run inline); ``flush`` waits for pending handlers. The agent loop is
CrewAI's ReAct text protocol with the SDK's prompts: the system prompt's format
instructions (which contain the literal ``Observation: the result of the action``),
the task as a user turn, each action recorded as an assistant turn with its
``Observation:`` appended, then the post-tool reasoning prompt. It runs inside the
``AgentExecutor`` flow scope CrewAI 1.x opens, and one agent refuses to run twice at
once, as the SDK's executor does. A raising tool is run three times (``ToolUsage``'s
attempts), each attempt a ``ToolUsageStartedEvent`` and a ``ToolUsageErrorEvent``, and
the SDK's error text is handed back to the model as the observation. The started event
carries the model's raw ``Action Input`` string; the ending events the parsed
arguments.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import types
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
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
FlowFailedEvent = _event("FlowFailedEvent", "flow_failed")
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
    "flow_failed",
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


def get_current_parent_id() -> str | None:
    """``crewai.events.event_context``: the innermost open scope."""
    stack = _scopes.get()
    return stack[-1] if stack else None


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
        self.description = f"Tool Name: {name}\nTool Description: {func.__doc__ or ''}"

    def run(self, **kwargs: Any) -> Any:
        return self.func(**kwargs)


def tool(name: str) -> Callable[[Callable[..., Any]], BaseTool]:
    def decorator(func: Callable[..., Any]) -> BaseTool:
        return BaseTool(name, func)

    return decorator


_current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "_current_call_id", default=None
)


@contextmanager
def llm_call_context() -> Iterator[str]:
    """The scope of one model call: its events share the ``call_id``."""
    call_id = str(uuid.uuid4())
    token = _current_call_id.set(call_id)
    try:
        yield call_id
    finally:
        _current_call_id.reset(token)


def get_current_call_id() -> str:
    call_id = _current_call_id.get()
    if call_id is None:
        logging.warning("LLM event emitted outside call context - generating fallback call_id")
        return str(uuid.uuid4())
    return call_id


class BaseLLM:
    """The SDK's base for custom models: ``call`` is theirs, the event helpers are not."""

    def __init__(self, *, model: str, stream: bool | None = None, **params: Any) -> None:
        if not model:
            raise ValueError("Model name is required and cannot be empty")
        self.model = model
        self.stream = stream
        self.additional_params = params

    def call(
        self,
        messages: str | list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        raise NotImplementedError

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        logging.getLogger("crewai.llms.base_llm").warning(
            "Using an approximate input token count for model %r", self.model
        )
        text = messages if isinstance(messages, str) else json.dumps(messages, default=str)
        return (len(text) + 3) // 4

    def _emit_call_started_event(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        **params: Any,
    ) -> None:
        crewai_event_bus.emit(
            self,
            LLMCallStartedEvent(
                messages=messages,
                tools=tools,
                callbacks=callbacks,
                available_functions=available_functions,
                model=self.model,
                call_id=get_current_call_id(),
                from_task=from_task,
                from_agent=from_agent,
                stream=params.get("stream", self.stream),
            ),
        )

    def _emit_stream_chunk_event(
        self,
        chunk: str,
        from_task: Any = None,
        from_agent: Any = None,
        tool_call: Any = None,
        call_type: str | None = None,
        response_id: str | None = None,
    ) -> None:
        crewai_event_bus.emit(
            self,
            LLMStreamChunkEvent(
                chunk=chunk,
                tool_call=tool_call,
                call_type=call_type,
                response_id=response_id,
                call_id=get_current_call_id(),
            ),
        )

    def _emit_call_completed_event(
        self,
        response: Any,
        call_type: str,
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
                messages=messages,
                response=response,
                call_type=call_type,
                model=self.model,
                call_id=get_current_call_id(),
                usage=usage,
                finish_reason=finish_reason,
                response_id=response_id,
            ),
        )

    def _emit_call_failed_event(
        self, error: str, from_task: Any = None, from_agent: Any = None
    ) -> None:
        crewai_event_bus.emit(
            self, LLMCallFailedEvent(error=error, model=self.model, call_id=get_current_call_id())
        )


# -- crewai: Agent, Task, Crew ------------------------------------------------------------
# The SDK's prompt slices (crewai/translations/en.json) the loop below uses.
_TOOLS_PROMPT = (
    "\nYou ONLY have access to the following tools, and should NEVER make up tools that "
    "are not listed here:\n\n{tools}\n\nIMPORTANT: Use the following format in your "
    "response:\n\n```\nThought: you should always think about what to do\nAction: the "
    "action to take, only one name of [{tool_names}], just the name, exactly as it's "
    "written.\nAction Input: the input to the action, just a simple JSON object, enclosed "
    'in curly braces, using " to wrap keys and values.\nObservation: the result of the '
    "action\n```\n\nOnce all necessary information is gathered, return the following "
    "format:\n\n```\nThought: I now know the final answer\nFinal Answer: the final answer "
    "to the original input question\n```"
)
_TASK_PROMPT = (
    "\nCurrent Task: {input}\n\nThis is the expected criteria for your final answer: "
    "{expected_output}\nyou MUST return the actual complete content as the final answer, "
    "not a summary.\n\nBegin! This is VERY important to you, use the tools available and "
    "give your best Final Answer, your job depends on it!\n\nThought:"
)
_POST_TOOL = (
    "Analyze the tool result. If requirements are met, provide the Final Answer. "
    "Otherwise, call the next tool. Deliver only the answer without meta-commentary."
)
_TOOL_ERROR = (
    "I encountered an error while trying to use the tool. This was the error: {error}.\n"
    " Tool {tool} accepts these inputs: {tool_inputs}"
)
_FORMAT = (
    "Decide if you need a tool or can provide the final answer. Use one at a time.\nTo use "
    "a tool, use:\nThought: [reasoning]\nAction: [name from {tool_names}]\nAction Input: "
    "[JSON object]\n\nTo provide the final answer, use:\nThought: [reasoning]\nFinal "
    "Answer: [complete response]"
)
_ACTION = re.compile(r"Action:\s*(?P<tool>.+?)\s*\nAction Input:\s*(?P<args>\{.*\})", re.S)
_TOOL_ATTEMPTS = 3  # ToolUsage._max_parsing_attempts: a raising tool is run three times
_MAX_REPEATED_TOOL_CALLS = 5


class ToolExecutionFailedError(Exception):
    """The SDK's stop for a run that makes no progress; it ends the crew's run."""


class Agent:
    def __init__(
        self, role: str, goal: str, backstory: str, llm: BaseLLM, tools: list[BaseTool]
    ) -> None:
        self.role = role
        self.goal = goal
        self.backstory = backstory
        self.llm = llm
        self.tools = {t.name: t for t in tools}
        # The SDK keeps one executor per agent and refuses to run it twice at once.
        self._executing = False
        self._execution_lock = Lock()

    def copy(self) -> Agent:
        return Agent(self.role, self.goal, self.backstory, self.llm, list(self.tools.values()))

    def execute_task(self, task: Task) -> str:
        with self._execution_lock:
            if self._executing:
                raise RuntimeError(
                    "Executor is already running. "
                    "Cannot invoke the same executor instance concurrently."
                )
            self._executing = True
        try:
            # CrewAI 1.x runs the agent loop as a flow named "AgentExecutor".
            crewai_event_bus.emit(self, FlowStartedEvent(flow_name="AgentExecutor"))
            try:
                output = self._loop(task)
            except Exception as exc:
                crewai_event_bus.emit(self, FlowFailedEvent(flow_name="AgentExecutor", error=exc))
                raise
            crewai_event_bus.emit(self, FlowFinishedEvent(flow_name="AgentExecutor"))
            return output
        finally:
            self._executing = False

    def _messages(self, task: Task) -> list[dict[str, Any]]:
        names = ", ".join(self.tools)
        tools = "\n".join(t.description for t in self.tools.values())
        system = (
            f"You are {self.role}. {self.backstory}\nYour personal goal is: {self.goal}"
            + _TOOLS_PROMPT.format(tools=tools, tool_names=names)
        )
        user = _TASK_PROMPT.format(input=task.description, expected_output=task.expected_output)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _loop(self, task: Task) -> str:
        messages = self._messages(task)
        repeated: dict[str, int] = {}
        while True:
            text = str(self.llm.call(list(messages), from_task=task, from_agent=self))
            if "Final Answer:" in text:
                messages.append({"role": "assistant", "content": text})
                return text.split("Final Answer:", 1)[1].strip()
            match = _ACTION.search(text)
            if match is None:
                messages.append({"role": "assistant", "content": text})
                return text
            observation = self._use_tool(match["tool"], match["args"])
            # As the SDK's check_repeated_tool_call: the same call with the same result,
            # five times, stops the run.
            key = json.dumps([match["tool"], json.loads(match["args"]), observation])
            repeated[key] = repeated.get(key, 0) + 1
            if repeated[key] >= _MAX_REPEATED_TOOL_CALLS:
                raise ToolExecutionFailedError(
                    f"Tool '{match['tool']}' failed during '{task.name or task.description}': "
                    f"Agent '{self.role}' called '{match['tool']}' with the same arguments "
                    f"{_MAX_REPEATED_TOOL_CALLS} times and got the same result each time. "
                    "Stopped because it is not making progress."
                )
            messages.append({"role": "assistant", "content": f"{text}\nObservation: {observation}"})
            messages.append({"role": "user", "content": _POST_TOOL})

    def _use_tool(self, name: str, raw_args: str) -> str:
        # The started event carries the model's raw "Action Input"; the ending events
        # the parsed arguments the tool was called with.
        args = json.loads(raw_args)
        tool = self.tools[name]
        error: Exception | None = None
        for attempt in range(1, _TOOL_ATTEMPTS + 1):
            fields = {"tool_name": name, "agent_role": self.role, "run_attempts": attempt}
            started_at = datetime.now()
            crewai_event_bus.emit(self, ToolUsageStartedEvent(**fields, tool_args=raw_args))
            try:
                output = tool.run(**args)
            except Exception as exc:
                crewai_event_bus.emit(
                    self, ToolUsageErrorEvent(**fields, tool_args=args, error=exc)
                )
                error = exc
                continue
            crewai_event_bus.emit(
                self,
                ToolUsageFinishedEvent(
                    **fields,
                    tool_args=args,
                    started_at=started_at,
                    finished_at=datetime.now(),
                    from_cache=False,
                    output=output,
                ),
            )
            return str(output)
        message = _TOOL_ERROR.format(error=error, tool=name, tool_inputs=tool.description)
        return f"\n{message}.\nMoving on then. {_FORMAT.format(tool_names=', '.join(self.tools))}"


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

    def copy(self) -> Crew:
        """A crew with copies of the agents and tasks (what ``kickoff_for_each`` runs)."""
        agents = {id(a): a.copy() for a in self.agents}
        tasks = [
            Task(t.description, t.expected_output, agents.get(id(t.agent), t.agent), t.name)
            for t in self.tasks
        ]
        return Crew(list(agents.values()), tasks, self.name)

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
            except ToolExecutionFailedError:
                # A "passthrough" error: the SDK emits no AgentExecutionErrorEvent, so
                # the task's failure closes the agent's scope and the crew's failure
                # the task's (the bus warns of the pairing mismatch).
                raise
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
        "crewai.tools.tool_failure": {"ToolExecutionFailedError": ToolExecutionFailedError},
        "crewai.llms": {},
        "crewai.llms.base_llm": {
            "BaseLLM": BaseLLM,
            "llm_call_context": llm_call_context,
            "get_current_call_id": get_current_call_id,
        },
        "crewai.events.event_context": {"get_current_parent_id": get_current_parent_id},
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
