"""OpenAI adapter (priority 150): Chat Completions, Completions, Responses, Images, and
their chunks and stream events.

Also the base of the Azure OpenAI and Groq adapters, which read the same shapes.
OpenAI counts cached prompt tokens inside ``prompt_tokens``; the cached part is
reported separately as the cache-read count.

Audio and image tokens cost more than text for the models that take or make them
(``gpt-audio``, the ``gpt-image`` models): ``prompt_tokens_details.audio_tokens`` and
``.image_tokens`` and ``completion_tokens_details.audio_tokens`` of a Chat Completion,
and the ``image_tokens`` of an Images API usage, are read as parts of the input and
output counts and priced apart (``usage_details``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    add_usage_detail,
    class_name,
    get,
    in_package,
    infer_cached_part,
    int_or_none,
    str_or_none,
)

__all__ = ["OpenAIAdapter", "read_chat_usage", "read_raw_response"]

_RESPONSES: Final = frozenset(
    ("ChatCompletion", "ParsedChatCompletion", "Completion", "Response", "ParsedResponse")
)
_CHUNKS: Final = frozenset(("ChatCompletionChunk", "Completion"))
# What ``with_raw_response`` returns (openai's legacy one; the ``APIResponse`` of the
# SDKs built the same way: anthropic, groq): the parsed response is inside.
RAW_RESPONSES: Final = frozenset(("LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"))
# The events of the Chat Completions stream helper (``chat.completions.stream()``).
# ``ChunkEvent`` carries the raw chunk, read as one; the others repeat what the chunks
# said (text deltas, done events) and are not read.
_CHAT_EVENTS: Final = frozenset(
    (
        "ChunkEvent",
        "ContentDeltaEvent",
        "ContentDoneEvent",
        "RefusalDeltaEvent",
        "RefusalDoneEvent",
        "FunctionToolCallArgumentsDeltaEvent",
        "FunctionToolCallArgumentsDoneEvent",
        "LogprobsContentDeltaEvent",
        "LogprobsContentDoneEvent",
        "LogprobsRefusalDeltaEvent",
        "LogprobsRefusalDoneEvent",
    )
)
# The Images API's response (``images.generate``, ``images.edit``) and the events of
# its streams that carry an image, the last one with the usage.
_IMAGES: Final = frozenset(("ImagesResponse",))
_IMAGE_EVENTS: Final = frozenset(
    (
        "ImageGenPartialImageEvent",
        "ImageGenCompletedEvent",
        "ImageEditPartialImageEvent",
        "ImageEditCompletedEvent",
    )
)
# Responses API stream events (``responses.create(stream=True)``, ``responses.stream``)
# that carry generated content: the first one marks the time to first token.
_CONTENT_EVENTS: Final = frozenset(
    (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.delta",
        "response.audio.transcript.delta",
    )
)
# Events whose ``response`` is the response so far (model, id) or, for the last three,
# the final one (usage, status).
_RESPONSE_EVENTS: Final = frozenset(
    (
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    )
)


def _is_response_event(cls: type) -> bool:
    name = cls.__name__
    return name.startswith("Response") and name.endswith("Event")


def read_chat_usage(r: AdapterResult | TokenDelta, usage: Any) -> None:
    """``prompt_tokens``/``completion_tokens`` (or the Responses and Images API names)
    into ``r``.

    Also reads OpenAI-compatible SDKs whose token details are plain dicts (mistralai
    keeps ``prompt_tokens_details`` as a dict).
    """
    tin = get(usage, "prompt_tokens")
    if tin is None:
        tin = get(usage, "input_tokens")
        tout = get(usage, "output_tokens")
        details = get(usage, "input_tokens_details")
        out_details = get(usage, "output_tokens_details")
    else:
        tout = get(usage, "completion_tokens")
        details = get(usage, "prompt_tokens_details")
        out_details = get(usage, "completion_tokens_details")
        if out_details is not None:
            # Chat Completions only: xAI's Responses API counts them in output_tokens.
            add_usage_detail(r, "reasoning_tokens", get(out_details, "reasoning_tokens"))
    r.tokens_input = int_or_none(tin)
    r.tokens_output = int_or_none(tout)
    if details is not None:
        r.cache_read_tokens = int_or_none(get(details, "cached_tokens"))
        written = int_or_none(get(details, "cache_write_tokens"))
        if written:
            r.cache_write_tokens = written
    read_chat_parts(r, details, out_details, tin)


def read_chat_parts(
    r: AdapterResult | TokenDelta, prompt: Any, output: Any, prompt_tokens: Any = None
) -> None:
    """The audio and image parts of a usage's input and output token details (objects
    or dicts; either may be None) into ``r.usage_details``: Chat Completions'
    ``prompt_tokens_details``/``completion_tokens_details``, the Images API's
    ``input_tokens_details``/``output_tokens_details``. With ``prompt_tokens``, audio
    the uncached prompt cannot hold is taken as read from the cache."""
    if prompt is not None:
        audio = int_or_none(get(prompt, "audio_tokens"))
        add_usage_detail(r, "input_audio_tokens", audio)
        add_usage_detail(r, "input_image_tokens", get(prompt, "image_tokens"))
        total = int_or_none(prompt_tokens)
        if audio and total is not None:
            cached = int_or_none(get(prompt, "cached_tokens"))
            infer_cached_part(r, "cache_audio_read_tokens", audio, total - (cached or 0), cached)
    if output is not None:
        add_usage_detail(r, "output_audio_tokens", get(output, "audio_tokens"))
        add_usage_detail(r, "output_image_tokens", get(output, "image_tokens"))


def read_raw_response(raw: Any, provider: str) -> AdapterResult:
    """What a ``with_raw_response`` call returned: the response it parses to, read by
    the adapter that reads that.

    The body of a non-streaming call is already read, so parsing costs no I/O, and the
    SDK caches the parsed object: the caller's own ``.parse()`` gets the same one. An
    async ``APIResponse``'s ``parse()`` is a coroutine; its synchronous ``_parse()`` is
    used instead. A streaming raw response is not parsed here (that would start the
    stream): only the provider is known.
    """
    r = AdapterResult(provider=provider)
    if getattr(raw, "_stream", False) or getattr(raw, "_is_sse_stream", False):
        return r
    try:
        parse = raw.parse
        import inspect

        if inspect.iscoroutinefunction(parse):
            if getattr(getattr(raw, "http_response", None), "is_stream_consumed", True) is False:
                return r
            parsed = raw._parse()
        else:
            parsed = parse()
    except Exception:
        return r
    if parsed is None or type(parsed).__name__ in RAW_RESPONSES:
        return r
    from rastir.adapters.registry import get_registry

    found = get_registry().response(parsed)
    if not found:
        return r
    inner = found[-1]
    if not inner.provider:
        inner.provider = provider
    return inner


def _response_status(response: Any) -> str | None:
    """A Responses API response's finish reason: why it is incomplete, else its status."""
    incomplete = getattr(response, "incomplete_details", None)
    reason = getattr(incomplete, "reason", None) if incomplete is not None else None
    return str_or_none(reason) or str_or_none(getattr(response, "status", None))


