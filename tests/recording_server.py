"""A real HTTP server on 127.0.0.1 that records what the exporter sends.

It answers ``POST /v1/telemetry`` with whatever the test scripts: a status, a
``Retry-After``, or a hang until the test releases it.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class Script:
    """Answers to give, in order; when empty, ``default``."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (202, {})
    hang: threading.Event | None = None  # while set-able and unset, requests wait on it


class RecordingServer:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.attempts: list[float] = []
        self.script = Script()
        self.lock = threading.RLock()
        self.arrived = threading.Condition(self.lock)
        self.hanging = threading.Event()  # set while a request is being held
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with outer.lock:
                    outer.attempts.append(time.monotonic())
                    if outer.script.answers:
                        status, headers = outer.script.answers.pop(0)
                    else:
                        status, headers = outer.script.default
                    hang = outer.script.hang
                if hang is not None:
                    outer.hanging.set()
                    hang.wait(30)
                if 200 <= status < 300:
                    if self.headers.get("Content-Encoding") == "gzip":
                        raw = gzip.decompress(raw)
                    body = json.loads(raw)
                    with outer.arrived:
                        outer.received.append(
                            Received(body, dict(self.headers.items()), time.monotonic())
                        )
                        outer.arrived.notify_all()
                payload = json.dumps({"status": status}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s for r in self.received for s in r.body["spans"]]

    def dropped(self) -> int:
        with self.lock:
            return sum(int(r.body.get("dropped", 0)) for r in self.received)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the server did not receive what was expected")
                self.arrived.wait(left)

    def close(self) -> None:
        hang = self.script.hang
        if hang is not None:
            hang.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def recording_server(port: int = 0) -> Iterator[RecordingServer]:
    server = RecordingServer(port)
    try:
        yield server
    finally:
        server.close()
