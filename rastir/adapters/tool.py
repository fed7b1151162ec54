"""Tool adapter (priority 10): tool results returned by an ``@llm`` function
(LangChain ``ToolMessage``, MCP ``CallToolResult``, LlamaIndex ``ToolOutput``). No
model and no tokens: the tool's name, call id and whether it failed."""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters.base import AdapterResult, BaseAdapter, str_or_none

__all__ = ["ToolAdapter"]

_RESULTS: Final = {
    "ToolMessage": "langchain",
    "CallToolResult": "mcp",
    "ToolOutput": "llama_index",
}


class ToolAdapter(BaseAdapter):
    name = "tool"
    priority = 10

    def match_type(self, cls: type) -> bool | None:
        prefix = _RESULTS.get(cls.__name__)
        return prefix is not None and cls.__module__.startswith(prefix)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        extra = r.extra_attributes
        name = str_or_none(getattr(result, "name", None)) or str_or_none(
            getattr(result, "tool_name", None)
        )
        if name:
            extra["gen_ai.tool.name"] = name
        call_id = str_or_none(getattr(result, "tool_call_id", None))
        if call_id:
            extra["gen_ai.tool.call.id"] = call_id
        failed = getattr(result, "isError", None)
        if failed is None:
            failed = getattr(result, "is_error", None)
        if failed is None:
            failed = getattr(result, "status", None) == "error"
        extra["rastir.tool.error"] = bool(failed)
        return r
