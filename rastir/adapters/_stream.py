"""Streaming ``@llm`` calls: time to first token, accumulated tokens, and the span's end.

Two cases. An ``@llm`` generator (or async generator) function: the wrapper in
``rastir._instrument`` hands each item to a :class:`StreamRecorder`. An ``@llm``
function that *returns* a stream (an openai/anthropic/groq ``Stream``, an anthropic
``MessageStreamManager``, an openai ``ResponseStreamManager`` or
``ChatCompletionStreamManager``, a mistral
``EventStream``, Bedrock's ``converse_stream`` result, a CrewAI streaming output, or
any generator): the result is handed back inside
a :class:`StreamProxy` that records each item and ends the span when the stream is
exhausted, closed, fails, or is dropped unfinished (recorded as partial).
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final

from rastir import _config
from rastir._instrument import record_exception
from rastir.adapters import _content
from rastir.adapters._apply import write_result
from rastir.adapters._nested import mark_if_counted_inside
from rastir.adapters.base import AdapterResult, TokenDelta
from rastir.adapters.registry import get_registry
from rastir.export._pipeline import PIPELINE
from rastir.spans import Span

_perf_ns = time.perf_counter_ns

__all__ = ["StreamHook", "StreamProxy", "StreamRecorder"]

_log = logging.getLogger("rastir")
_perf = time.perf_counter_ns

# How a returned object is adopted.
_NO, _ITER, _BEDROCK, _MANAGER = 0, 1, 2, 3
_STREAM_MODULES: Final = ("openai", "anthropic", "groq", "mistralai", "botocore", "crewai")
_STREAM_NAMES: Final = frozenset(
    (
        "Stream",
        "AsyncStream",
        "MessageStream",
        "AsyncMessageStream",
        "EventStream",
        "EventStreamAsync",
        "CrewStreamingOutput",
        "ResponseStream",
        "AsyncResponseStream",
        "ChatCompletionStream",
        "AsyncChatCompletionStream",
    )
)
_MANAGERS: Final = frozenset(
    (
        "MessageStreamManager",
        "AsyncMessageStreamManager",
        "ResponseStreamManager",
        "AsyncResponseStreamManager",
        "ChatCompletionStreamManager",
        "AsyncChatCompletionStreamManager",
    )
)


def _classify(cls: type) -> int:
    # An inner @llm's proxy: the outer span follows the same stream to its end.
    if cls is types.GeneratorType or cls is types.AsyncGeneratorType or cls is StreamProxy:
        return _ITER
    if issubclass(cls, Mapping):
        return _BEDROCK
    if cls.__module__.partition(".")[0] in _STREAM_MODULES:
        if cls.__name__ in _STREAM_NAMES:
            return _ITER
        if cls.__name__ in _MANAGERS:
            return _MANAGER
    return _NO


class StreamRecorder:
    """Accumulates what the chunks of one stream say, and writes it when it ends."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "chunks",
        "details",
        "ended",
        "explicit_model",
        "explicit_operation",
        "explicit_provider",
        "extra",
        "finish",
        "model",
        "provider",
        "response_id",
        "span",
        "t_first",
        "texts",
        "tokens_in",
        "tokens_out",
    )

    def __init__(
        self, span: Span, explicit_model: str | None, explicit_provider: str | None
    ) -> None:
        self.span = span
        self.explicit_model = explicit_model
        self.explicit_provider = explicit_provider
        self.explicit_operation: str | None = None  # @llm(operation=...), set by begin()
        self.t_first = 0
        self.chunks = 0
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        # The counts that only refine the price (TokenDelta.usage_details), by name.
        self.details: dict[str, int] | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.finish: str | None = None
        self.response_id: str | None = None
        self.extra: dict[str, Any] | None = None
        self.texts: list[str] | None = [] if _config._settings.capture_content else None
        self.ended = False

    def item(self, obj: Any) -> None:
        """Record one chunk. Never raises."""
        try:
            self._item(obj)
        except Exception:
            _log.debug("rastir: could not read a stream chunk", exc_info=True)

    def _item(self, obj: Any) -> None:
        self.chunks += 1
        d = get_registry().stream_delta(obj) if obj is not None else None
        if d is None:
            # A chunk no adapter knows (a user generator's text, say): it is content.
            content = bool(obj) if isinstance(obj, (str, bytes)) else obj is not None
            text = obj if isinstance(obj, str) else None
        else:
            content = d.content
            text = d.text
            if d.cumulative:
                if d.tokens_input is not None:
                    self.tokens_in = d.tokens_input
                if d.tokens_output is not None:
                    self.tokens_out = d.tokens_output
                if d.cache_read_tokens is not None:
                    self.cache_read = d.cache_read_tokens
                if d.cache_write_tokens is not None:
                    self.cache_write = d.cache_write_tokens
            else:
                if d.tokens_input is not None:
                    self.tokens_in = (self.tokens_in or 0) + d.tokens_input
                if d.tokens_output is not None:
                    self.tokens_out = (self.tokens_out or 0) + d.tokens_output
                if d.cache_read_tokens is not None:
                    self.cache_read = (self.cache_read or 0) + d.cache_read_tokens
                if d.cache_write_tokens is not None:
                    self.cache_write = (self.cache_write or 0) + d.cache_write_tokens
            if d.usage_details:
                self._details(d)
            if d.model:
                self.model = d.model
            if d.provider:
                self.provider = d.provider
            if d.finish_reason:
                self.finish = d.finish_reason
            if d.response_id and self.response_id is None:
                self.response_id = d.response_id
            if d.extra_attributes:
                extra = self.extra
                if extra is None:
                    extra = self.extra = {}
                was = extra.get("rastir.guardrail.intervened")
                extra.update(d.extra_attributes)
                if was is True:  # once a guardrail intervened, a later chunk cannot undo it
                    extra["rastir.guardrail.intervened"] = True
        if content and not self.t_first:
            self.t_first = t = _perf()
            ttft = (t - self.span._t0) / 1e6
            self.span.attributes["rastir.ttft_ms"] = ttft
            self.span.add_event("rastir.first_token", {"rastir.ttft_ms": ttft})
        if text and self.texts is not None:
            self.texts.append(text)

    def _details(self, d: TokenDelta) -> None:
        details = self.details
        if details is None:
            details = self.details = {}
        for key, value in (d.usage_details or {}).items():
            details[key] = value if d.cumulative else details.get(key, 0) + value

    def end(self, partial: bool, final: Any = None) -> None:
        """Write what the stream said onto the span (once). Never raises."""
        if self.ended:
            return
        self.ended = True
        try:
            self._end(partial, final)
        except Exception:
            _log.debug("rastir: could not record a stream's end", exc_info=True)

    def _end(self, partial: bool, final: Any) -> None:
        attrs = self.span.attributes
        r = AdapterResult(
            model=self.model,
            provider=self.provider,
            tokens_input=self.tokens_in,
            tokens_output=self.tokens_out,
            finish_reason=self.finish,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            response_id=self.response_id,
        )
        if self.extra:
            r.extra_attributes = self.extra
        if self.details:
            r.usage_details = dict(self.details)
        if final is not None:
            # The stream's own final object (anthropic's message snapshot, CrewAI's
            # CrewOutput) is more complete than the chunks seen, if any were skipped.
            for found in get_registry().response(final):
                for field in ("model", "provider", "finish_reason", "response_id"):
                    value = getattr(found, field)
                    if value and not getattr(r, field):
                        setattr(r, field, value)
                for field in (
                    "tokens_input",
                    "tokens_output",
                    "cache_read_tokens",
                    "cache_write_tokens",
                ):
                    value = getattr(found, field)
                    if value is not None:
                        setattr(r, field, value)
                if found.usage_details:
                    r.usage_details = {**(r.usage_details or {}), **found.usage_details}
                if found.extra_attributes:
                    r.extra_attributes.update(found.extra_attributes)
        write_result(attrs, r, self.explicit_model, self.explicit_provider)
        if self.explicit_operation is not None:
            attrs["gen_ai.operation.name"] = self.explicit_operation
        if self.span._inner_llm is not None:
            mark_if_counted_inside(self.span)
        attrs["rastir.stream.chunks"] = self.chunks
        if partial:
            attrs["rastir.stream.partial"] = True
        if self.texts:
            message: dict[str, Any] = {
                "role": "assistant",
                "parts": _content.to_parts("".join(self.texts)),
            }
            if r.finish_reason:
                message["finish_reason"] = r.finish_reason
            attrs["gen_ai.output.messages"] = _content.dumps([message])


