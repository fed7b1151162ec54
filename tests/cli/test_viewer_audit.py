"""``rastir traces`` and ``rastir trace`` against hostile senders, odd terminals and
collectors that misbehave: a real collector on 127.0.0.1 for the traces, and small
stand-in servers for answers a real collector never gives."""

from __future__ import annotations

import http.server
import io
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rastir.collector import CollectorSettings, create_app
from rastir.viewer.cli import trace_main, traces_main
from rastir.viewer.render import Style, render_trace, render_trace_list
from tests.cli.conftest import _post
from tests.collector.server import serving
from tests.collector.spans import span, span_id, trace_id

_OWN_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\nFAKE LINE\x1b[1A\u202eevil\u200b\x9b31m\x7f"


def _cells(text: str) -> int:
    """Terminal cells, by the Unicode tables (an oracle apart from the renderer's)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


class _Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _run(
    main: Callable[..., int], *argv: str, out: io.StringIO | None = None
) -> tuple[int, str, str]:
    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RASTIR_QUERY_URL", "RASTIR_PUSH_URL", "RASTIR_QUERY_TOKEN", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)


class Loaded:
    def __init__(self, url: str) -> None:
        self.url = url
        now = time.time_ns() - 60 * 10**9
        self.hostile = trace_id()
        root = span(
            trace=self.hostile,
            kind="agent",
            name=HOSTILE,
            start=now,
            duration_ms=50,
            gen_ai__agent__name=HOSTILE,
        )
        llm = span(
            trace=self.hostile,
            parent=root["span_id"],
            kind="llm",
            name="chat",
            start=now + 1000,
            duration_ms=10,
            gen_ai__request__model=HOSTILE,
            gen_ai__usage__input_tokens=5,
            gen_ai__usage__output_tokens=7,
        )
        failed = span(
            trace=self.hostile,
            parent=root["span_id"],
            kind="tool",
            name="tool",
            start=now + 2000,
            duration_ms=5,
            status="error",
            error_type="tool_error",
        )
        failed["error"].update(message=HOSTILE, exception_type=HOSTILE)
        _post(url, HOSTILE, [root, llm, failed])

        self.wide = trace_id()
        root = span(trace=self.wide, kind="agent", name="代理の実行 — 検索", start=now + 10**9)
        kids = [
            span(
                trace=self.wide,
                parent=root["span_id"],
                kind="tool",
                name=name,
                start=now + 10**9 + i,
                duration_ms=1,
            )
            for i, name in enumerate(
                ["中文名字的跨度非常宽的字符测试" * 3, "e\u0301\u0301 café", "🙂🙂 tool", "x" * 300]
            )
        ]
        _post(url, "サービス", [root, *kids])

        self.deep = trace_id()
        chain = [span(trace=self.deep, kind="trace", name="d0", start=now + 2 * 10**9)]
        for i in range(1, 2000):
            chain.append(
                span(
                    trace=self.deep,
                    parent=chain[-1]["span_id"],
                    kind="trace",
                    name=f"d{i}",
                    start=now + 2 * 10**9 + i,
                )
            )
        _post(url, "deep", list(reversed(chain)))

        self.cycle = trace_id()
        a = span(trace=self.cycle, kind="trace", name="A", start=now + 3 * 10**9)
        b = span(trace=self.cycle, kind="trace", name="B", start=now + 3 * 10**9 + 1)
        a["parent_span_id"], b["parent_span_id"] = b["span_id"], a["span_id"]
        lost = span(trace=self.cycle, parent=span_id(), name="lost", start=now + 3 * 10**9 + 2)
        _post(url, "cyc", [a, b, lost])

        self.exact = trace_id()  # lasts 1234567.8 ms exactly
        s = span(trace=self.exact, kind="trace", name="long", start=10**18)
        s["end_time_unix_nano"] = 10**18 + 1_234_567_800_000
        _post(url, "exact", [s])


@pytest.fixture(scope="module")
def loaded() -> Iterator[Loaded]:
    settings_ = CollectorSettings(
        store="memory", ack="committed", access_log=False, retention=None, max_loop_lag=None
    )
    with serving(create_app(settings_)) as url:
        yield Loaded(url)


def _no_control(text: str) -> None:
    """Nothing but our own colour codes and line ends may reach the terminal."""
    plain = _OWN_COLOUR.sub("", text)
    bad = [ch for ch in plain.replace("\n", "") if not ch.isprintable()]
    assert not bad, bad


# -- hostile text ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["never", "always"])
def test_escapes_from_a_sender_never_reach_the_terminal(loaded: Loaded, color: str) -> None:
    code, out, err = _run(traces_main, "--url", loaded.url, "--color", color, "--limit", "1000")
    assert (code, err) == (0, "")
    _no_control(out)
    assert "FAKE LINE" in out  # shown, as text
    assert not any(line.startswith("FAKE") for line in out.splitlines())  # not a line of its own

    code, out, err = _run(trace_main, loaded.hostile, "--url", loaded.url, "--color", color)
    assert (code, err) == (0, "")
    _no_control(out)
    rows = out.splitlines()
    header = next(i for i, line in enumerate(rows) if _OWN_COLOUR.sub("", line).startswith("SPAN"))
    assert len(rows) - header - 1 == 3  # one row per span, however many line breaks were sent


def test_json_output_is_ascii_with_every_control_escaped(loaded: Loaded) -> None:
    code, out, _ = _run(trace_main, loaded.hostile, "--url", loaded.url, "--json")
    assert code == 0
    assert out.isascii()
    _no_control(out)
    assert json.loads(out)["spans"][0]["name"] == HOSTILE
    code, out, _ = _run(traces_main, "--url", loaded.url, "--json", "--limit", "1000")
    assert code == 0
    assert out.isascii()


# -- widths ----------------------------------------------------------------------------------


def test_wide_and_combining_names_keep_the_columns_aligned(loaded: Loaded) -> None:
    code, out, _ = _run(trace_main, loaded.wide, "--url", loaded.url)
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SPAN"))
    kind_at = lines[header].index("KIND")
    for row in lines[header + 1 :]:
        # The name cell, then two spaces, then the kind: at the same cell on every row.
        kind = re.search(r" {2}(agent|tool) ", row)
        assert kind is not None, row
        assert _cells(row[: kind.start() + 2]) == kind_at, row
    assert "代理の実行 — 検索" in out

    code, out, _ = _run(traces_main, "--url", loaded.url, "--limit", "1000")
    lines = out.splitlines()
    root_at = lines[0].index("ROOT")
    row = next(line for line in lines if loaded.wide in line)
    assert _cells(row[: row.index("代理")]) == root_at


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_that_cannot_write_a_name_gets_question_marks_not_a_crash(
    loaded: Loaded, encoding: str
) -> None:
    for main, argv in ((trace_main, [loaded.wide]), (traces_main, ["--limit", "1000"])):
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding=encoding)
        err = io.StringIO()
        code = main([*argv, "--url", loaded.url], stdout=out, stderr=err)
        out.flush()
        assert (code, err.getvalue()) == (0, "")
        text = raw.getvalue().decode(encoding)
        assert loaded.wide in text
    lines = text.splitlines()  # the list: the root column still starts in one place
    root_at = lines[0].index("ROOT")
    row = next(line for line in lines if loaded.wide in line)
    assert row[root_at - 2 : root_at] == "  "
    assert row[root_at:].startswith("??????")  # 代理の: two cells each


@pytest.mark.parametrize("columns", [20, 60, 100])
def test_lines_fit_a_narrow_terminal(
    loaded: Loaded, columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    for main, argv in (
        (traces_main, ["--limit", "1000"]),
        (trace_main, [loaded.wide]),
        (trace_main, [loaded.hostile]),
        (trace_main, [loaded.deep]),
    ):
        code, out, _ = _run(main, *argv, "--url", loaded.url, "--color", "always", out=_Terminal())
        assert code == 0
        for line in out.splitlines():
            assert _cells(_OWN_COLOUR.sub("", line)) <= columns, line
    code, out, _ = _run(traces_main, "--url", loaded.url, out=_Terminal())
    if columns >= 60:  # the trace id stays whole, to copy into `rastir trace`
        assert loaded.wide in out


def test_a_pipe_gets_whole_lines(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a terminal's width means nothing to a pipe
    code, out, _ = _run(traces_main, "--url", loaded.url, "--limit", "1000")
    assert code == 0
    assert max(_cells(line) for line in out.splitlines()) > 100


# -- shapes ----------------------------------------------------------------------------------


def test_a_2000_deep_trace_prints_every_span_with_its_depth(loaded: Loaded) -> None:
    code, out, err = _run(trace_main, loaded.deep, "--url", loaded.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SPAN"))
    rows = lines[header + 1 : -1]
    assert len(rows) == 2000
    assert "nested again here" in lines[-1]
    # Deep names stay on screen, after a count of the levels left out.
    # d1999 is 1998 levels below the first child's: 7 guides shown, 1991 counted.
    assert re.match(r"…\+1991 (│   |    ){7}└── d1999 ", rows[-1]), rows[-1]
    assert all(re.search(rf"\bd{i}\b", row) for i, row in enumerate(rows))


def test_a_cycle_and_an_orphan_print_each_span_once(loaded: Loaded) -> None:
    code, out, _ = _run(trace_main, loaded.cycle, "--url", loaded.url)
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SPAN"))
    rows = lines[header + 1 :]
    assert [row.split()[0] for row in rows] == ["A", "└──", "lost"]
    assert "(parent span not received)" in rows[0]
    assert "(parent span not received)" in rows[2]


def _flat(*nodes: tuple[str, str | None, bool]) -> dict[str, Any]:
    spans: list[dict[str, Any]] = [
        {
            "span_id": sid,
            "parent_span_id": parent,
            "name": sid,
            "kind": "trace",
            "service": "s",
            "start_time_unix_nano": i,
            "duration_ns": 1,
            "orphan": orphan,
            "children": [],
        }
        for i, (sid, parent, orphan) in enumerate(nodes)
    ]
    return {"trace_id": "ab" * 16, "summary": {}, "spans": spans, "flattened": True}


def _names(text: str) -> list[str]:
    """The span names of a rendered tree, in row order, without their branches."""
    rows = text.splitlines()
    header = next(i for i, line in enumerate(rows) if line.startswith("SPAN"))
    return [
        re.sub(r"^[ │├└─]*", "", row).split()[0] for row in rows[header + 1 :] if row[:1] != "("
    ]


def test_a_flat_answer_is_nested_again_even_when_it_hides_a_cycle() -> None:
    text = render_trace(
        _flat(("r", None, False), ("c", "r", False), ("g", "c", False), ("x", "y", False)),
        Style(),
    )
    assert _names(text) == ["r", "c", "g", "x"]
    assert "│   └── g" in text or "    └── g" in text
    # A hostile answer: a cycle with no span marked as cut. Each span still once.
    text = render_trace(_flat(("a", "b", False), ("b", "a", False)), Style())
    assert sorted(_names(text)) == ["a", "b"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "trace_id",
        "summary",
        "spans",
        "children",
        "name",
        "kind",
        "service",
        "start_time_unix_nano",
        "duration_ns",
        "status",
        "error",
        "attributes",
        "orphan",
        "flattened",
        "input_tokens",
        "cost_usd",
        "services",
        "span_count",
        "span_id",
        "parent_span_id",
    ]
)
_shapes = st.recursive(
    _json,
    lambda inner: st.dictionaries(_keys, inner, max_size=8) | st.lists(inner, max_size=3),
    max_leaves=30,
)


@given(answer=st.dictionaries(_keys, _shapes, max_size=6), width=st.none() | st.integers(20, 120))
@settings(max_examples=300, deadline=None)
def test_any_answer_shape_renders_without_raising(
    answer: dict[str, Any], width: int | None
) -> None:
    # A collector answering something else than it should (an old version, a proxy,
    # a hostile host) gets text, never a traceback.
    render_trace(answer, Style(), width=width)
    listed = answer.get("spans")
    render_trace_list(listed if isinstance(listed, list) else [answer], Style(), width=width)


# -- misbehaving collectors ------------------------------------------------------------------


class StandIn:
    def __init__(self, url: str, requests: list[dict[str, str]]) -> None:
        self.url = url
        self.requests = requests  # the headers of every request it got


@contextmanager
def stand_in(answer: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[StandIn]:
    """A tiny HTTP server on 127.0.0.1 whose every GET is answered by ``answer``."""
    requests: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append({k.lower(): v for k, v in self.headers.items()})
            answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandIn(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _reply(status: int, body: bytes, **headers: str) -> Callable[[Any], None]:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_so_the_token_never_leaves(status: int) -> None:
    with stand_in(_reply(200, b'{"traces": [], "next_cursor": null}')) as other:
        elsewhere = other.url.replace("127.0.0.1", "localhost") + "/v1/traces"
        with stand_in(_reply(status, b"", location=elsewhere)) as collector:
            code, out, err = _run(traces_main, "--url", collector.url, "--token", "s3cret")
    assert collector.requests[0]["authorization"] == "Bearer s3cret"
    assert other.requests == []  # urllib would have sent the token along
    assert code == 1
    assert out == ""
    assert f"answered {status}, a redirect to {elsewhere}" in err
    assert "--url" in err


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_collector_that_answers_a_byte_at_a_time_is_cut_off_at_the_timeout(where: str) -> None:
    stop = threading.Event()

    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        if where == "body":
            handler.wfile.write(b"content-type: application/json\r\ncontent-length: 9999\r\n\r\n")
        try:
            while not stop.wait(0.1):  # each byte well inside the socket timeout
                handler.wfile.write(b"x" if where == "headers" else b" ")
                handler.wfile.flush()
        except OSError:
            pass  # the viewer hung up

    result: list[tuple[int, str, str]] = []
    with stand_in(drip) as server:
        viewer = threading.Thread(
            target=lambda: result.append(_run(traces_main, "--url", server.url, "--timeout", "1")),
            daemon=True,
        )
        viewer.start()
        viewer.join(30)  # a guard against hanging the suite: it ends after about 1 s
        stop.set()
    assert result, "the viewer hung on a server that never finishes its answer"
    code, out, err = result[0]
    assert code == 1
    assert out == ""
    assert "did not answer in full within 1s" in err


def test_error_text_from_a_collector_is_cleaned() -> None:
    message = json.dumps({"error": "x", "message": HOSTILE * 40}).encode()
    for status in (400, 418, 502):
        with stand_in(_reply(status, message)) as server:
            code, out, err = _run(traces_main, "--url", server.url)
        assert code == 1
        assert out == ""
        _no_control(err)
        assert len(err.splitlines()) == 1
        assert len(err) < 500


def test_an_answer_nested_too_deep_to_read_is_a_clear_error() -> None:
    deep = b'{"traces": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with stand_in(_reply(200, deep)) as server:
        code, out, err = _run(traces_main, "--url", server.url)
    assert code == 1
    assert out == ""
    assert "nests deeper than this Python can read" in err


@pytest.mark.parametrize(
    ("body", "argv"),
    [
        (b'{"traces": "nope"}', []),
        (b'{"traces": 7}', []),
        (b"[1, 2]", []),
        (b"not json", []),
    ],
)
def test_an_answer_that_is_not_the_query_apis_is_a_clear_error(
    body: bytes, argv: list[str]
) -> None:
    with stand_in(_reply(200, body)) as server:
        code, _, err = _run(traces_main, "--url", server.url, *argv)
        code_latest, _, err_latest = _run(trace_main, "latest", "--url", server.url)
    assert code == 1
    assert err.startswith("rastir: ")
    assert code_latest == 1
    assert err_latest.startswith("rastir: ")


# -- options ---------------------------------------------------------------------------------


def test_since_longer_ago_than_1970_is_every_trace(loaded: Loaded) -> None:
    code, out, err = _run(traces_main, "--url", loaded.url, "--since", "100000d", "--limit", "1000")
    assert (code, err) == (0, "")
    assert loaded.exact in out  # started in 2001


def test_min_duration_keeps_every_digit(loaded: Loaded) -> None:
    # 1234567.8 ms: the old ":g" formatting sent 1.23457e+06 and let shorter traces in.
    code, out, _ = _run(traces_main, "--url", loaded.url, "--min-duration", "1234567.8ms")
    assert code == 0
    assert loaded.exact in out
    code, out, _ = _run(traces_main, "--url", loaded.url, "--min-duration", "1234567.801")
    assert code == 0
    assert loaded.exact not in out


def test_a_minimum_duration_beyond_what_the_collector_keeps_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        traces_main(["--min-duration", "9" * 40, "--url", "http://127.0.0.1:9"])
    assert e.value.code == 2
    assert "longer than the collector keeps" in capsys.readouterr().err


def test_at_the_largest_limit_the_hint_is_to_narrow_or_page() -> None:
    with stand_in(_reply(200, b'{"traces": [], "next_cursor": "abc"}')) as server:
        _, out, _ = _run(traces_main, "--url", server.url, "--limit", "1000")
        _, small, _ = _run(traces_main, "--url", server.url, "--limit", "5")
    assert "raise --limit" not in out
    assert "next_cursor" in out
    assert "raise --limit above 5" in small
