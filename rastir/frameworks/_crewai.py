"""CrewAI: handlers on the CrewAI event bus.

CrewAI's extension point is its process-wide event bus (``crewai.events.
crewai_event_bus``); handlers cannot be scoped to one kickoff. One handler per event
type is registered once, on the first decorated call, and does nothing outside a
decorated call. The bus runs synchronous handlers on its own thread pool, each with a
copy of the context the event was emitted in, so the handler still finds the call in
the ContextVar.

Each event carries ids: a started event its own ``event_id`` and its enclosing scope's
``parent_event_id``, the matching completed/failed event the ``started_event_id``.
Spans are built from those ids and the events' timestamps. Pool threads may run the
handlers out of order (a quick tool's end before its start, a child before its
parent), so a span is created at the first mention of its id and sent once both its
start and its end were seen, under a lock, by whichever handler runs second. The
decorated call flushes the bus's pending handlers before it ends (as ``Crew.kickoff``
does, bounded to one second).

The bus pairs an ending event with the innermost open scope, whatever its kind. Some
errors (CrewAI 1.15.30's "passthrough" errors) skip the agent's ending event, so the
task's failure closes the agent's scope and the crew's the task's; an ending event that
closes a scope of another kind also ends the enclosing one it names as parent if that
is of its own kind. The crew's scope then stays open in the caller's context, so a
parent id that was the open scope when the decorated call began is not one of its
spans (see ``_outer_scope``).

* kickoff → ``crew <name>``, task → ``task <name>``, agent execution → ``node:<role>``,
  flow → ``flow <name>`` (CrewAI 1.x runs each agent loop as the ``AgentExecutor``
  flow), flow method → ``flow:<method>`` (kind ``trace``);
* model calls → ``llm`` spans (model, tokens through the adapters, time to first token
  from stream chunks); tool usage → ``tool`` spans.

Tool spans are not current while the tool runs (handlers run elsewhere), so a tool's
own outbound calls do not nest under them: a limitation of event-bus observation.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rastir.adapters import apply_request, apply_response
from rastir.errors import error_info
from rastir.export._pipeline import PIPELINE
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    active_call,
    capture_enabled,
    truncate,
)
from rastir.spans import Span, _clock

__all__ = ["activate"]

_events = importlib.import_module("crewai.events")
_registered = False
_register_lock = threading.Lock()
_FLUSH_TIMEOUT = 1.0


class _Node:
    """A span known by its event id; sent when both its start and end were seen."""

    __slots__ = ("end_t", "ended", "first_token_t", "scope", "span", "started")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.started = False
        self.ended = False
        self.end_t = 0
        self.first_token_t = 0
        self.scope = ""  # the starting event's type, once its handler ran


class _Nodes:
    """The call's CrewAI spans, by event id.

    Handlers for one call run concurrently on the bus's pool: every read and write of a
    node happens under ``lock``, so a span is sent exactly once, by whichever of its
    two handlers runs second.
    """

    def __init__(self, call: FrameworkCall, outer: str | None) -> None:
        self.call = call
        # The bus's innermost open scope when the call began: not one of the call's.
        self.outer = outer
        self.lock = threading.Lock()
        # Set by finish_all: a scope that starts later (a handler run after the flush
        # gave up) cannot be sent any more, and is counted as dropped.
        self.closed = False
        self.nodes: dict[str, _Node] = {}
        # Spans already sent, for children whose start is handled after their
        # parent's end (the pool may run handlers in any order), and to ignore a
        # second ending event for one scope.
        self.sent: dict[str, Span] = {}

    def get(self, event_id: str) -> _Node:
        """The node for ``event_id``, made at its first mention (hold ``lock``)."""
        node = self.nodes.get(event_id)
        if node is None:
            span = Span("crewai.scope", "trace", self.call.agent)
            span.attributes["gen_ai.agent.name"] = self.call.agent_name
            node = self.nodes[event_id] = _Node(span)
        return node

    def parent(self, event_id: str) -> Span:
        """The span of an enclosing scope, sent or not (hold ``lock``)."""
        span = self.sent.get(event_id)
        return span if span is not None else self.get(event_id).span

    def retire(self, event_id: str) -> _Node:
        """Take a finished node out of the table (hold ``lock``); then ``send`` it."""
        node = self.nodes.pop(event_id)
        self.sent[event_id] = node.span
        return node

    @staticmethod
    def send(node: _Node) -> None:
        span = node.span
        if node.first_token_t and "rastir.ttft_ms" not in span.attributes:
            span.attributes["rastir.ttft_ms"] = (node.first_token_t - span._t0) / 1e6
        span._t1 = max(node.end_t, span._t0)
        PIPELINE.on_end(span)

    def finish_all(self) -> None:
        """At the call's end: send what is still pending, marked as such."""
        with self.lock:
            self.closed = True
            pending = list(self.nodes.values())
            self.nodes.clear()
            self.sent.clear()
        for node in pending:
            span = node.span
            if not node.started:
                span.attributes["rastir.crewai.unobserved_scope"] = True
            if not node.ended:
                span.attributes["rastir.span.unfinished"] = True
                node.end_t = _now()
            span._t1 = max(node.end_t, span._t0)
            PIPELINE.on_end(span)


