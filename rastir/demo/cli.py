"""``rastir demo``: a traced agent, an MCP tool server and a collector, all on loopback.

It starts three processes on ``127.0.0.1``, each on a free port:

1. the collector (``rastir collector``), with its SQLite store in a temporary
   directory (or ``--data-dir``);
2. the MCP tool server (:mod:`rastir.demo.tools_server`), service ``demo-tools``;
3. the FastAPI agent service (:mod:`rastir.demo.agent_service`), service
   ``demo-agent``, whose model is an offline fake returning real ``openai`` objects.

Then it sends the agent a few questions (one of them fails on a tool error), stops
the services so they flush their spans, reads the failed run's trace back from the
collector's query API and prints it as a tree, with where to look next. No network
beyond loopback, no API key. ``--keep`` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

from rastir.demo._process import Child, ChildFailed
from rastir.viewer.client import QueryAPIError, QueryClient, TraceNotFound
from rastir.viewer.render import Style, format_duration, iter_spans, render_trace

__all__ = ["QUESTIONS", "main"]

AGENT_SERVICE: Final = "demo-agent"
TOOLS_SERVICE: Final = "demo-tools"
#: (question, whether the run should succeed)
QUESTIONS: Final[tuple[tuple[str, bool], ...]] = (
    ("Where is my order 1042?", True),
    ("Can I still return order 1077?", True),
    ("Has order 9999 shipped yet?", False),
    ("Thanks, that's all!", True),
)
_NEEDS: Final = ("fastapi", "openai", "mcp", "httpx2", "uvicorn", "starlette", "prometheus_client")
_START_TIMEOUT: Final = 45.0
_RUN_TIMEOUT: Final = 30.0


@dataclass
class RunResult:
    number: int
    question: str
    expected_ok: bool
    status: int
    trace_id: str | None
    text: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 200


class _Progress:
    """Timestamped progress lines, flushed at once so a pipe shows them live too."""

    def __init__(self, out: TextIO, style: Style) -> None:
        self.out = out
        self.style = style
        self.t0 = time.monotonic()

    def line(self, text: str = "", *, stamp: bool = True) -> None:
        if stamp:
            elapsed = f"[{time.monotonic() - self.t0:5.1f}s]"
            text = f"{self.style.paint(elapsed, '2')} {text}"
        print(text, file=self.out, flush=True)

    def ok(self, text: str) -> None:
        self.line(f"{self.style.paint(self.style.tick, '32')} {text}")

    def fail(self, text: str) -> None:
        self.line(f"{self.style.paint(self.style.cross, '31', '1')} {text}")


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _child_env(**extra: str) -> dict[str, str]:
    # The user's own RASTIR_* settings (a token, another collector) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env.update(extra)
    return env


def _post_run(url: str, number: int, question: str, expected_ok: bool) -> RunResult:
    body = json.dumps({"question": question}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=_RUN_TIMEOUT) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
        e.close()
    except (urllib.error.URLError, OSError) as e:
        # The agent service died or hung: report it as this run's outcome.
        reason = getattr(e, "reason", e)
        status, raw = 0, json.dumps({"error": f"no answer: {reason}"}).encode()
    seconds = time.monotonic() - t0
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": raw[:200].decode(errors="replace")}
    text = str(data.get("answer") or data.get("error") or data.get("detail") or "")
    trace_id = data.get("trace_id")
    return RunResult(
        number,
        question,
        expected_ok,
        status,
        trace_id if isinstance(trace_id, str) else None,
        text,
        seconds,
    )


def _complete(trace: dict[str, Any], services: set[str]) -> bool:
    """One root, no span waiting for its parent, and every service's spans in."""
    roots = trace.get("spans") or []
    nodes = list(iter_spans(roots))
    return (
        len(roots) == 1
        and not any(n.get("orphan") for n in nodes)
        and services <= {n.get("service") for n in nodes}
    )


def _settled_trace(
    client: QueryClient, trace_id: str, services: set[str], *, stable: bool, timeout: float
) -> dict[str, Any]:
    """The trace once it is complete (and, with ``stable``, no longer growing).

    Services export in the background, so spans land a moment after the run; when
    the services have been stopped (they flush on exit) the first complete read is
    final. Bounded by ``timeout``: after it, whatever the collector holds is shown.

    Raises:
        QueryAPIError: the collector cannot answer, or never saw the trace.
    """
    deadline = time.monotonic() + timeout
    last_count = -1
    trace: dict[str, Any] | None = None
    while True:
        try:
            trace = client.get_trace(trace_id)
        except TraceNotFound:
            if time.monotonic() > deadline:
                raise
        if trace is not None and _complete(trace, services):
            count = len(list(iter_spans(trace["spans"])))
            if not stable or count == last_count:
                return trace
            last_count = count
        if time.monotonic() > deadline and trace is not None:
            return trace
        time.sleep(0.25)


