from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rastir
from rastir.export._pipeline import PIPELINE
from tests.mcp_bridge import matrix

Record = dict[str, Any]
MATRIX = matrix.HERE


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Tests here configure the OTel bridge; put rastir back to its defaults after each.

    The shared conftest stops the exporter but leaves ``configure()``'s settings and
    bridge in place, which would leak ``otel_bridge=True`` into later tests.
    """
    yield
    rastir.configure()
    PIPELINE.bridge = None


class ServerProcess:
    """A matrix server subprocess on streamable HTTP: its stdout says the port, then
    carries one JSON record per finished span, read by a thread as they come."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, MATRIX, "serve", "--transport", "http", "--spans", "-", *args],
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.records: list[Record] = []
        self.port: int | None = None
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.port is not None or self.done, timeout=30):
                self.stop()
                raise RuntimeError("the matrix HTTP server did not start")
        if self.port is None:
            raise RuntimeError(f"the matrix HTTP server exited: {self.proc.wait()}")

    done = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                if line.startswith("PORT "):
                    self.port = int(line.split()[1])
                elif line.startswith("{"):
                    self.records.append(json.loads(line))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def wait_for(
        self, predicate: Callable[[list[Record]], bool], timeout: float = 10
    ) -> list[Record]:
        """Block until ``predicate(records)`` holds (checked on each new record)."""
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.records), timeout=timeout):
                raise AssertionError(f"server records never matched; have {len(self.records)}")
            return list(self.records)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def http_server() -> Iterator[Callable[[str, bool, str], ServerProcess]]:
    """``http_server(kind, otel_sdk, bridge)``: one shared server process per setting."""
    running: dict[tuple[str, bool, str], ServerProcess] = {}

    def get(kind: str, otel_sdk: bool, bridge: str) -> ServerProcess:
        key = (kind, otel_sdk, bridge)
        if key not in running:
            args = ["--server", kind, "--bridge", bridge]
            if otel_sdk:
                args.append("--otel-sdk")
            running[key] = ServerProcess(args)
        return running[key]

    yield get
    for server in running.values():
        server.stop()


def run_matrix_client(args: list[str]) -> list[Record]:
    """Run ``matrix.py call`` in its own process; return the records it printed."""
    out = subprocess.run(
        [sys.executable, MATRIX, "call", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise AssertionError(f"matrix client failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