def _now() -> int:
    return time.perf_counter_ns()


def _t(event: Any) -> int:
    """The event's timestamp on the spans' monotonic clock."""
    stamp = getattr(event, "timestamp", None)
    if stamp is None:
        return _now()
    return int(stamp.timestamp() * 1e9) - _clock.offset


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Register the bus handlers (once); give the call its span table and final flush."""
    _register()
    nodes = _Nodes(call, _outer_scope())
    call.data["crewai"] = nodes

    def finalize() -> None:
        try:
            _events.crewai_event_bus.flush(timeout=_FLUSH_TIMEOUT)
        finally:
            nodes.finish_all()

    call.finalizers.append(finalize)
    return []


def _outer_scope() -> str | None:
    """The event scope open around the decorated call, if any.

    Events whose parent it is are the call's top-level scopes. It may be a CrewAI flow
    method the call runs in, or a scope a failed kickoff left open in this context
    (CrewAI 1.15.30 skips the agent's ending event on some errors, so the crew's
    scope stays on the stack).
    """
    try:
        context = importlib.import_module("crewai.events.event_context")
        parent = context.get_current_parent_id()
    except Exception:
        return None
    return parent if isinstance(parent, str) else None


def _nodes() -> _Nodes | None:
    call = active_call("crewai")
    if call is None:
        return None
    nodes = call.data.get("crewai")
    return nodes if isinstance(nodes, _Nodes) else None


def _start(
    event: Any,
    name: str,
    kind: str,
    attrs: dict[str, Any],
    *,
    defaults: dict[str, Any] | None = None,
    update: Callable[[Span], None] | None = None,
) -> None:
    """A starting event: name, parent and start time of its span.

    ``defaults`` are attributes the ending event may already have set more precisely.
    """
    call = active_call("crewai")
    if call is None:
        return
    nodes = call.data.get("crewai")
    if not isinstance(nodes, _Nodes):
        # The call has ended (its table is gone): the bus ran this handler after the
        # flush gave up. The span can no longer be sent; it is counted as dropped.
        PIPELINE.add_dropped(1)
        return
    parent_id = getattr(event, "parent_event_id", None)
    with nodes.lock:
        late = nodes.closed
        if late or event.event_id in nodes.sent:
            done = None
        else:
            done = _open_node(nodes, event, parent_id, name, kind, attrs, defaults, update)
    if late:
        PIPELINE.add_dropped(1)
    elif done is not None:
        nodes.send(done)


def _open_node(
    nodes: _Nodes,
    event: Any,
    parent_id: str | None,
    name: str,
    kind: str,
    attrs: dict[str, Any],
    defaults: dict[str, Any] | None,
    update: Callable[[Span], None] | None,
) -> _Node | None:
    """:func:`_start`'s work under ``nodes.lock``: the node, if it is now complete."""
    if parent_id and parent_id != nodes.outer:
        parent = nodes.parent(parent_id)
    else:
        parent = nodes.call.parent_for(None)
    node = nodes.get(event.event_id)
    span = node.span
    span.name = name
    span.kind = kind
    span.tid = parent.tid
    span.psid = parent.sid
    span._t0 = _t(event)
    span.attributes.update(attrs)
    for key, value in (defaults or {}).items():
        span.attributes.setdefault(key, value)
    if update is not None:
        update(span)
    node.scope = str(getattr(event, "type", "") or "")
    node.started = True
    return nodes.retire(event.event_id) if node.ended else None


