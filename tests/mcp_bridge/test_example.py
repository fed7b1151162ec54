"""End to end: ``examples/mcp_distributed`` against a real collector.

Three processes: the collector (``rastir collector``), the agent, and the weather
server (started by the agent over stdio, or on its own over streamable HTTP). Both
the agent and the server export to the collector, and its query API must return one
assembled tree holding both services.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_distributed"

Node = dict[str, Any]


class _Lines:
    """Reads a process's stream in a thread; waits for a line without sleeping."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        with self.cond:
            found = self.cond.wait_for(
                lambda: any(needle in line for line in self.lines), timeout=timeout
            )
            if not found:
                raise AssertionError(f"{needle!r} never appeared in {self.lines}")
            return next(line for line in self.lines if needle in line)


def _stop(proc: subprocess.Popen[str], lines: _Lines) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(30)
    lines.thread.join(5)
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture(scope="module")
def collector() -> Iterator[str]:
    """``rastir collector`` on a free port; answers 202 only once spans are stored."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rastir",
            "collector",
            "--port",
            "0",
            "--store",
            "memory",
            "--ack",
            "committed",
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _Lines(proc.stderr)
    try:
        listening = json.loads(lines.wait_for('"msg":"listening"'))
        yield str(listening["url"])
    finally:
        _stop(proc, lines)


def _env(collector: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env.update(RASTIR_PUSH_URL=collector, RASTIR_FLUSH_INTERVAL="0.2")
    return env


def _run_agent(collector: str, *args: str) -> tuple[list[str], str]:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / "agent.py"), *args],
        env=_env(collector),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("trace ")
    return lines, lines[-1].split()[1]


def _walk(nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def _trace(collector: str, trace_id: str) -> list[Node]:
    response = httpx.get(f"{collector}/v1/traces/{trace_id}", timeout=10)
    assert response.status_code == 200, response.text
    spans: list[Node] = response.json()["spans"]
    return spans


def _child(node: Node, name: str, kind: str, service: str) -> list[Node]:
    return [
        c for c in node["children"] if (c["name"], c["kind"], c["service"]) == (name, kind, service)
    ]


def _assert_one_tree_across_both_services(roots: list[Node]) -> list[Node]:
    assert len(roots) == 1, [r["name"] for r in roots]
    (root,) = roots
    assert (root["name"], root["kind"], root["service"]) == ("trip-planner", "agent", "trip-agent")
    nodes = list(_walk(roots))
    assert not any(n["orphan"] for n in nodes)
    assert {n["service"] for n in nodes} == {"trip-agent", "weather-server"}
    calls = _child(root, "tools/call forecast", "mcp.client", "trip-agent")
    assert len(calls) == 3
    outcomes = []
    for call in calls:
        (server,) = _child(call, "tools/call forecast", "mcp.server", "weather-server")
        (lookup,) = _child(server, "stations.lookup", "retrieval", "weather-server")
        assert call["attributes"]["gen_ai.tool.name"] == "forecast"
        assert server["attributes"]["jsonrpc.request.id"]
        outcomes.append((call["status"], server["status"], lookup["status"]))
    assert outcomes == [("ok", "ok", "ok"), ("ok", "ok", "ok"), ("error", "error", "error")]
    atlantis = calls[2]
    assert atlantis["error"]["type"] == "tool_error"
    (server,) = _child(atlantis, "tools/call forecast", "mcp.server", "weather-server")
    assert server["error"]["type"] == "tool_error"
    assert server["error"]["exception_type"] == "mcp.server.mcpserver.exceptions.ToolError"
    return nodes


def test_the_example_over_stdio_gives_one_trace_in_the_collector(collector: str) -> None:
    lines, trace_id = _run_agent(collector)
    assert lines[0] == "tools: forecast, to_fahrenheit"
    assert lines[1:4] == [
        "- Lisbon: sunny, 24 °C",
        "- Oslo: sleet, 3 °C",
        "! Error executing tool forecast: no weather station in Atlantis",
    ]
    nodes = _assert_one_tree_across_both_services(_trace(collector, trace_id))
    client = next(n for n in nodes if n["kind"] == "mcp.client" and n["name"] != "tools/list")
    assert client["attributes"]["network.transport"] == "pipe"


def test_the_example_over_http_gives_one_trace_in_the_collector(collector: str) -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "server.py"), "http", "--port", "0"],
        env=_env(collector),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _Lines(server.stderr)
    try:
        url = lines.wait_for("serving MCP on ").split()[-1]
        out, trace_id = _run_agent(collector, "--url", url)
        assert out[1:4] == [
            "- Lisbon: sunny, 24 °C",
            "- Oslo: sleet, 3 °C",
            "! Error executing tool forecast: no weather station in Atlantis",
        ]
    finally:
        _stop(server, lines)  # the server flushes its spans on the way out
    nodes = _assert_one_tree_across_both_services(_trace(collector, trace_id))
    # The HTTP requests carried the trace too: RastirMiddleware's spans are in the
    # tree, under the agent's http.client spans, and each mcp.server span links one.
    http_servers = {n["span_id"]: n for n in nodes if n["kind"] == "http.server"}
    assert http_servers
    by_id = {n["span_id"]: n for n in nodes}
    for span in http_servers.values():
        assert span["service"] == "weather-server"
        assert by_id[span["parent_span_id"]]["kind"] == "http.client"
    for span in (n for n in nodes if n["kind"] == "mcp.server"):
        assert [link["span_id"] in http_servers for link in span["links"]] == [True]