class OpenAIAdapter(BaseAdapter):
    name = "openai"
    priority = 150
    supports_request = True
    supports_streaming = True
    provider: ClassVar[str] = "openai"
    package: ClassVar[str] = "openai"
    clients: ClassVar[frozenset[str]] = frozenset(("OpenAI", "AsyncOpenAI"))

    def _ours(self, cls: type) -> bool:
        return in_package(cls, self.package)

    def match_type(self, cls: type) -> bool | None:
        name = class_name(cls)  # ParsedChatCompletion[~ResponseFormatT]: a generic
        return (name in _RESPONSES or name in _IMAGES or name in RAW_RESPONSES) and self._ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        # The hot path of the most common response: the class is known (cached match),
        # so its declared fields are read directly.
        try:
            model = result.model
            rid = result.id
        except AttributeError:  # an ImagesResponse has neither
            return self._images(result)
        usage = result.usage
        tin = tout = cached = written = parts = None
        if usage is not None:
            tin = getattr(usage, "prompt_tokens", None)
            if tin is not None:
                tout = usage.completion_tokens
                details = getattr(usage, "prompt_tokens_details", None)
                if model.__class__ is str and ("audio" in model or "image" in model):
                    # Only OpenAI's audio models (gpt-audio, gpt-4o-audio-preview) take
                    # and make audio in Chat Completions, at up to 13x the text price,
                    # and only image models price image tokens apart; other models
                    # skip the reads.
                    holder = AdapterResult()
                    read_chat_parts(
                        holder, details, getattr(usage, "completion_tokens_details", None), tin
                    )
                    parts = holder.usage_details
                # The reasoning tokens are read only for xAI, whose completion_tokens
                # leave them out (write_result); OpenAI's include them.
            else:  # Responses API names
                tin = getattr(usage, "input_tokens", None)
                tout = getattr(usage, "output_tokens", None)
                details = getattr(usage, "input_tokens_details", None)
            if details is not None:
                cached = details.cached_tokens
                written = getattr(details, "cache_write_tokens", None)
        finish = reasons = None
        choices = getattr(result, "choices", None)
        if choices:
            if len(choices) == 1:
                finish = choices[0].finish_reason
            else:
                reasons = [str(c.finish_reason) for c in choices if c.finish_reason]
        elif choices is None:  # Responses API: a status, and why it is incomplete
            finish = _response_status(result)
        # Positional: the cheapest way to build the result.
        return AdapterResult(
            None,
            model if model.__class__ is str and model else str_or_none(model),
            self.provider,
            int_or_none(tin) if tin.__class__ is not int else tin,
            int_or_none(tout) if tout.__class__ is not int else tout,
            finish if finish.__class__ is str or finish is None else str_or_none(finish),
            {},
            cached if cached.__class__ is int else None,
            written if written.__class__ is int else None,
            rid if rid.__class__ is str and rid else None,
            reasons,
            None,
            parts,
        )

    def _images(self, result: Any) -> AdapterResult:
        """An Images API response: its usage (the request names the model). Or a
        ``with_raw_response`` result, which has no ``model`` either."""
        if type(result).__name__ in RAW_RESPONSES:
            return read_raw_response(result, self.provider)
        r = AdapterResult(provider=self.provider)
        r.model = str_or_none(getattr(result, "model", None))
        usage = getattr(result, "usage", None)
        if usage is not None:
            read_chat_usage(r, usage)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        choices = getattr(result, "choices", None)
        if choices:
            out = []
            for c in choices:
                message = getattr(c, "message", None)
                text = getattr(message, "content", None) if message else getattr(c, "text", None)
                item: dict[str, Any] = {"role": "assistant", "parts": to_parts(text)}
                if c.finish_reason:
                    item["finish_reason"] = str(c.finish_reason)
                out.append(item)
            return out
        text = getattr(result, "output_text", None)
        if isinstance(text, str):
            return [{"role": "assistant", "parts": to_parts(text)}]
        return None

    # -- request: the SDK's client objects name the provider -------------------------
    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in self.clients and self._ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider=self.provider)

    # -- streaming ---------------------------------------------------------------------
    def match_stream_type(self, cls: type) -> bool | None:
        name = cls.__name__
        if name in _CHUNKS or name in _IMAGE_EVENTS or _is_response_event(cls):
            return self._ours(cls)
        if name in _CHAT_EVENTS:
            return self._ours(cls)
        return False

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        name = type(chunk).__name__
        if name not in _CHUNKS:
            if name in _IMAGE_EVENTS:
                return self._image_event(chunk)
            if name in _CHAT_EVENTS:
                # The stream helper's events: the raw chunk is in ChunkEvent only.
                inner = getattr(chunk, "chunk", None) if name == "ChunkEvent" else None
                if inner is None:
                    return TokenDelta(provider=self.provider)
                return self.extract_stream_delta(inner)
            return self._response_event(chunk)
        d = TokenDelta(provider=self.provider)
        d.model = str_or_none(getattr(chunk, "model", None))
        d.response_id = str_or_none(getattr(chunk, "id", None))
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            read_chat_usage(d, usage)
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if delta is not None:
                text = getattr(delta, "content", None)
                if text:
                    d.content = True
                    d.text = text
                elif getattr(delta, "tool_calls", None) or getattr(delta, "refusal", None):
                    d.content = True
            elif getattr(choice, "text", None):
                d.content = True
                d.text = choice.text
            if choice.finish_reason:
                d.finish_reason = str(choice.finish_reason)
        return d

    def _image_event(self, event: Any) -> TokenDelta:
        """One Images API stream event: each carries an image (content); the completed
        one carries the usage."""
        d = TokenDelta(provider=self.provider, content=True)
        usage = getattr(event, "usage", None)
        if usage is not None:
            read_chat_usage(d, usage)
        return d

    def _response_event(self, event: Any) -> TokenDelta:
        """One Responses API stream event. Only the content deltas are content; the
        lifecycle events name the model, and the final one (completed, incomplete or
        failed) carries the usage and status."""
        d = TokenDelta(provider=self.provider)
        kind = getattr(event, "type", None)
        if kind in _CONTENT_EVENTS:
            d.content = True
            if kind == "response.output_text.delta":
                text = getattr(event, "delta", None)
                if isinstance(text, str):
                    d.text = text
        elif kind in _RESPONSE_EVENTS:
            response = getattr(event, "response", None)
            if response is not None:
                d.model = str_or_none(getattr(response, "model", None))
                d.response_id = str_or_none(getattr(response, "id", None))
                if kind in ("response.completed", "response.incomplete", "response.failed"):
                    usage = getattr(response, "usage", None)
                    if usage is not None:
                        read_chat_usage(d, usage)
                    d.finish_reason = _response_status(response)
        return d
