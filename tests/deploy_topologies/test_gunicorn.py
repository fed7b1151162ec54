"""gunicorn serving a Flask app under ``RastirWSGIMiddleware``, for real.

Sync and gthread workers, with and without ``--preload`` (rastir configured in the
master, before the fork), and a worker recycled by ``--max-requests``: every request's
spans reach the collector once, from the worker that served it, parented by the
``traceparent`` sent, and every worker flushes when it exits.
"""

from __future__ import annotations

import pytest

from tests.deploy_topologies._topology import (
    PYTHON,
    ROOT,
    assert_each_span_arrived_once,
    running,
    send,
    stop_cleanly,
)

_BASE = [
    PYTHON,
    "-m",
    "gunicorn",
    "--bind",
    "127.0.0.1:0",
    "--chdir",
    str(ROOT),
    "--no-control-socket",
    "--timeout",
    "20",
    "--graceful-timeout",
    "10",
]
_APP = "tests.deploy_topologies.wsgi_app:app"
_ROUTE = "/work/<key>"


@pytest.mark.parametrize(
    ("options", "preload"),
    [
        (["--workers", "2"], False),
        (["--workers", "2", "--preload"], True),
        (["--workers", "2", "--worker-class", "gthread", "--threads", "4"], False),
        (["--workers", "2", "--worker-class", "gthread", "--threads", "4", "--preload"], True),
    ],
    ids=["sync", "sync-preload", "gthread", "gthread-preload"],
)
def test_each_request_of_each_worker_arrives_once(
    collector: str, options: list[str], preload: bool, request: pytest.FixtureRequest
) -> None:
    service = f"gunicorn-{request.node.callspec.id}"
    with running([*_BASE, *options, _APP], collector, service, "Listening at") as (server, url):
        sent = send(url, 24)
        stop_cleanly(server, {s.pid for s in sent})
    # With --preload the app, and its startup span, is imported once, in the master:
    # the workers must not send the master's span again. Without it each worker
    # imports the app.
    assert_each_span_arrived_once(collector, service, sent, 1 if preload else 2, _ROUTE)


@pytest.mark.parametrize("preload", [False, True], ids=["import-per-worker", "preload"])
def test_a_worker_recycled_by_max_requests_flushes_its_spans(
    collector: str, preload: bool, request: pytest.FixtureRequest
) -> None:
    service = f"gunicorn-max-requests-{request.node.callspec.id}"
    options = ["--workers", "1", "--max-requests", "5", *(["--preload"] if preload else [])]
    with running([*_BASE, *options, _APP], collector, service, "Listening at") as (server, url):
        # One at a time: 5, 5 and 2 requests, each five served by a worker that then
        # exits on its own and is replaced.
        sent = send(url, 12, threads=1)
        pids = [s.pid for s in sent]
        assert [pids.count(p) for p in dict.fromkeys(pids)] == [5, 5, 2]
        stop_cleanly(server, set(pids))
    assert_each_span_arrived_once(collector, service, sent, 1 if preload else 3, _ROUTE)
