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

Streams handed back by the decorated call. A model stream can outlive the call that
started it: a chat engine's ``stream_chat()`` starts the model call and a thread of
LlamaIndex's own reads it; a query engine built with ``streaming=True`` returns a
``StreamingResponse`` whose ``response_gen`` calls the model only when it is read.

* A model call whose dispatcher span exits handing back a stream is remembered by its
  span id (a process-wide LRU of :data:`MAX_OPEN_STREAMS`). Its events are routed to
  the call that owns it, whichever thread or context emits them; when the decorated
  call ends, its still-open streams move to a continuation of the call (same agent
  span, so the same parent) instead of being ended unfinished. The span ends with the
  model's end event, fails with its exception, or, when the stream is closed early or
  dropped, ends marked ``rastir.stream.partial=true``.
* A ``StreamingResponse`` passing through a dispatcher span of the call gets its
  ``response_gen`` wrapped: each step runs as part of the call (or, once it has ended,
  of its continuation), so the model call it makes is recorded under the call's agent
  span.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Generator
from types import AsyncGeneratorType, FrameType, GeneratorType
from typing import Any, Final

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
from rastir.frameworks._base import (
    FrameworkCall,
    Labels,
    _active,
    active_call,
    capture_enabled,
    truncate,
)
from rastir.spans import Span

__all__ = ["MAX_OPEN_STREAMS", "activate", "stream_stats"]

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


# -- model streams that outlive the decorated call --------------------------------------------
#: How many handed-back model streams are followed at once. When more are open, the
#: least recently started one is ended (``rastir.stream.partial``) and counted.
MAX_OPEN_STREAMS: Final = 4096
# Model call dispatcher span id -> the call (or continuation) that holds its span.
_owners: OrderedDict[str, FrameworkCall] = OrderedDict()
_owners_lock = threading.RLock()
_evicted = 0  # streams ended early to keep _owners bounded
# An ended call's agent span id -> its continuation, for the work its tasks go on with.
_continued: OrderedDict[int, FrameworkCall] = OrderedDict()
_HANDOFF: Final = "rastir.llamaindex.handoff"
_CONTINUATION: Final = "rastir.llamaindex.continuation"


# Streams collected while their owner's lock was held (a collection can run anywhere):
# ended at the next hook call instead, never by blocking inside the collection.
_pending: deque[str] = deque(maxlen=MAX_OPEN_STREAMS)


def stream_stats() -> dict[str, int]:
    """How many handed-back model streams are followed, and how many were ended early
    (marked partial) to keep that number within :data:`MAX_OPEN_STREAMS`."""
    _flush_dropped()
    with _owners_lock:
        return {"open": len(_owners), "evicted": _evicted}


def _end_partial(owner: FrameworkCall, span_id: str) -> None:
    """End a stream's span that will see no end event: closed early, or dropped."""
    key = ("llm", span_id)
    span = owner.span_of(key)
    if span is not None and span.kind == "llm":
        span.attributes["rastir.stream.partial"] = True
        owner.close(key)
    owner.data.pop(key, None)


def _own(span_id: str, owner: FrameworkCall) -> None:
    global _evicted
    _flush_dropped()
    with _owners_lock:
        _owners[span_id] = owner
        _owners.move_to_end(span_id)
        while len(_owners) > MAX_OPEN_STREAMS:
            old_id, old_owner = _owners.popitem(last=False)
            _evicted += 1
            _end_partial(old_owner, old_id)


def _dropped(span_id: str) -> None:
    """The stream object was garbage collected: if its model call never reported an
    end, it was abandoned unread.

    Runs inside a garbage collection, perhaps while this thread holds one of the locks
    involved: it takes none it would have to wait for, and leaves the work to the next
    hook call when one is held.
    """
    owner = _owners.get(span_id)
    if owner is None:
        return
    if not _owners_lock.acquire(blocking=False):
        _pending.append(span_id)
        return
    try:
        if not owner._lock.acquire(blocking=False):
            _pending.append(span_id)
            return
        owner._lock.release()
        if _owners.get(span_id) is owner:
            del _owners[span_id]
            _end_partial(owner, span_id)
    finally:
        _owners_lock.release()


def _flush_dropped() -> None:
    """End the streams collected while a lock was held (see :func:`_dropped`)."""
    while _pending:
        try:
            span_id = _pending.popleft()
        except IndexError:
            return
        with _owners_lock:
            owner = _owners.pop(span_id, None)
            if owner is not None:
                _end_partial(owner, span_id)


class _Handoff:
    """The model streams one call hands back, and the continuation that keeps their
    spans once the call has ended (same agent span: same parent and labels)."""

    __slots__ = ("_continuation", "call", "ids")

    def __init__(self, call: FrameworkCall) -> None:
        self.call = call
        self.ids: list[str] = []
        self._continuation: FrameworkCall | None = None

    def continuation(self) -> FrameworkCall:
        with _owners_lock:
            cont = self._continuation
            if cont is None:
                call = self.call
                cont = FrameworkCall(call.agent, call.agent_name, "llamaindex", None, call.function)
                cont.data[_CONTINUATION] = True
                self._continuation = cont
                _continued[call.agent.sid] = cont
                while len(_continued) > MAX_OPEN_STREAMS:
                    _continued.popitem(last=False)
            return cont

    def hand_over(self) -> None:
        """At the call's end: move its streams' spans to the continuation."""
        call = self.call
        with _owners_lock:
            for span_id in self.ids:
                if _owners.get(span_id) is not call:
                    continue  # ended already
                key = ("llm", span_id)
                cont = self.continuation()
                with call._lock:
                    run = call._runs.pop(key, None)
                if run is not None:
                    with cont._lock:
                        cont._runs[key] = run
                served = call.data.get(key)
                if isinstance(served, Span):
                    cont.data[key] = served
                if run is None and not isinstance(served, Span):
                    _owners.pop(span_id, None)
                else:
                    _owners[span_id] = cont
            self.ids.clear()


