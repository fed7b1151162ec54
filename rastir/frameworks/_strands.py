"""Strands Agents: a hook provider on each agent's hook registry.

Strands' extension point is the agent's ``HookRegistry`` (``agent.hooks``), with typed
events around every invocation, model call and tool call. Registries belong to an agent
and have no per-call form, so the provider is added once to each agent rastir meets
(never removed, never swapped) and does nothing outside a decorated call: its callbacks
look the call up in the ContextVar. Strands runs a synchronous ``agent(...)`` on a
worker thread with a copy of the caller's context, its tools as tasks of the invocation
and a synchronous tool function on a worker thread with a copy of the task's context,
so the ContextVar reaches every hook.

* model calls → ``llm`` spans: model and provider from the agent's model, tokens from
  the usage Strands attaches to the response message (through the adapters);
* tool calls → ``tool`` spans, current while the tool runs;
* an agent invoked while a tool of the call runs (a sub-agent: Strands'
  "agents as tools") → an ``agent`` span under that tool's span, named after the agent
  (or, for an agent left with Strands' default name, after the tool), with its own
  model and tool spans under it, labelled with its name.

Which agents get the provider: those among the decorated call's arguments, and, when a
traced agent is about to call a tool, the agents that tool reaches: the agent of an
agent-as-tool (``tools=[specialist]``, ``specialist.as_tool()``), or those a plain
``@tool`` function refers to (globals and closure variables it names, its default
arguments, attributes it reads from its ``self`` or from such objects, and the same in
the functions it calls by name, two levels deep). An agent the tool *creates* cannot be
seen before it runs (nothing global is patched); its creator can be decorated with
``@strands_agent`` of its own, which nests under the tool span as well.

Which agents a call records: its arguments (their spans are the call's own) and the
sub-agents invoked from its tools. An agent an earlier call gave the provider to
records nothing in a call that neither received it nor runs it from a tool, so what a
call records does not depend on the calls before it (AUD-15).

Strands' hooks do not see streamed chunks, so no time to first token is recorded.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
import sys
import threading
import types
import weakref
from collections.abc import Hashable, Iterable
from contextvars import ContextVar, Token
from typing import Any

from rastir.adapters import apply_response, detect_provider_from_module
from rastir.context import _current_agent
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    active_call,
    capture_enabled,
    iter_objects,
    truncate,
)
from rastir.spans import Span

__all__ = ["RastirHooks", "activate"]

_log = logging.getLogger("rastir")

# Imported by name: the SDK ships no type information for its optional users to rely on,
# and this module is only imported when a Strands agent is in use.
_hooks = importlib.import_module("strands.hooks")
_Agent: type = importlib.import_module("strands").Agent

# The name Strands gives an agent created without one (``strands.agent.agent``).
_DEFAULT_NAME = "Strands Agents"

_hooked: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked_lock = threading.Lock()

# The tool call running in this context: the decorated call it belongs to and its span.
# An agent invoked while it is set, by the same call, is a sub-agent.
_in_tool: ContextVar[tuple[FrameworkCall, Span] | None] = ContextVar(
    "rastir_strands_tool", default=None
)


# call.data key: ids of the agents the decorated call received (its own agents).
_OWN = "strands.own_agents"


# call.data key: ids of the multi-agent orchestrators (Graph, Swarm) the call received.
_TEAMS = "strands.own_teams"


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Add the hook provider (once) to every Strands agent among the arguments, and to
    every Graph or Swarm among them with the agents of their nodes."""
    own: set[int] = set()
    teams: set[int] = set()
    for obj in iter_objects(args, kwargs):
        if _is_team(obj):
            _hook_team(obj, _TEAM_DEPTH)
            teams.add(id(obj))
        elif _hook(obj):
            own.add(id(obj))
    call.data[_OWN] = frozenset(own)
    call.data[_TEAMS] = frozenset(teams)
    return []


