"""Every GenAI, MCP and HTTP attribute we export is a current semantic-convention name.

The names come from the installed ``opentelemetry-semantic-conventions`` package
(stable ``opentelemetry.semconv.attributes`` and ``opentelemetry.semconv._incubating
.attributes``). A name the package marks "Deprecated: Replaced by ..." must never be
exported; one it marks "Deprecated: Moved to ..." (the GenAI names, which moved to
their own repository) is current.

The spans are real: made by rastir's decorators, its ASGI middleware and httpx
transport, and its MCP bridge around a real in-process MCP server.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx
import pytest
from mcp import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.export._encode import to_wire
from rastir.export.otlp import RENAMED, encode_request
from rastir.middleware.asgi import RastirMiddleware
from rastir.middleware.httpx import instrument_httpx
from rastir.spans import Span
from rastir.testing import capture_spans
from tests.mcp_bridge.tools import Probe, build

pytestmark = pytest.mark.anyio

# Namespaces the semantic conventions own (GenAI, MCP, HTTP and what those reuse).
CHECKED = (
    "gen_ai.",
    "mcp.",
    "http.",
    "url.",
    "server.",
    "client.",
    "network.",
    "error.",
    "jsonrpc.",
    "rpc.",
    "user_agent.",
    "exception.",
)
_CONSTANT = re.compile(r'^([A-Z][A-Z0-9_]*): Final = "([^"]+)"\n"""\n(.*?)"""', re.M | re.S)


@cache
def semconv() -> tuple[frozenset[str], dict[str, str], frozenset[str]]:
    """(defined names, deprecated name -> why, template prefixes) from the package."""
    defined: set[str] = set()
    deprecated: dict[str, str] = {}
    templates: set[str] = set()
    for package_name in (
        "opentelemetry.semconv.attributes",
        "opentelemetry.semconv._incubating.attributes",
    ):
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for const, name, doc in _CONSTANT.findall(inspect.getsource(module)):
                if const.endswith("_TEMPLATE"):
                    templates.add(name + ".")
                    continue
                defined.add(name)
                first = doc.strip().splitlines()[0] if doc.strip() else ""
                if first.startswith("Deprecated:") and "Moved to" not in first:
                    deprecated[name] = first
    assert {"gen_ai.provider.name", "mcp.method.name", "http.request.method"} <= defined
    return frozenset(defined), deprecated, frozenset(templates)


def exported_attributes(spans: list[Span]) -> Iterator[tuple[str, str, Any]]:
    """(span name, attribute name, value) of every attribute in the OTLP request."""
    body = encode_request([(rastir.get_settings().resource(), [to_wire(s) for s in spans])])
    request = ExportTraceServiceRequest.FromString(body)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                for kv in s.attributes:
                    yield s.name, kv.key, kv.value
                for ev in s.events:
                    for kv in ev.attributes:
                        yield f"{s.name} event {ev.name}", kv.key, kv.value
                for ln in s.links:
                    for kv in ln.attributes:
                        yield f"{s.name} link", kv.key, kv.value


class RateLimitError(Exception):
    status_code = 429


@rastir.llm(model="gpt-4o", provider="openai")
def ask(q: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4},
    }


@rastir.llm(model="gpt-4o", provider="openai")
def ask_too_fast(q: str) -> str:
    raise RateLimitError("slow down")


@rastir.tool(tool_name="search", description="Searches the knowledge base.")
def search(q: str) -> list[str]:
    return [q]


@rastir.retrieval
def fetch(q: str) -> list[str]:
    return [q, q]


@rastir.agent(agent_name="triage")
def triage(q: str) -> str:
    ask(q)
    try:
        ask_too_fast(q)
    except RateLimitError:
        pass
    fetch(q)
    return search(q)[0]


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"answer": triage(request.path_params["q"])})


async def test_every_exported_semconv_name_is_current_and_defined() -> None:
    app = RastirMiddleware(Starlette(routes=[Route("/ask/{q}", endpoint)]))
    with capture_spans() as spans:
        async with instrument_httpx(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")
        ) as client:
            r = await client.get("/ask/hello", headers={"user-agent": "tests"})
            assert r.status_code == 200
            assert (await client.get("/missing")).status_code == 404
        async with rastir.wrap(Client(build(Probe()))) as mcp_client:
            await mcp_client.list_tools()
            await mcp_client.call_tool("add", {"a": 1, "b": 2})
            await mcp_client.get_prompt("greet", {"name": "x"})
            await mcp_client.read_resource("res://doc")
    kinds = {s.kind for s in spans}
    assert {"agent", "llm", "tool", "retrieval", "http.server", "http.client"} <= kinds
    assert {"mcp.client", "mcp.server"} <= kinds

    defined, deprecated, templates = semconv()
    seen: set[str] = set()
    problems: list[str] = []
    for span_name, key, _ in exported_attributes(list(spans)):
        if not key.startswith(CHECKED):
            assert key.startswith(
                ("rastir.", "service.", "telemetry.", "process.", "deployment.", "index")
            ), key
            continue
        seen.add(key)
        if key in deprecated:
            problems.append(f"{span_name}: {key} is deprecated ({deprecated[key]})")
        elif key not in defined and not key.startswith(tuple(templates)):
            problems.append(f"{span_name}: {key} is not a semantic-convention name")
    assert problems == []
    # The test saw what it is about: the GenAI, MCP and HTTP names that matter.
    assert {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.agent.name",
        "gen_ai.tool.name",
        "mcp.method.name",
        "jsonrpc.request.id",
        "http.request.method",
        "http.response.status_code",
        "http.route",
        "error.type",
        "exception.type",
    } <= seen
    assert "gen_ai.system" not in seen


def test_every_rename_target_is_current_and_every_source_deprecated() -> None:
    defined, deprecated, _ = semconv()
    for old, new in RENAMED.items():
        assert new in defined, new
        assert new not in deprecated, new
        assert old in deprecated, old
        # Where the package names the replacement, it is ours.
        replaced = re.search(r"Replaced by `([^`]+)`", deprecated[old])
        if replaced is not None:
            assert replaced.group(1) == new, (old, deprecated[old])