def _check_installed() -> list[str]:
    return [name for name in _NEEDS if importlib.util.find_spec(name) is None]


def build_parser(prog: str = "rastir demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run a traced agent, an MCP tool server and a collector on 127.0.0.1, "
            "drive a few agent runs, and print one run's trace tree."
        ),
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the collector's SQLite store here (default: a temporary directory, removed)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the collector and services running until Ctrl-C",
    )
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour: auto (on a terminal, unless NO_COLOR is set), always, never",
    )
    return p


def main(
    argv: Sequence[str] | None = None, *, prog: str = "rastir demo", stdout: TextIO | None = None
) -> int:
    """Run the demo; returns the exit status (0 when every run went as scripted)."""
    args = build_parser(prog).parse_args(argv)
    out = stdout or sys.stdout
    style = Style.for_stream(out, args.color)
    missing = _check_installed()
    if missing:
        print(
            f"rastir demo needs {', '.join(missing)}: pip install 'rastir[all]' fastapi openai",
            file=sys.stderr,
        )
        return 1
    progress = _Progress(out, style)
    data_dir = args.data_dir
    temporary = data_dir is None
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="rastir-demo-"))
    children: list[Child] = []
    # SIGTERM (a CI timeout, a supervisor) ends the demo the way Ctrl-C does: the
    # children are stopped by the finally below, never left behind. SIGINT gets the
    # same handler even when it was inherited as ignored (a background job).
    interrupt = _Interrupt()
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args, data_dir, temporary, progress, style, children)
    except ChildFailed as e:
        progress.fail(str(e))
        return 1
    except QueryAPIError as e:
        progress.fail(f"reading the trace back failed: {e}")
        return 1
    except KeyboardInterrupt:
        progress.line("interrupted")
        return 130
    finally:
        for child in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