def _hook(agent: Any) -> bool:
    """Add the hook provider to a Strands agent's registry, once per agent.

    Returns whether ``agent`` is one (has a hook registry)."""
    registry = getattr(agent, "hooks", None)
    if not isinstance(registry, _hooks.HookRegistry):
        return False
    if agent not in _hooked:
        with _hooked_lock:
            if agent not in _hooked:
                registry.add_hook(RastirHooks())
                _hooked.add(agent)
    return True


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


# -- sub-agents ---------------------------------------------------------------------------
def _agent_key(agent: Any) -> Hashable:
    return ("agent", id(agent))


def _placement(call: FrameworkCall, agent: Any) -> tuple[Span, dict[str, Any]] | None:
    """Where an agent's model or tool span goes, and the attributes that say whose it is;
    None for an agent the call does not trace.

    A sub-agent's spans hang under its agent span and carry its name. The call's own
    agents (its arguments) record under the span current in the call, labelled with the
    call's agent name. Any other agent is not the call's, even if an earlier call added
    the provider to it: what a call records does not depend on the calls before it.
    """
    span = call.span_of(_agent_key(agent))
    if span is not None:
        return span, {"gen_ai.agent.name": span.attributes.get("gen_ai.agent.name", span.name)}
    if id(agent) in call.data.get(_OWN, ()):
        return call.parent_for(None), {}
    return None


def _sub_agent_name(agent: Any, tool: Span) -> str:
    name = getattr(agent, "name", None)
    if isinstance(name, str) and name and name != _DEFAULT_NAME:
        return name
    # Left unnamed: named after the tool that runs it, as a decorated call is named
    # after its function.
    return tool.name


# How far the search for agents a tool function reaches goes.
_FUNCTION_DEPTH = 2  # functions called by name, below the tool's own
_OBJECT_DEPTH = 2  # attribute reads or container items, one after another
_CONTAINER_ITEMS = 64
_BUDGET = 256  # objects looked at in all


class _Reach:
    """The Strands agents a tool function can reach by name (see the module doc).

    Reads only dictionaries, cells and containers: no attribute access that could run
    user code (properties, ``__getattr__``).
    """

    __slots__ = ("budget", "found", "seen")

    def __init__(self) -> None:
        self.found: list[Any] = []
        self.seen: set[int] = set()
        self.budget = _BUDGET

    def function(self, func: Any, depth: int) -> None:
        values: list[Any] = []
        for _ in range(8):  # a few layers of binding and wrapping
            if type(func) is types.MethodType:
                values.append(func.__self__)
                func = func.__func__
            elif isinstance(func, functools.partial):
                values.extend(func.args)
                values.extend(func.keywords.values())
                func = func.func
            elif type(func) is types.FunctionType and "__wrapped__" in func.__dict__:
                func = func.__dict__["__wrapped__"]  # a decorator's wrapper: its function
            else:
                break
        if type(func) is not types.FunctionType or _library(func.__module__):
            return
        names = _names(func.__code__)
        scope = func.__globals__
        values.extend(scope[name] for name in names if name in scope)
        for cell in func.__closure__ or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:  # not assigned yet
                pass
        values.extend(func.__defaults__ or ())
        values.extend((func.__kwdefaults__ or {}).values())
        for value in values:
            self.value(value, names, depth, _OBJECT_DEPTH)

    def value(self, value: Any, names: frozenset[str], depth: int, hops: int) -> None:
        if self.budget <= 0 or id(value) in self.seen:
            return
        self.seen.add(id(value))
        self.budget -= 1
        # By type only: ``isinstance`` would fall back to a proxy's ``__class__``.
        kind = type(value)
        if issubclass(kind, _Agent):
            self.found.append(value)
        elif issubclass(kind, (staticmethod, classmethod)):
            self.value(value.__func__, names, depth, hops)
        elif issubclass(kind, _CALLABLES):
            if depth > 0:
                self.function(value, depth - 1)
        elif issubclass(kind, types.ModuleType):
            if hops > 0 and not _library(value.__name__):
                self.children(value, names, depth, hops - 1)
        elif hops > 0 and not issubclass(kind, _SCALARS):
            self.children(value, names, depth, hops - 1)

    def children(self, value: Any, names: frozenset[str], depth: int, hops: int) -> None:
        kind = type(value)
        items: Iterable[Any]
        if issubclass(kind, (list, tuple, set, frozenset)):
            items = list(itertools.islice(value, _CONTAINER_ITEMS))
        elif issubclass(kind, dict):
            items = list(itertools.islice(dict.values(value), _CONTAINER_ITEMS))
        else:
            # A module, class or instance: the attributes the code reads from it.
            try:
                attrs = object.__getattribute__(value, "__dict__")
            except AttributeError:
                return
            if not isinstance(attrs, (dict, types.MappingProxyType)):
                return
            items = [attrs[name] for name in names if name in attrs]
        for item in items:
            self.value(item, names, depth, hops)


