"""A faithful fake of Google ADK's plugin API (``google-adk`` 2.x).

Same module and class names as the SDK for what rastir and the tests touch:
``google.adk.runners.Runner`` (``run_async``; ``run`` on a worker thread with a copy of
the caller's context), ``google.adk.agents.LlmAgent`` and ``RunConfig``,
``google.adk.sessions.InMemorySessionService``, ``google.adk.models.base_llm.BaseLlm``
(and the ``Gemini`` and ``LiteLlm`` model classes, by name and module, without a client),
``google.adk.models.llm_response.LlmResponse`` and ``google.adk.plugins.base_plugin.
BasePlugin`` with the SDK's keyword-only callbacks. The run follows the SDK's order:
before-agent; per model call before-model, one after-model per (partial) response;
per function call before-tool, then after-tool or on-tool-error (the error then
propagates, as ADK 2 does); after-agent or on-agent-error. Contents use the real
``google.genai.types``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from google.genai import types as genai_types


# -- google.adk.plugins.base_plugin ------------------------------------------------------
class BasePlugin:
    def __init__(self, name: str) -> None:
        self.name = name

    async def before_run_callback(self, *, invocation_context: Any) -> Any:
        return None

    async def after_run_callback(self, *, invocation_context: Any) -> None:
        return None

    async def before_agent_callback(self, *, agent: Any, callback_context: Any) -> Any:
        return None

    async def after_agent_callback(self, *, agent: Any, callback_context: Any) -> Any:
        return None

    async def on_agent_error_callback(
        self, *, agent: Any, callback_context: Any, error: Exception
    ) -> None:
        return None

    async def before_model_callback(self, *, callback_context: Any, llm_request: Any) -> Any:
        return None

    async def after_model_callback(self, *, callback_context: Any, llm_response: Any) -> Any:
        return None

    async def on_model_error_callback(
        self, *, callback_context: Any, llm_request: Any, error: Exception
    ) -> Any:
        return None

    async def before_tool_callback(self, *, tool: Any, tool_args: Any, tool_context: Any) -> Any:
        return None

    async def after_tool_callback(
        self, *, tool: Any, tool_args: Any, tool_context: Any, result: Any
    ) -> Any:
        return None

    async def on_tool_error_callback(
        self, *, tool: Any, tool_args: Any, tool_context: Any, error: Exception
    ) -> Any:
        return None


class PluginManager:
    def __init__(self, plugins: list[BasePlugin] | None = None) -> None:
        self.plugins: list[BasePlugin] = []
        for plugin in plugins or []:
            self.register_plugin(plugin)

    def register_plugin(self, plugin: BasePlugin) -> None:
        if self.get_plugin(plugin.name) is not None:
            raise ValueError(f"Plugin with name '{plugin.name}' already registered.")
        self.plugins.append(plugin)

    def get_plugin(self, plugin_name: str) -> BasePlugin | None:
        return next((p for p in self.plugins if p.name == plugin_name), None)

    async def _run(self, callback: str, **kwargs: Any) -> Any:
        for plugin in self.plugins:
            result = await getattr(plugin, callback)(**kwargs)
            if result is not None:
                return result  # the first plugin to answer short-circuits, as in ADK
        return None


# -- google.adk.models -------------------------------------------------------------------
class LlmResponse:
    def __init__(
        self,
        content: genai_types.Content | None = None,
        partial: bool | None = None,
        usage_metadata: genai_types.GenerateContentResponseUsageMetadata | None = None,
        model_version: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.content = content
        self.partial = partial
        self.usage_metadata = usage_metadata
        self.model_version = model_version
        self.error_code = error_code
        self.error_message = error_message


class LlmRequest:
    def __init__(self, model: str, contents: list[genai_types.Content]) -> None:
        self.model = model
        self.contents = contents


class BaseLlm:
    def __init__(self, model: str) -> None:
        self.model = model

    def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncIterator[LlmResponse]:
        raise NotImplementedError


class Gemini(BaseLlm):
    """``google.adk.models.google_llm.Gemini`` (what a model name like gemini-* gives)."""

    def __init__(self, model: str = "gemini-2.5-flash") -> None:
        super().__init__(model)


class LiteLlm(BaseLlm):
    """``google.adk.models.lite_llm.LiteLlm``: ``model`` is LiteLLM's provider/model."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model)


