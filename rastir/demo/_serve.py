"""Serve one of the demo's ASGI apps with uvicorn, on a socket handed down or bound here.

``rastir demo`` binds each service's socket itself (``127.0.0.1``, port 0) and passes
it down as an inherited file descriptor (``--fd``). So the demo knows every address
before the services start, and no port is ever picked then lost to a race. Once
uvicorn has started the app (lifespan done), one line goes to stdout:
``ready http://127.0.0.1:PORT/path``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["add_listen_options", "serve"]


def add_listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")


def _socket(args: argparse.Namespace) -> socket.socket:
    if args.fd is not None:
        return socket.socket(fileno=args.fd)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    return sock


class _Server(uvicorn.Server):
    ready_line = ""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.ready_line, flush=True)


def serve(app: Any, args: argparse.Namespace, *, path: str = "") -> None:
    """Run ``app`` until SIGTERM or Ctrl-C; prints ``ready URL`` once it serves."""
    sock = _socket(args)
    host, port = sock.getsockname()[:2]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.ready_line = f"ready http://{host}:{port}{path}"

    # uvicorn stops gracefully on SIGTERM, then sends the signal again to the handler
    # it found: with the default one the process would die before its caller flushes
    # the spans. This one only asks the server to stop; the caller then exits 0.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        sys.stdout.flush()