_CALLABLES = (types.FunctionType, types.MethodType, functools.partial)
_SCALARS = (type(None), str, bytes, int, float, complex, range)


@functools.lru_cache(maxsize=256)
def _library(module: object) -> bool:
    """Whether a module name is the standard library's or Strands': no user's agent
    lives there, and their functions are not worth reading."""
    if not isinstance(module, str):
        return False
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in ("strands", "rastir")


@functools.lru_cache(maxsize=1024)
def _names(code: types.CodeType) -> frozenset[str]:
    """The global and attribute names a function's code (and code nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return frozenset(names)


def _reached_agents(tool: Any) -> list[Any]:
    """The agents a tool may invoke: an agent-as-tool's agent, or those its function
    reaches by name."""
    inner = getattr(tool, "agent", None)
    if inner is not None:
        return [inner]
    func = getattr(tool, "__wrapped__", None) or getattr(tool, "_tool_func", None)
    if func is None:
        return []
    reach = _Reach()
    reach.function(func, _FUNCTION_DEPTH)
    return reach.found


def _reset(var: ContextVar[Any], token: Token[Any], value: Any) -> None:
    """Reset a ContextVar; set in another context (a tool ended elsewhere), undo it
    where it still holds what was set."""
    try:
        var.reset(token)
    except ValueError:
        if var.get() is value:
            old = token.old_value
            var.set(None if old is Token.MISSING else old)


# -- multi-agent orchestrators (Graph, Swarm) --------------------------------------------
_TEAM_DEPTH = 4  # orchestrators nested as nodes of orchestrators
_TEAM_NODES = 256  # nodes looked at per orchestrator


def _is_team(obj: Any) -> bool:
    """Whether ``obj`` is a Strands multi-agent orchestrator (``Graph``, ``Swarm``).

    Read from ``sys.modules``: if Strands' multiagent package was never imported, no
    orchestrator exists, and looking costs nothing.
    """
    module = sys.modules.get("strands.multiagent.base")
    base = getattr(module, "MultiAgentBase", None)
    return (
        isinstance(base, type)
        and isinstance(obj, base)
        and isinstance(getattr(obj, "hooks", None), _hooks.HookRegistry)
    )


def _team_nodes(team: Any) -> dict[str, Any]:
    nodes = getattr(team, "nodes", None)
    return nodes if isinstance(nodes, dict) else {}


def _hook_team(team: Any, depth: int) -> None:
    """Add the node hooks to an orchestrator (once), and the agent hooks to the agents
    of its nodes; orchestrators that are nodes, ``depth`` levels down, the same way."""
    if team not in _hooked:
        with _hooked_lock:
            if team not in _hooked:
                team.hooks.add_hook(RastirTeamHooks())
                _hooked.add(team)
    for node in itertools.islice(list(_team_nodes(team).values()), _TEAM_NODES):
        executor = getattr(node, "executor", None)
        if _is_team(executor):
            if depth > 0:
                _hook_team(executor, depth - 1)
        elif executor is not None:
            _hook(executor)


def _node_failure(team: Any, node_id: str) -> tuple[BaseException | None, bool]:
    """Why a node ended badly, read after it ran: its exception, if one is known, and
    whether it failed at all.

    Graph runs a node in a ``try`` and sends the after-node event from its ``finally``
    (the exception is the one being handled, or kept in the node's result); Swarm
    handles the exception first and marks the whole swarm failed.
    """
    error = sys.exc_info()[1]
    if isinstance(error, Exception):
        return error, True
    state = getattr(team, "state", None)
    results = getattr(state, "results", None)
    result = results.get(node_id) if isinstance(results, dict) else None
    inner = getattr(result, "result", None)
    if isinstance(inner, Exception):
        return inner, True
    node = _team_nodes(team).get(node_id)
    statuses = (getattr(node, "execution_status", None), getattr(state, "completion_status", None))
    for status in statuses:
        if getattr(status, "name", None) == "FAILED":
            return None, True
    return None, False


class RastirTeamHooks:
    """An ``agent`` span for each node a Graph or Swarm runs inside a decorated call.

    The node's span is keyed like a sub-agent's, by the node's executor, so the model
    and tool spans of the node's agent hang under it and carry its name; a node that is
    itself an orchestrator is the parent of its own nodes' spans.
    """

    def register_hooks(self, registry: Any, **kwargs: Any) -> None:
        before = getattr(_hooks, "BeforeNodeCallEvent", None)
        after = getattr(_hooks, "AfterNodeCallEvent", None)
        if before is None or after is None:  # a Strands release without node events
            return
        registry.add_callback(before, self.before_node)
        registry.add_callback(after, self.after_node)

    @staticmethod
    def before_node(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        team = event.source
        # A nested orchestrator runs as a node of an outer one, which opened its span.
        parent = call.span_of(_agent_key(team))
        if parent is None:
            if id(team) not in call.data.get(_TEAMS, ()):
                return  # an orchestrator this call did not receive
            parent = call.parent_for(None)
        node_id = str(event.node_id)
        executor = getattr(_team_nodes(team).get(node_id), "executor", None)
        if executor is None:
            return
        name = getattr(executor, "name", None)
        if not isinstance(name, str) or not name or name == _DEFAULT_NAME or _is_team(executor):
            name = node_id
        key = _agent_key(executor)
        if call.span_of(key) is not None:  # already open (a node run twice at once)
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "rastir.framework": "strands",
            "rastir.strands.node_id": node_id,
        }
        call.open(key, name, "agent", parent, attrs, current=True)
        # What rastir records while the node runs (a decorated tool, say) is labelled
        # with the node's agent.
        call.data[("context", key)] = [(_current_agent, _current_agent.set(name), name)]

    @staticmethod
    def after_node(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        team = event.source
        node_id = str(event.node_id)
        executor = getattr(_team_nodes(team).get(node_id), "executor", None)
        key = _agent_key(executor)
        if executor is None or call.span_of(key) is None:
            return
        for var, token, value in reversed(call.data.pop(("context", key), ())):
            _reset(var, token, value)
        error, failed = _node_failure(team, node_id)
        if error is not None:
            call.close(key, error)
        else:
            call.close(key, category="unknown" if failed else None, exc_type="NodeFailed")


class RastirHooks:
    """Agent, model and tool spans for the decorated call the hooks run in.

    A ``strands.hooks.HookProvider`` (a protocol: ``register_hooks`` is all it takes).
    """

    def register_hooks(self, registry: Any, **kwargs: Any) -> None:
        registry.add_callback(_hooks.BeforeInvocationEvent, self.before_invocation)
        registry.add_callback(_hooks.AfterInvocationEvent, self.after_invocation)
        registry.add_callback(_hooks.BeforeModelCallEvent, self.before_model)
        registry.add_callback(_hooks.AfterModelCallEvent, self.after_model)
        registry.add_callback(_hooks.BeforeToolCallEvent, self.before_tool)
        registry.add_callback(_hooks.AfterToolCallEvent, self.after_tool)

    @staticmethod
    def before_invocation(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        tool = _in_tool.get()
        # Invoked by the decorated function itself (not from one of this call's
        # tools): its spans belong to the call's agent span, as before.
        if tool is None or tool[0] is not call:
            return
        key = _agent_key(event.agent)
        if call.span_of(key) is not None:  # already running as a sub-agent: one span
            return
        name = _sub_agent_name(event.agent, tool[1])
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "rastir.framework": "strands",
        }
        call.open(key, name, "agent", call.parent_for(None), attrs)

    @staticmethod
    def after_invocation(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        key = _agent_key(event.agent)
        if call.span_of(key) is None:
            return
        error: BaseException | None = None
        if getattr(event, "result", None) is None:
            # Strands sends this event from a ``finally``: a failed invocation has no
            # result, and its exception is the one being handled.
            error = sys.exc_info()[1]
        call.close(key, error)

    @staticmethod
    def before_model(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        placement = _placement(call, event.agent)
        if placement is None:
            return
        parent, attrs = placement
        model, provider = _model_info(event.agent)
        attrs["gen_ai.operation.name"] = "chat"
        if model:
            attrs["gen_ai.request.model"] = model
        if provider:
            attrs["gen_ai.provider.name"] = provider
        name = f"chat {model}" if model else "chat"
        call.open(("model", id(event.agent)), name, "llm", parent, attrs)

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
        placement = _placement(call, event.agent)
        if placement is None:
            return
        parent, attrs = placement
        # Agents the tool may invoke get the provider before it runs, so their own
        # invocation events reach the call (as sub-agents: see before_invocation).
        try:
            for agent in _reached_agents(event.selected_tool):
                if agent is not event.agent:
                    _hook(agent)
        except Exception:
            _log.debug("rastir: looking for agents in a Strands tool failed", exc_info=True)
        use = event.tool_use
        name = str(use.get("name") or "tool")
        attrs["gen_ai.operation.name"] = "execute_tool"
        attrs["gen_ai.tool.name"] = name
        tool_use_id = use.get("toolUseId")
        if tool_use_id:
            attrs["gen_ai.tool.call.id"] = str(tool_use_id)
        if capture_enabled():
            attrs["gen_ai.tool.call.arguments"] = truncate(use.get("input"))
        # Keyed by agent too: an agent-as-tool's own tool calls run while the outer
        # agent's tool call is open, and scripted or replayed ids can repeat.
        key = ("tool", id(event.agent), tool_use_id)
        span = call.open(key, name, "tool", parent, attrs, current=True)
        # While the tool runs: agents it invokes are this call's sub-agents, and in a
        # sub-agent's tool, what rastir records is labelled with the sub-agent.
        scope = (call, span)
        tokens: list[tuple[ContextVar[Any], Token[Any], Any]] = [
            (_in_tool, _in_tool.set(scope), scope)
        ]
        label = attrs.get("gen_ai.agent.name")
        if label is not None:
            tokens.append((_current_agent, _current_agent.set(label), label))
        call.data[("context", key)] = tokens

    @staticmethod
    def after_tool(event: Any) -> None:
        call = active_call("strands")
        if call is None:
            return
        key = ("tool", id(event.agent), event.tool_use.get("toolUseId"))
        for var, token, value in reversed(call.data.pop(("context", key), ())):
            _reset(var, token, value)
        if event.exception is not None:
            call.close(key, event.exception)
            return
        # A tool result with status "error" is a failure reported without raising.
        failed = isinstance(event.result, dict) and event.result.get("status") == "error"
        call.close(key, category="tool_error" if failed else None, exc_type="ToolResult")
