"""A ``push_url`` whose host does not resolve, or resolves slowly.

``nonexistent.invalid`` never resolves (RFC 6761 §6.4: ``.invalid`` is reserved), so
these tests need no network: the resolver answers NXDOMAIN at once. A resolver that
does not answer at all is arranged for real in a child process: a private mount
namespace (``unshare -m``, root only; skipped elsewhere) whose ``/etc/resolv.conf``
names a loopback UDP socket that reads nothing, so glibc's ``getaddrinfo`` blocks
for its full ``options timeout``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from random import randrange

import pytest

import rastir
from rastir import _config
from rastir.export import http as http_module
from rastir.export.http import HttpTransport

_NOWHERE = "http://nonexistent.invalid:8080"
_RESOLVE = "cannot resolve 'nonexistent.invalid'"
# Margins on the bounds under test: generous, as a loaded machine needs.
_MARGIN = 5.0


def _resolve_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rastir.export"
        and r.levelno == logging.WARNING
        and r.getMessage().startswith("rastir exporter: cannot resolve")
    ]


def test_a_host_that_does_not_resolve_fails_the_send_with_its_name_and_is_looked_up_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rastir.export")
    transport = HttpTransport(_NOWHERE, timeout=2.0)
    results = [transport.send(b'{"spans": []}') for _ in range(5)]
    transport.close()
    assert all(r.status == 0 and r.retryable for r in results)
    assert all(r.error.startswith(_RESOLVE) for r in results)
    # One lookup: the sends that follow within _RESOLVE_RETRY fail on its answer.
    assert transport.resolve_failures == 1
    (warning,) = _resolve_warnings(caplog)
    assert _RESOLVE in warning


def test_flush_and_shutdown_keep_their_bounds_and_the_failure_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rastir.export")
    rastir.configure(service="lost", push_url=_NOWHERE, batch_size=10, flush_interval=60)
    exporter = _config._exporter_or_none()
    assert exporter is not None
    began = time.monotonic()
    for _ in range(5):
        for _ in range(10):
            with rastir.span("work"):
                pass
        start = time.monotonic()
        assert not rastir.flush(1.0)  # nothing can be delivered
        assert time.monotonic() - start < 1.0 + _MARGIN
    start = time.monotonic()
    assert exporter.shutdown(1.0)  # the thread is not stuck in a lookup: it stopped
    assert time.monotonic() - start < 1.0 + _MARGIN
    elapsed = time.monotonic() - began
    assert exporter.stats.spans_sent == 0
    assert exporter.stats.spans_dropped == 50  # each span once
    assert exporter.stats.last_error.startswith(f"0 {_RESOLVE}")
    assert exporter.stats.retries >= 1
    # Looked up about once per _RESOLVE_RETRY, not once per retry or per batch.
    lookups = exporter.transport.resolve_failures
    assert 1 <= lookups <= 2 + elapsed / http_module._RESOLVE_RETRY
    assert len(_resolve_warnings(caplog)) == 1


def _namespaces_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


_CHILD = textwrap.dedent(
    """
    import json, logging, subprocess, sys, time
    subprocess.run(["mount", "--bind", sys.argv[1], "/etc/resolv.conf"], check=True)
    import rastir
    from rastir import _config
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    rastir.configure(
        service="slow", push_url="http://collector.slow-dns.example:8080",
        batch_size=10, flush_interval=60, timeout=1.0,
    )
    exporter = _config._exporter_or_none()
    for _ in range(10):
        with rastir.span("work"):
            pass
    start = time.monotonic()
    flushed = rastir.flush(2.0)
    flush_s = time.monotonic() - start
    start = time.monotonic()
    stopped = exporter.shutdown(2.0)
    shutdown_s = time.monotonic() - start
    # Stuck or not at the deadline, the thread ends within a request's timeout.
    exporter._thread.join(5.0)
    print(json.dumps({
        "flushed": flushed, "flush_s": flush_s, "stopped": stopped,
        "shutdown_s": shutdown_s, "thread_alive": exporter._thread.is_alive(),
        "dropped": exporter.stats.spans_dropped,
        "last_error": exporter.stats.last_error,
        "lookups": exporter.transport.resolve_failures,
    }))
    """
)


@pytest.mark.skipif(
    not _namespaces_available(), reason="needs root and unshare -m (a private resolv.conf)"
)
def test_a_resolver_that_never_answers_holds_neither_the_exporter_thread_nor_shutdown(
    tmp_path: Path,
) -> None:
    # A name server that reads nothing: glibc waits its whole timeout (30 s here) in
    # getaddrinfo. Before, that wait was in the exporter's thread: shutdown() found it
    # stuck and returned False with the batch still "in a request".
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = f"127.53.{randrange(1, 255)}.{randrange(1, 255)}"
    silent.bind((address, 53))
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver {address}\noptions timeout:30 attempts:1\n")
        script = tmp_path / "child.py"
        script.write_text(_CHILD)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        child = subprocess.run(
            ["unshare", "-m", sys.executable, str(script), str(resolv)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        silent.close()
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["flushed"] is False
    assert report["flush_s"] < 2.0 + _MARGIN
    assert report["shutdown_s"] < 2.0 + _MARGIN
    # Before, the thread sat in getaddrinfo for the resolver's 30 s; each request now
    # waits for the lookup at most its timeout (1 s), so the thread has ended.
    assert report["thread_alive"] is False
    assert report["dropped"] == 10
    assert "no answer within 1 s" in report["last_error"]
    # The lookup still running is waited for again, not started once per attempt.
    assert report["lookups"] == 1
    assert child.stderr.count("rastir exporter: cannot resolve") == 1, child.stderr
