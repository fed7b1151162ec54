"""``rastir traces`` and ``rastir trace`` against a real collector holding known traces."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys

import pytest

from rastir.viewer.cli import trace_main, traces_main
from tests.cli.conftest import TOKEN, Known

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RASTIR_QUERY_URL", "RASTIR_PUSH_URL", "RASTIR_QUERY_TOKEN", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def _run(main: object, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    assert callable(main)
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _ids(listing: str) -> list[str]:
    return re.findall(r"\b[0-9a-f]{32}\b", listing)


def test_traces_lists_every_trace_newest_first_in_aligned_columns(known: Known) -> None:
    code, out, err = _run(traces_main, "--url", known.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert _ids(out) == [known.fast, known.failed, known.ok]
    header = lines[0]
    for column in ("TRACE ID", "STARTED", "DURATION", "SPANS", "TOKENS", "COST", "SERVICES"):
        assert column in header
    # Right-aligned numeric columns end where their heading ends, on every row.
    end = header.index("DURATION") + len("DURATION")
    assert {line[end - 1] for line in lines[1:]} == {"s"}
    failed = next(line for line in lines if known.failed in line)
    assert failed.startswith("✗")
    assert "checkout,tools" in failed
    assert "POST /runs" in failed
    ok = next(line for line in lines if known.ok in line)
    assert ok.startswith("✓")
    assert "$0.004500" in ok
    assert "120" in ok
    assert "1.20 s" in ok


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--service", "tools"], ["failed"]),
        (["--status", "error"], ["failed"]),
        (["--status", "ok"], ["fast", "ok"]),
        (["--agent", "planner"], ["ok"]),
        (["--model", "gpt-4o-mini"], ["fast"]),
        (["--min-duration", "250ms"], ["failed", "ok"]),
        (["--min-duration", "1s"], ["ok"]),
        (["--error-type", "tool_error"], ["failed"]),
        (["--limit", "1"], ["fast"]),
        (["--since", "1h"], ["fast", "failed", "ok"]),
    ],
)
def test_traces_filters_reach_the_query_api(
    known: Known, filters: list[str], expected: list[str]
) -> None:
    code, out, err = _run(traces_main, "--url", known.url, *filters)
    assert (code, err) == (0, "")
    assert _ids(out) == [getattr(known, name) for name in expected]


def test_traces_says_so_when_nothing_matches(known: Known) -> None:
    code, out, _ = _run(traces_main, "--url", known.url, "--service", "nobody")
    assert (code, out.strip()) == (0, "no traces match")


def test_trace_prints_the_tree_across_services_with_error_markers(known: Known) -> None:
    code, out, err = _run(trace_main, known.failed, "--url", known.url)
    assert (code, err) == (0, "")
    assert _ANSI.search(out) is None  # not a terminal: no colour
    lines = out.splitlines()
    assert lines[0] == f"trace {known.failed}  ✗ error"
    assert "services  checkout, tools" in out
    header = next(line for line in lines if line.startswith("SPAN"))
    tree = lines[lines.index(header) + 1 :]
    names = [line[: header.index("KIND")].rstrip() for line in tree]
    assert names == [
        "POST /runs",
        "└── support",
        "    └── tools/call lookup_order",
        "        └── tools/call lookup_order",
    ]
    assert "HTTP 502" in tree[0]
    assert "✗ tool_error: it broke" in tree[2]
    assert "mcp.server" in tree[3]
    assert "tools" in tree[3]
    # Every column starts at the same offset on every row.
    kind_at = {
        line.index(kind)
        for line, kind in zip(
            tree, ["http.server", "agent", "mcp.client", "mcp.server"], strict=True
        )
    }
    assert len(kind_at) == 1


def test_trace_shows_model_tokens_and_cost(known: Known) -> None:
    code, out, _ = _run(trace_main, known.ok, "--url", known.url)
    assert code == 0
    llm = next(line for line in out.splitlines() if "chat gpt-4o" in line)
    assert llm.startswith("├── chat gpt-4o")
    assert "gpt-4o-2024-08-06" in llm
    assert "100→20 tok" in llm
    assert "$0.004500" in llm
    assert "tokens    100 in, 20 out   cost $0.004500" in out
    assert next(line for line in out.splitlines() if "weather" in line).startswith("└── weather")


def test_trace_latest_is_the_newest_trace(known: Known) -> None:
    code, out, _ = _run(trace_main, "latest", "--url", known.url)
    assert code == 0
    assert out.startswith(f"trace {known.fast}  ✓ ok")


def test_json_output_is_the_api_answer(known: Known) -> None:
    code, out, _ = _run(trace_main, known.ok, "--url", known.url, "--json")
    assert code == 0
    assert json.loads(out)["summary"]["trace_id"] == known.ok
    code, out, _ = _run(traces_main, "--url", known.url, "--json", "--limit", "2")
    assert [t["trace_id"] for t in json.loads(out)["traces"]] == [known.fast, known.failed]


def test_color_always_paints_errors_red(known: Known) -> None:
    code, out, _ = _run(trace_main, known.failed, "--url", known.url, "--color", "always")
    assert code == 0
    assert "\x1b[31;1m✗ tool_error: it broke\x1b[0m" in out
    # Colour never moves a column: without the escapes the text is the plain output.
    _, plain, _ = _run(trace_main, known.failed, "--url", known.url)
    assert _ANSI.sub("", out) == plain


def test_unknown_trace_is_a_clear_error(known: Known) -> None:
    code, out, err = _run(trace_main, "ab" * 16, "--url", known.url)
    assert (code, out) == (1, "")
    assert err == (
        f"rastir: trace {'ab' * 16} is unknown to the collector at {known.url}"
        " (spans may still be on their way, or past the retention)\n"
    )


def test_a_malformed_trace_id_is_a_usage_error(
    known: Known, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        trace_main(["not-a-trace", "--url", known.url])
    assert exit_info.value.code == 2
    assert "'not-a-trace' is not a trace id: expected 32 hex digits" in capsys.readouterr().err


def test_an_unreachable_collector_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        code, out, err = _run(traces_main, "--url", f"http://127.0.0.1:{port}")
    assert (code, out) == (1, "")
    assert err.startswith(f"rastir: cannot reach the collector at http://127.0.0.1:{port}: ")
    assert "Is `rastir collector` running there?" in err


def test_a_missing_token_says_how_to_give_one(guarded: Known) -> None:
    code, _, err = _run(traces_main, "--url", guarded.url)
    assert code == 1
    assert "wants a query token: pass --token or set RASTIR_QUERY_TOKEN" in err


def test_a_wrong_token_is_refused(guarded: Known) -> None:
    code, _, err = _run(trace_main, guarded.ok, "--url", guarded.url, "--token", "nope")
    assert code == 1
    assert f"the collector at {guarded.url} refused the query token given" in err


def test_the_token_and_url_come_from_the_environment(
    guarded: Known, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RASTIR_QUERY_TOKEN", TOKEN)
    monkeypatch.setenv("RASTIR_QUERY_URL", guarded.url)
    code, out, err = _run(traces_main, "--status", "error")
    assert (code, err) == (0, "")
    assert _ids(out) == [guarded.failed]


def test_a_bad_filter_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        traces_main(["--min-duration", "soon"])
    assert "'soon' is not a duration" in capsys.readouterr().err


def test_the_rastir_command_runs_both_viewers(known: Known) -> None:
    """Through ``python -m rastir``, as a user types it."""
    listing = subprocess.run(
        [sys.executable, "-m", "rastir", "traces", "--url", known.url, "--status", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert _ids(listing.stdout) == [known.failed]
    tree = subprocess.run(
        [sys.executable, "-m", "rastir", "trace", known.failed, "--url", known.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tree.returncode == 0, tree.stderr
    assert "└── support" in tree.stdout
    assert "\x1b[" not in tree.stdout
