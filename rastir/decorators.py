"""The decorators: ``@trace``, ``@agent``, ``@llm``, ``@tool``, ``@retrieval``, ``@metric``.

Each works bare (``@agent``) or with arguments (``@agent(agent_name="planner")``), on
sync and async functions, generators, async generators and methods. They follow the
label inheritance of seed 002 §6: ``@agent`` sets the agent; ``@llm``, ``@tool`` and
``@retrieval`` read it; ``@llm`` sets the model and provider for what runs inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from rastir import _config
from rastir._instrument import Hooks, Labels, end_span, instrument, record_exception, start_span
from rastir.context import _current_agent, _current_llm, _current_span
from rastir.export._pipeline import PIPELINE
from rastir.spans import KINDS, AttributeValue, Span

__all__ = ["agent", "llm", "metric", "retrieval", "span", "tool", "trace"]

F = TypeVar("F", bound=Callable[..., Any])
_MAX_CAPTURE = 4096


def _static_attrs(attributes: Mapping[str, AttributeValue] | None) -> Hooks | None:
    if not attributes:
        return None
    frozen = dict(attributes)

    def prepare(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
        span.attributes.update(frozen)  # generators; plain functions copy ``static``
        return None

    return Hooks(prepare, static=frozen)


def _check_name(value: object, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def _apply(fn: Any, make: Callable[[F], F]) -> Any:
    """Support both ``@deco`` and ``@deco(...)``; refuse what is not a function at once."""

    def checked(target: Any) -> Any:
        if not callable(target) and not isinstance(target, (staticmethod, classmethod)):
            raise TypeError(f"expected a function to decorate, got {target!r}")
        return make(target)

    if fn is None:
        return checked
    return checked(fn)


def _qualname(fn: Any) -> str:
    """``Class.method`` for methods, the plain name for functions nested in functions."""
    inner = getattr(fn, "__func__", fn)
    name = str(getattr(inner, "__qualname__", None) or getattr(inner, "__name__", "call"))
    return name.rpartition("<locals>.")[2]


def _shortname(fn: Any) -> str:
    inner = getattr(fn, "__func__", fn)
    return str(getattr(inner, "__name__", None) or "call")


# -- @trace -----------------------------------------------------------------------------
@overload
def trace(fn: F, /) -> F: ...
@overload
def trace(
    fn: str | None = None,
    /,
    *,
    name: str | None = None,
    kind: str = "trace",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def trace(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    kind: str = "trace",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace each call of a function as a span.

    Args:
        fn: the function, when used bare as ``@trace``; or the span name, as
            ``@trace("name")``.
        name: span name; defaults to the function's qualified name.
        kind: span kind; one of :data:`rastir.spans.KINDS`.
        attributes: constant attributes put on every span.

    Raises:
        ValueError: an unknown kind or an empty name.
    """
    if isinstance(fn, str):
        fn, name = None, fn
    _check_name(name, "name")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    hooks = _static_attrs(attributes)
    return _apply(fn, lambda f: instrument(f, name or _qualname(f), kind, hooks))


