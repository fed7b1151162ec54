"""The exporter against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings

import pytest

import rastir
from rastir import _config
from rastir.export._pipeline import PIPELINE
from tests.recording_server import recording_server


@rastir.trace("unit")
def unit(i: int = 0) -> int:
    return i


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_normal_batch_arrives_with_resource_auth_and_wire_fields() -> None:
    with recording_server() as server:
        rastir.configure(
            service="svc-a",
            push_url=server.url,
            env="test",
            version="1.2.3",
            token="s3cret",
            headers={"X-Team": "ml"},
        )

        @rastir.agent(agent_name="a")
        def run() -> None:
            for i in range(600):
                unit(i)

        run()
        assert rastir.flush(10)
        spans = server.spans()
        assert len(spans) == 601
        first = server.received[0]
        assert first.headers["Authorization"] == "Bearer s3cret"
        assert first.headers["X-Team"] == "ml"
        assert first.headers["Content-Encoding"] == "gzip"
        resource = first.body["resource"]
        assert resource["service.name"] == "svc-a"
        assert resource["service.version"] == "1.2.3"
        assert resource["deployment.environment.name"] == "test"
        agent_span = next(s for s in spans if s["kind"] == "agent")
        children = [s for s in spans if s.get("parent_span_id") == agent_span["span_id"]]
        assert len(children) == 600
        assert {s["trace_id"] for s in spans} == {agent_span["trace_id"]}
        assert all(s["end_time_unix_nano"] >= s["start_time_unix_nano"] > 0 for s in spans)
        # 600 spans with a batch size of 512: more than one POST, on one connection.
        assert len(server.received) >= 2


def test_every_batch_decodes_with_the_wire_structs() -> None:
    import msgspec

    from rastir._wire import WireBatch

    with recording_server() as server:
        rastir.configure(service="wire", push_url=server.url)

        class Odd:
            def __str__(self) -> str:
                return "odd"

        with rastir.span("attrs") as s:
            assert s is not None
            s.set_attribute("none", None)  # type: ignore[arg-type]
            s.set_attribute("nan", float("nan"))
            s.set_attribute("obj", Odd())  # type: ignore[arg-type]
            s.set_attribute("tuple", (1, "a", None))  # type: ignore[arg-type]
            s.add_event("first_token", {"n": 1})
        with pytest.raises(ValueError), rastir.span("boom"):
            raise ValueError("bad input")
        assert rastir.flush(10)
        for r in server.received:
            batch = msgspec.convert(r.body, WireBatch)
            assert batch.spans
        spans = {s["name"]: s for s in server.spans()}
        assert spans["attrs"]["attributes"] == {
            "nan": "nan",
            "obj": "odd",
            "tuple": [1, "a", "None"],
        }
        assert spans["attrs"]["events"][0]["name"] == "first_token"
        assert spans["boom"]["status"] == "error"
        assert spans["boom"]["error"]["type"] == "validation_error"


def test_server_down_then_up_delivers_the_buffer_and_counts_the_rest() -> None:
    port = _free_port()
    rastir.configure(
        service="down",
        push_url=f"http://127.0.0.1:{port}",
        batch_size=10,
        max_queue=50,
        flush_interval=0.05,
        timeout=2,
    )
    for i in range(300):
        unit(i)
    # Nothing listens yet: the exporter is retrying its first batch while the
    # bounded queue overflows.
    with recording_server(port) as server:
        assert rastir.flush(30)
        delivered = len(server.spans())
        assert 0 < delivered < 300
        assert delivered + server.dropped() == 300


def test_500_answers_are_retried_until_accepted() -> None:
    with recording_server() as server:
        server.script.answers = [(500, {}), (503, {}), (500, {})]
        rastir.configure(service="retry", push_url=server.url)
        for i in range(5):
            unit(i)
        assert rastir.flush(30)
        assert len(server.spans()) == 5
        assert len(server.attempts) == 4
        assert server.dropped() == 0
        assert _config._exporter.stats.retries == 3


def test_429_with_retry_after_is_honoured() -> None:
    with recording_server() as server:
        server.script.answers = [(429, {"Retry-After": "1"})]
        rastir.configure(service="busy", push_url=server.url)
        unit()
        assert rastir.flush(30)
        assert len(server.spans()) == 1
        first, second = server.attempts[:2]
        # A lower bound only: a slow machine can wait longer, never shorter.
        assert second - first >= 0.95


def test_a_400_answer_is_final_and_the_loss_is_reported_in_the_next_batch() -> None:
    with recording_server() as server:
        server.script.answers = [(400, {})]
        rastir.configure(service="bad", push_url=server.url)
        for i in range(3):
            unit(i)
        assert rastir.flush(10)
        assert server.spans() == []
        # The loss is reported at once, in a batch with no spans.
        assert server.dropped() == 3
        unit(99)
        assert rastir.flush(10)
        assert len(server.spans()) == 1
        assert server.dropped() == 3


def test_a_collector_refusing_everything_does_not_spin_the_exporter() -> None:
    with recording_server() as server:
        server.script.default = (400, {})
        rastir.configure(service="refused", push_url=server.url, flush_interval=60)
        unit(1)
        assert rastir.flush(10)
        # One batch with the span, one report of the loss; then quiet.
        assert len(server.attempts) == 2
        assert PIPELINE.dropped == 1


def test_a_hanging_server_never_blocks_the_application_and_memory_stays_bounded() -> None:
    release = threading.Event()
    with recording_server() as server:
        server.script.hang = release
        rastir.configure(
            service="hang", push_url=server.url, batch_size=100, max_queue=1000, timeout=30
        )
        for i in range(150):
            unit(i)
        assert server.hanging.wait(10)  # the exporter is stuck inside a request

        def flood() -> None:
            for i in range(100_000):
                unit(i)

        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        worker = threading.Thread(target=flood)
        worker.start()
        worker.join(120)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        # The flood finished while the server still holds the request: no call waited.
        assert not worker.is_alive()
        assert not release.is_set()
        assert len(PIPELINE.queue) <= 1000
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert growth < 8 * 1024 * 1024
        queued = len(PIPELINE.queue)
        release.set()
        server.script.hang = None
        assert rastir.flush(30)
        # Everything is either delivered or reported as dropped.
        assert len(server.spans()) + server.dropped() == 100_150
        assert len(server.spans()) >= queued


def test_reconfiguring_sends_pending_spans_to_the_old_target_first() -> None:
    with recording_server() as one, recording_server() as two:
        rastir.configure(service="one", push_url=one.url, flush_interval=60)
        unit(1)
        rastir.configure(service="two", push_url=two.url, flush_interval=60)
        unit(2)
        assert rastir.flush(10)
        assert [s["name"] for s in one.spans()] == ["unit"]
        assert one.received[0].body["resource"]["service.name"] == "one"
        assert two.received[0].body["resource"]["service.name"] == "two"


def test_spans_from_before_configure_are_sent_once_it_is_called() -> None:
    PIPELINE.queueing = True  # a fresh process queues until configure()
    unit(1)
    unit(2)
    with recording_server() as server:
        rastir.configure(service="late", push_url=server.url)
        assert rastir.flush(10)
        assert len(server.spans()) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exports_its_own_spans_and_not_the_parents() -> None:
    with recording_server() as server:
        rastir.configure(service="forky", push_url=server.url, flush_interval=60)
        unit(1)  # queued in the parent, not yet sent
        unit(2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with rastir.span("child-span"):
                    pass
                code = 0 if rastir.flush(10) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert rastir.flush(10)
        by_pid: dict[int, list[str]] = {}
        for r in server.received:
            by_pid.setdefault(r.body["resource"]["process.pid"], []).extend(
                s["name"] for s in r.body["spans"]
            )
        assert by_pid[pid] == ["child-span"]
        assert sorted(by_pid[os.getpid()]) == ["unit", "unit"]


def _run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_spans_are_flushed_at_interpreter_exit() -> None:
    with recording_server() as server:
        proc = _run_script(
            f"""
            import rastir
            rastir.configure(service="exit", push_url={server.url!r}, flush_interval=60)

            @rastir.trace
            def work():
                return 1

            for _ in range(3):
                work()
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert len(server.spans()) == 3


