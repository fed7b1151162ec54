"""``examples/mcp_distributed`` read back with ``rastir trace``: stdio and streamable HTTP.

``tests/mcp_bridge/test_example.py`` checks the spans of this example in detail; here
the question is what a user sees: the agent and the server in one tree, in the
terminal viewer, with the failed tool call marked, on both transports.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from rastir.viewer.cli import trace_main
from tests.examples.conftest import EXAMPLES, example_env, start_server

EXAMPLE = EXAMPLES / "mcp_distributed"


def _agent(collector: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "agent.py"), *args],
        env=example_env(collector),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("trace ")
    return last.split()[1]


def _tree(collector: str, trace_id: str) -> list[str]:
    out = io.StringIO()
    assert trace_main([trace_id, "--url", collector], stdout=out) == 0
    lines = out.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SPAN"))
    assert "  services  trip-agent, weather-server" in lines
    return lines[header + 1 :]


def _name(row: str) -> str:
    return row.lstrip(" │├└─").split("  ")[0]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_agent_and_the_server_are_one_tree_in_the_viewer(
    collector: str, transport: str
) -> None:
    if transport == "stdio":
        trace_id = _agent(collector)
    else:
        server, url = start_server(
            EXAMPLE / "server.py", collector, "http", ready="serving MCP on "
        )
        try:
            trace_id = _agent(collector, "--url", url)
        finally:
            assert server.stop() == 0  # SIGTERM: requests finish, then spans are flushed
    rows = _tree(collector, trace_id)
    assert rows[0].startswith("trip-planner ")
    calls = [r for r in rows if _name(r) == "tools/call forecast" and "mcp.client" in r]
    served = [r for r in rows if _name(r) == "tools/call forecast" and "mcp.server" in r]
    assert len(calls) == len(served) == 3
    assert all("weather-server" in r for r in served)
    assert "✗ tool_error" in calls[2]
    assert "✗ tool_error: no weather station in Atlantis" in served[2]
    assert sum("stations.lookup" in r for r in rows) == 3
    if transport == "http":
        assert any("http.server" in r and "weather-server" in r for r in rows)