# -- @agent -----------------------------------------------------------------------------
def _agent_hooks(agent_name: str, attributes: Mapping[str, AttributeValue] | None) -> Hooks:
    static = dict(attributes or {})
    static["gen_ai.operation.name"] = "invoke_agent"
    static["gen_ai.agent.name"] = agent_name
    labels: Labels = ((_current_agent, agent_name),)

    def prepare(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
        span.attributes.update(static)
        return labels

    return Hooks(prepare)


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(
    fn: str | None = None,
    /,
    *,
    agent_name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def agent(
    fn: Any = None,
    /,
    *,
    agent_name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace an agent run. Spans inside it carry its name as ``gen_ai.agent.name``.

    Args:
        fn: the function, when used bare; or the agent name, as ``@agent("planner")``.
        agent_name: defaults to the function's name.
        attributes: constant attributes put on every span.

    Raises:
        ValueError: an empty agent name.
    """
    if isinstance(fn, str):
        fn, agent_name = None, fn
    _check_name(agent_name, "agent_name")

    def make(f: F) -> F:
        n = agent_name or _shortname(f)
        return instrument(f, n, "agent", _agent_hooks(n, attributes))

    return _apply(fn, make)


# -- @llm ------------------------------------------------------------------------------
def _llm_hooks(
    model: str | None,
    provider: str | None,
    operation: str | None,
    attributes: Mapping[str, AttributeValue] | None,
    names: tuple[str, ...] | None = None,
) -> Hooks:
    """The @llm hooks for one function; ``names`` are its positional parameter names,
    so that an argument named like a secret is never taken for the prompt."""
    # The adapters are imported on first decoration, not with ``rastir``.
    from rastir.adapters._apply import request_phase, response_phase, warm_pricing
    from rastir.adapters._nested import mark_if_counted_inside, note_inner
    from rastir.adapters._stream import StreamHook

    if PIPELINE.enabled:  # disabled: nothing is priced, so nothing is loaded ahead
        warm_pricing()

    static: dict[str, AttributeValue] = dict(attributes or {})
    static["gen_ai.operation.name"] = operation or "chat"
    if model:
        static["gen_ai.request.model"] = model
    if provider:
        static["gen_ai.provider.name"] = provider
    has_model = model is not None
    has_provider = provider is not None

    def prepare(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
        attrs = span._attrs  # the wrappers with hooks make spans with a dict
        if attrs is None:
            attrs = span.attributes
        attrs.update(static)
        agent_name = _current_agent.get()
        if agent_name is not None:
            attrs["gen_ai.agent.name"] = agent_name
        parent = _current_span.get()  # not yet this span: it is made current later
        if parent.__class__ is Span and parent.kind == "llm":
            note_inner(parent, span)
        # Request phase: survives an exception raised by the call.
        m, p = request_phase(attrs, args, kwargs, has_model, has_provider, names)
        if has_model:
            m = model
        if has_provider:
            p = provider
        # Children inherit what this call knows; an unknown model or provider is
        # left as inherited from an enclosing @llm (no ContextVar write for it).
        if m is None or p is None:
            if m is None and p is None:
                return None
            outer_m, outer_p = _current_llm.get()
            return ((_current_llm, (outer_m if m is None else m, outer_p if p is None else p)),)
        return ((_current_llm, (m, p)),)

    phase: Callable[[dict[str, Any], Any, str | None, str | None], None] = response_phase
    if operation is not None:  # named by the user: it beats the adapter's, as model= does

        def named(attrs: dict[str, Any], result: Any, m: str | None, p: str | None) -> None:
            response_phase(attrs, result, m, p)
            attrs["gen_ai.operation.name"] = operation

        phase = named

    def complete(span: Span, result: Any) -> None:
        if result is None or result.__class__ in _SCALARS:
            return
        phase(span.attributes, result, model, provider)
        if span._inner_llm is not None:
            mark_if_counted_inside(span)

    # For plain functions the stream hook runs the response phase itself when the
    # result is not a stream; generators' return values get ``complete``.
    return Hooks(prepare, complete, StreamHook(model, provider, phase, operation))


_SCALARS = frozenset((str, bytes, int, float, bool))


@overload
def llm(fn: F, /) -> F: ...
@overload
def llm(
    fn: str | None = None,
    /,
    *,
    name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    operation: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def llm(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    operation: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace a call to a language model.

    Two phases fill the span (see ``docs/adapters.md``). Before the call, the
    arguments: ``model``/``model_id``/``modelId``/``model_name`` keywords (Bedrock ids
    parsed), and SDK client or model objects. After it, the adapter chain reads the
    result: model, provider, tokens, finish reasons, cost. Response values beat
    request guesses; this decorator's ``model=``/``provider=`` beat both. A function
    that is a generator, or returns an SDK stream, is recorded as a stream: time to
    first token, accumulated tokens, and the span ends with the stream.

    Args:
        fn: the function, when used bare; or the span name.
        name: span name; defaults to the function's qualified name.
        model: the model, overriding what the call and response say.
        provider: the provider (``gen_ai.provider.name``), for example ``"openai"``.
        operation: ``gen_ai.operation.name``: ``chat``, ``text_completion``,
            ``embeddings``, ``generate_content``. When not given, the response's
            kind decides (an embeddings response is ``embeddings``), else ``chat``.
        attributes: constant attributes put on every span.

    Raises:
        ValueError: an empty name, model or provider.
    """
    if isinstance(fn, str):
        fn, name = None, fn
    for value, what in ((name, "name"), (model, "model"), (provider, "provider")):
        _check_name(value, what)
    from rastir.adapters._content import positional_names

    return _apply(
        fn,
        lambda f: instrument(
            f,
            name or _qualname(f),
            "llm",
            _llm_hooks(model, provider, operation, attributes, positional_names(f)),
        ),
    )


# -- @tool and @retrieval -------------------------------------------------------------------
def _capture_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        text = repr(args) if not kwargs else f"{args!r} {kwargs!r}"
    except Exception:
        text = "<unprintable arguments>"
    return text[:_MAX_CAPTURE]


def _child_hooks(static: dict[str, AttributeValue], capture_key: str | None) -> Hooks:
    def prepare(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
        attrs = span._attrs  # the wrappers with hooks make spans with a dict
        if attrs is None:
            attrs = span.attributes
        attrs.update(static)
        agent_name = _current_agent.get()
        if agent_name is not None:
            attrs["gen_ai.agent.name"] = agent_name
        if capture_key is not None and _config._settings.capture_content:
            attrs[capture_key] = _capture_args(args, kwargs)
        return None

    return Hooks(prepare)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    fn: str | None = None,
    /,
    *,
    tool_name: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: Any = None,
    /,
    *,
    tool_name: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace a tool an agent calls. Arguments are recorded only with ``capture_content``.

    Raises:
        ValueError: an empty tool name.
    """
    if isinstance(fn, str):
        fn, tool_name = None, fn
    _check_name(tool_name, "tool_name")

    def make(f: F) -> F:
        n = tool_name or _shortname(f)
        static: dict[str, AttributeValue] = dict(attributes or {})
        static["gen_ai.operation.name"] = "execute_tool"
        static["gen_ai.tool.name"] = n
        if description:
            static["gen_ai.tool.description"] = description
        return instrument(f, n, "tool", _child_hooks(static, "gen_ai.tool.call.arguments"))

    return _apply(fn, make)


def _count_documents(span: Span, result: Any) -> None:
    if isinstance(result, (list, tuple)):
        span.attributes["rastir.retrieval.documents"] = len(result)


@overload
def retrieval(fn: F, /) -> F: ...
@overload
def retrieval(
    fn: str | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def retrieval(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace a retrieval step (vector search, document fetch). A list result's length
    is recorded as ``rastir.retrieval.documents``.

    Raises:
        ValueError: an empty name.
    """
    if isinstance(fn, str):
        fn, name = None, fn
    _check_name(name, "name")

    def make(f: F) -> F:
        n = name or _shortname(f)
        static: dict[str, AttributeValue] = dict(attributes or {})
        static["rastir.retrieval.name"] = n
        hooks = _child_hooks(static, "rastir.retrieval.query")
        hooks.complete = _count_documents
        return instrument(f, n, "retrieval", hooks)

    return _apply(fn, make)


# -- @metric ---------------------------------------------------------------------------------
@overload
def metric(fn: F, /) -> F: ...
@overload
def metric(
    fn: str | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def metric(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Count calls, failures and duration of a function as the metric ``name``.

    The collector turns these spans (kind ``custom``, attribute ``rastir.metric.name``)
    into ``rastir_function_calls_total`` and ``rastir_function_duration_seconds``.

    Raises:
        ValueError: an empty name.
    """
    if isinstance(fn, str):
        fn, name = None, fn
    _check_name(name, "name")

    def make(f: F) -> F:
        n = name or _shortname(f)
        static: dict[str, AttributeValue] = dict(attributes or {})
        static["rastir.metric.name"] = n
        return instrument(f, n, "custom", _static_attrs(static))

    return _apply(fn, make)


# -- manual spans ----------------------------------------------------------------------------
@contextmanager
def span(
    name: str,
    kind: str = "custom",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A span around a block: ``with rastir.span("parse") as s: s.set_attribute(...)``.

    When rastir is disabled the block gets a span that is never current and never
    recorded, so the same code runs either way. An exception leaving the block is
    recorded and re-raised unchanged.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not PIPELINE.enabled:
        yield Span(name, kind, None)  # goes nowhere: only the block sees it
        return
    s, token, otel = start_span(name, kind, dict(attributes) if attributes else None)
    try:
        yield s
    except BaseException as exc:
        record_exception(s, exc)
        raise
    finally:
        end_span(s, token, otel)
