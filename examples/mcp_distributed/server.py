"""A weather MCP server whose tool calls join the calling agent's trace.

    python examples/mcp_distributed/server.py stdio
    python examples/mcp_distributed/server.py http --port 8000

Set ``RASTIR_PUSH_URL`` to send the spans to a collector. Over HTTP the app is wrapped
in ``RastirMiddleware``, so each request is an ``http.server`` span too, linked from the
tool's ``mcp.server`` span.
"""

from __future__ import annotations

import argparse
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import rastir
from rastir import mcp_endpoint

server = MCPServer("weather")

_FORECASTS = {"lisbon": (24, "sunny"), "oslo": (3, "sleet"), "nairobi": (27, "clear")}


@rastir.retrieval(name="stations.lookup")
def lookup(city: str) -> tuple[int, str]:
    """Read the latest observation of the city's weather station."""
    try:
        return _FORECASTS[city.lower()]
    except KeyError:
        raise LookupError(f"no weather station in {city}") from None


@server.tool()
@mcp_endpoint
async def forecast(city: str) -> str:
    """Tomorrow's forecast for a city."""
    try:
        celsius, sky = lookup(city)
    except LookupError as e:
        # A ToolError reaches the model as an isError result: tool_error on both sides.
        raise ToolError(str(e)) from e
    return f"{city}: {sky}, {celsius} °C"


@server.tool()
@mcp_endpoint
def to_fahrenheit(celsius: float) -> float:
    """Convert a temperature (a sync tool: MCPServer runs it in a worker thread)."""
    return round(celsius * 9 / 5 + 32, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    rastir.configure(service="weather-server")
    try:
        if args.transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            serve_http(args.host, args.port)
    finally:
        rastir.shutdown()


def serve_http(host: str, port: int) -> None:
    import signal
    import socket

    import uvicorn

    from rastir.middleware import RastirMiddleware

    app = RastirMiddleware(server.streamable_http_app())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    print(f"serving MCP on http://{host}:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    http_server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))

    # uvicorn stops gracefully on SIGTERM, then sends the signal again to the handler
    # it found: with the default one the process would die before main() flushes.
    def on_sigterm(signum: int, frame: object) -> None:
        http_server.should_exit = True

    signal.signal(signal.SIGTERM, on_sigterm)
    http_server.run(sockets=[sock])


if __name__ == "__main__":
    main()
