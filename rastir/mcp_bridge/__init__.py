"""The MCP bridge: one trace across MCP clients and servers (DESIGN §5).

* :func:`wrap` traces an ``mcp.ClientSession`` or ``mcp.Client`` and carries the trace
  to the server in ``params._meta`` (``rastir.wrap`` dispatches here for MCP objects).
* :func:`mcp_endpoint` traces a server tool as the child of the client's span.
* :data:`stats` counts the trace context refused in inbound ``_meta``.

Both interoperate with mcp's own OpenTelemetry propagation (SEP-414): see
``docs/mcp.md``. Needs the ``mcp`` extra.
"""

try:
    import mcp as _mcp  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rastir.mcp_bridge needs the MCP SDK (mcp >= 2): pip install 'rastir[mcp]'"
    ) from e

from rastir.mcp_bridge._meta import stats
from rastir.mcp_bridge.client import wrap
from rastir.mcp_bridge.server import mcp_endpoint

__all__ = ["mcp_endpoint", "stats", "wrap"]
