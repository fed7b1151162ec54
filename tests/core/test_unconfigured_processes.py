"""A process that records spans and never calls ``configure()`` says so at exit.

The usual case is a ``multiprocessing`` worker started with ``spawn`` or
``forkserver``: a new interpreter, which inherits nothing of its parent's
configuration. Its spans cannot be sent; they are counted (``Pipeline.unexported``)
and one warning on the ``rastir`` logger gives their number and the fix. The worker
programs run in real subprocesses, with real start methods, against a real HTTP
server that records what arrives.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

import pytest

import rastir
from rastir.export._pipeline import PIPELINE
from tests._python import run_python
from tests.recording_server import recording_server

_WARNING = re.compile(
    r"rastir: (\d+) spans recorded in process (\d+) were never exported: "
    r"rastir\.configure\(\) was never called here"
)
_TASKS = 6

needs_forkserver = pytest.mark.skipif(
    sys.platform == "win32", reason="fork and forkserver are POSIX start methods"
)


@rastir.tool(tool_name="square")
def square(x: int) -> int:
    return x * x


def task(x: int) -> tuple[int, int]:
    """A task in a worker: one ``square`` span."""
    return os.getpid(), square(x)


# The parent program: PARENT is "code" (configure(push_url=...) in code, nothing in
# the environment), "none" (never configured) or "env" (configure() from RASTIR_*);
# INIT is "none" or "configure" (each worker calls rastir.configure()).
_PROGRAM = """
import json, multiprocessing, sys
import rastir
from tests.core.test_unconfigured_processes import task

method, parent, init, url, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
if parent == "code":
    rastir.configure(service="parent", push_url=url, flush_interval=60)
elif parent == "env":
    rastir.configure()
if __name__ == "__main__":
    ctx = multiprocessing.get_context(method)
    with rastir.span("job"):
        pool = ctx.Pool(2, initializer=rastir.configure if init == "configure" else None)
        try:
            results = pool.map(task, range(n))
            pool.close()
            pool.join()  # the workers end their own way and run their exit hooks
        finally:
            pool.terminate()
    assert [r[1] for r in results] == [x * x for x in range(n)]
    print(json.dumps(sorted({r[0] for r in results})), flush=True)
