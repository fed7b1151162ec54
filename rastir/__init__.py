"""rastir: traces and Prometheus metrics for LLM applications, agents and MCP servers.

Decorate your code, point it at a collector, and every call becomes a span:

    import rastir

    rastir.configure(service="support-bot", push_url="http://127.0.0.1:8080")

    @rastir.agent(agent_name="triage")
    def triage(ticket): ...
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from rastir._config import Settings, configure, flush, get_settings, shutdown
from rastir.context import (
    current_agent,
    current_model,
    current_provider,
    current_span,
    current_span_id,
    current_trace_id,
    use_span,
)
from rastir.decorators import agent, llm, metric, retrieval, span, tool, trace
from rastir.errors import RastirError
from rastir.propagation import continue_trace, extract, inject
from rastir.spans import Span, SpanContext
from rastir.wrap import wrap

if _TYPE_CHECKING:
    from rastir.mcp_bridge.server import mcp_endpoint

__all__ = [
    "RastirError",
    "Settings",
    "Span",
    "SpanContext",
    "__version__",
    "agent",
    "configure",
    "continue_trace",
    "current_agent",
    "current_model",
    "current_provider",
    "current_span",
    "current_span_id",
    "current_trace_id",
    "extract",
    "flush",
    "get_settings",
    "inject",
    "llm",
    "mcp_endpoint",
    "metric",
    "retrieval",
    "shutdown",
    "span",
    "tool",
    "trace",
    "use_span",
    "wrap",
]


def __getattr__(name: str) -> _Any:
    # ``mcp_endpoint`` needs the mcp SDK: it is imported on first use, so that
    # ``import rastir`` loads no optional part (and works without mcp installed).
    if name == "mcp_endpoint":
        from rastir.mcp_bridge.server import mcp_endpoint as endpoint

        globals()["mcp_endpoint"] = endpoint
        return endpoint
    raise AttributeError(f"module 'rastir' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "mcp_endpoint"})
