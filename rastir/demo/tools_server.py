"""The demo's MCP server: order tools on streamable HTTP, each call a traced span.

    python -m rastir.demo.tools_server --port 8001

Tools carry ``@mcp_endpoint``, so each call is an ``mcp.server`` span that continues
the calling agent's trace from ``params._meta``; the app is wrapped in
``RastirMiddleware``, so each HTTP request is an ``http.server`` span too. Order 9999
does not exist: ``lookup_order`` raises ``ToolError``, which the client receives as an
``isError`` result (``error.type=tool_error`` on both sides).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp

import rastir
from rastir.mcp_bridge import mcp_endpoint
from rastir.middleware import RastirMiddleware

__all__ = ["create_app", "server"]

server = MCPServer("demo-tools")

_ORDERS: Final[dict[str, dict[str, Any]]] = {
    "1042": {"status": "shipped", "carrier": "DHL", "eta": "Friday", "days_since": 2},
    "1077": {"status": "delivered", "carrier": "UPS", "eta": None, "days_since": 12},
}
_POLICIES: Final = {
    "returns": "Items can be returned within 30 days of delivery.",
    "shipping": "Orders ship within two working days.",
}


@rastir.retrieval(name="orders.lookup")
async def find_order(order_id: str) -> dict[str, Any]:
    """Read the order from the (in-memory) order database."""
    await anyio.sleep(0.004)
    try:
        return _ORDERS[order_id]
    except KeyError:
        raise LookupError(f"no order {order_id}") from None


@server.tool()
@mcp_endpoint
async def lookup_order(order_id: str) -> str:
    """The status of an order, by its number."""
    try:
        order = await find_order(order_id)
    except LookupError as e:
        # ToolError reaches the client as an isError result: tool_error on both sides.
        raise ToolError(str(e)) from e
    if order["status"] == "delivered":
        return (
            f"Order {order_id} was delivered by {order['carrier']} {order['days_since']} days ago."
        )
    return f"Order {order_id} has {order['status']} with {order['carrier']}, due {order['eta']}."


@server.tool()
@mcp_endpoint
def get_policy(topic: str) -> str:
    """The shop's policy on a topic (a sync tool: MCPServer runs it in a worker thread)."""
    return _POLICIES.get(topic, f"There is no policy about {topic}.")


def create_app() -> ASGIApp:
    """The MCP server's streamable-HTTP app (at ``/mcp``), traced by ``RastirMiddleware``."""
    return RastirMiddleware(server.streamable_http_app())


def main(argv: Sequence[str] | None = None) -> None:
    from rastir.demo._serve import add_listen_options, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_listen_options(parser)
    args = parser.parse_args(argv)
    rastir.configure()  # service and collector from RASTIR_SERVICE, RASTIR_PUSH_URL
    try:
        serve(create_app(), args, path="/mcp")
    finally:
        rastir.shutdown()


if __name__ == "__main__":
    main()
