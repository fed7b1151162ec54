"""A faithful fake of Strands Agents' hook API (``strands-agents`` 1.x).

Same module and class names as the SDK for what rastir and the tests touch:
``strands.Agent`` (``__call__`` on a worker thread with a copy of the caller's context,
``invoke_async``), ``strands.tool`` (a tool object wrapping its function, as
``functools.update_wrapper`` makes it), ``strands.models.Model``, and ``strands.hooks``'
``HookProvider``, ``HookRegistry`` (``add_callback``, ``add_hook``,
``invoke_callbacks_async``, After* events in reverse order) and the model and tool
events with the SDK's fields. The agent loop follows the SDK's order: before-invocation,
before-model, stream, usage attached to the message's ``metadata``, after-model; tool
uses run as concurrent tasks between before-tool and after-tool events (an async tool
function in that task, a sync one on a worker thread, ``asyncio.to_thread``); a raising
tool becomes an error ``toolResult`` handed back to the model; after-invocation comes
last, from a ``finally`` (without a result when the invocation failed). Agents as tools
follow ``strands.agent._agent_as_tool``: ``Agent.as_tool()`` (and an ``Agent`` in
``tools``, auto-wrapped by the tool registry) gives a tool whose ``agent`` property is
the wrapped agent, whose input is ``{"input": prompt}``, which resets the agent's
conversation before each call unless ``preserve_context``, and which runs the agent
inside the tool call (same task, between the outer agent's before-tool and after-tool
events).
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import copy
import functools
import inspect
import json
import threading
import types
from collections.abc import AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]


# -- strands.hooks ---------------------------------------------------------------------
@dataclass
class BaseHookEvent:
    @property
    def should_reverse_callbacks(self) -> bool:
        return False


@dataclass
class HookEvent(BaseHookEvent):
    agent: Any


@dataclass
class BeforeInvocationEvent(HookEvent):
    invocation_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class AfterInvocationEvent(HookEvent):
    invocation_state: dict[str, Any] = field(default_factory=dict)
    result: Any = None

    @property
    def should_reverse_callbacks(self) -> bool:
        return True


@dataclass
class BeforeModelCallEvent(HookEvent):
    invocation_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class AfterModelCallEvent(HookEvent):
    @dataclass
    class ModelStopResponse:
        message: Message
        stop_reason: str

    invocation_state: dict[str, Any] = field(default_factory=dict)
    stop_response: ModelStopResponse | None = None
    exception: Exception | None = None
    retry: bool = False

    @property
    def should_reverse_callbacks(self) -> bool:
        return True


@dataclass
class BeforeToolCallEvent(HookEvent):
    selected_tool: Any
    tool_use: dict[str, Any]
    invocation_state: dict[str, Any]
    cancel_tool: bool | str = False


@dataclass
class AfterToolCallEvent(HookEvent):
    selected_tool: Any
    tool_use: dict[str, Any]
    invocation_state: dict[str, Any]
    result: dict[str, Any]
    exception: Exception | None = None

    @property
    def should_reverse_callbacks(self) -> bool:
        return True


@runtime_checkable
class HookProvider(Protocol):
    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None: ...


class HookRegistry:
    def __init__(self) -> None:
        self._registered_callbacks: dict[type, list[Callable[[Any], Any]]] = {}

    def add_callback(self, event_type: type, callback: Callable[[Any], Any]) -> None:
        self._registered_callbacks.setdefault(event_type, []).append(callback)

    def add_hook(self, hook: HookProvider) -> None:
        hook.register_hooks(self)

    async def invoke_callbacks_async(self, event: Any) -> tuple[Any, list[Any]]:
        callbacks = list(self._registered_callbacks.get(type(event), []))
        if event.should_reverse_callbacks:
            callbacks.reverse()
        for callback in callbacks:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        return event, []


# -- strands.models ----------------------------------------------------------------------
class Model(abc.ABC):
    @abc.abstractmethod
    def update_config(self, **model_config: Any) -> None: ...

    @abc.abstractmethod
    def get_config(self) -> Any: ...

    @abc.abstractmethod
    def structured_output(self, *args: Any, **kwargs: Any) -> Any: ...

    @abc.abstractmethod
    def stream(
        self, messages: Any, tool_specs: Any = None, system_prompt: Any = None, **kwargs: Any
    ) -> AsyncIterable[dict[str, Any]]: ...


# -- strands.tool and strands.Agent ------------------------------------------------------
class DecoratedFunctionTool:
    def __init__(self, func: Callable[..., Any]) -> None:
        self._tool_func = func
        self.tool_name = func.__name__
        # As the SDK does: the tool object reads as the function (``__wrapped__`` is it).
        functools.update_wrapper(wrapper=self, wrapped=func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tool_func(*args, **kwargs)


def tool(func: Callable[..., Any]) -> DecoratedFunctionTool:
    return DecoratedFunctionTool(func)


class _AgentAsTool:
    """``strands.agent._agent_as_tool._AgentAsTool``: an agent exposed as a tool."""

    def __init__(self, agent: Agent, *, name: str, preserve_context: bool = False) -> None:
        self._agent = agent
        self._tool_name = name
        self._preserve_context = preserve_context
        self._initial_messages = copy.deepcopy(agent.messages)
        self._lock = threading.Lock()

    @property
    def agent(self) -> Agent:
        return self._agent

    @property
    def tool_name(self) -> str:
        return self._tool_name

    async def run(self, tool_use: dict[str, Any]) -> dict[str, Any]:
        """What the SDK's ``stream`` ends with: the tool result of one agent call."""
        tool_input = tool_use["input"]
        prompt = tool_input.get("input", "") if isinstance(tool_input, dict) else str(tool_input)
        if not self._lock.acquire(blocking=False):
            text = f"Agent '{self._tool_name}' is already processing a request"
            return {
                "toolUseId": tool_use["toolUseId"],
                "status": "error",
                "content": [{"text": text}],
            }
        try:
            if not self._preserve_context:
                self._agent.messages = copy.deepcopy(self._initial_messages)
            result = await self._agent.invoke_async(prompt)
        finally:
            self._lock.release()
        return {
            "toolUseId": tool_use["toolUseId"],
            "status": "success",
            "content": [{"text": str(result)}],
        }


