"""After ``fork()`` the child starts with an empty queue, configured or not (D10)."""

from __future__ import annotations

import os
import warnings

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