def _handoff(call: FrameworkCall) -> _Handoff:
    with _owners_lock:
        found = call.data.get(_HANDOFF)
        if isinstance(found, _Handoff):
            return found
        made = _Handoff(call)
        call.data[_HANDOFF] = made
        call.finalizers.append(made.hand_over)
        return made


def _current_call() -> FrameworkCall | None:
    """The LlamaIndex call of this context; once it has ended, its continuation if it
    handed a stream back (an asyncio task it created reads the stream after it)."""
    call = active_call("llamaindex")
    if call is not None and call.agent.ended and _continued:
        return _continued.get(call.agent.sid, call)
    return call


def _stream_handed_out(call: FrameworkCall, span_id: str, stream: Any) -> None:
    """A model call's dispatcher span exited handing back ``stream``, its span open."""
    if call.data.get(_CONTINUATION):
        _own(span_id, call)  # a continuation is ended by the stream that made it
    else:
        handoff = _handoff(call)
        with _owners_lock:
            handoff.ids.append(span_id)
            _own(span_id, call)
    try:
        # Not at interpreter exit: only when the stream object is collected.
        weakref.finalize(stream, _dropped, span_id).atexit = False
    except TypeError:
        pass


def _follow(gen: Generator[Any, Any, Any], handoff: _Handoff) -> Generator[Any, Any, Any]:
    """A ``StreamingResponse.response_gen``, read as part of the call that returned it
    (or, once the call has ended, of its continuation)."""
    call = handoff.call
    owner: FrameworkCall | None = None
    try:
        while True:
            owner = call if not call.agent.ended else handoff.continuation()
            token = _active.set(owner)
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            finally:
                _active.reset(token)
            yield item
    finally:
        # Exhausted, closed or dropped: the model call ends with the generator (a
        # model stream closed early reports it, and is marked partial).
        if owner is not None:
            token = _active.set(owner)
            try:
                gen.close()
            finally:
                _active.reset(token)


async def _afollow(agen: AsyncGenerator[Any, Any], handoff: _Handoff) -> AsyncGenerator[Any, Any]:
    """:func:`_follow` for an ``AsyncStreamingResponse.response_gen``."""
    call = handoff.call
    owner: FrameworkCall | None = None
    try:
        while True:
            owner = call if not call.agent.ended else handoff.continuation()
            token = _active.set(owner)
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _active.reset(token)
            yield item
    finally:
        if owner is not None:
            token = _active.set(owner)
            try:
                await agen.aclose()
            finally:
                _active.reset(token)


def _follow_response(call: FrameworkCall, result: Any) -> None:
    """Wrap the ``response_gen`` of a ``StreamingResponse`` (or, async, an
    ``AsyncStreamingResponse``) the call hands back."""
    if not type(result).__module__.startswith("llama_index"):
        return
    gen = getattr(result, "response_gen", None)
    # Not twice (the query's span and the synthesizer's hand back the same object),
    # and not a stream read to its end already.
    try:
        if type(gen) is GeneratorType:
            if gen.gi_code is _follow.__code__ or gen.gi_frame is None:
                return
            result.response_gen = _follow(gen, _handoff(call))
        elif type(gen) is AsyncGeneratorType:
            if gen.ag_code is _afollow.__code__ or gen.ag_frame is None:
                return
            result.response_gen = _afollow(gen, _handoff(call))
    except Exception:
        return


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
        call = _current_call()
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
        call = _current_call()
        if call is None:
            return
        if isinstance(result, (GeneratorType, AsyncGeneratorType)):
            # A model call handing back its stream: its span outlives this dispatcher
            # span (and perhaps the decorated call).
            key = ("llm", id_)
            if call.span_of(key) is not None or _served_by(call, key) is not None:
                _stream_handed_out(call, id_, result)
        elif type(result).__name__ in ("StreamingResponse", "AsyncStreamingResponse"):
            _follow_response(call, result)
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
        call = _current_call()
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
        span_id = event.span_id
        if span_id is None:
            return
        if _pending:
            _flush_dropped()
        if _owners and span_id in _owners:
            # A stream handed back by a call: its events go to the call that holds
            # its span, whatever thread or context reads it.
            with _owners_lock:
                owner = _owners.get(span_id)
                if owner is not None:
                    self._handle(owner, event, span_id)
                    if isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent, ExceptionEvent)):
                        _owners.pop(span_id, None)
                    return
        call = _current_call()
        if call is None:
            return
        self._handle(call, event, span_id)

    def _handle(self, call: FrameworkCall, event: BaseEvent, span_id: str) -> None:
        key = ("llm", span_id)
        if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            operation = "chat" if isinstance(event, LLMChatStartEvent) else "text_completion"
            parent = call.parent_for(span_id)
            llm = call.data.get(span_id)
            if parent.kind != "llm":
                outer = _iterated_stream(call)
                if outer is not None:
                    # The inner call of a stream the caller iterates: its dispatcher
                    # span and the calls inside it belong to the stream's span.
                    call.alias(span_id, outer)
                    parent = call.parent_for(span_id)
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
        elif isinstance(event, ExceptionEvent):
            # A stream that fails while it is read: its call's dispatcher span has
            # exited already, and no end event follows. GeneratorExit: the stream was
            # closed (or dropped) before its end.
            if isinstance(event.exception, GeneratorExit):
                _end_partial(call, span_id)
            elif call.span_of(key) is not None:
                call.close(key, event.exception)
