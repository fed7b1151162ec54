"""Google ADK: a plugin on each runner's plugin manager.

ADK's extension point for observing every agent, model and tool call of a run is a
plugin (``google.adk.plugins.BasePlugin``), held by the ``Runner``'s plugin manager.
Plugins have no per-call form, so one ``RastirPlugin`` is registered on each runner
the decorated call receives (once, never removed) and does nothing outside a decorated
call. ADK runs the plugin callbacks inside the run, whose context comes from the caller
(``Runner.run`` copies it into its worker thread), so the ContextVar reaches them.

* agents (the root agent and each sub-agent) → ``node:<agent>`` spans (kind ``trace``);
* model calls → ``llm`` spans under their agent's node: model from the request, tokens
  from the response's usage metadata (through the adapters), time to first token from
  the first partial response when the run streams;
* tool calls → ``tool`` spans, current while the tool runs (so an MCP toolset's request
  continues the trace).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from rastir.adapters import apply_request, apply_response
from rastir.adapters.crewai import split_litellm_model
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    active_call,
    capture_enabled,
    iter_objects,
    truncate,
)
from rastir.spans import Span

__all__ = ["PLUGIN_NAME", "RastirPlugin", "activate", "provider_of"]

PLUGIN_NAME = "rastir"

if TYPE_CHECKING:
    _BasePlugin = object
else:
    _BasePlugin = importlib.import_module("google.adk.plugins.base_plugin").BasePlugin

_log = logging.getLogger("rastir")
_lock = threading.Lock()
# Decorated functions already warned about receiving no Runner.
_warned: set[str] = set()


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Register the plugin (once) on every ADK runner among the arguments."""
    found = False
    others: list[str] = []
    for obj in iter_objects(args, kwargs):
        manager = getattr(obj, "plugin_manager", None)
        if manager is None or not hasattr(manager, "register_plugin"):
            if _is_adk(obj):
                others.append(type(obj).__name__)
            continue
        found = True
        with _lock:
            if manager.get_plugin(PLUGIN_NAME) is None:
                manager.register_plugin(RastirPlugin())
    if not found and call.function not in _warned:
        # Plugins live on a Runner's plugin manager; an agent alone has none, and a
        # Runner built inside the function is out of reach. The call still gets its
        # agent span, without children: say so once per function, not per call.
        _warned.add(call.function)
        _log.warning(
            "rastir: %s: no ADK Runner among the arguments%s, so no agent, model or "
            "tool spans are recorded; pass the Runner to the decorated function",
            call.function or call.agent_name,
            f" (got {', '.join(others)})" if others else "",
        )
    return []


def _is_adk(obj: Any) -> bool:
    return any(cls.__module__.startswith("google.adk.") for cls in type(obj).__mro__)


# ADK's model classes (google.adk.models), by class name, and the provider they call.
_GEMINI_CLASSES = frozenset({"Gemini", "Gemma"})
_ANTHROPIC_CLASSES = {"Claude": "gcp.vertex_ai", "AnthropicLlm": "anthropic"}


def _gemini() -> str:
    # google-genai's own switch between the Gemini API and Vertex AI.
    vertex = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
    return "gcp.vertex_ai" if vertex else "gcp.gemini"


def provider_of(model: Any, name: str | None) -> str | None:
    """``gen_ai.provider.name`` for an agent's model: from ADK's model class (Gemini,
    LiteLlm with its provider prefix, Claude), else from the model name."""
    if model is not None and not isinstance(model, str):
        for cls in type(model).__mro__:
            if not cls.__module__.startswith("google.adk.models"):
                continue
            if cls.__name__ == "LiteLlm":
                raw = getattr(model, "model", None)
                return split_litellm_model(raw)[1] if isinstance(raw, str) else None
            if cls.__name__ in _GEMINI_CLASSES:
                return _gemini()
            if cls.__name__ in _ANTHROPIC_CLASSES:
                return _ANTHROPIC_CLASSES[cls.__name__]
    if isinstance(model, str) and model:
        name = model
    if not name:
        return None
    # What ADK's LLMRegistry resolves a model name to: gemini-*, gemma-* and Vertex
    # endpoint paths go to Gemini, claude-* to Claude (on Vertex AI).
    lowered = name.lower()
    if lowered.startswith(("gemini-", "gemma-", "projects/")):
        return _gemini()
    if lowered.startswith("claude-"):
        return "gcp.vertex_ai"
    return split_litellm_model(name)[1]


def _agent_key(invocation_id: Any, agent_name: Any) -> tuple[str, Any, Any]:
    return ("agent", invocation_id, agent_name)


def _model_of_key(invocation_id: Any, agent_name: Any) -> tuple[str, Any, Any]:
    """Where before_agent_callback leaves the agent's model object for its model calls."""
    return ("model_of", invocation_id, agent_name)


