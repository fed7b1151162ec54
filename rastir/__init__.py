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
    from rastir.pricing import (
        PricingProfile,
        PricingRegistry,
        TokenUsage,
        get_pricing,
        set_model_price,
        use_pricing_profile,
    )

__all__ = [
    "PricingProfile",
    "PricingRegistry",
    "RastirError",
    "Settings",
    "Span",
    "SpanContext",
    "TokenUsage",
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
    "get_pricing",
    "get_settings",
    "inject",
    "llm",
    "mcp_endpoint",
    "metric",
    "retrieval",
    "set_model_price",
    "shutdown",
    "span",
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
    if name in _PRICING_NAMES:
        # Pricing is loaded on first use: it is not needed to import rastir.
        from rastir import pricing

        value = getattr(pricing, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rastir' has no attribute {name!r}")


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


def __dir__() -> list[str]:
    lazy = {"mcp_endpoint", *_PRICING_NAMES}
    return sorted({*globals(), *lazy} - {"_PRICING_NAMES"})
