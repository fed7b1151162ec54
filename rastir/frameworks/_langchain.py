"""LangChain and LangGraph: a callback handler added to each run's callbacks.

LangChain's own extension point for this is ``register_configure_hook`` (the mechanism
behind ``get_usage_metadata_callback``): a ContextVar registered once whose value, when
set, ``CallbackManager.configure`` merges into the callbacks of every run started in
that context, next to the callbacks the user put in the run's ``config``. The decorated
call sets the ContextVar to a handler of its own, so concurrent calls of one compiled
graph each see only their runs, and no graph, model or tool object is touched.

LangGraph hands the callbacks down to each node, model and tool with ``run_id`` and
``parent_run_id``, including into its thread pool and asyncio tasks; spans are parented
from those ids, never from whatever context the callback runs in.

Interrupt and resume: a graph run that stops at ``interrupt()`` and the run that resumes
it (``Command(resume=...)`` with the same ``thread_id``) are two decorated calls, two
traces. The interrupted call's agent span is remembered by thread id (a process-wide
LRU of :data:`MAX_INTERRUPTED_THREADS` entries, shared by all threads and tasks), and
the resuming call's agent span gets a span link to it (``rastir.link.type=resume``).
Both carry the thread id as ``gen_ai.conversation.id``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from types import FrameType
from typing import Any, Final
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.tools import ToolException
from langchain_core.tracers.context import register_configure_hook

from rastir.adapters import apply_request, apply_response
from rastir.frameworks._base import FrameworkCall, Labels, capture_enabled, truncate
from rastir.spans import Span, SpanContext

__all__ = ["MAX_INTERRUPTED_THREADS", "RastirCallbackHandler", "activate", "interrupted_stats"]

_handler_var: ContextVar[RastirCallbackHandler | None] = ContextVar(
    "rastir_langchain_handler", default=None
)
_registered = False
_register_lock = threading.Lock()

# LangGraph raises these to steer the graph (interrupt(), Command(graph=PARENT)); they
# end a node's run without being a failure.
_CONTROL_FLOW = frozenset({"GraphInterrupt", "NodeInterrupt", "GraphBubbleUp", "ParentCommand"})
_INTERRUPTS = frozenset({"GraphInterrupt", "NodeInterrupt"})
# The tag LangChain and LangGraph put on their internal runs (LangSmith hides them).
_HIDDEN = "langsmith:hidden"


# -- interrupted threads, for linking the run that resumes one ------------------------------
#: How many interrupted threads are remembered (least recently interrupted dropped
#: first). A resume of a thread dropped from it is traced as before, without the link.
MAX_INTERRUPTED_THREADS: Final = 4096
_interrupted: OrderedDict[str, SpanContext] = OrderedDict()
_interrupted_lock = threading.Lock()
_forgotten = 0  # threads dropped from the LRU to keep it bounded


def _remember_interrupt(thread_id: str, agent: Span) -> None:
    """Remember that ``thread_id`` stopped at an interrupt in ``agent``'s call."""
    global _forgotten
    context = agent.context
    with _interrupted_lock:
        _interrupted[thread_id] = context
        _interrupted.move_to_end(thread_id)
        while len(_interrupted) > MAX_INTERRUPTED_THREADS:
            _interrupted.popitem(last=False)
            _forgotten += 1


def _interrupted_call(thread_id: str) -> SpanContext | None:
    with _interrupted_lock:
        return _interrupted.get(thread_id)


def interrupted_stats() -> dict[str, int]:
    """How many interrupted threads are remembered, and how many were dropped to keep
    that number within :data:`MAX_INTERRUPTED_THREADS` (their resumes get no link)."""
    with _interrupted_lock:
        return {"remembered": len(_interrupted), "forgotten": _forgotten}


