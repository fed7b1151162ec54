"""``rastir collector`` as users run it: a subprocess, signals, restarts, and its options."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from rastir.__main__ import main as rastir_main
from rastir.collector.cli import build_parser, settings_from_args
from rastir.collector.cli import main as collector_main
from tests.collector.spans import agent_trace, batch, encode

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CollectorProcess:
    process: Process
    url: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)

    def records(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in self.lines if r.get("msg") == msg]


@asynccontextmanager
async def collector_process(*args: str) -> AsyncIterator[CollectorProcess]:
    """``python -m rastir collector --port 0 ...``, its JSON log lines collected."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        "-m",
        "rastir",
        "collector",
        "--port",
        "0",
        "--log-format",
        "json",
        *args,
    ]
    process = await anyio.open_process(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    proc = CollectorProcess(process)
    listening = anyio.Event()

    async def read() -> None:
        assert process.stderr is not None
        buf = ""
        async for chunk in TextReceiveStream(process.stderr):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                record = json.loads(line) if line.startswith("{") else {"msg": line}
                proc.lines.append(record)
                if record.get("msg") == "listening":
                    proc.url = record["url"]
                    listening.set()
        listening.set()  # EOF: the process died; the caller finds no URL

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(30):
                await listening.wait()
            assert proc.url, f"collector did not start: {proc.lines}"
            yield proc
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(10, shield=True):
            await process.wait()
        await process.aclose()


@pytest.mark.anyio
async def test_sigterm_drains_and_exits_and_spans_survive_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    tid, spans = agent_trace(service="cli")
    async with collector_process("--data-dir", data, "--shutdown-timeout", "5") as c:
        async with httpx.AsyncClient(base_url=c.url) as client:
            r = await client.post("/v1/telemetry", content=encode(batch(spans, service="cli")))
            assert (r.status_code, r.json()) == (202, {"accepted": len(spans)})
        c.process.send_signal(signal.SIGTERM)
        # The bound: uvicorn's graceful timeout plus the store's close, plus startup slack.
        with anyio.fail_after(25):
            code = await c.process.wait()
        assert code == 0
        assert c.records("collector stopped")
        (request,) = [r for r in c.records("request") if r["path"] == "/v1/telemetry"]
        assert (request["method"], request["status"], request["spans"]) == ("POST", 202, len(spans))
        assert request["duration_ms"] >= 0
    async with collector_process("--data-dir", data) as c:
        async with httpx.AsyncClient(base_url=c.url) as client:
            r = await client.get(f"/v1/traces/{tid}")
            assert r.status_code == 200
            assert r.json()["summary"]["span_count"] == len(spans)
            assert r.json()["summary"]["services"] == ["cli"]
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            assert await c.process.wait() == 0


async def push_then_signal(c: CollectorProcess, sig: signal.Signals, at_least: int) -> list[str]:
    """Four senders post agent traces until the collector refuses or is gone; once
    ``at_least`` were acknowledged (202), ``sig`` goes to the process mid-stream.
    Returns the acknowledged trace ids."""
    acked: list[str] = []
    enough = anyio.Event()
    async with httpx.AsyncClient(base_url=c.url, timeout=10) as client:

        async def send(n: int) -> None:
            for _ in range(n):
                tid, spans = agent_trace()
                try:
                    r = await client.post("/v1/telemetry", content=encode(batch(spans)))
                except httpx.TransportError:
                    return
                if r.status_code == 202:
                    acked.append(tid)
                    if len(acked) >= at_least:
                        enough.set()
                elif r.status_code == 503:  # shutting down
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(send, 10_000)
            with anyio.fail_after(30):
                await enough.wait()
            c.process.send_signal(sig)
    return acked


async def missing_after_restart(data: str, acked: list[str]) -> list[str]:
    """The acknowledged traces a collector restarted on ``data`` does not have."""
    async with collector_process("--data-dir", data) as c:
        async with httpx.AsyncClient(base_url=c.url) as client:
            missing = [t for t in acked if (await client.get(f"/v1/traces/{t}")).status_code != 200]
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            await c.process.wait()
    return missing


@pytest.mark.anyio
async def test_committed_mode_loses_no_acknowledged_span_to_kill_9(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    async with collector_process("--data-dir", data, "--ack", "committed") as c:
        # Mid-stream: requests are in flight, some acknowledged, some not yet.
        acked = await push_then_signal(c, signal.SIGKILL, 40)
        with anyio.fail_after(10):
            assert await c.process.wait() == -signal.SIGKILL
    assert len(acked) >= 40
    assert await missing_after_restart(data, acked) == []


@pytest.mark.anyio
async def test_a_flood_is_refused_by_how_long_each_request_waited(tmp_path: Path) -> None:
    # A batch is handled without yielding to the loop, so the ingest handler never
    # holds more than one request: the excess waits as uvicorn tasks that have not
    # run, seen only through the time each request waited (stamped by the CLI's
    # HTTP protocol). Past --max-queue-delay it is refused, before its body is read.
    # Distinct traces in every request, 1,000 spans each: enough work per batch for
    # the burst to wait. (A repeated body only replaces the same spans, which the
    # memory store does cheaply since it compacts repeats.)
    def body() -> bytes:
        return encode(batch([span for _ in range(100) for span in agent_trace(n_llm=8)[1]]))

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    # Retention off: these spans are dated 2025, and a sweep deleting each batch at
    # once would make the work too light for any request to wait.
    args = (
        "--store",
        "memory",
        "--retention",
        "off",
        "--max-queue-delay",
        "20ms",
        "--max-loop-lag",
        "off",
    )
    async with (
        collector_process("--data-dir", str(tmp_path / "data"), *args) as c,
        httpx.AsyncClient(base_url=c.url, timeout=30, limits=limits) as client,
    ):
        replies: list[httpx.Response] = []

        async def post(content: bytes) -> None:
            replies.append(await client.post("/v1/telemetry", content=content))

        # Bursts of 64 at once, at least 3. Whether one waits long enough depends on
        # how fast this process sends against how fast the collector takes them, on a
        # shared machine: up to 8 bursts, until one was refused.
        for burst in range(8):
            bodies = [body() for _ in range(64)]
            async with anyio.create_task_group() as tg:
                for content in bodies:
                    tg.start_soon(post, content)
            if burst >= 2 and any(r.status_code == 429 for r in replies):
                break
        statuses = [r.status_code for r in replies]
        refused = [r for r in replies if r.status_code == 429]
        assert set(statuses) <= {202, 429}, statuses
        assert refused, statuses
        assert statuses.count(202) >= 3, statuses
        for r in refused:
            assert r.headers["retry-after"] == "1"
            assert "queue_delay" in r.text
        # Once the burst is over, intake is open again.
        r = await client.post("/v1/telemetry", content=body())
        assert r.status_code == 202
        metrics = (await client.get("/metrics")).text
        line = 'rastir_collector_rejected_requests_total{reason="queue_delay"} '
        counted = [float(x.split(" ")[-1]) for x in metrics.splitlines() if x.startswith(line)]
        assert counted == [len(refused)]
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            assert await c.process.wait() == 0


def test_off_turns_an_option_off_over_its_default_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RASTIR_COLLECTOR_RETENTION", "7d")
    argv = ["--max-loop-lag", "off", "--retention", "none", "--max-queue-delay", "off"]
    settings = settings_from_args(build_parser().parse_args(argv))
    assert settings.max_loop_lag is None
    assert settings.retention is None
    assert settings.max_queue_delay is None
    assert settings_from_args(build_parser().parse_args([])).max_loop_lag == 0.5


def test_options_are_validated_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        collector_main(["--port", "eighty"])
    assert e.value.code == 2
    assert "--port='eighty' is not an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collector_main(["--retention", "soon"])
    assert "--retention='soon' is not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collector_main(["--store", "mongodb"])
    assert "store='mongodb' is not one of sqlite, memory" in capsys.readouterr().err


def test_help_names_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        collector_main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for var in (
        "HOST",
        "PORT",
        "DATA_DIR",
        "STORE",
        "INGEST_TOKEN",
        "QUERY_TOKEN",
        "RETENTION",
        "ACK",
    ):
        assert f"RASTIR_COLLECTOR_{var}" in out


def test_the_rastir_command_dispatches_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert rastir_main([]) == 2
    assert "collector" in capsys.readouterr().err
    assert rastir_main(["--help"]) == 0
    assert "collector" in capsys.readouterr().out
    assert rastir_main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        rastir_main(["collector", "--help"])
    assert e.value.code == 0
    assert "usage: rastir collector" in capsys.readouterr().out


def test_python_dash_m_rastir_collector_runs_the_same_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "rastir.collector", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert "usage: python -m rastir.collector" in out.stdout


@pytest.mark.parametrize("kind", ["file", "missing-parent"])
def test_an_unusable_data_dir_is_one_clear_line_and_exit_1(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rastir.collector.cli import main

    if kind == "file":
        target = tmp_path / "not-a-dir"
        target.write_text("")
        expected = "it is a file, not a directory"
    else:
        blocker = tmp_path / "blocker"
        blocker.write_text("")
        target = blocker / "data"  # a directory under a file cannot be made
        expected = "cannot use --data-dir"
    assert main(["--data-dir", str(target), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rastir collector: cannot use --data-dir ")
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- the PostgreSQL store ------------------------------------------------------------------

PASSWORD = "Sekr1t-7f3a"


def with_password(dsn: str) -> str:
    """``dsn`` with a password (the test server trusts any, so it still connects)."""
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def test_help_offers_a_postgresql_store(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        collector_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "sqlite (default), memory, or postgresql://user:password@host/db" in out


@pytest.mark.anyio
async def test_a_postgresql_store_needs_no_data_dir_and_keeps_spans_across_restarts(
    tmp_path: Path, postgres_dsn: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # an unusable --data-dir: not checked for PostgreSQL
    args = ("--store", with_password(postgres_dsn), "--data-dir", str(blocker / "data"))
    tid, spans = agent_trace(service="pg")
    async with collector_process(*args, "--ack", "committed") as c:
        async with httpx.AsyncClient(base_url=c.url) as client:
            r = await client.post("/v1/telemetry", content=encode(batch(spans, service="pg")))
            assert r.status_code == 202, r.text
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            assert await c.process.wait() == 0
    async with collector_process(*args) as c:
        async with httpx.AsyncClient(base_url=c.url) as client:
            r = await client.get(f"/v1/traces/{tid}")
            assert r.status_code == 200
            assert r.json()["summary"]["span_count"] == len(spans)
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            assert await c.process.wait() == 0
    assert blocker.read_text() == ""


@pytest.mark.anyio
async def test_a_running_collector_never_logs_the_store_password(postgres_dsn: str) -> None:
    async with collector_process("--store", with_password(postgres_dsn)) as c:
        c.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(25):
            assert await c.process.wait() == 0
    assert c.records("collector stopped")
    assert PASSWORD not in json.dumps(c.lines)


def test_an_unreachable_postgresql_store_fails_start_without_showing_the_password() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://rastir:{PASSWORD}@127.0.0.1:{port}/traces"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "rastir", "collector", "--port", "0", "--store", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    # Checked before the server starts: one line and status 1, not a traceback.
    assert out.returncode == 1
    assert out.stderr.startswith(
        f"rastir collector: cannot use --store postgresql://rastir:***@127.0.0.1:{port}/traces: "
    )
    assert "Connection refused" in out.stderr
    assert "Traceback" not in out.stderr
    assert PASSWORD not in out.stderr + out.stdout


def test_a_postgresql_store_without_psycopg_is_one_clear_line_and_exit_1() -> None:
    # psycopg made unimportable in a fresh interpreter (None in sys.modules).
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from rastir.collector.cli import main\n"
        f"sys.exit(main(['--store', 'postgresql://u:{PASSWORD}@db.example/x', '--port', '0']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "rastir collector: cannot use --store postgresql://u:***@db.example/x: the PostgreSQL "
        "store needs psycopg 3: pip install 'rastir[postgres]'"
    ]
