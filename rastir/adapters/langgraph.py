"""LangGraph adapter (framework, priority 260).

Response: the state dict ``graph.invoke()`` returns (a ``messages`` list of LangChain
messages) and ``StateSnapshot`` from ``graph.get_state()``; both unwrap to the last
``AIMessage``, for the LangChain adapter to read, and add graph metadata (message
counts; for snapshots the next nodes, tasks, step and source). Streaming:
``(AIMessageChunk, metadata)`` tuples from ``stream_mode="messages"``. Request: a
compiled graph among the arguments; the chat model is looked for in its nodes'
functions (closures and defaults), which is where LangGraph apps keep it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters.base import FRAMEWORK, AdapterResult, BaseAdapter, TokenDelta
from rastir.adapters.langchain import chat_model_info, is_langchain_model, message_chunk_delta

__all__ = ["LangGraphAdapter"]

_MAX_NODES: Final = 32


def _is_message(obj: Any) -> bool:
    cls = type(obj)
    return cls.__module__.startswith("langchain_core.messages")


def _kind(obj: Any) -> str:
    return str(getattr(obj, "type", ""))


def _state_metadata(messages: list[Any], extra: dict[str, Any]) -> Any:
    ai = tool = 0
    last_ai = None
    for m in messages:
        kind = _kind(m)
        if kind in ("ai", "AIMessageChunk"):
            ai += 1
            last_ai = m
        elif kind == "tool":
            tool += 1
    extra["langgraph_message_count"] = len(messages)
    extra["langgraph_ai_message_count"] = ai
    extra["langgraph_tool_message_count"] = tool
    return last_ai


def _is_state(obj: Any) -> bool:
    messages = obj.get("messages")
    return messages.__class__ is list and bool(messages) and _is_message(messages[-1])


class LangGraphAdapter(BaseAdapter):
    name = "langgraph"
    kind = FRAMEWORK
    priority = 260
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        if cls.__name__ == "StateSnapshot" and cls.__module__.startswith("langgraph"):
            return True
        return None if issubclass(cls, Mapping) else False

    def can_handle(self, result: Any) -> bool:
        # Only asked about mappings: match_type decides every other class.
        return _is_state(result)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        extra = r.extra_attributes
        if isinstance(result, Mapping):
            r.unwrapped_result = _state_metadata(result["messages"], extra)
            return r
        values = getattr(result, "values", None)
        if isinstance(values, Mapping) and isinstance(values.get("messages"), list):
            r.unwrapped_result = _state_metadata(values["messages"], extra)
        nxt = getattr(result, "next", None)
        if isinstance(nxt, (tuple, list)):
            extra["langgraph_next_nodes"] = [str(n) for n in nxt]
        tasks = getattr(result, "tasks", None)
        if isinstance(tasks, (tuple, list)):
            extra["langgraph_task_count"] = len(tasks)
            extra["langgraph_task_names"] = [str(getattr(t, "name", "")) for t in tasks]
        meta = getattr(result, "metadata", None)
        if isinstance(meta, Mapping):
            step = meta.get("step")
            if isinstance(step, int):
                extra["langgraph_step"] = step
            source = meta.get("source")
            if isinstance(source, str):
                extra["langgraph_source"] = source
        return r

    # -- request: a compiled graph; its model lives in a node's function -----------------
    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in ("CompiledStateGraph", "CompiledGraph", "Pregel") and (
            cls.__module__.startswith("langgraph")
        )

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        nodes = getattr(obj, "nodes", None)
        if not isinstance(nodes, Mapping):
            return None
        for i, node in enumerate(nodes.values()):
            if i >= _MAX_NODES:
                break
            found = _model_in_runnable(getattr(node, "bound", None))
            if found is not None:
                return found
        return None

    # -- streaming -------------------------------------------------------------------------
    def match_stream_type(self, cls: type) -> bool | None:
        return None if cls is tuple else False

    def can_handle_stream(self, chunk: Any) -> bool:
        return (
            len(chunk) == 2
            and isinstance(chunk[1], Mapping)
            and type(chunk[0]).__name__ == "AIMessageChunk"
        )

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        message, meta = chunk
        d = message_chunk_delta(message)
        node = meta.get("langgraph_node")
        if isinstance(node, str):
            if d.extra_attributes is None:
                d.extra_attributes = {}
            d.extra_attributes["langgraph_node"] = node
        return d


def _model_in_runnable(runnable: Any) -> AdapterResult | None:
    """A LangChain model held by a node: the runnable itself, or a closure cell or
    default argument of the function it wraps."""
    if runnable is None:
        return None
    if is_langchain_model(type(runnable)):
        return chat_model_info(runnable)
    func = getattr(runnable, "func", None) or getattr(runnable, "afunc", None)
    func = getattr(func, "__wrapped__", func)
    candidates: list[Any] = []
    for cell in getattr(func, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    candidates.extend(getattr(func, "__defaults__", None) or ())
    code = getattr(func, "__code__", None)
    globs = getattr(func, "__globals__", None)
    if code is not None and isinstance(globs, dict):
        candidates.extend(globs[n] for n in code.co_names if n in globs)
    for value in candidates:
        if is_langchain_model(type(value)):
            return chat_model_info(value)
    return None