def _thread_id(metadata: dict[str, Any] | None) -> str | None:
    """The checkpointer thread of a run: LangGraph copies ``configurable.thread_id``
    into every run's metadata."""
    if not metadata:
        return None
    value = metadata.get("thread_id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
        return str(value)
    return None


def _is_resume(inputs: Any) -> bool:
    """``Command(resume=...)``: the input of a run that answers an interrupt."""
    cls = type(inputs)
    return (
        cls.__name__ == "Command"
        and cls.__module__.startswith("langgraph")
        and getattr(inputs, "resume", None) is not None
    )


def _register() -> None:
    global _registered
    with _register_lock:
        if not _registered:
            register_configure_hook(_handler_var, inheritable=True)
            _registered = True


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Give the call its own handler, in the ContextVar LangChain reads per run."""
    if not _registered:
        _register()
    return [(_handler_var, RastirCallbackHandler(call))]


# The methods that run a model between its start and end callbacks without handing
# control back to the caller: only there can the LLM span be current while the model
# runs. ``stream``/``astream`` call the start callback and then yield chunks to the
# caller, so a span made current there would be current in the caller's loop body.
_GENERATE = frozenset(
    getattr(method, "__code__", None)
    for method in (
        BaseChatModel.generate,
        BaseChatModel.agenerate,
        BaseLLM.generate,
        BaseLLM.agenerate,
    )
)
# Frames between a handler method and the model's method: the callback manager's
# on_*_start, handle_event (and, async, _ahandle_event_for_handler) and our own.
_GENERATE_DEPTH = 8


def _runs_to_completion(batch_size: Any) -> bool:
    """Whether the model run whose start callback is being handled will have ended
    before control returns to the code that called the model (``invoke``,
    ``generate``, and their async forms), rather than yielding chunks to it."""
    if batch_size not in (None, 1):
        # Several prompts: their runs start one after another and end in any order,
        # so no single one can be the current span.
        return False
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_GENERATE_DEPTH):
        if frame is None:
            return False
        if frame.f_code in _GENERATE:
            return True
        frame = frame.f_back
    return False


def _model_of(metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    if metadata:
        model = metadata.get("ls_model_name")
        if isinstance(model, str) and model:
            return model
    params = kwargs.get("invocation_params")
    if isinstance(params, dict):
        for key in ("model", "model_name", "model_id"):
            value = params.get(key)
            if isinstance(value, str) and value:
                return value
    return None


class RastirCallbackHandler(BaseCallbackHandler):
    """Turns one call's LangChain runs into node, LLM, tool and retrieval spans."""

    # Called in the run's own context: a tool's span can then be current while it runs.
    run_inline = True
    raise_error = False

    def __init__(self, call: FrameworkCall) -> None:
        self.call = call
        self._namespaces: dict[int, Any] = {}  # node span id -> LangGraph task namespace
        self._threads: dict[UUID, str] = {}  # open node run -> its checkpointer thread

    def _nested(self) -> bool:
        """Whether the run belongs to another decorated call nested inside this one.

        A run's callbacks are inherited by its children: a tool of this call's graph
        that runs a decorated sub-agent hands this handler down to the sub-agent's
        runs, and the sub-agent's own call adds its handler next to it (FW-1). The
        ContextVar names the innermost call's handler; the runs are that call's.
        """
        current = _handler_var.get()
        return current is not None and current is not self

    # -- chains and LangGraph nodes ---------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._nested():
            return
        call = self.call
        name = kwargs.get("name") or (serialized or {}).get("name")
        node = metadata.get("langgraph_node") if metadata else None
        thread = _thread_id(metadata)
        if thread is not None and call.span_of(parent_run_id) is None:
            # A top-level run of the call (a graph's own run) on a checkpointer thread.
            self._thread_started(thread, inputs)
        # A node's own run carries its name; routing functions and the runnables inside
        # a node carry the node's metadata under another name, and get no span. Nor do
        # LangGraph's own hidden nodes: ``__start__`` runs as a task of its own when
        # conditional edges or ``Send`` leave START, and is no node of the user's.
        if node is None or name != node or (tags and _HIDDEN in tags):
            call.alias(run_id, parent_run_id)
            return
        parent = call.parent_for(parent_run_id)
        # The runnable a node wraps (a RunnableLambda named like the node) runs inside
        # the node's own run, in the same task (same checkpoint namespace): one span.
        # A subgraph's node of the same name has a longer namespace and gets its own.
        namespace = metadata.get("langgraph_checkpoint_ns") if metadata else None
        if namespace is not None and self._namespaces.get(parent.sid) == namespace:
            call.alias(run_id, parent_run_id)
            return
        attrs: dict[str, Any] = {"langgraph.node": node}
        step = metadata.get("langgraph_step") if metadata else None
        if isinstance(step, int):
            attrs["langgraph.step"] = step
        span = call.open(run_id, f"node:{node}", "trace", parent, attrs, current=True)
        if namespace is not None:
            self._namespaces[span.sid] = namespace
        if thread is not None:
            self._threads[run_id] = thread

    def _thread_started(self, thread: str, inputs: Any) -> None:
        """Label the agent span with the run's thread; link a resume to the call the
        thread was interrupted in."""
        agent = self.call.agent
        attrs = agent.attributes
        attrs.setdefault("gen_ai.conversation.id", thread)
        if not _is_resume(inputs):
            return
        target = _interrupted_call(thread)
        if target is None or (target.tid, target.sid) == (agent.tid, agent.sid):
            return  # unknown here, or interrupted and resumed within this same call
        links = agent.links or ()
        if any(ln.context.sid == target.sid and ln.context.tid == target.tid for ln in links):
            return
        agent.add_link(target, {"rastir.link.type": "resume", "gen_ai.conversation.id": thread})

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        self._threads.pop(run_id, None)
        self._forget(self.call.close(run_id))

    def _forget(self, span: Span | None) -> None:
        """Drop what was kept about a node span that ended (a long stream of a call
        runs many nodes)."""
        if span is not None and span.kind == "trace":
            self._namespaces.pop(span.sid, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        thread = self._threads.pop(run_id, None)
        if type(error).__name__ in _CONTROL_FLOW:
            span = self.call.span_of(run_id)
            if span is not None:
                span.attributes["langgraph.control_flow"] = type(error).__name__
            if type(error).__name__ in _INTERRUPTS:
                # The run pauses for a human; resuming it is another call (and trace),
                # linked to this one through the thread (see _thread_started).
                agent = self.call.agent
                agent.attributes["langgraph.interrupted"] = True
                if thread is not None:
                    _remember_interrupt(thread, agent)
            self._forget(self.call.close(run_id))
            return
        self._forget(self.call.close(run_id, error))

    # -- models -------------------------------------------------------------------------
    def _start_llm(
        self,
        serialized: dict[str, Any] | None,
        operation: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        call = self.call
        model = _model_of(metadata, kwargs)
        provider = metadata.get("ls_provider") if metadata else None
        node = metadata.get("langgraph_node") if metadata else None
        name = f"{operation} {model}" if model else operation
        # Current while the model runs, so spans opened inside it (a provider client
        # the user instruments, an OpenTelemetry-instrumented SDK with the bridge on)
        # nest under it; not for a stream the caller iterates (see _GENERATE).
        span = call.open(
            run_id,
            name,
            "llm",
            call.parent_for(parent_run_id),
            current=_runs_to_completion(kwargs.get("batch_size")),
        )
        attrs = span.attributes
        params = kwargs.get("invocation_params")
        if isinstance(params, dict):
            # Request parameters (temperature, max tokens, ...) through the adapters.
            apply_request(span, (), params)
        attrs["gen_ai.operation.name"] = operation
        if model:
            attrs["gen_ai.request.model"] = model
        # LangChain's integrations name their provider ("openai", "anthropic", ...).
        if isinstance(provider, str) and provider:
            attrs["gen_ai.provider.name"] = provider
        if isinstance(node, str):
            attrs["langgraph.node"] = node

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._nested():
            return
        self._start_llm(serialized, "chat", run_id, parent_run_id, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._nested():
            return
        self._start_llm(serialized, "text_completion", run_id, parent_run_id, metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        span = self.call.span_of(run_id)
        if span is not None and "rastir.ttft_ms" not in span.attributes:
            span.attributes["rastir.ttft_ms"] = ttft = (time.perf_counter_ns() - span._t0) / 1e6
            span.add_event("rastir.first_token", {"rastir.ttft_ms": ttft})

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        span = self.call.span_of(run_id)
        if span is not None:
            apply_response(span, _first_generation(response))
        self.call.close(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        self.call.close(run_id, error)

    # -- tools --------------------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._nested():
            return
        call = self.call
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        tool_call_id = kwargs.get("tool_call_id")
        if isinstance(tool_call_id, str) and tool_call_id:
            attrs["gen_ai.tool.call.id"] = tool_call_id
        node = metadata.get("langgraph_node") if metadata else None
        if isinstance(node, str):
            attrs["langgraph.node"] = node
        if capture_enabled():
            attrs["gen_ai.tool.call.arguments"] = truncate(
                inputs if inputs is not None else input_str
            )
        call.open(run_id, str(name), "tool", call.parent_for(parent_run_id), attrs, current=True)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        # A ToolMessage the tool returned with status="error" is a failed call that
        # raised nothing (DESIGN §5's tool_error).
        failed = getattr(output, "status", None) == "error"
        self.call.close(run_id, category="tool_error" if failed else None, exc_type="ToolMessage")

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        # ToolException is LangChain's way for a tool to say it failed (the agent gets
        # the message back with handle_tool_error): a tool_error, like a ToolMessage
        # with status="error". Any other exception is classified as usual.
        failed = isinstance(error, ToolException)
        self.call.close(run_id, error, category="tool_error" if failed else None)

    # -- retrievers ---------------------------------------------------------------------
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._nested():
            return
        call = self.call
        name = kwargs.get("name") or (serialized or {}).get("name") or "retriever"
        attrs: dict[str, Any] = {"rastir.retrieval.name": name}
        if capture_enabled():
            attrs["rastir.retrieval.query"] = truncate(query)
        call.open(run_id, str(name), "retrieval", call.parent_for(parent_run_id), attrs)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        span = self.call.span_of(run_id)
        if span is not None:
            span.attributes["rastir.retrieval.documents"] = len(documents)
        self.call.close(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._nested():
            return
        self.call.close(run_id, error)


def _first_generation(response: Any) -> Any:
    """The message of an LLMResult's first generation (what carries usage and model),
    with the LLMResult's ``llm_output`` model as a fallback."""
    generations = getattr(response, "generations", None)
    if generations and generations[0]:
        generation = generations[0][0]
        message = getattr(generation, "message", None)
        if message is not None:
            return message
    return response
