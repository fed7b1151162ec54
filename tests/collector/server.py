"""A real uvicorn server on 127.0.0.1:0 in a thread, for tests that need HTTP."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.to_thread
import uvicorn


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class RunningServer:
    """uvicorn (httptools) serving ``app`` from its own thread and event loop."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            http="httptools",
            ws="none",
            loop="asyncio",
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as e:  # SystemExit from a failed startup
            self.error = e
        finally:
            self.server.ready.set()

    def start(self) -> None:
        self.thread.start()
        if not self.server.ready.wait(10) or not self.server.started:
            self.stop()
            raise RuntimeError(f"uvicorn did not start: {self.error!r}")

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 30 s")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` for the ``with`` block; yields its base URL."""
    server = RunningServer(app)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@asynccontextmanager
async def serving_async(app: Any) -> AsyncIterator[str]:
    """:func:`serving` for async tests: start and stop never block the test's loop."""
    server = RunningServer(app)
    with anyio.fail_after(15):
        await anyio.to_thread.run_sync(server.start, abandon_on_cancel=True)
    try:
        yield server.url
    finally:
        with anyio.fail_after(35, shield=True):
            await anyio.to_thread.run_sync(server.stop, abandon_on_cancel=True)
