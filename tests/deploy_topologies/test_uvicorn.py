"""uvicorn serving a FastAPI app under ``RastirMiddleware``, for real: one process, and
``--workers 2`` (worker processes started with multiprocessing's spawn).

On SIGTERM uvicorn shuts down gracefully, runs the lifespan shutdown, then raises the
signal again with the default handler: the process dies of it and ``atexit`` never
runs. The middleware flushes when the app's lifespan ends, so no span is lost.
"""

from __future__ import annotations

import signal

import pytest

from tests.deploy_topologies._topology import (
    PYTHON,
    assert_each_span_arrived_once,
    listening,
    running,
    send,
    stop_cleanly,
)


@pytest.mark.parametrize(
    ("workers", "exit_code"),
    # One process dies of the SIGTERM it re-raises; the supervisor of --workers
    # exits 0 once its workers did so.
    [(1, -signal.SIGTERM), (2, 0)],
    ids=["single-process", "workers-2"],
)
def test_each_request_of_each_worker_arrives_once(
    collector: str, workers: int, exit_code: int
) -> None:
    service = f"uvicorn-workers-{workers}"
    with listening() as sock:
        argv = [
            PYTHON,
            "-m",
            "uvicorn",
            "tests.deploy_topologies.asgi_app:app",
            "--fd",
            str(sock.fileno()),
            "--workers",
            str(workers),
            "--timeout-graceful-shutdown",
            "10",
        ]
        ready = "Started parent" if workers > 1 else "Uvicorn running on"
        with running(argv, collector, service, ready, listener=sock) as (server, url):
            sent = send(url, 24)
            stop_cleanly(server, {s.pid for s in sent} - {server.pid}, exit_code=exit_code)
    # Each worker imports the app: one startup span each.
    assert_each_span_arrived_once(collector, service, sent, workers, "/work/{key}")
