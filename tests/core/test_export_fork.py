"""After ``fork()`` the child starts with an empty queue, configured or not (D10)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

import rastir
from rastir.export._pipeline import PIPELINE
from tests.recording_server import recording_server

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() in a process with threads (the servers').
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def test_spans_queued_before_configure_are_sent_by_the_parent_only() -> None:
    PIPELINE.queueing = True  # a fresh process queues until configure()
    with rastir.span("parent-startup"):
        pass
    PIPELINE.add_dropped(3)
    with recording_server() as server:
        children = []
        for i in range(2):
            pid = _fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    clean = not PIPELINE.queue and PIPELINE.dropped == 0
                    rastir.configure(service=f"child{i}", push_url=server.url, flush_interval=60)
                    with rastir.span(f"child{i}-work"):
                        pass
                    code = 0 if clean and rastir.flush(10) else 2
                finally:
                    os._exit(code)
            children.append(pid)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        assert [s.name for s in PIPELINE.queue] == ["parent-startup"]  # the parent's own
        rastir.configure(service="parent", push_url=server.url, flush_interval=60)
        assert rastir.flush(10)
        sent = sorted(
            (r.body["resource"]["service.name"], s["name"])
            for r in server.received
            for s in r.body["spans"]
        )
        assert sent == [
            ("child0", "child0-work"),
            ("child1", "child1-work"),
            ("parent", "parent-startup"),
        ]
        # The parent's drop count is the parent's to report, once.
        assert server.dropped() == 3


def _context_seen_by_a_child() -> tuple[str | None, str | None, dict[str, str]]:
    return rastir.current_trace_id(), rastir.current_agent(), rastir.current_baggage()


def test_multiprocessing_children_start_with_an_empty_context() -> None:
    """A forked pool worker would keep the context of the request that started the
    pool, and put every later request's tasks in that trace. Children of
    multiprocessing start empty, as spawned ones do; a bare os.fork() keeps it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fork = multiprocessing.get_context("fork")

    @rastir.agent(agent_name="req")
    def request(executor: ProcessPoolExecutor) -> tuple[Any, ...]:
        with warnings.catch_warnings():  # 3.12: fork() in a process with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            return executor.submit(_context_seen_by_a_child).result(timeout=30)

    with ProcessPoolExecutor(max_workers=1, mp_context=fork) as executor:
        assert request(executor) == (None, None, {})  # the worker is forked here
        assert request(executor) == (None, None, {})  # and reused here

    with rastir.span("parent"):
        trace_id = rastir.current_trace_id()
        assert trace_id is not None
        read, write = os.pipe()
        pid = _fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.write(write, (rastir.current_trace_id() or "-").encode())
            os._exit(0)
        os.close(write)
        seen = os.read(read, 64).decode()
        os.close(read)
        assert os.waitpid(pid, 0)[1] == 0
    assert seen == trace_id