def _end(
    event: Any,
    error: Any = None,
    attrs: dict[str, Any] | None = None,
    *,
    update: Callable[[Span], None] | None = None,
) -> None:
    """An ending event: end time, status and result attributes of the scope it closes.

    CrewAI pairs an ending event with the innermost open scope. When that scope is of
    another kind (an error that skipped its own ending event: the task's failure then
    closes the agent's scope), the scope is ended with this event and, as the bus
    names the enclosing scope ``parent_event_id``, so is that one if it is the kind
    this event ends.
    """
    nodes = _nodes()
    started = getattr(event, "started_event_id", None)
    if nodes is None or not started:
        return
    expected = _PAIRS.get(str(getattr(event, "type", "") or ""))
    done: list[_Node] = []
    with nodes.lock:
        if nodes.closed:  # sent unfinished by finish_all, or counted dropped at its start
            return
        targets = [started]
        node = nodes.nodes.get(started)
        mismatch = node is not None and node.scope and expected and node.scope != expected
        if mismatch or started in nodes.sent:
            enclosing = getattr(event, "parent_event_id", None)
            other = nodes.nodes.get(enclosing) if enclosing else None
            if other is not None and other.scope == expected and not other.ended:
                targets.append(str(enclosing))
        for event_id in targets:
            if event_id in nodes.sent:
                continue
            node = nodes.get(event_id)
            if node.ended:
                continue
            span = node.span
            if attrs:
                span.attributes.update(attrs)
            if update is not None:
                update(span)
            if error is not None:
                if isinstance(error, BaseException):
                    span.set_error(*error_info(error))
                else:
                    span.set_error("unknown", "CrewAIError", str(error)[:512])
            node.end_t = _t(event)
            node.ended = True
            if node.started:
                done.append(nodes.retire(event_id))
    for node in done:
        nodes.send(node)


# -- handlers ------------------------------------------------------------------------------
def _crew_started(source: Any, event: Any) -> None:
    name = getattr(event, "crew_name", None) or "crew"
    _start(event, f"crew {name}", "trace", {"crewai.crew.name": name})


def _crew_ended(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None))


def _task_started(source: Any, event: Any) -> None:
    task = getattr(event, "task", None)
    name = getattr(task, "name", None) or getattr(event, "task_name", None)
    if not name:
        name = str(getattr(task, "description", "") or "task")[:60]
    _start(event, f"task {name}", "trace", {"crewai.task.name": name})


def _task_ended(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None))


def _agent_started(source: Any, event: Any) -> None:
    agent = getattr(event, "agent", None)
    role = str(getattr(agent, "role", None) or getattr(event, "agent_role", None) or "agent")
    _start(event, f"node:{role}", "trace", {"crewai.agent.role": role})


def _agent_ended(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None))


def _llm_started(source: Any, event: Any) -> None:
    model = getattr(event, "model", None)
    has_model = isinstance(model, str) and bool(model)

    def request(span: Span) -> None:
        if has_model:
            apply_request(span, (), {"model": model})

    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    _start(event, f"chat {model}" if has_model else "chat", "llm", attrs, update=request)


def _llm_chunk(source: Any, event: Any) -> None:
    # A chunk is not a scope: its parent is the model call that streams it.
    nodes = _nodes()
    parent_id = getattr(event, "parent_event_id", None)
    if nodes is None or not parent_id:
        return
    with nodes.lock:
        if nodes.closed or parent_id in nodes.sent:
            return
        node = nodes.get(parent_id)
        if node.first_token_t:
            return
        node.first_token_t = _t(event)
        node.span.add_event("rastir.first_token")


def _llm_completed(source: Any, event: Any) -> None:
    response = {
        "model": getattr(event, "model", None),
        "usage": getattr(event, "usage", None),
        "finish_reason": getattr(event, "finish_reason", None),
        "id": getattr(event, "response_id", None),
    }
    _end(event, update=lambda span: apply_response(span, response))


def _llm_failed(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None) or "LLM call failed")