class AgentResult:
    def __init__(self, stop_reason: str, message: Message) -> None:
        self.stop_reason = stop_reason
        self.message = message

    def __str__(self) -> str:
        return "".join(b.get("text", "") for b in self.message["content"]) + "\n"


class Agent:
    def __init__(
        self,
        model: Model,
        tools: list[DecoratedFunctionTool | _AgentAsTool | Agent] | None = None,
        hooks: list[HookProvider] | None = None,
        callback_handler: Any = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.name = name or "Strands Agents"
        self.messages: list[Message] = []
        # The tool registry wraps an Agent given as a tool with ``as_tool()``.
        wrapped = [t.as_tool() if isinstance(t, Agent) else t for t in tools or []]
        self.tool_registry = {t.tool_name: t for t in wrapped}
        self.hooks = HookRegistry()
        for hook in hooks or []:
            self.hooks.add_hook(hook)

    def as_tool(self, *, name: str | None = None, preserve_context: bool = False) -> _AgentAsTool:
        return _AgentAsTool(self, name=name or self.name, preserve_context=preserve_context)

    def __call__(self, prompt: str) -> AgentResult:
        # strands._async.run_async: a worker thread running a copy of the context.
        with ThreadPoolExecutor() as executor:
            context = contextvars.copy_context()
            return executor.submit(context.run, asyncio.run, self.invoke_async(prompt)).result()

    async def invoke_async(self, prompt: str) -> AgentResult:
        self.messages.append({"role": "user", "content": [{"text": prompt}]})
        state: dict[str, Any] = {}
        await self.hooks.invoke_callbacks_async(BeforeInvocationEvent(self, state))
        # As the SDK's ``_run_loop``: the after-invocation event comes from a ``finally``,
        # with no result when the invocation failed.
        result: AgentResult | None = None
        try:
            result = await self._loop(state)
            return result
        finally:
            await self.hooks.invoke_callbacks_async(AfterInvocationEvent(self, state, result))

    async def _loop(self, state: dict[str, Any]) -> AgentResult:
        while True:
            await self.hooks.invoke_callbacks_async(BeforeModelCallEvent(self, state))
            try:
                message, stop_reason = await self._stream_model()
            except Exception as exc:
                await self.hooks.invoke_callbacks_async(
                    AfterModelCallEvent(self, state, exception=exc)
                )
                raise
            response = AfterModelCallEvent.ModelStopResponse(message, stop_reason)
            await self.hooks.invoke_callbacks_async(AfterModelCallEvent(self, state, response))
            self.messages.append(message)
            if stop_reason != "tool_use":
                break
            uses = [b["toolUse"] for b in message["content"] if "toolUse" in b]
            tasks = [asyncio.create_task(self._run_tool(use, state)) for use in uses]
            results = await asyncio.gather(*tasks)
            self.messages.append({"role": "user", "content": [{"toolResult": r} for r in results]})
        return AgentResult(stop_reason, message)

    async def _stream_model(self) -> tuple[Message, str]:
        content: list[dict[str, Any]] = []
        text = ""
        use: dict[str, Any] | None = None
        stop_reason = "end_turn"
        usage: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        async for event in self.model.stream(self.messages, None, None):
            if "contentBlockStart" in event:
                start = event["contentBlockStart"]["start"]
                use = {**start["toolUse"], "input": ""} if "toolUse" in start else None
            elif "contentBlockDelta" in event:
                delta = event["contentBlockDelta"]["delta"]
                if "text" in delta:
                    text += delta["text"]
                elif use is not None:
                    use["input"] += delta["toolUse"]["input"]
            elif "contentBlockStop" in event:
                if use is not None:
                    use["input"] = json.loads(use["input"] or "{}")
                    content.append({"toolUse": use})
                    use = None
                elif text:
                    content.append({"text": text})
                    text = ""
            elif "messageStop" in event:
                stop_reason = event["messageStop"]["stopReason"]
            elif "metadata" in event:
                usage = event["metadata"]["usage"]
                metrics = event["metadata"]["metrics"]
        message: Message = {"role": "assistant", "content": content}
        message["metadata"] = {"usage": usage, "metrics": metrics}
        return message, stop_reason

    async def _run_tool(self, use: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        selected = self.tool_registry.get(use["name"])
        await self.hooks.invoke_callbacks_async(BeforeToolCallEvent(self, selected, use, state))
        exception: Exception | None = None
        try:
            if selected is None:
                raise KeyError(use["name"])
            if isinstance(selected, _AgentAsTool):
                # The sub-agent runs in the tool call's own task and context.
                result = await selected.run(use)
            else:
                # As the SDK's DecoratedFunctionTool: a coroutine function is awaited in
                # the tool's task, a plain function runs on a worker thread.
                if inspect.iscoroutinefunction(selected._tool_func):
                    value = await selected(**use["input"])
                else:
                    value = await asyncio.to_thread(selected, **use["input"])
                result = {"toolUseId": use["toolUseId"], "status": "success"}
                result["content"] = [{"text": str(value)}]
        except Exception as exc:
            exception = exc
            result = {"toolUseId": use["toolUseId"], "status": "error"}
            result["content"] = [{"text": f"Error: {type(exc).__name__} - {exc}"}]
        await self.hooks.invoke_callbacks_async(
            AfterToolCallEvent(self, selected, use, state, result, exception)
        )
        return result


def modules() -> dict[str, types.ModuleType]:
    """The fake's modules, by the SDK's names."""
    root = types.ModuleType("strands")
    hooks = types.ModuleType("strands.hooks")
    models = types.ModuleType("strands.models")
    for name in (
        "BaseHookEvent",
        "HookEvent",
        "BeforeInvocationEvent",
        "AfterInvocationEvent",
        "BeforeModelCallEvent",
        "AfterModelCallEvent",
        "BeforeToolCallEvent",
        "AfterToolCallEvent",
        "HookProvider",
        "HookRegistry",
    ):
        setattr(hooks, name, globals()[name])
    models.Model = Model  # type: ignore[attr-defined]
    root.Agent = Agent  # type: ignore[attr-defined]
    root.tool = tool  # type: ignore[attr-defined]
    root.hooks = hooks  # type: ignore[attr-defined]
    root.models = models  # type: ignore[attr-defined]
    for module in (root, hooks, models):
        module.__path__ = []  # a package, so submodules resolve
    # The classes report the SDK's module, which @framework_agent detects.
    Agent.__module__ = "strands.agent.agent"
    return {"strands": root, "strands.hooks": hooks, "strands.models": models}
