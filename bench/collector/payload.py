"""The benchmark's batch: 100 spans shaped like one agent run, as the SDK sends them.

One HTTP request, one agent, and the LLM, tool, retrieval and MCP calls it makes, with
the attributes the SDK sets. ``PREFIX`` marks where the load generator writes fresh
ids per request, so the store sees new traces rather than the same spans again.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

PREFIX = "PPPPPPPP"  # 8 hex digits, replaced per request
SPANS_PER_BATCH = 100

_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro")
_PROVIDERS = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "claude-sonnet-4": "anthropic",
    "gemini-2.5-pro": "gcp.gemini",
}
_TOOLS = ("search", "calculator", "weather", "sql_query", "send_email", "read_file")


def _mix(n: int) -> list[str]:
    # per 100: 1 http.server, 1 agent, 40 llm, 30 tool, 10 retrieval, 8+8 mcp, 2 custom
    kinds = ["http.server", "agent"]
    kinds += ["llm"] * 40 + ["tool"] * 30 + ["retrieval"] * 10
    kinds += ["mcp.client"] * 8 + ["mcp.server"] * 8 + ["custom"] * 2
    return (kinds * (n // 100 + 1))[:n]


def batch(
    n: int = SPANS_PER_BATCH, prefix: str | None = None, seed: int = 7, service: str = "bench-app"
) -> dict[str, Any]:
    """A wire batch as builtins; ids start with ``prefix`` (``PREFIX`` by default)."""
    rng = random.Random(seed)
    pfx = PREFIX if prefix is None else prefix
    trace_id = pfx + f"{rng.getrandbits(96):024x}"
    t0 = 1_750_000_000_000_000_000
    spans: list[dict[str, Any]] = []
    root_id = agent_id = None
    for i, kind in enumerate(_mix(n)):
        span_id = pfx + "%08x" % (i + 1)
        start = t0 + i * 1_000_000
        attrs: dict[str, Any] = {}
        parent = agent_id
        name = kind
        if kind == "http.server":
            attrs = {
                "http.request.method": "POST",
                "http.route": "/chat",
                "http.response.status_code": 200,
                "url.path": "/chat",
            }
            parent = None
            root_id = span_id
            name = "POST /chat"
        elif kind == "agent":
            attrs = {"gen_ai.agent.name": "support_agent", "gen_ai.operation.name": "invoke_agent"}
            parent = root_id
            agent_id = span_id
            name = "support_agent"
        elif kind == "llm":
            model = _MODELS[rng.randrange(len(_MODELS))]
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": _PROVIDERS[model],
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.agent.name": "support_agent",
                "gen_ai.usage.input_tokens": rng.randrange(50, 4000),
                "gen_ai.usage.output_tokens": rng.randrange(5, 800),
                "gen_ai.response.finish_reasons": ["stop"],
                "rastir.cost.usd": round(rng.random() / 100, 6),
            }
            if i % 4 == 0:
                attrs["rastir.ttft_ms"] = round(rng.uniform(80, 900), 1)
            name = f"chat {model}"
        elif kind == "tool":
            tool = _TOOLS[rng.randrange(len(_TOOLS))]
            attrs = {
                "gen_ai.tool.name": tool,
                "gen_ai.agent.name": "support_agent",
                "gen_ai.operation.name": "execute_tool",
            }
            name = f"execute_tool {tool}"
        elif kind == "retrieval":
            attrs = {
                "gen_ai.agent.name": "support_agent",
                "rastir.retrieval.documents": rng.randrange(1, 20),
            }
            name = "retrieve kb"
        elif kind in ("mcp.client", "mcp.server"):
            tool = _TOOLS[rng.randrange(len(_TOOLS))]
            attrs = {
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": tool,
                "mcp.session.id": f"{rng.getrandbits(128):032x}",
                "jsonrpc.request.id": str(i),
            }
            name = f"tools/call {tool}"
        elif kind == "custom":
            attrs = {"rastir.metric.name": "rerank"}
            name = "rerank"
        span: dict[str, Any] = {
            "trace_id": trace_id,
            "span_id": span_id,
            "name": name,
            "kind": kind,
            "start_time_unix_nano": start,
            "end_time_unix_nano": start + rng.randrange(1_000_000, 3_000_000_000),
            "attributes": attrs,
        }
        if parent is not None:
            span["parent_span_id"] = parent
        if i % 25 == 7:
            span["status"] = "error"
            span["error"] = {
                "type": "rate_limit",
                "exception_type": "RateLimitError",
                "message": "429 Too Many Requests",
            }
        spans.append(span)
    return {
        "resource": {
            "service.name": service,
            "service.version": "1.0.0",
            "deployment.environment.name": "bench",
        },
        "spans": spans,
        "dropped": 0,
    }


def body(n: int = SPANS_PER_BATCH, prefix: str | None = None, seed: int = 7) -> bytes:
    return msgspec.json.encode(batch(n, prefix, seed))