def test_exit_is_bounded_when_the_collector_hangs() -> None:
    release = threading.Event()
    with recording_server() as server:
        server.script.hang = release
        proc = _run_script(
            f"""
            import time
            import rastir
            rastir.configure(service="stuck", push_url={server.url!r},
                             shutdown_timeout=0.5, timeout=30)
            with rastir.span("x"):
                pass
            rastir.flush(0.2)
            t0 = time.monotonic()
            import atexit
            atexit.register(lambda: print("exit took", round(time.monotonic() - t0, 2)))
            """,
            # Unbounded, the exit would wait out the 30 s request timeout.
            timeout=15,
        )
        release.set()
        assert proc.returncode == 0, proc.stderr
        # The exporter's own shutdown ran (atexit runs handlers in reverse order, so
        # the print above runs first); the process did exit although the server never
        # answered within the 30 s request timeout.
        assert "exit took" in proc.stdout


def test_configure_reads_the_environment_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTIR_SERVICE", "from-env")
    monkeypatch.setenv("RASTIR_BATCH_SIZE", "64")
    monkeypatch.setenv("RASTIR_HEADERS", "a=1, b=2")
    monkeypatch.setenv("RASTIR_CAPTURE_CONTENT", "true")
    s = rastir.configure()
    assert (s.service, s.batch_size, dict(s.headers), s.capture_content) == (
        "from-env",
        64,
        {"a": "1", "b": "2"},
        True,
    )
    assert rastir.configure(service="arg").service == "arg"  # arguments win
    monkeypatch.setenv("RASTIR_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match="RASTIR_BATCH_SIZE"):
        rastir.configure()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"push_url": "ftp://x"},
        {"push_url": "not a url"},
        {"batch_size": 0},
        {"max_queue": 10, "batch_size": 20},
        {"flush_interval": 0},
        {"service": ""},
        {"headers": {"a": "b\r\nc"}},
    ],
)
def test_bad_configuration_raises_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rastir.configure(**kwargs)  # type: ignore[arg-type]
