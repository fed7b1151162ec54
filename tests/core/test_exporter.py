"""The exporter against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import enum
import gzip
import math
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rastir
from rastir import _config
from rastir._wire import WireBatch, WireError, WireEvent, WireLink, WireSpan, batch_decoder
from rastir.export._encode import encode_batch, sanitize_attributes, to_wire
from rastir.export._pipeline import PIPELINE
from rastir.export.http import HttpTransport
from rastir.spans import Span, SpanContext
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
            gzip=True,  # forced: a loopback target is not compressed by default
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


# -- compression -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://127.0.0.53:8080", False),
        ("http://localhost:8080", False),
        ("http://LOCALHOST", False),
        ("http://collector.localhost:8080", False),
        ("http://[::1]:8080", False),
        ("http://collector.example:8080", True),
        ("https://10.0.0.7", True),
        ("http://127.example.com", True),
        ("http://1270.0.0.1", True),
    ],
)
def test_gzip_is_off_for_a_loopback_target_and_on_otherwise(url: str, expected: bool) -> None:
    # No span is made, so nothing connects to these addresses.
    assert rastir.configure(service="gz", push_url=url).gzip is expected


def test_gzip_can_be_forced_either_way_by_argument_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert rastir.configure(push_url="http://127.0.0.1:1", gzip=True).gzip is True
    assert rastir.configure(push_url="http://collector.example", gzip=False).gzip is False
    monkeypatch.setenv("RASTIR_GZIP", "true")
    assert rastir.configure(push_url="http://127.0.0.1:1").gzip is True
    monkeypatch.setenv("RASTIR_GZIP", "off")
    assert rastir.configure(push_url="http://collector.example").gzip is False
    # The argument wins over the environment; None asks for the automatic choice.
    assert rastir.configure(push_url="http://collector.example", gzip=None).gzip is True
    # "auto" (the README's name for the default) is the automatic choice.
    monkeypatch.setenv("RASTIR_GZIP", "Auto")
    assert rastir.configure(push_url="http://127.0.0.1:1").gzip is False
    assert rastir.configure(push_url="http://collector.example").gzip is True
    monkeypatch.setenv("RASTIR_GZIP", "sometimes")
    with pytest.raises(ValueError, match="RASTIR_GZIP"):
        rastir.configure(push_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="gzip"):
        rastir.configure(push_url="http://127.0.0.1:1", gzip="yes")  # type: ignore[arg-type]


def test_a_loopback_collector_gets_plain_json_by_default() -> None:
    with recording_server() as server:
        rastir.configure(service="plain", push_url=server.url)
        for i in range(600):
            unit(i)
        assert rastir.flush(10)
        assert len(server.spans()) == 600
        assert all("Content-Encoding" not in r.headers for r in server.received)


# -- 413 -------------------------------------------------------------------------------------


def test_a_413_answer_splits_the_batch_until_it_fits_and_loses_nothing() -> None:
    with recording_server() as server:
        # The whole batch and then its first half are too large; the quarters fit.
        server.script.answers = [(413, {}), (413, {})]
        rastir.configure(service="split", push_url=server.url, flush_interval=60)
        for i in range(40):
            unit(i)
        assert rastir.flush(10)
        assert len({s["span_id"] for s in server.spans()}) == 40
        assert [len(r.body["spans"]) for r in server.received] == [10, 10, 20]
        assert server.dropped() == 0
        assert _config._exporter.stats.batches_failed == 0


# -- the encoder -----------------------------------------------------------------------------


def _reference_body(spans: list[Span], resource: dict[str, Any], dropped: int) -> bytes:
    """What ``encode_batch`` must produce, built the slow and obvious way.

    Keyword construction from the spans' public properties: if a field of ``WireSpan``
    moves, the encoder's positional construction no longer matches this.
    """

    def attrs(a: dict[str, Any] | None) -> dict[str, Any]:
        return sanitize_attributes(a) if a else {}

    wire = [
        WireSpan(
            trace_id=s.trace_id,
            span_id=s.span_id,
            name=s.name,
            kind=s.kind,  # type: ignore[arg-type]
            start_time_unix_nano=s.start_time_unix_nano,
            end_time_unix_nano=s.end_time_unix_nano,
            parent_span_id=s.parent_span_id,
            status=s.status,  # type: ignore[arg-type]
            error=None if s.error is None else WireError(**s.error),  # type: ignore[arg-type]
            attributes=attrs(s.attributes),
            events=[
                WireEvent(
                    name=e.name, time_unix_nano=e.time_unix_nano, attributes=attrs(e.attributes)
                )
                for e in s.events or ()
            ],
            links=[
                WireLink(
                    trace_id=ln.context.trace_id,
                    span_id=ln.context.span_id,
                    attributes=attrs(ln.attributes),
                )
                for ln in s.links or ()
            ],
            sampled=s.sampled,
        )
        for s in spans
    ]
    return msgspec.json.encode(WireBatch(spans=wire, resource=resource, dropped=dropped))


class _Odd:
    def __str__(self) -> str:
        return "odd"


class _Colour(enum.IntEnum):
    RED = 1


_ODD_VALUES: list[tuple[object, object]] = [
    ("text", "text"),
    (7, 7),
    (True, True),
    (0.25, 0.25),
    (["a", 1, 2.5, False], ["a", 1, 2.5, False]),
    (None, None),  # dropped
    (float("nan"), "nan"),
    (float("-inf"), "-inf"),
    ([1.0, float("inf")], [1.0, "inf"]),
    ((1, "a", None), [1, "a", "None"]),
    ([[1], None], ["[1]", "None"]),
    ("x" * 9000, "x" * 8192),
    (["y" * 9000], ["y" * 8192]),
    (_Odd(), "odd"),
    (_Colour.RED, 1),
    ({"nested": 1}, "{'nested': 1}"),
    # Integers are int64 on the wire (as OTLP's intValue): beyond, their decimal text.
    (1 << 70, str(1 << 70)),
    ((1 << 63) - 1, (1 << 63) - 1),
    (1 << 63, str(1 << 63)),
    (-(1 << 63), -(1 << 63)),
    ([1 << 64, 2], [str(1 << 64), 2]),
    ([], []),
]


def _finished(span: Span) -> Span:
    span._t1 = span._t0 + 1_000
    return span


def test_encode_batch_matches_keyword_construction_byte_for_byte() -> None:
    remote = SpanContext(0xABC, 0xDEF, flags=0)
    spans: list[Span] = []
    for i, (value, _) in enumerate(_ODD_VALUES):
        parent: Span | SpanContext | None = (None, remote, spans[-1] if spans else None)[i % 3]
        s = Span(f"s{i}", ("tool", "llm", "agent")[i % 3], parent, {"v": value, "ok": i})
        if i % 4 == 0:
            s.add_event("first_token", {"v": value}, time_unix_nano=123)  # type: ignore[dict-item]
        if i % 5 == 0:
            s.add_link(SpanContext(0x1234, 0x5678), {"v": value})  # type: ignore[dict-item]
        if i % 6 == 0:
            s.set_error("timeout", "TimeoutError", "too slow")
        spans.append(_finished(s))
    spans.append(_finished(Span("bare", "trace", None)))
    # A tree in the order spans end: grandchildren, their parent, a sibling, the root;
    # then a second trace interleaved with a span of the first.
    root = Span("root", "agent", None)
    mid = Span("mid", "llm", root)
    leaves = [Span(f"leaf{i}", "tool", mid) for i in range(3)]
    other = Span("other-root", "trace", None)
    spans += map(_finished, [*leaves, mid, Span("sibling", "tool", root), other, root])
    resource = {"service.name": "ref"}
    try:
        for ratio in (1.0, 0.5, 0.0):
            rastir.configure(service="ref", push_url=None, sample_ratio=ratio)
            assert encode_batch(spans, resource, 3) == _reference_body(spans, resource, 3)
            decoded = batch_decoder().decode(encode_batch(spans, resource, 3))
            assert [w.sampled for w in decoded.spans] == [s.sampled for s in spans]
    finally:
        rastir.configure(push_url=None, sample_ratio=1.0)


@pytest.mark.parametrize(("value", "expected"), _ODD_VALUES)
def test_each_attribute_value_is_sent_as_the_collector_accepts_it(
    value: object, expected: object
) -> None:
    span = _finished(Span("one", "tool", None, {"k": value}))
    decoded = batch_decoder().decode(encode_batch([span], {}, 0))
    assert decoded.spans[0].attributes == ({} if expected is None else {"k": expected})


def test_clean_attributes_are_sent_without_a_copy() -> None:
    attrs = {"s": "x", "i": 1, "b": False, "f": 1.5, "l": ["stop", 2]}
    span = _finished(Span("clean", "llm", None, attrs))
    assert to_wire(span).attributes is attrs
    assert sanitize_attributes(attrs) is attrs


def test_a_key_that_is_not_a_string_costs_no_span() -> None:
    odd = _finished(Span("odd-key", "tool", None, {None: 1, "fine": 2}))  # type: ignore[dict-item]
    ok = _finished(Span("ok", "tool", None, {"a": "b"}))
    decoded = batch_decoder().decode(encode_batch([ok, odd], {}, 0))
    assert [s.name for s in decoded.spans] == ["ok", "odd-key"]
    assert decoded.spans[1].attributes == {"None": 1, "fine": 2}
    assert decoded.spans[0].attributes == {"a": "b"}


def test_to_wire_gives_each_span_lists_of_its_own() -> None:
    a, b = (to_wire(_finished(Span(n, "tool", None))) for n in "ab")
    a.events.append(WireEvent(name="late", time_unix_nano=1))
    a.links.append(WireLink(trace_id="1" * 32, span_id="2" * 16))
    assert b.events == []
    assert b.links == []
    assert b"events" not in encode_batch([_finished(Span("c", "tool", None))], {}, 0)


_scalar = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.booleans(),
    st.none(),
)
_value = st.one_of(
    _scalar,
    st.lists(st.one_of(_scalar, st.lists(_scalar, max_size=2)), max_size=4),
    st.tuples(_scalar, _scalar),
    st.dictionaries(st.text(max_size=3), _scalar, max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), _value, max_size=6), min_size=1, max_size=5))
def test_any_attribute_values_encode_to_a_batch_the_collector_decodes(
    dicts: list[dict[str, Any]],
) -> None:
    spans = [_finished(Span("fuzz", "tool", None, dict(d))) for d in dicts]
    decoded = batch_decoder().decode(encode_batch(spans, {"service.name": "fuzz"}, 0))
    assert len(decoded.spans) == len(spans)
    for d, w in zip(dicts, decoded.spans, strict=True):
        assert set(w.attributes) == {k for k, v in d.items() if v is not None}
        for k, v in w.attributes.items():
            if type(d[k]) is int and not -(1 << 63) <= d[k] < 1 << 63:
                assert v == str(d[k])
            elif type(d[k]) in (str, int, bool) or (type(d[k]) is float and math.isfinite(d[k])):
                assert v == d[k]


# -- the HTTP client -------------------------------------------------------------------------


class _RawServer:
    """A socket server on 127.0.0.1 that reads each request and answers scripted raw bytes.

    Each entry of ``answers`` serves one request: the bytes to write back, and whether to
    close the connection afterwards. ``read_body=False`` answers right after the request
    head, without reading the body (as a server refusing a large body does).
    """

    def __init__(
        self,
        answers: list[tuple[bytes, bool]],
        *,
        read_body: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answers = list(answers)
        self.read_body = read_body
        self.tls = tls
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:  # the client refused the certificate
                    conn.close()
                    continue
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if self.read_body:
                        while len(buf) < length:
                            buf += conn.recv(65536)
                    body, buf = buf[:length], buf[length:]
                    self.requests.append((head, body))
                    answer, close = self.answers.pop(0)
                    conn.sendall(answer)
                    if close:
                        break

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


def _http(answers: list[tuple[bytes, bool]], **kwargs: Any) -> tuple[_RawServer, HttpTransport]:
    server = _RawServer(answers, read_body=kwargs.pop("read_body", True))
    return server, HttpTransport(server.url, timeout=5, **kwargs)


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost, made with the openssl command line."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    args += " -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    subprocess.run(
        ["openssl", *args.split(), "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("trusted", [True, False])
def test_https_verifies_the_collector_certificate(
    tls_certificate: tuple[str, str], trusted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tls_certificate
    if trusted:
        # ssl.create_default_context() loads the CA file named here (OpenSSL's variable).
        monkeypatch.setenv("SSL_CERT_FILE", cert)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = _RawServer([(_OK, False), (_OK, False)], tls=server_ctx)
    port = server.url.rsplit(":", 1)[1]
    transport = HttpTransport(f"https://localhost:{port}", timeout=5)
    try:
        results = [transport.send(b"{}") for _ in range(2)]
        if trusted:
            assert [r.status for r in results] == [202, 202]
            assert server.connections == 1
            assert server.requests[0][0].startswith(b"POST /v1/telemetry HTTP/1.1")
        else:
            assert [r.status for r in results] == [0, 0]
            assert "CERTIFICATE_VERIFY_FAILED" in results[0].error
            assert server.requests == []
    finally:
        transport.close()
        server.close()


_OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"


def test_the_client_keeps_one_connection_across_posts() -> None:
    server, transport = _http([(_OK, False)] * 3, token="t0k", headers={"X-Team": "ml"})
    try:
        results = [transport.send(b'{"n":%d}' % i) for i in range(3)]
        assert [r.status for r in results] == [202, 202, 202]
        assert server.connections == 1
        head, body = server.requests[2]
        assert body == b'{"n":2}'
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/telemetry HTTP/1.1"
        assert f"Host: {server.url.removeprefix('http://')}".encode() in lines
        assert b"Authorization: Bearer t0k" in lines
        assert b"X-Team: ml" in lines
        assert b"Content-Type: application/json" in lines
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize(
    ("answer", "status", "reuses"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;x=1\r\n{}\r\n0\r\nT: v\r\n\r\n",
            200,
            True,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, True),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
            202,
            True,
        ),
        (b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 202, False),
        (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, False),
        (
            b"HTTP/1.0 202 Accepted\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            202,
            True,
        ),
    ],
)
def test_the_client_reads_every_answer_framing(answer: bytes, status: int, reuses: bool) -> None:
    server, transport = _http([(answer, not reuses), (_OK, False)])
    try:
        assert transport.send(b"{}").status == status
        assert transport.send(b"{}").status == 202  # the next request finds its answer
        assert server.connections == (1 if reuses else 2)
    finally:
        transport.close()
        server.close()


def test_the_client_reads_retry_after_from_a_429() -> None:
    server, transport = _http(
        [(b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\nContent-Length: 0\r\n\r\n", False)]
    )
    try:
        result = transport.send(b"{}")
        assert (result.status, result.retry_after, result.retryable) == (429, 7.0, True)
    finally:
        transport.close()
        server.close()


def test_the_client_reconnects_once_when_an_idle_connection_was_closed() -> None:
    # The first answer keeps the connection open, then the server closes it unannounced.
    server, transport = _http([(_OK, True), (_OK, False)])
    try:
        assert transport.send(b"{}").status == 202
        assert transport.send(b"{}").status == 202
        assert server.connections == 2
        assert len(server.requests) == 2
    finally:
        transport.close()
        server.close()


def test_a_413_sent_before_the_body_is_read_is_what_the_client_reports() -> None:
    refusal = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server, transport = _http([(refusal, True)], read_body=False, gzip=False)
    try:
        result = transport.send(b"x" * (8 << 20))
        assert result.status == 413
        assert not result.retryable
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize(
    "answer",
    [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b""],
)
def test_a_broken_answer_is_a_retryable_failure_not_an_exception(answer: bytes) -> None:
    server, transport = _http([(answer, True)])
    try:
        result = transport.send(b"{}")
        assert result.status == 0
        assert result.retryable
        assert result.error
    finally:
        transport.close()
        server.close()


def test_the_client_gzips_large_bodies_when_asked() -> None:
    server, transport = _http([(_OK, False), (_OK, False)], gzip=True)
    try:
        big = b'{"spans":[' + b'{"name":"x"},' * 200 + b'{"name":"x"}]}'
        assert transport.send(big).status == 202
        assert transport.send(b"{}").status == 202  # too small to be worth it
        (head1, body1), (head2, body2) = server.requests
        assert b"Content-Encoding: gzip" in head1
        assert gzip.decompress(body1) == big
        assert b"Content-Encoding" not in head2
        assert body2 == b"{}"
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"headers": {"X-Name": "caf\u00e9\u2603"}}, "Latin-1"),
        ({"token": "a\r\nb"}, "line breaks"),
        ({"push_url": "ftp://x"}, "http"),
    ],
)
def test_headers_that_cannot_be_sent_are_refused_up_front(
    kwargs: dict[str, Any], message: str
) -> None:
    url = kwargs.pop("push_url", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match=message):
        HttpTransport(url, **kwargs)
