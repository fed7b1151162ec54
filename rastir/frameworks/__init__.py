"""Framework decorators: one decorator on the function that runs an agent framework.

``@framework_agent`` finds the framework from the call's arguments; ``@langgraph_agent``,
``@llamaindex_agent``, ``@crew_kickoff``, ``@adk_agent`` and ``@strands_agent`` name it.
Each opens the agent span and, for that call only, turns on the framework's own hooks
(LangChain callbacks, the LlamaIndex instrumentation dispatcher, ADK plugins, Strands
hooks, the CrewAI event bus), so every node, model call and tool call inside becomes a
child span without decorating anything else and without patching any class.

The framework modules are imported on the first call that needs them, never by
``import rastir``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast, overload

from rastir.decorators import _apply, _check_name, _shortname
from rastir.frameworks._base import (
    Activate,
    iter_objects,
    make_begin,
    wrap_agen,
    wrap_async,
    wrap_gen,
    wrap_sync,
)
from rastir.spans import AttributeValue

__all__ = [
    "FRAMEWORKS",
    "FrameworkDecorator",
    "adk_agent",
    "crew_kickoff",
    "detect_framework",
    "framework_agent",
    "langgraph_agent",
    "llamaindex_agent",
    "strands_agent",
]

F = TypeVar("F", bound=Callable[..., Any])

# framework -> (integration module, module prefixes of its objects)
FRAMEWORKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "langgraph": ("rastir.frameworks._langchain", ("langgraph.", "langchain")),
    # LlamaIndex's Workflow lives in the llama-index-workflows package (``workflows``);
    # ``llama_index.core.workflow`` re-exports it.
    "llamaindex": ("rastir.frameworks._llamaindex", ("llama_index.", "workflows.")),
    "crewai": ("rastir.frameworks._crewai", ("crewai.",)),
    "adk": ("rastir.frameworks._adk", ("google.adk.",)),
    "strands": ("rastir.frameworks._strands", ("strands.",)),
}
_activators: dict[str, Activate] = {}


def _activator(framework: str) -> Activate:
    activate = _activators.get(framework)
    if activate is None:
        module = importlib.import_module(FRAMEWORKS[framework][0])
        activate = _activators[framework] = module.activate
    return activate


def detect_framework(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The framework whose objects (graph, agent, crew, runner, ...) the call receives.

    Objects are recognised by the modules of their class and its bases, so no framework
    is imported, and a user's subclass (a ``Workflow`` defined in ``__main__``, a custom
    LLM, ...) is found like the framework's own classes.
    """
    for obj in iter_objects(args, kwargs):
        for cls in type(obj).__mro__[:-1]:  # every class but ``object``
            module = cls.__module__ + "."
            for framework, (_, prefixes) in FRAMEWORKS.items():
                if module.startswith(prefixes):
                    return framework
    return None


def _detecting(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, Activate | None]:
    framework = detect_framework(args, kwargs)
    return framework, None if framework is None else _activator(framework)


def _fixed(framework: str) -> Callable[..., tuple[str | None, Activate | None]]:
    def choose(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, Activate]:
        return framework, _activator(framework)

    return choose


def _decorator(
    fn: Any,
    agent_name: str | None,
    attributes: Mapping[str, AttributeValue] | None,
    framework: str | None,
) -> Any:
    if isinstance(fn, str):
        fn, agent_name = None, fn
    _check_name(agent_name, "agent_name")
    static = dict(attributes or {})
    choose = _detecting if framework is None else _fixed(framework)

    def make(f: Any) -> Any:
        if isinstance(f, (staticmethod, classmethod)):
            return type(f)(make(f.__func__))
        name = agent_name or _shortname(f)
        begin = make_begin(name, static, choose, f"{f.__module__}.{f.__qualname__}")
        if inspect.isasyncgenfunction(f):
            wrapper = wrap_agen(f, begin)
        elif inspect.isgeneratorfunction(f):
            wrapper = wrap_gen(f, begin)
        elif inspect.iscoroutinefunction(f):
            wrapper = wrap_async(f, begin)
        else:
            wrapper = wrap_sync(f, begin)
        functools.update_wrapper(wrapper, f)
        wrapper.__rastir_kind__ = "agent"  # type: ignore[attr-defined]
        return wrapper

    return _apply(fn, make)


_DOC_ARGS = """
    Args:
        fn: the function, when used bare; or the agent name, as ``@deco("planner")``.
        agent_name: defaults to the function's name.
        attributes: constant attributes put on the agent span.

    Raises:
        ValueError: an empty agent name.
"""


@overload
def framework_agent(fn: F, /) -> F: ...
@overload
def framework_agent(
    fn: str | None = None,
    /,
    *,
    agent_name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[F], F]: ...
def framework_agent(
    fn: Any = None,
    /,
    *,
    agent_name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Trace an agent run, finding the framework from the call's arguments.

    A LangGraph graph or LangChain runnable, a LlamaIndex agent or workflow, a CrewAI
    crew, an ADK runner or a Strands agent among the arguments (or one level inside a
    list, tuple or dict argument) selects that framework's hooks. With none, the call
    is a plain ``@agent`` span.
    """
    return _decorator(fn, agent_name, attributes, None)


class FrameworkDecorator(Protocol):
    """The shape of the framework decorators: bare, with a name, or with keywords."""

    @overload
    def __call__(self, fn: F, /) -> F: ...
    @overload
    def __call__(
        self,
        fn: str | None = None,
        /,
        *,
        agent_name: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Callable[[F], F]: ...


def _explicit(framework: str, summary: str) -> FrameworkDecorator:
    def deco(
        fn: Any = None,
        /,
        *,
        agent_name: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Any:
        return _decorator(fn, agent_name, attributes, framework)

    deco.__doc__ = summary + "\n" + _DOC_ARGS
    deco.__name__ = deco.__qualname__ = _NAMES[framework]
    return cast(FrameworkDecorator, deco)


_NAMES = {
    "langgraph": "langgraph_agent",
    "llamaindex": "llamaindex_agent",
    "crewai": "crew_kickoff",
    "adk": "adk_agent",
    "strands": "strands_agent",
}

framework_agent.__doc__ = (framework_agent.__doc__ or "") + _DOC_ARGS

langgraph_agent = _explicit(
    "langgraph",
    "Trace a LangGraph (or LangChain) run: node, model, tool and retriever spans.",
)
llamaindex_agent = _explicit(
    "llamaindex",
    "Trace a LlamaIndex agent, workflow or query engine: model and tool spans.",
)
crew_kickoff = _explicit(
    "crewai",
    "Trace a CrewAI kickoff: crew, task, agent, model and tool spans.",
)
adk_agent = _explicit(
    "adk",
    "Trace a Google ADK run: agent, model and tool spans.",
)
strands_agent = _explicit(
    "strands",
    "Trace a Strands agent call: model and tool spans.",
)