class _Interrupt:
    """Turns the first SIGINT or SIGTERM into ``KeyboardInterrupt``; ignores the rest,
    so that a second signal cannot cut short the stopping of the children."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def _run(
    args: argparse.Namespace,
    data_dir: Path,
    temporary: bool,
    progress: _Progress,
    style: Style,
    children: list[Child],
) -> int:
    py = sys.executable
    print(
        style.paint("rastir demo", "1")
        + ": a traced agent, an MCP tool server and a collector, on 127.0.0.1 only",
        file=progress.out,
    )
    progress.line("starting the collector ...")
    collector = Child(
        "collector",
        [
            py,
            "-m",
            "rastir",
            "collector",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--store",
            "sqlite",
            # 202 only once stored: a span the services sent is a span the query sees.
            "--ack",
            "committed",
            "--log-format",
            "json",
            "--no-access-log",
            "--shutdown-timeout",
            "3",
        ],
        _child_env(),
    )
    children.append(collector)
    line = collector.wait_for(lambda s: '"msg":"listening"' in s, _START_TIMEOUT)
    collector_url = str(json.loads(line)["url"])
    where = "" if temporary else " (kept)"
    progress.ok(f"collector       {collector_url}   SQLite store in {data_dir}{where}")

    progress.line("starting the MCP tool server and the agent service ...")
    tools_sock, agent_sock = _listening_socket(), _listening_socket()
    try:
        env = {"RASTIR_PUSH_URL": collector_url, "RASTIR_FLUSH_INTERVAL": "0.2"}
        tools = Child(
            "tools server",
            [py, "-m", "rastir.demo.tools_server", "--fd", str(tools_sock.fileno())],
            _child_env(RASTIR_SERVICE=TOOLS_SERVICE, **env),
            pass_fds=[tools_sock.fileno()],
        )
        children.append(tools)
        tools_url = f"http://127.0.0.1:{tools_sock.getsockname()[1]}/mcp"
        agent = Child(
            "agent service",
            [
                py,
                "-m",
                "rastir.demo.agent_service",
                "--fd",
                str(agent_sock.fileno()),
                "--mcp-url",
                tools_url,
            ],
            _child_env(RASTIR_SERVICE=AGENT_SERVICE, **env),
            pass_fds=[agent_sock.fileno()],
        )
        children.append(agent)
    finally:
        # The children hold their own copies now.
        tools_sock.close()
        agent_sock.close()
    tools.wait_for(lambda s: s.startswith("ready "), _START_TIMEOUT)
    progress.ok(f"MCP tools       {tools_url}   streamable HTTP, service {TOOLS_SERVICE}")
    agent_url = agent.wait_for(lambda s: s.startswith("ready "), _START_TIMEOUT).split()[1]
    progress.ok(
        f"agent service   {agent_url}   FastAPI + RastirMiddleware, service {AGENT_SERVICE}"
    )

    progress.line(stamp=False)
    progress.line(f"agent runs: POST {agent_url}/runs (model: fake gpt-4o-mini, offline)")
    results: list[RunResult] = []
    width = max(len(q) for q, _ in QUESTIONS) + 2
    for number, (question, expected_ok) in enumerate(QUESTIONS, 1):
        r = _post_run(f"{agent_url}/runs", number, question, expected_ok)
        results.append(r)
        text = " ".join(r.text.split())
        text = text if len(text) <= 60 else text[:59] + style.ellipsis
        line = (
            f"run {number}/{len(QUESTIONS)}  HTTP {r.status}  {format_duration(r.seconds * 1e9):>9}"
            f"  {json.dumps(question):<{width}}  {text}"
        )
        (progress.ok if r.ok else progress.fail)(line)

    unexpected = [r for r in results if r.ok != r.expected_ok or r.trace_id is None]
    traced = [r for r in results if r.trace_id]
    if not traced:
        tail = "\n".join(f"    {line}" for line in list(agent.lines)[-15:])
        progress.fail(f"no run returned a trace id; the agent service's last output:\n{tail}")
        return 1
    failed = [r for r in traced if not r.ok]
    shown = failed[0] if failed else traced[-1]
    assert shown.trace_id is not None

    client = QueryClient(collector_url, timeout=10)
    stopped_cleanly = True
    if not args.keep:
        # Stopping the services makes them flush what they still hold.
        codes = {child.name: child.stop() for child in (agent, tools)}
        if any(codes.values()):
            # Not a clean exit: spans still queued in that process may be lost.
            progress.fail(f"services stopped with exit statuses {codes}")
            stopped_cleanly = False
        else:
            progress.ok("services stopped; their last spans are flushed to the collector")
    trace = _settled_trace(
        client, shown.trace_id, {AGENT_SERVICE, TOOLS_SERVICE}, stable=args.keep, timeout=15.0
    )
    page = client.list_traces(limit=100)
    stored = len(page.get("traces") or [])
    spans = sum(1 for _ in iter_spans(trace.get("spans") or []))
    progress.ok(f"the collector holds {stored} traces; run {shown.number}'s has {spans} spans")

    what = "failed" if not shown.ok else "last"
    print(
        f"\nThe {what} run, {json.dumps(shown.question)}, as the collector assembled it:\n",
        file=progress.out,
    )
    print(render_trace(trace, style), file=progress.out)

    tid = shown.trace_id
    next_steps = [
        ("this trace", f"rastir trace {tid} --url {collector_url}"),
        ("every run", f"rastir traces --url {collector_url}"),
        ("failed runs", f"rastir traces --status error --url {collector_url}"),
        ("query API", f"{collector_url}/v1/traces/{tid}"),
        ("", f"{collector_url}/v1/traces?service={AGENT_SERVICE}"),
        ("metrics", f"{collector_url}/metrics"),
        ("trace id", tid),
    ]
    print(f"\n{style.paint('Where to look next', '1')}", file=progress.out)
    for label, value in next_steps:
        print(f"  {label:<12} {value}", file=progress.out)
    other = ", ".join(f"run {r.number} {r.trace_id}" for r in results if r is not shown)
    print(f"  {'other runs':<12} {other}", file=progress.out)

    if args.keep:
        print(
            "\nThe collector and both services keep running: press Ctrl-C to stop them.",
            file=progress.out,
            flush=True,
        )
        _wait_while_alive(children, progress)
    else:
        if temporary:
            after = (
                "\nThe servers have stopped and the temporary store is gone: run "
                "`rastir demo --keep` to follow the links above, or `--data-dir DIR` to keep "
                "the store."
            )
        else:
            after = (
                f"\nThe servers have stopped; the store is kept in {data_dir}: "
                f"`rastir collector --data-dir {data_dir}` serves it again."
            )
        print(after, file=progress.out)
    for r in unexpected:
        progress.fail(f"run {r.number} did not go as scripted (HTTP {r.status}): {r.text}")
    return 0 if stopped_cleanly and not unexpected else 1


def _wait_while_alive(children: list[Child], progress: _Progress) -> None:
    stop = threading.Event()
    while not stop.wait(1.0):
        for child in children:
            if child.proc.poll() is not None:
                progress.fail(f"{child.name} exited with status {child.proc.returncode}")
                return
