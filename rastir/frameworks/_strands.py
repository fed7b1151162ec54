"""Strands Agents: a hook provider on each agent's hook registry.

Strands' extension point is the agent's ``HookRegistry`` (``agent.hooks``), with typed
events before and after every model call and tool call. Registries belong to an agent
and have no per-call form, so the provider is added once to each agent the decorated
call receives (never removed, never swapped) and does nothing outside a decorated call:
its callbacks look the call up in the ContextVar. Strands runs a synchronous
``agent(...)`` on a worker thread with a copy of the caller's context, and its tools as
tasks of the invocation, so the ContextVar reaches every hook.

* model calls → ``llm`` spans: model and provider from the agent's model, tokens from
  the usage Strands attaches to the response message (through the adapters);
* tool calls → ``tool`` spans, current while the tool runs (an agent used as a tool
  nests under it).

Agents used as tools through Strands' own API (``tools=[specialist]`` or
``specialist.as_tool()``) are hooked when the agent that holds them is about to call
them: the tool object names its agent. An agent called from inside a plain ``@tool``
function cannot be seen from any hook; pass it to the decorated function as well.

Strands' hooks do not see streamed chunks, so no time to first token is recorded.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import Any

from rastir.adapters import apply_response, detect_provider_from_module
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    active_call,
    capture_enabled,
    iter_objects,
    truncate,
)

__all__ = ["RastirHooks", "activate"]

# Imported by name: the SDK ships no type information for its optional users to rely on,
# and this module is only imported when a Strands agent is in use.
_hooks = importlib.import_module("strands.hooks")

_hooked: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked_lock = threading.Lock()


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Add the hook provider (once) to every Strands agent among the arguments."""
    for obj in iter_objects(args, kwargs):
        _hook(obj)
    return []


def _hook(agent: Any) -> None:
    """Add the hook provider to a Strands agent's registry, once per agent."""
    registry = getattr(agent, "hooks", None)
    if isinstance(registry, _hooks.HookRegistry) and agent not in _hooked:
        with _hooked_lock:
            if agent not in _hooked:
                registry.add_hook(RastirHooks())
                _hooked.add(agent)


def _model_info(agent: Any) -> tuple[str | None, str | None]:
    model = getattr(agent, "model", None)
    if model is None:
        return None, None
    try:
        config = model.get_config()
    except Exception:
        config = None
    model_id = None
    if isinstance(config, dict):
        value = config.get("model_id") or config.get("model")
        if isinstance(value, str) and value:
            model_id = value
    return model_id, detect_provider_from_module(type(model).__module__)


class RastirHooks:
    """Model and tool spans for the decorated call the hooks run in.

    A ``strands.hooks.HookProvider`` (a protocol: ``register_hooks`` is all it takes).
    """

    def register_hooks(self, registry: Any, **kwargs: Any) -> None:
        registry.add_callback(_hooks.BeforeModelCallEvent, self.before_model)
        registry.add_callback(_hooks.AfterModelCallEvent, self.after_model)
        registry.add_callback(_hooks.BeforeToolCallEvent, self.before_tool)
        registry.add_callback(_hooks.AfterToolCallEvent, self.after_tool)

    @staticmethod
    def before_model(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        model, provider = _model_info(event.agent)
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        if model:
            attrs["gen_ai.request.model"] = model
        if provider:
            attrs["gen_ai.provider.name"] = provider
        name = f"chat {model}" if model else "chat"
        call.open(("model", id(event.agent)), name, "llm", call.parent_for(None), attrs)

    @staticmethod
    def after_model(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        key = ("model", id(event.agent))
        span = call.span_of(key)
        response = event.stop_response
        if span is not None and response is not None:
            message = response.message
            metadata = message.get("metadata") if isinstance(message, dict) else None
            usage = metadata.get("usage") if isinstance(metadata, dict) else None
            apply_response(
                span,
                {
                    "model": span.attributes.get("gen_ai.request.model"),
                    "usage": usage,
                    "stop_reason": response.stop_reason,
                },
            )
        call.close(key, event.exception)

    @staticmethod
    def before_tool(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        # An agent used as a tool (``_AgentAsTool``, what ``tools=[agent]`` and
        # ``agent.as_tool()`` make) has its own hook registry: hook it before it runs.
        inner = getattr(event.selected_tool, "agent", None)
        if inner is not None and inner is not event.agent:
            _hook(inner)
        use = event.tool_use
        name = str(use.get("name") or "tool")
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        tool_use_id = use.get("toolUseId")
        if tool_use_id:
            attrs["gen_ai.tool.call.id"] = str(tool_use_id)
        if capture_enabled():
            attrs["gen_ai.tool.call.arguments"] = truncate(use.get("input"))
        # Keyed by agent too: an agent-as-tool's own tool calls run while the outer
        # agent's tool call is open, and scripted or replayed ids can repeat.
        key = ("tool", id(event.agent), tool_use_id)
        call.open(key, name, "tool", call.parent_for(None), attrs, current=True)

    @staticmethod
    def after_tool(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        key = ("tool", id(event.agent), event.tool_use.get("toolUseId"))
        if event.exception is not None:
            call.close(key, event.exception)
            return
        # A tool result with status "error" is a failure reported without raising.
        failed = isinstance(event.result, dict) and event.result.get("status") == "error"
        call.close(key, category="tool_error" if failed else None, exc_type="ToolResult")