"""


def _run_pool(
    method: str, parent: str, init: str, url: str, env: dict[str, str] | None = None
) -> tuple[list[int], str]:
    """Run the parent program; the pids of the workers that ran tasks, and stderr."""
    proc = run_python(
        _PROGRAM, method, parent, init, url, str(_TASKS), env=env, clean=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def _warnings(stderr: str) -> dict[int, int]:
    """The exit warnings in ``stderr``: spans never exported, by process id."""
    found: dict[int, int] = {}
    for line in stderr.splitlines():
        match = _WARNING.search(line)
        if match is not None:
            pid = int(match.group(2))
            assert pid not in found, f"process {pid} warned twice:\n{stderr}"
            found[pid] = int(match.group(1))
    return found


@needs_forkserver
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_new_interpreter_worker_of_a_configured_parent_warns_with_its_span_count(
    method: str,
) -> None:
    """The parent configured rastir in code; its spawned or forkserver workers did not:
    their spans never leave, and each worker says how many at exit."""
    with recording_server() as server:
        pids, stderr = _run_pool(method, "code", "none", server.url)
        sent = sorted(s["name"] for s in server.spans())
    assert sent == ["job"], sent  # the parent's own span, nothing from the workers
    found = _warnings(stderr)
    assert set(pids) <= set(found), stderr
    assert sum(found.values()) == _TASKS, stderr
    assert "Pool(initializer=rastir.configure)" in stderr
    assert "RASTIR_PUSH_URL is set" not in stderr


@needs_forkserver
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_worker_configured_by_its_initializer_exports_everything_and_does_not_warn(
    method: str,
) -> None:
    """The documented fix: ``initializer=rastir.configure`` with the RASTIR_* variables
    the workers inherit."""
    with recording_server() as server:
        env = {"RASTIR_PUSH_URL": server.url, "RASTIR_SERVICE": "pool"}
        pids, stderr = _run_pool(method, "env", "configure", server.url, env)
        sent = sorted((s["name"], s.get("parent_span_id") is None) for s in server.spans())
        dropped = server.dropped()
    assert len(pids) >= 1
    assert sent == [("job", True)] + [("square", True)] * _TASKS, sent
    assert dropped == 0
    assert "rastir" not in stderr, stderr


@needs_forkserver
@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_workers_of_a_never_configured_parent_warn_however_they_were_started(
    method: str,
) -> None:
    """Nobody configured: a forked worker ends with ``os._exit()`` (no ``atexit``), and
    still reports, through the multiprocessing finalizers; so does the parent."""
    with recording_server() as server:
        pids, stderr = _run_pool(method, "none", "none", server.url)
        received = len(server.received)
    assert received == 0
    found = _warnings(stderr)
    assert set(pids) <= set(found), stderr
    parents = set(found) - set(pids)
    # The parent's "job" span; and any worker that ran no task warned about nothing.
    assert sorted(found[p] for p in parents) == [1], stderr
    assert sum(found[p] for p in pids) == _TASKS, stderr


def test_the_exit_warning_names_an_unread_push_url_and_nothing_is_sent() -> None:
    """Decision: spans of a never-configured process are not sent on RASTIR_PUSH_URL
    alone; only configure() reads the environment. The warning says so."""
    code = "import rastir\nfor i in range(3):\n    with rastir.span('step'):\n        pass\n"
    with recording_server() as server:
        proc = run_python(code, env={"RASTIR_PUSH_URL": server.url}, clean=True, check=False)
        received = len(server.received)
    assert proc.returncode == 0, proc.stderr
    assert received == 0
    lines = [line for line in proc.stderr.splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"rastir: 3 spans recorded in process {_warned_pid(lines[0])} were never exported: "
        "rastir.configure() was never called here "
        "(RASTIR_PUSH_URL is set, but only configure() reads it). "
    ), lines[0]
    assert lines[0].endswith("configure(push_url=None) to keep spans in-process on purpose")


def _warned_pid(line: str) -> int:
    match = _WARNING.search(line)
    assert match is not None, line
    return int(match.group(2))


@pytest.mark.parametrize(
    "setup",
    [
        "rastir.configure(push_url=None)",  # spans kept in-process on purpose
        "rastir.configure(enabled=False)",
        # a test process: what it captured was read, so nothing was lost
        "import rastir.testing\nwith rastir.testing.capture_spans():\n    pass",
        "",  # nothing recorded: nothing to say
    ],
)
def test_no_warning_when_configured_or_nothing_was_recorded(setup: str) -> None:
    record = "with rastir.span('step'):\n    pass\n" if setup else ""
    code = f"import rastir\n{setup}\n{record}"
    proc = run_python(code, clean=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_count_includes_spans_a_full_queue_dropped_and_stays_readable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In-process: the queue before configure() is bounded; what overflowed was never
    exported either. ``Pipeline.unexported`` keeps the total; a second report (the
    multiprocessing finalizer, then atexit) says nothing more."""
    configured, max_queue = PIPELINE.configured, PIPELINE.max_queue
    captured = PIPELINE.captured
    before = PIPELINE.unexported
    PIPELINE.configured = PIPELINE.captured = False  # a fresh process, not a test
    PIPELINE.queueing = True  # a fresh process queues until configure()
    PIPELINE.max_queue = 4
    try:
        for _ in range(7):
            with rastir.span("step"):
                pass
        assert len(PIPELINE.queue) == 4
        with caplog.at_level(logging.WARNING, logger="rastir"):
            assert PIPELINE.report_unconfigured() == 7
            assert PIPELINE.report_unconfigured() == 0
    finally:
        PIPELINE.configured, PIPELINE.max_queue = configured, max_queue
        PIPELINE.captured = captured
    assert PIPELINE.unexported - before == 7
    assert not PIPELINE.queue
    assert PIPELINE.dropped == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "rastir"]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"rastir: 7 spans recorded in process {os.getpid()} ")


def test_configure_stands_the_exit_check_down() -> None:
    """Spans recorded before configure() are the exporter's (D6), not lost at exit."""
    configured = PIPELINE.configured
    PIPELINE.configured = False
    PIPELINE.queueing = True
    try:
        with rastir.span("startup"):
            pass
        with recording_server() as server:
            rastir.configure(service="late", push_url=server.url, flush_interval=60)
            assert PIPELINE.configured
            assert PIPELINE.report_unconfigured() == 0
            assert rastir.flush(10)
            assert [s["name"] for s in server.spans()] == ["startup"]
    finally:
        PIPELINE.configured = configured