# -- google.adk.agents, sessions, runners --------------------------------------------------
class RunConfig:
    def __init__(self, streaming_mode: Any = None) -> None:
        self.streaming_mode = getattr(streaming_mode, "value", streaming_mode)


class FunctionTool:
    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.name = func.__name__

    async def run_async(self, *, args: dict[str, Any], tool_context: Any) -> Any:
        if inspect.iscoroutinefunction(self.func):
            return await self.func(**args)
        # Sync tools run on a worker thread with a copy of the context.
        return await asyncio.to_thread(self.func, **args)


class CallbackContext:
    def __init__(self, invocation_id: str, agent_name: str) -> None:
        self.invocation_id = invocation_id
        self.agent_name = agent_name


class ToolContext(CallbackContext):
    def __init__(self, invocation_id: str, agent_name: str, function_call_id: str | None) -> None:
        super().__init__(invocation_id, agent_name)
        self.function_call_id = function_call_id


class Event:
    def __init__(
        self, author: str, content: genai_types.Content | None, partial: bool | None = None
    ) -> None:
        self.author = author
        self.content = content
        self.partial = partial


class Session:
    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.contents: list[genai_types.Content] = []


class InMemorySessionService:
    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], Session] = {}

    def get_or_create(self, user_id: str, session_id: str) -> Session:
        return self.sessions.setdefault((user_id, session_id), Session(session_id))