def _final_of(obj: Any) -> tuple[Any, bool]:
    """The response object some SDK streams keep, and whether the stream is complete.

    A stream read by the SDK's own helpers (anthropic's ``get_final_message()``,
    ``get_final_text()``, ``until_done()``; openai's ``get_final_response()``) is
    consumed inside the SDK, past the proxy: its final object is then all there is to
    read, and it says whether the stream ran to its end (a stop reason, a completed
    response).
    """
    name = type(obj).__name__
    try:
        if name in ("MessageStream", "AsyncMessageStream"):
            message = getattr(obj, "current_message_snapshot", None)
            return message, getattr(message, "stop_reason", None) is not None
        if name in ("ResponseStream", "AsyncResponseStream"):
            # The SDK sets it when ``response.completed`` arrives (a private name:
            # on another openai version this fails and the chunks seen are used).
            response = obj._state._completed_response
            return response, response is not None
        if name in ("ChatCompletionStream", "AsyncChatCompletionStream"):
            # openai's chat.completions.stream() helper: the completion so far (the
            # property asserts when no chunk arrived yet). Complete once every choice
            # has its finish reason.
            snapshot = obj.current_completion_snapshot
            choices = snapshot.choices
            return snapshot, bool(choices) and all(c.finish_reason for c in choices)
        if name == "CrewStreamingOutput" and getattr(obj, "is_completed", False):
            return obj.result, True
    except Exception:
        return None, False
    return None, False


