"""LlamaIndex: a span handler and an event handler on the instrumentation dispatcher.

LlamaIndex's extension point is its root dispatcher (``llama_index.core.instrumentation``),
which has no per-call registration: handlers are process-wide. One handler pair is added
once, on the first decorated call, and does nothing unless the context it is called in
belongs to a LlamaIndex call (``active_call("llamaindex")``: a call of another framework,
or one that found none, does not count). LlamaIndex runs workflow steps as asyncio tasks
created inside the call, so they inherit that context.

Dispatcher spans carry their own id and their parent's; LLM calls are read from the
LLM start/end events (a streamed chat ends after its dispatcher span has exited).

* workflow (agent) runs → no span of their own: their steps hang under the agent span;
* workflow steps → ``node:<step>`` (kind ``trace``);
* LLM chat and completion events → ``llm`` spans (model, provider, tokens, TTFT);
* ``BaseTool.call``/``acall`` → ``tool`` spans;
* ``BaseRetriever.retrieve``/``aretrieve`` → ``retrieval`` spans (query engines,
  chat engines and agents retrieve through them).

A streamed model call of a ``CustomLLM`` (``astream_chat`` over ``stream_chat`` over
``stream_complete``) starts its inner call only when the caller iterates the stream,
after the outer call's dispatcher span has exited: the inner call is found as part of
the outer one from the stream LlamaIndex's callback wrapper is iterating, and the call
stays one span.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from types import FrameType
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.llms import callbacks as _llm_callbacks
from llama_index.core.tools import BaseTool
from llama_index.core.workflow import Workflow
from llama_index_instrumentation import get_dispatcher

from rastir.adapters import apply_request, apply_response
from rastir.frameworks._base import FrameworkCall, Labels, active_call, capture_enabled, truncate
from rastir.spans import Span

__all__ = ["activate"]

_registered = False
_register_lock = threading.Lock()
_WORKFLOW = "workflow"
_TOOL_METHODS = frozenset({"call", "acall"})
_RETRIEVE_METHODS = frozenset({"retrieve", "aretrieve"})


def activate(call: FrameworkCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
    """Register the dispatcher handlers (once); the call's ContextVar turns them on."""
    global _registered
    if not _registered:
        with _register_lock:
            if not _registered:
                dispatcher = get_dispatcher()
                dispatcher.add_span_handler(_SpanHandler())
                dispatcher.add_event_handler(_EventHandler())
                _registered = True
    return []


def _method(id_: str) -> str:
    """``"FunctionTool.acall-<uuid>"`` → ``"acall"``."""
    return id_.partition("-")[0].rpartition(".")[2]


class _SpanHandler(BaseSpanHandler[BaseSpan]):
    """Dispatcher spans → node and tool spans; everything else only relays parents."""

    @classmethod
    def class_name(cls) -> str:
        return "RastirSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        call = active_call("llamaindex")
        if call is None:
            return
        if isinstance(instance, Workflow):
            call.alias(id_, parent_id)
            call.data[id_] = _WORKFLOW
            return
        if instance is None and parent_id is not None and call.data.get(parent_id) == _WORKFLOW:
            step = _method(id_)
            step_attrs: dict[str, Any] = {"llamaindex.step": step}
            # An AgentWorkflow's steps carry the agent they run for (handoffs change it).
            for value in bound_args.arguments.values():
                agent = getattr(value, "current_agent_name", None)
                if isinstance(agent, str):
                    step_attrs["llamaindex.agent"] = agent
                    break
            call.open(
                id_,
                f"node:{step}",
                "trace",
                call.parent_for(parent_id),
                step_attrs,
                current=True,
            )
            return
        if isinstance(instance, BaseTool) and _method(id_) in _TOOL_METHODS:
            name = instance.metadata.name or type(instance).__name__
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
            }
            if capture_enabled():
                attrs["gen_ai.tool.call.arguments"] = truncate(dict(bound_args.arguments))
            call.open(id_, name, "tool", call.parent_for(parent_id), attrs, current=True)
            return
        if isinstance(instance, BaseRetriever) and _method(id_) in _RETRIEVE_METHODS:
            name = type(instance).__name__
            attrs = {"rastir.retrieval.name": name}
            if capture_enabled():
                query = bound_args.arguments.get("str_or_query_bundle")
                attrs["rastir.retrieval.query"] = truncate(getattr(query, "query_str", query))
            call.open(id_, name, "retrieval", call.parent_for(parent_id), attrs)
            return
        # A method an LLM call runs inside the LLM's own call (CustomLLM.chat() over
        # complete(), acomplete() over complete(), ...) belongs to its LLM span: the
        # inner call's start event then finds it and adds no second span.
        llm_key = ("llm", parent_id)
        call.alias(id_, llm_key if call.span_of(llm_key) is not None else parent_id)
        if instance is not None:
            # LLM objects: their start event (same span id) reads model and provider.
            call.data[id_] = instance

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        call = active_call("llamaindex")
        if call is None:
            return
        # A tool that returns a ToolOutput with is_error failed without raising.
        span = call.span_of(id_)
        failed = False
        if span is not None:
            if span.kind == "tool":
                failed = getattr(result, "is_error", False) is True
            elif span.kind == "retrieval" and isinstance(result, list):
                span.attributes["rastir.retrieval.documents"] = len(result)
        call.close(id_, category="tool_error" if failed else None, exc_type="ToolOutput")
        call.data.pop(id_, None)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        call = active_call("llamaindex")
        if call is None:
            return
        call.close(id_, err)
        # A failed model call emits no end event: its LLM span fails with it.
        call.close(("llm", id_), err)
        call.data.pop(id_, None)
        call.data.pop(("llm", id_), None)

    # The dispatcher calls span_enter/exit/drop; these abstract hooks are unused.
    def new_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        return None


