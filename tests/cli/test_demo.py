"""``rastir demo`` end to end: three real processes on loopback, the printed tree checked.

The demo is run as a user runs it (``python -m rastir demo``) in a subprocess with a
bounded timeout. Its own children (collector, MCP server, agent service) must be
gone when it exits.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rastir.demo._process import Child
from rastir.viewer.cli import trace_main, traces_main

_TRACE_LINE = re.compile(r"^trace ([0-9a-f]{32})  ✗ error$", re.MULTILINE)
_COLLECTOR = re.compile(r"✓ collector\s+(http://127\.0\.0\.1:\d+)\s+SQLite store in (\S+)")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _refuses(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/health", timeout=5).close()
    except urllib.error.URLError:
        return True
    return False


def _tree_names(out: str) -> list[str]:
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("SPAN "))
    rows = lines[lines.index(header) + 1 : lines.index("Where to look next") - 1]
    return [line[: header.index("KIND")].rstrip() for line in rows]


def test_the_demo_prints_the_failed_runs_trace_across_both_services() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rastir", "demo"],
        env=_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "\x1b[" not in out  # a pipe, not a terminal: no colour

    # Progress: the three processes, then four runs, the third failing.
    assert "✓ MCP tools " in out
    assert "✓ agent service " in out
    assert "✓ services stopped; their last spans are flushed to the collector" in out
    runs = re.findall(r"([✓✗]) run (\d)/4  HTTP (\d+)", out)
    assert runs == [("✓", "1", "200"), ("✓", "2", "200"), ("✗", "3", "502"), ("✓", "4", "200")], out

    # The tree of the failed run, read back from the collector.
    match = _TRACE_LINE.search(out)
    assert match is not None, out
    trace_id = match.group(1)
    assert "services  demo-agent, demo-tools" in out, out
    names = _tree_names(out)
    assert names[:2] == ["POST /runs", "└── support"], out
    stripped = [n.lstrip(" │├└─") for n in names]
    assert stripped.count("tools/call lookup_order") == 2, out  # mcp.client, mcp.server
    assert "chat" in stripped
    assert "orders.lookup" in stripped
    assert "POST /mcp" in stripped
    rows = out.splitlines()
    client = next(r for r in rows if "mcp.client" in r)
    server = next(r for r in rows if "mcp.server" in r)
    assert "demo-agent" in client
    assert "✗ tool_error" in client
    assert "demo-tools" in server
    assert "✗ tool_error: no order 9999" in server
    llm = next(r for r in rows if " llm " in r)
    assert "gpt-4o-mini-2024-07-18" in llm
    assert re.search(r"\d+→\d+ tok", llm)
    assert re.search(r"tokens    \d+ in, \d+ out", out)
    assert re.search(r"\d+(\.\d+)? ms", client)

    # Where to look next: the metrics and query URLs, and the trace id.
    collector = _COLLECTOR.search(out)
    assert collector is not None
    url, data_dir = collector.groups()
    assert f"metrics      {url}/metrics" in out
    assert f"query API    {url}/v1/traces/{trace_id}" in out
    assert f"trace id     {trace_id}" in out

    # Nothing is left behind: the collector is gone, and so is its temporary store.
    assert _refuses(url), out
    assert not Path(data_dir).exists(), out


def test_demo_keep_serves_the_viewers_until_interrupted(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    demo = Child(
        "demo",
        [sys.executable, "-m", "rastir", "demo", "--keep", "--data-dir", str(data_dir)],
        _env(),
    )
    try:
        demo.wait_for(lambda line: "press Ctrl-C" in line, timeout=120)
        out = "\n".join(demo.lines)
        collector = _COLLECTOR.search(out)
        assert collector is not None, out
        url = collector.group(1)
        match = _TRACE_LINE.search(out)
        assert match is not None, out

        listing, errors = io.StringIO(), io.StringIO()
        assert traces_main(["--url", url], stdout=listing, stderr=errors) == 0, errors.getvalue()
        rows = listing.getvalue().splitlines()[1:]
        assert len(rows) == 4
        assert sum(row.startswith("✗") for row in rows) == 1

        tree = io.StringIO()
        assert trace_main([match.group(1), "--url", url], stdout=tree) == 0
        assert "demo-tools" in tree.getvalue()
        assert "✗ tool_error" in tree.getvalue()

        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert re.search(r'^rastir_\w+\{[^}]*service="demo-agent"', metrics, re.MULTILINE)
    finally:
        if demo.proc.poll() is None:
            os.kill(demo.pid, signal.SIGINT)  # Ctrl-C
        try:
            demo.proc.wait(30)
        finally:
            code = demo.stop(timeout=10)
    assert code == 130, "\n".join(demo.lines)
    assert _refuses(url)
    assert any(data_dir.iterdir())  # --data-dir keeps the store


@pytest.mark.parametrize("argv", [["--help"]])
def test_demo_help_names_its_options(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rastir", "demo", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for option in ("--keep", "--data-dir", "--color"):
        assert option in done.stdout