class StreamProxy:
    """Stands in for a stream an ``@llm`` function returned; ends the span with it.

    Iterates like the stream (sync or async), passes ``close()``/``aclose()`` and the
    context-manager protocol through, and forwards every other attribute.
    """

    __slots__ = ("_done", "_iter", "_obj", "_rec", "_span")

    def __init__(self, obj: Any, span: Span, rec: StreamRecorder) -> None:
        self._obj = obj
        self._span = span
        self._rec = rec
        self._iter: Any = None
        self._done = False

    def _finish(self, partial: bool, exc: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        end = _perf_ns()  # the stream's own end: what follows is rastir's work
        if exc is not None:
            record_exception(self._span, exc)
        final, complete = _final_of(self._obj)
        self._rec.end(partial and not complete, final)
        self._span._t1 = end
        PIPELINE.on_end(self._span)

    # -- sync -------------------------------------------------------------------------
    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        it = self._iter
        if it is None:
            it = self._iter = iter(self._obj)
        try:
            item = next(it)
        except StopIteration:
            self._finish(False)
            raise
        except BaseException as exc:
            self._finish(True, exc)
            raise
        self._rec.item(item)
        return item

    def close(self) -> Any:
        """Close the stream; ``await`` it when the stream's own ``close`` is async
        (openai's ``AsyncStream``)."""
        closer = getattr(self._obj, "close", None)
        try:
            res = None if closer is None else closer()
        except BaseException:
            self._finish(True)
            raise
        if hasattr(res, "__await__"):
            return self._close_async(res)
        self._finish(True)
        return res

    async def _close_async(self, pending: Any) -> Any:
        try:
            return await pending
        finally:
            self._finish(True)

    def __enter__(self) -> StreamProxy:
        enter = getattr(self._obj, "__enter__", None)
        if enter is not None:
            try:
                inner = enter()  # a manager sends the request here: it may fail
            except BaseException as exc:
                self._finish(True, exc)
                raise
            if inner is not None and inner is not self._obj:
                self._obj = inner  # a manager hands out the stream itself
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self._obj, "__exit__", None)
            return None if exit_ is None else exit_(et, ev, tb)
        finally:
            self._finish(True, ev if isinstance(ev, BaseException) else None)

    # -- async ------------------------------------------------------------------------
    def __aiter__(self) -> StreamProxy:
        return self

    async def __anext__(self) -> Any:
        it = self._iter
        if it is None:
            it = self._iter = self._obj.__aiter__()
        try:
            item = await it.__anext__()
        except StopAsyncIteration:
            self._finish(False)
            raise
        except BaseException as exc:
            self._finish(True, exc)
            raise
        self._rec.item(item)
        return item

    async def aclose(self) -> None:
        try:
            closer = getattr(self._obj, "aclose", None) or getattr(self._obj, "close", None)
            if closer is not None:
                res = closer()
                if hasattr(res, "__await__"):
                    await res
        finally:
            self._finish(True)

    async def __aenter__(self) -> StreamProxy:
        enter = getattr(self._obj, "__aenter__", None)
        if enter is not None:
            try:
                inner = await enter()
            except BaseException as exc:
                self._finish(True, exc)
                raise
            if inner is not None and inner is not self._obj:
                self._obj = inner
        return self

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self._obj, "__aexit__", None)
            return None if exit_ is None else await exit_(et, ev, tb)
        finally:
            self._finish(True, ev if isinstance(ev, BaseException) else None)

    # -- the rest ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in _OWN:  # never forward our own (unset) slots: no recursion
            raise AttributeError(name)
        if name == "text_stream" and type(self._obj).__name__.endswith("MessageStream"):
            # anthropic's helper: text read through the proxy, so the chunks are seen.
            return self._atext() if hasattr(self._obj, "__aiter__") else self._text()
        return getattr(self._obj, name)

    def _text(self) -> Iterator[str]:
        for event in self:
            if getattr(event, "type", None) == "text":
                yield event.text

    async def _atext(self) -> AsyncIterator[str]:
        async for event in self:
            if getattr(event, "type", None) == "text":
                yield event.text

    def __del__(self) -> None:
        # Dropped before the end: the span is still recorded, as partial.
        if not self._done:
            try:
                self._finish(True)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __repr__(self) -> str:
        return f"<rastir stream of {self._obj!r}>"


