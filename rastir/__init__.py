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
    current_baggage,
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
    from rastir.adapters import (
        AdapterResult,
        BaseAdapter,
        TokenDelta,
        register_adapter,
    )
    from rastir.frameworks import (
        adk_agent,
        crew_kickoff,
        framework_agent,
        langgraph_agent,
        llamaindex_agent,
        strands_agent,
    )
    from rastir.mcp_bridge.server import mcp_endpoint
    from rastir.pricing import (
        PricingProfile,
        PricingRegistry,
        TokenUsage,
        get_pricing,
        set_model_price,
        use_pricing_profile,
    )

__all__ = [
    "AdapterResult",
    "BaseAdapter",
    "PricingProfile",
    "PricingRegistry",
    "RastirError",
    "Settings",
    "Span",
    "SpanContext",
    "TokenDelta",
    "TokenUsage",
    "__version__",
    "adk_agent",
    "agent",
    "configure",
    "continue_trace",
    "crew_kickoff",
    "current_agent",
    "current_baggage",
    "current_model",
    "current_provider",
    "current_span",
    "current_span_id",
    "current_trace_id",
    "extract",
    "flush",
    "framework_agent",
    "get_pricing",
    "get_settings",
    "inject",
    "langgraph_agent",
    "llamaindex_agent",
    "llm",
    "mcp_endpoint",
    "metric",
    "register_adapter",
    "retrieval",
    "set_model_price",
    "shutdown",
    "span",
    "strands_agent",
    "tool",
    "trace",
    "use_pricing_profile",
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
    if name in _FRAMEWORK_DECORATORS:
        # The framework decorators are imported on first use too: ``import rastir``
        # stays as fast as before.
        from rastir import frameworks

        value = getattr(frameworks, name)
        globals()[name] = value
        return value
    if name in _ADAPTER_NAMES:
        # Adapters load on first use (the first @llm loads them anyway).
        from rastir import adapters

        value = getattr(adapters, name)
        globals()[name] = value
        return value
    if name in _PRICING_NAMES:
        # Pricing is loaded on first use: it is not needed to import rastir.
        from rastir import pricing

        value = getattr(pricing, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rastir' has no attribute {name!r}")


_FRAMEWORK_DECORATORS = frozenset(
    {
        "adk_agent",
        "crew_kickoff",
        "framework_agent",
        "langgraph_agent",
        "llamaindex_agent",
        "strands_agent",
    }
)

_PRICING_NAMES = frozenset(
    {
        "PricingProfile",
        "PricingRegistry",
        "TokenUsage",
        "get_pricing",
        "set_model_price",
        "use_pricing_profile",
    }
)


_ADAPTER_NAMES = frozenset({"AdapterResult", "BaseAdapter", "TokenDelta", "register_adapter"})


def __dir__() -> list[str]:
    lazy = {"mcp_endpoint", *_FRAMEWORK_DECORATORS, *_PRICING_NAMES, *_ADAPTER_NAMES}
    private = {"_FRAMEWORK_DECORATORS", "_PRICING_NAMES", "_ADAPTER_NAMES"}
    return sorted({*globals(), *lazy} - private)
