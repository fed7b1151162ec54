"""The demo's agent service: FastAPI, traced by ``RastirMiddleware``.

    python -m rastir.demo.agent_service --mcp-url http://127.0.0.1:8001/mcp --port 8000
    curl -s -XPOST 127.0.0.1:8000/runs -H 'content-type: application/json' \\
         -d '{"question": "Where is my order 1042?"}'

``POST /runs`` runs the ``support`` agent on the question: it asks the model (the
offline :class:`~rastir.demo.fake_llm.FakeOpenAI`, returning real ``openai``
``ChatCompletion`` objects), calls the tools the model asks for on the MCP server
(through ``rastir.wrap``, over an instrumented ``httpx2`` client, so the trace crosses
into the server), and asks the model again with the results. The answer carries the
``trace_id``. A failed tool call fails the run: 502, with the trace id too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, Final

import anyio
import httpx2
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

import rastir
from rastir.demo.fake_llm import FakeOpenAI
from rastir.middleware import RastirMiddleware, instrument_httpx

__all__ = ["MODEL", "TOOLS", "ToolFailed", "create_app", "support_agent"]

MODEL: Final = "gpt-4o-mini"
SYSTEM: Final = "You are a support agent for an online shop. Use the tools to look up orders."
TOOLS: Final[list[dict[str, Any]]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "The status of an order, by its number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_policy",
            "description": "The shop's policy on a topic.",
            "parameters": {
                "type": "object",
                "properties": {"topic": {"type": "string"}},
                "required": ["topic"],
            },
        },
    },
]


class ToolFailed(RuntimeError):
    """A tool the model asked for answered with an error."""


class RunRequest(BaseModel):
    question: str


@rastir.llm(provider="openai")
async def chat(llm: FakeOpenAI, messages: list[dict[str, Any]], model: str) -> ChatCompletion:
    return await llm.chat.completions.create(model=model, messages=messages, tools=TOOLS)


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def _call_tools(tools: Client, calls: list[tuple[str, str]]) -> list[CallToolResult]:
    """Call the tools the model asked for in one turn, concurrently, in its order."""
    results: dict[int, CallToolResult] = {}

    async def call(i: int, name: str, arguments: str) -> None:
        results[i] = await tools.call_tool(name, json.loads(arguments))

    async with anyio.create_task_group() as tg:
        for i, (name, arguments) in enumerate(calls):
            tg.start_soon(call, i, name, arguments)
    return [results[i] for i in range(len(calls))]


@rastir.agent(agent_name="support")
async def support_agent(question: str, mcp_url: str, llm: FakeOpenAI) -> str:
    """Answer a support question, with up to three rounds of tool calls."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    answer: str | None = None
    failure = "no answer after three rounds of tool calls"
    async with (
        httpx2.AsyncClient(timeout=10) as http,
        rastir.wrap(
            Client(streamable_http_client(mcp_url, http_client=instrument_httpx(http)))
        ) as tools,
    ):
        for _ in range(3):
            completion = await chat(llm, messages, model=MODEL)
            reply = completion.choices[0].message
            if not reply.tool_calls:
                answer = reply.content or ""
                break
            messages.append(reply.model_dump(exclude_none=True))
            calls = [c for c in reply.tool_calls if c.type == "function"]
            results = await _call_tools(
                tools, [(c.function.name, c.function.arguments) for c in calls]
            )
            errors = [
                f"{c.function.name} failed: {_text(r)}"
                for c, r in zip(calls, results, strict=True)
                if r.is_error
            ]
            if errors:
                failure = "; ".join(errors)
                break
            for c, r in zip(calls, results, strict=True):
                messages.append({"role": "tool", "tool_call_id": c.id, "content": _text(r)})
    # Raised once the MCP session is closed: inside it, mcp's task group would wrap
    # the exception in an ExceptionGroup.
    if answer is None:
        raise ToolFailed(failure)
    return answer


def create_app(mcp_url: str, llm: FakeOpenAI | None = None) -> FastAPI:
    """The agent service. ``mcp_url`` is the MCP server's streamable-HTTP endpoint."""
    model = llm or FakeOpenAI()
    app = FastAPI(title="rastir demo agent")
    app.add_middleware(RastirMiddleware)

    @app.post("/runs")
    async def run(body: RunRequest) -> JSONResponse:
        trace_id = rastir.current_trace_id()
        try:
            answer = await support_agent(body.question, mcp_url, model)
        except ToolFailed as e:
            return JSONResponse({"error": str(e), "trace_id": trace_id}, status_code=502)
        return JSONResponse({"answer": answer, "trace_id": trace_id})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    from rastir.demo._serve import add_listen_options, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcp-url", required=True, help="the MCP server, e.g. .../mcp")
    add_listen_options(parser)
    args = parser.parse_args(argv)
    rastir.configure()  # service and collector from RASTIR_SERVICE, RASTIR_PUSH_URL
    try:
        serve(create_app(args.mcp_url), args)
    finally:
        rastir.shutdown()


if __name__ == "__main__":
    main()
