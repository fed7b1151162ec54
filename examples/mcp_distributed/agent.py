"""An agent that plans a trip with the weather MCP server: one trace across both.

    python examples/mcp_distributed/agent.py                  # starts server.py over stdio
    python examples/mcp_distributed/agent.py --url http://127.0.0.1:8000/mcp

Set ``RASTIR_PUSH_URL`` (for both processes) to see the whole trace in the collector:
the agent's span, its ``mcp.client`` spans, and under them the server's ``mcp.server``
spans and the station lookups. The last line printed is the trace id.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

import rastir
from rastir.middleware import instrument_httpx

SERVER = Path(__file__).with_name("server.py")


def _transport(url: str | None, http: httpx2.AsyncClient) -> object:
    if url is None:
        # The server inherits RASTIR_* so that it exports to the same collector.
        env = {k: v for k, v in os.environ.items() if k.startswith("RASTIR_") or k == "PATH"}
        return StdioServerParameters(command=sys.executable, args=[str(SERVER), "stdio"], env=env)
    # Over HTTP, instrument the httpx2 client so the HTTP requests carry the trace too.
    return streamable_http_client(url, http_client=instrument_httpx(http))


@rastir.agent(agent_name="trip-planner")
async def plan_trip(cities: list[str], url: str | None) -> tuple[list[str], str | None]:
    trace_id = rastir.current_trace_id()
    async with (
        httpx2.AsyncClient() as http,
        rastir.wrap(Client(_transport(url, http))) as client,  # type: ignore[arg-type]
    ):
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        lines = []
        for city in cities:
            result = await client.call_tool("forecast", {"city": city})
            text = result.content[0].text  # type: ignore[union-attr]
            lines.append(f"{'!' if result.is_error else '-'} {text}")
        return lines, trace_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a streamable-HTTP server; default: server.py over stdio")
    parser.add_argument("cities", nargs="*", default=["Lisbon", "Oslo", "Atlantis"])
    args = parser.parse_args(argv)
    rastir.configure(service="trip-agent")
    lines, trace_id = anyio.run(plan_trip, args.cities, args.url)
    for line in lines:
        print(line)
    rastir.shutdown()  # delivers what is still queued
    print(f"trace {trace_id}")


if __name__ == "__main__":
    main()
