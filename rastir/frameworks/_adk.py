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
import threading
import time
from typing import TYPE_CHECKING, Any

from rastir.adapters import apply_request, apply_response
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    active_call,
    capture_enabled,
    iter_objects,
    truncate,
)
from rastir.spans import Span

__all__ = ["PLUGIN_NAME", "RastirPlugin", "activate"]

PLUGIN_NAME = "rastir"

if TYPE_CHECKING:
    _BasePlugin = object
else:
    _BasePlugin = importlib.import_module("google.adk.plugins.base_plugin").BasePlugin

_lock = threading.Lock()


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Register the plugin (once) on every ADK runner among the arguments."""
    for obj in iter_objects(args, kwargs):
        manager = getattr(obj, "plugin_manager", None)
        if manager is None or not hasattr(manager, "register_plugin"):
            continue
        with _lock:
            if manager.get_plugin(PLUGIN_NAME) is None:
                manager.register_plugin(RastirPlugin())
    return []


def _agent_key(invocation_id: Any, agent_name: Any) -> tuple[str, Any, Any]:
    return ("agent", invocation_id, agent_name)


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
        call = active_call()
        if call is None:
            return
        invocation = getattr(callback_context, "invocation_id", None)
        parent_agent = getattr(agent, "parent_agent", None)
        parent = None
        if parent_agent is not None:
            parent = call.span_of(_agent_key(invocation, parent_agent.name))
        call.open(
            _agent_key(invocation, agent.name),
            f"node:{agent.name}",
            "trace",
            parent or call.parent_for(None),
            {"adk.agent.name": agent.name},
        )

    async def after_agent_callback(self, *, agent: Any, callback_context: Any) -> None:
        call = active_call()
        if call is not None:
            invocation = getattr(callback_context, "invocation_id", None)
            call.close(_agent_key(invocation, agent.name))

    async def on_agent_error_callback(
        self, *, agent: Any, callback_context: Any, error: Exception
    ) -> None:
        call = active_call()
        if call is not None:
            invocation = getattr(callback_context, "invocation_id", None)
            call.close(_agent_key(invocation, agent.name), error)

    # -- models ---------------------------------------------------------------------------
    @staticmethod
    def _model_key(context: Any) -> tuple[str, Any, Any]:
        return ("model", getattr(context, "invocation_id", None), context.agent_name)

    async def before_model_callback(self, *, callback_context: Any, llm_request: Any) -> None:
        call = active_call()
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
        span.attributes["gen_ai.operation.name"] = "generate_content"

    async def after_model_callback(self, *, callback_context: Any, llm_response: Any) -> None:
        call = active_call()
        if call is None:
            return
        key = self._model_key(callback_context)
        span = call.span_of(key)
        if span is None:
            return
        if getattr(llm_response, "partial", False):
            # A streamed chunk: the call goes on; the first one is the first token.
            if "rastir.ttft_ms" not in span.attributes:
                span.attributes["rastir.ttft_ms"] = (time.perf_counter_ns() - span._t0) / 1e6
                span.add_event("gen_ai.first_token")
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
        call = active_call()
        if call is not None:
            call.close(self._model_key(callback_context), error)

    # -- tools ----------------------------------------------------------------------------
    async def before_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any
    ) -> None:
        call = active_call()
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
        call = active_call()
        if call is not None:
            name = str(getattr(tool, "name", None) or type(tool).__name__)
            call.close(("tool", getattr(tool_context, "function_call_id", None), name))

    async def on_tool_error_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any, error: Exception
    ) -> None:
        call = active_call()
        if call is not None:
            name = str(getattr(tool, "name", None) or type(tool).__name__)
            call.close(("tool", getattr(tool_context, "function_call_id", None), name), error)