class RastirPlugin(_BasePlugin):
    """Agent, model and tool spans for the decorated call the run belongs to.

    Every callback returns None: the plugin observes and never changes the run.
    """

    def __init__(self) -> None:
        super().__init__(name=PLUGIN_NAME)  # type: ignore[call-arg]

    @staticmethod
    def _node(call: FrameworkCall, context: Any) -> Span:
        key = _agent_key(getattr(context, "invocation_id", None), context.agent_name)
        return call.span_of(key) or call.parent_for(None)

    # -- agents ---------------------------------------------------------------------------
    async def before_agent_callback(self, *, agent: Any, callback_context: Any) -> None:
        call = active_call("adk")
        if call is None:
            return
        invocation = getattr(callback_context, "invocation_id", None)
        parent_agent = getattr(agent, "parent_agent", None)
        parent = None
        if parent_agent is not None:
            parent = call.span_of(_agent_key(invocation, parent_agent.name))
        key = _agent_key(invocation, agent.name)
        call.open(
            key,
            f"node:{agent.name}",
            "trace",
            parent or call.parent_for(None),
            {"adk.agent.name": agent.name},
        )
        # The model callbacks get only the agent's name: remember its model object.
        call.data[_model_of_key(invocation, agent.name)] = getattr(agent, "model", None)

    async def after_agent_callback(self, *, agent: Any, callback_context: Any) -> None:
        call = active_call("adk")
        if call is not None:
            invocation = getattr(callback_context, "invocation_id", None)
            call.close(_agent_key(invocation, agent.name))
            call.data.pop(_model_of_key(invocation, agent.name), None)

    async def on_agent_error_callback(
        self, *, agent: Any, callback_context: Any, error: Exception
    ) -> None:
        call = active_call("adk")
        if call is not None:
            invocation = getattr(callback_context, "invocation_id", None)
            call.close(_agent_key(invocation, agent.name), error)
            call.data.pop(_model_of_key(invocation, agent.name), None)

    # -- models ---------------------------------------------------------------------------
    @staticmethod
    def _model_key(context: Any) -> tuple[str, Any, Any]:
        return ("model", getattr(context, "invocation_id", None), context.agent_name)

    async def before_model_callback(self, *, callback_context: Any, llm_request: Any) -> None:
        call = active_call("adk")
        if call is None:
            return
        model = getattr(llm_request, "model", None)
        span = call.open(
            self._model_key(callback_context),
            f"generate_content {model}" if model else "generate_content",
            "llm",
            self._node(call, callback_context),
        )
        if isinstance(model, str) and model:
            apply_request(span, (), {"model": model})
        invocation = getattr(callback_context, "invocation_id", None)
        agent_model = call.data.get(_model_of_key(invocation, callback_context.agent_name))
        provider = provider_of(agent_model, model if isinstance(model, str) else None)
        if provider:
            span.attributes["gen_ai.provider.name"] = provider
        span.attributes["gen_ai.operation.name"] = "generate_content"

    async def after_model_callback(self, *, callback_context: Any, llm_response: Any) -> None:
        call = active_call("adk")
        if call is None:
            return
        key = self._model_key(callback_context)
        span = call.span_of(key)
        if span is None:
            return
        if getattr(llm_response, "partial", False):
            # A streamed chunk: the call goes on; the first one is the first token.
            if "rastir.ttft_ms" not in span.attributes:
                span.attributes["rastir.ttft_ms"] = ttft = (time.perf_counter_ns() - span._t0) / 1e6
                span.add_event("rastir.first_token", {"rastir.ttft_ms": ttft})
            return
        apply_response(span, llm_response)
        code = getattr(llm_response, "error_code", None)
        if code:
            message = getattr(llm_response, "error_message", None) or ""
            span.set_error("provider_error", str(code), str(message)[:512])
        call.close(key)

    async def on_model_error_callback(
        self, *, callback_context: Any, llm_request: Any, error: Exception
    ) -> None:
        call = active_call("adk")
        if call is not None:
            call.close(self._model_key(callback_context), error)

    # -- tools ----------------------------------------------------------------------------
    async def before_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any
    ) -> None:
        call = active_call("adk")
        if call is None:
            return
        name = str(getattr(tool, "name", None) or type(tool).__name__)
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        call_id = getattr(tool_context, "function_call_id", None)
        if call_id:
            attrs["gen_ai.tool.call.id"] = str(call_id)
        if capture_enabled():
            attrs["gen_ai.tool.call.arguments"] = truncate(tool_args)
        parent = self._node(call, tool_context)
        call.open(("tool", call_id, name), name, "tool", parent, attrs, current=True)

    async def after_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any, result: Any
    ) -> None:
        call = active_call("adk")
        if call is not None:
            name = str(getattr(tool, "name", None) or type(tool).__name__)
            call.close(("tool", getattr(tool_context, "function_call_id", None), name))

    async def on_tool_error_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any, error: Exception
    ) -> None:
        call = active_call("adk")
        if call is not None:
            name = str(getattr(tool, "name", None) or type(tool).__name__)
            call.close(("tool", getattr(tool_context, "function_call_id", None), name), error)