def _served_by(call: FrameworkCall, key: tuple[str, str]) -> Span | None:
    """The outer call's LLM span an inner model call is part of, if it is one."""
    span = call.data.get(key)
    return span if isinstance(span, Span) else None


# LlamaIndex's model-call decorators (``llm_chat_callback``, ``llm_completion_callback``)
# hand a returned stream back wrapped in a generator named ``wrapped_gen`` that holds
# the call's dispatcher span id in ``span_id``; a model call started while it iterates
# is the stream's own inner call. Frames between our handler and that generator: the
# dispatcher's ``event``, the inner call's wrapper and dispatcher span, the LLM's own
# generator (``CustomLLM.astream_chat``'s ``gen``).
_CALLBACKS_FILE = _llm_callbacks.__file__
_STREAM_DEPTH = 14


def _iterated_stream(call: FrameworkCall) -> tuple[str, str] | None:
    """The LLM key of the stream whose iteration is running this model call, if any."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_STREAM_DEPTH):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "wrapped_gen" and code.co_filename == _CALLBACKS_FILE:
            span_id = frame.f_locals.get("span_id")
            if isinstance(span_id, str):
                key = ("llm", span_id)
                if call.span_of(key) is not None:
                    return key
            return None
        frame = frame.f_back
    return None


class _EventHandler(BaseEventHandler):
    """LLM events → llm spans, keyed by the dispatcher span that emitted them."""

    @classmethod
    def class_name(cls) -> str:
        return "RastirEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> Any:
        call = active_call("llamaindex")
        if call is None or event.span_id is None:
            return
        key = ("llm", event.span_id)
        if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            operation = "chat" if isinstance(event, LLMChatStartEvent) else "text_completion"
            parent = call.parent_for(event.span_id)
            llm = call.data.get(event.span_id)
            if parent.kind != "llm":
                outer = _iterated_stream(call)
                if outer is not None:
                    # The inner call of a stream the caller iterates: its dispatcher
                    # span and the calls inside it belong to the stream's span.
                    call.alias(event.span_id, outer)
                    parent = call.parent_for(event.span_id)
            if parent.kind == "llm":
                # A chat served by complete() (or the reverse): one span, the outer
                # call's; the inner response is read into it when the inner call ends.
                call.data[key] = parent
                return
            span = call.open(key, operation, "llm", parent, {"gen_ai.operation.name": operation})
            if llm is not None:
                apply_request(span, (llm,), {})
            attrs = span.attributes
            fields = event.model_dict or {}
            # What the adapters read from the LLM object, then its payload, then its
            # fields; LlamaIndex and the adapters both say "unknown" for "not known".
            for model in (
                attrs.get("gen_ai.request.model"),
                fields.get("model"),
                fields.get("model_name"),
                getattr(llm, "model", None),
                getattr(llm, "model_name", None),
            ):
                if isinstance(model, str) and model and model != "unknown":
                    attrs["gen_ai.request.model"] = model
                    break
            else:
                model = None
            if model and model != "unknown":
                span.name = f"{operation} {model}"
        elif isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            running = call.span_of(key) or _served_by(call, key)
            if running is not None and "rastir.ttft_ms" not in running.attributes:
                ttft = (time.perf_counter_ns() - running._t0) / 1e6
                running.attributes["rastir.ttft_ms"] = ttft
                running.add_event("rastir.first_token", {"rastir.ttft_ms": ttft})
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            ending = call.span_of(key)
            if ending is None:
                # The inner call of a served one: its response (the one with the
                # provider's usage) goes to the outer span, whose own end event
                # follows and overwrites only what it also carries.
                served = _served_by(call, key)
                call.data.pop(key, None)
                if served is not None and event.response is not None:
                    apply_response(served, event.response)
                return
            if event.response is not None:
                apply_response(ending, event.response)
            call.close(key)
        elif isinstance(event, ExceptionEvent) and call.span_of(key) is not None:
            # A stream that fails while it is read: its call's dispatcher span has
            # exited already, and no end event follows.
            call.close(key, event.exception)