_OWN: Final = frozenset(StreamProxy.__slots__)


class StreamHook:
    """What ``@llm`` gives the wrappers: a recorder per generator call, and
    :meth:`adopt` for what a plain function returns.

    ``adopt`` hands back a proxy that owns the span's end when the result is a
    stream. Otherwise it runs ``respond`` (the response phase) itself and returns
    None: fewer calls on ``@llm``'s hot path.
    """

    __slots__ = ("explicit_model", "explicit_operation", "explicit_provider", "respond")

    def __init__(
        self,
        explicit_model: str | None,
        explicit_provider: str | None,
        respond: Callable[[dict[str, Any], Any, str | None, str | None], None] | None = None,
        explicit_operation: str | None = None,
    ) -> None:
        self.explicit_model = explicit_model
        self.explicit_provider = explicit_provider
        self.respond = respond
        self.explicit_operation = explicit_operation

    def begin(self, span: Span) -> StreamRecorder:
        rec = StreamRecorder(span, self.explicit_model, self.explicit_provider)
        rec.explicit_operation = self.explicit_operation
        return rec

    def adopt(self, span: Span, result: Any) -> Any:
        """A proxy that owns the span's end when ``result`` is a stream, else None."""
        cls = type(result)
        how = _ADOPT.get(cls)
        if how is None:
            if len(_ADOPT) >= 1024:
                _ADOPT.clear()
            how = _ADOPT[cls] = _classify(cls)
        if how == _NO:
            respond = self.respond
            if respond is not None and result is not None and cls not in _SCALARS:
                attrs = span._attrs  # made with a dict by the @llm wrapper
                if attrs is None:
                    attrs = span.attributes
                respond(attrs, result, self.explicit_model, self.explicit_provider)
                if span._inner_llm is not None:
                    mark_if_counted_inside(span)
            return None
        if how == _BEDROCK:
            stream = result.get("stream")
            if stream is None or (
                type(stream).__name__ != "EventStream" and stream.__class__ is not StreamProxy
            ):
                respond = self.respond
                if respond is not None:
                    respond(span.attributes, result, self.explicit_model, self.explicit_provider)
                    if span._inner_llm is not None:
                        mark_if_counted_inside(span)
                return None
            rec = self.begin(span)
            meta = result.get("ResponseMetadata")
            if isinstance(meta, Mapping):  # the request id: the stream's events have none
                rid = meta.get("RequestId")
                if isinstance(rid, str) and rid:
                    rec.response_id = rid
            proxy = StreamProxy(stream, span, rec)
            copy = dict(result)
            copy["stream"] = proxy
            return copy
        return StreamProxy(result, span, self.begin(span))


_SCALARS: Final = frozenset((str, bytes, int, float, bool))
_ADOPT: dict[type, int] = {}