class LlmAgent:
    def __init__(
        self,
        name: str,
        model: BaseLlm,
        instruction: str = "",
        tools: list[Callable[..., Any]] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.instruction = instruction
        self.tools = {t.name: t for t in (FunctionTool(f) for f in tools or [])}
        self.parent_agent: LlmAgent | None = None

    async def run_async(
        self, plugins: PluginManager, session: Session, invocation_id: str, run_config: RunConfig
    ) -> AsyncIterator[Event]:
        context = CallbackContext(invocation_id, self.name)
        await plugins._run("before_agent_callback", agent=self, callback_context=context)
        try:
            async for event in self._loop(plugins, session, invocation_id, run_config, context):
                yield event
        except Exception as exc:
            await plugins._run(
                "on_agent_error_callback", agent=self, callback_context=context, error=exc
            )
            raise
        await plugins._run("after_agent_callback", agent=self, callback_context=context)

    async def _loop(
        self,
        plugins: PluginManager,
        session: Session,
        invocation_id: str,
        run_config: RunConfig,
        context: CallbackContext,
    ) -> AsyncIterator[Event]:
        stream = run_config.streaming_mode == "sse"
        while True:
            request = LlmRequest(self.model.model, list(session.contents))
            await plugins._run(
                "before_model_callback", callback_context=context, llm_request=request
            )
            final: LlmResponse | None = None
            try:
                async for response in self.model.generate_content_async(request, stream):
                    await plugins._run(
                        "after_model_callback", callback_context=context, llm_response=response
                    )
                    yield Event(self.name, response.content, response.partial)
                    if not response.partial:
                        final = response
            except Exception as exc:
                await plugins._run(
                    "on_model_error_callback",
                    callback_context=context,
                    llm_request=request,
                    error=exc,
                )
                raise
            if final is None or final.content is None:
                return
            session.contents.append(final.content)
            calls = [p.function_call for p in final.content.parts or [] if p.function_call]
            if not calls:
                return
            responses = await asyncio.gather(
                *(self._call_tool(plugins, invocation_id, c) for c in calls)
            )
            content = genai_types.Content(role="user", parts=list(responses))
            session.contents.append(content)
            yield Event(self.name, content)

    async def _call_tool(
        self, plugins: PluginManager, invocation_id: str, call: genai_types.FunctionCall
    ) -> genai_types.Part:
        tool = self.tools[call.name or ""]
        args = dict(call.args or {})
        context = ToolContext(invocation_id, self.name, call.id)
        await plugins._run("before_tool_callback", tool=tool, tool_args=args, tool_context=context)
        try:
            value = await tool.run_async(args=args, tool_context=context)
        except Exception as exc:
            await plugins._run(
                "on_tool_error_callback",
                tool=tool,
                tool_args=args,
                tool_context=context,
                error=exc,
            )
            raise
        result = value if isinstance(value, dict) else {"result": value}
        await plugins._run(
            "after_tool_callback", tool=tool, tool_args=args, tool_context=context, result=result
        )
        response = genai_types.FunctionResponse(id=call.id, name=call.name, response=result)
        return genai_types.Part(function_response=response)


class Runner:
    def __init__(
        self,
        *,
        app_name: str,
        agent: LlmAgent,
        session_service: InMemorySessionService,
        plugins: list[BasePlugin] | None = None,
        auto_create_session: bool = False,
    ) -> None:
        self.app_name = app_name
        self.agent = agent
        self.session_service = session_service
        self.plugin_manager = PluginManager(plugins)

    async def run_async(
        self,
        *,
        user_id: str,
        session_id: str,
        new_message: genai_types.Content,
        run_config: RunConfig | None = None,
    ) -> AsyncIterator[Event]:
        session = self.session_service.get_or_create(user_id, session_id)
        session.contents.append(new_message)
        invocation_id = f"e-{uuid.uuid4()}"
        async for event in self.agent.run_async(
            self.plugin_manager, session, invocation_id, run_config or RunConfig()
        ):
            yield event

    def run(
        self,
        *,
        user_id: str,
        session_id: str,
        new_message: genai_types.Content,
        run_config: RunConfig | None = None,
    ) -> Iterator[Event]:
        # As ADK: the async run on a thread started with a copy of the caller's context,
        # its events handed over through a queue.
        events: queue.Queue[Event | BaseException | None] = queue.Queue()

        async def drive() -> None:
            async for event in self.run_async(
                user_id=user_id,
                session_id=session_id,
                new_message=new_message,
                run_config=run_config,
            ):
                events.put(event)

        def main() -> None:
            try:
                asyncio.run(drive())
            except BaseException as exc:
                events.put(exc)
            else:
                events.put(None)

        thread = threading.Thread(target=contextvars.copy_context().run, args=(main,))
        thread.start()
        try:
            while (item := events.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            thread.join()


def modules() -> dict[str, types.ModuleType]:
    """The fake's modules, by the SDK's names."""
    layout: dict[str, dict[str, Any]] = {
        "google.adk": {},
        "google.adk.agents": {"LlmAgent": LlmAgent, "RunConfig": RunConfig},
        "google.adk.runners": {"Runner": Runner},
        "google.adk.sessions": {"InMemorySessionService": InMemorySessionService},
        "google.adk.models": {},
        "google.adk.models.base_llm": {"BaseLlm": BaseLlm},
        "google.adk.models.google_llm": {"Gemini": Gemini},
        "google.adk.models.lite_llm": {"LiteLlm": LiteLlm},
        "google.adk.models.llm_response": {"LlmResponse": LlmResponse},
        "google.adk.plugins": {"BasePlugin": BasePlugin},
        "google.adk.plugins.base_plugin": {"BasePlugin": BasePlugin},
    }
    made: dict[str, types.ModuleType] = {}
    for name, members in layout.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules resolve
        for attr, value in members.items():
            setattr(module, attr, value)
        made[name] = module
    # The classes report the SDK's modules, which @framework_agent detects.
    Runner.__module__ = "google.adk.runners"
    LlmAgent.__module__ = "google.adk.agents.llm_agent"
    BaseLlm.__module__ = "google.adk.models.base_llm"
    Gemini.__module__ = "google.adk.models.google_llm"
    LiteLlm.__module__ = "google.adk.models.lite_llm"
    return made