def _tool_arguments(event: Any) -> dict[str, Any]:
    if not capture_enabled():
        return {}
    return {"gen_ai.tool.call.arguments": truncate(getattr(event, "tool_args", None))}


def _tool_started(source: Any, event: Any) -> None:
    # The started event carries the model's raw "Action Input" text; the ending event
    # the arguments the tool was called with, which win when both are known.
    name = str(getattr(event, "tool_name", None) or "tool")
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    _start(event, name, "tool", attrs, defaults=_tool_arguments(event))


def _tool_finished(source: Any, event: Any) -> None:
    attrs = {"crewai.tool.from_cache": bool(getattr(event, "from_cache", False))}
    _end(event, None, {**attrs, **_tool_arguments(event)})


def _tool_error(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None) or "tool failed", _tool_arguments(event))


def _method_started(source: Any, event: Any) -> None:
    # Flow steps, including the ones CrewAI's own agent executor runs as a flow: they
    # are scopes that model and tool events name as their parent.
    method = str(getattr(event, "method_name", None) or "method")
    _start(event, f"flow:{method}", "trace", {"crewai.flow.method": method})


def _flow_started(source: Any, event: Any) -> None:
    flow = str(getattr(event, "flow_name", None) or "flow")
    _start(event, f"flow {flow}", "trace", {"crewai.flow.name": flow})


def _method_ended(source: Any, event: Any) -> None:
    _end(event, getattr(event, "error", None))


_HANDLERS = {
    "CrewKickoffStartedEvent": _crew_started,
    "CrewKickoffCompletedEvent": _crew_ended,
    "CrewKickoffFailedEvent": _crew_ended,
    "TaskStartedEvent": _task_started,
    "TaskCompletedEvent": _task_ended,
    "TaskFailedEvent": _task_ended,
    "AgentExecutionStartedEvent": _agent_started,
    "AgentExecutionCompletedEvent": _agent_ended,
    "AgentExecutionErrorEvent": _agent_ended,
    "LLMCallStartedEvent": _llm_started,
    "LLMStreamChunkEvent": _llm_chunk,
    "LLMCallCompletedEvent": _llm_completed,
    "LLMCallFailedEvent": _llm_failed,
    "ToolUsageStartedEvent": _tool_started,
    "ToolUsageFinishedEvent": _tool_finished,
    "ToolUsageErrorEvent": _tool_error,
    "FlowStartedEvent": _flow_started,
    "FlowFinishedEvent": _method_ended,
    "FlowFailedEvent": _method_ended,
    "MethodExecutionStartedEvent": _method_started,
    "MethodExecutionFinishedEvent": _method_ended,
    "MethodExecutionFailedEvent": _method_ended,
    "MethodExecutionPausedEvent": _method_ended,
}


# Ending event type → the starting event type it closes (the bus's pairing).
_PAIRS = {
    "crew_kickoff_completed": "crew_kickoff_started",
    "crew_kickoff_failed": "crew_kickoff_started",
    "task_completed": "task_started",
    "task_failed": "task_started",
    "agent_execution_completed": "agent_execution_started",
    "agent_execution_error": "agent_execution_started",
    "llm_call_completed": "llm_call_started",
    "llm_call_failed": "llm_call_started",
    "tool_usage_finished": "tool_usage_started",
    "tool_usage_error": "tool_usage_started",
    "flow_finished": "flow_started",
    "flow_failed": "flow_started",
    "method_execution_finished": "method_execution_started",
    "method_execution_failed": "method_execution_started",
    "method_execution_paused": "method_execution_started",
}


def _safe(handler: Any) -> Any:
    def run(source: Any, event: Any) -> None:
        try:
            handler(source, event)
        except Exception:  # telemetry never breaks the crew
            logging.getLogger("rastir").debug("rastir: CrewAI handler failed", exc_info=True)

    run.__name__ = f"rastir_{handler.__name__.lstrip('_')}"
    return run


def _register() -> None:
    global _registered
    with _register_lock:
        if _registered:
            return
        bus = _events.crewai_event_bus
        for name, handler in _HANDLERS.items():
            event_type = getattr(_events, name, None)
            if event_type is not None:
                bus.on(event_type)(_safe(handler))
        _registered = True
