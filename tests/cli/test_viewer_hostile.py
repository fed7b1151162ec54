"""``rastir traces`` and ``rastir trace`` as a subprocess, reading spans a hostile sender made.

Each character a sender can use to drive a terminal (move the cursor, set the title,
hide or reorder text, forge a line) must reach the screen as something visible: C0
controls as their control pictures (``␛``), everything else as an escape
(``\\u202e``). A real collector on 127.0.0.1 holds the spans; the viewers run as the
user runs them, ``python -m rastir``, with ``--color always`` so that the only escape
sequences allowed in the output are the viewer's own colours.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rastir.collector import CollectorSettings, create_app
from tests.cli.conftest import _post
from tests.collector.server import serving
from tests.collector.spans import span, trace_id

_OWN_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

# character sent -> how it must be shown
SHOWN = {
    "\x1b": "␛",  # ESC: CSI, OSC, every ANSI sequence starts here
    "\x07": "␇",  # BEL: ends an OSC title
    "\r": "␍",  # back to column 0: overwrite what came before
    "\n": "␊",
    "\x08": "␈",  # backspace
    "\x00": "␀",
    "\x7f": "␡",
    "\x9b": "\\x9b",  # C1 CSI: a one-byte ESC [ on terminals that read C1
    "\x9d": "\\x9d",  # C1 OSC
    "\x85": "\\x85",  # NEL: a line break
    "\xa0": "\\xa0",  # NO-BREAK SPACE: passes for a plain space
    "\u202e": "\\u202e",  # RIGHT-TO-LEFT OVERRIDE: reorders what follows
    "\u2066": "\\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u200b": "\\u200b",  # ZERO WIDTH SPACE: hides a difference between names
    "\u2028": "\\u2028",  # LINE SEPARATOR
    "\U000e0041": "\\U000e0041",  # TAG LATIN CAPITAL LETTER A: invisible text
}
HOSTILE = "a" + "b".join(SHOWN) + "z"
EXPECTED = "a" + "b".join(SHOWN.values()) + "z"
TITLE = "\x1b]0;pwned\x07"  # set the window title
FORGED = "ok\r\n✓ 00000000000000000000000000000000  forged"  # a fake row of the list


class Hostile:
    def __init__(self, url: str) -> None:
        self.url = url
        now = time.time_ns() - 60 * 10**9
        self.trace = trace_id()
        root = span(trace=self.trace, kind="agent", name=HOSTILE, start=now, duration_ms=20)
        failed = span(
            trace=self.trace,
            parent=root["span_id"],
            kind="tool",
            name=TITLE + "tool",
            start=now + 1000,
            duration_ms=5,
            status="error",
            error_type="tool_error",
        )
        failed["error"]["message"] = FORGED
        _post(url, TITLE + "svc" + "\u202e", [root, failed])


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    settings = CollectorSettings(
        store="memory", ack="committed", access_log=False, retention=None, max_loop_lag=None
    )
    with serving(create_app(settings)) as url:
        yield Hostile(url)


def _rastir(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rastir", *argv, "--color", "always"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={"PYTHONIOENCODING": "utf-8", "COLUMNS": "400", "PATH": ""},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def _only_our_colours(out: str) -> str:
    plain = _OWN_COLOUR.sub("", out)
    bad = sorted({ch for ch in plain.replace("\n", "") if not ch.isprintable()})
    assert not bad, bad
    return plain


def test_trace_shows_every_control_character_a_sender_used(hostile: Hostile) -> None:
    plain = _only_our_colours(_rastir("trace", hostile.trace, "--url", hostile.url))
    assert EXPECTED in plain  # every character, in order, visible
    assert "␛]0;pwned␇tool" in plain
    assert "␛]0;pwned␇svc\\u202e" in plain
    rows = plain.splitlines()
    header = next(i for i, row in enumerate(rows) if row.startswith("SPAN"))
    assert len(rows) - header - 1 == 2  # one row per span: no line was forged


def test_traces_lists_the_hostile_trace_on_one_row(hostile: Hostile) -> None:
    plain = _only_our_colours(_rastir("traces", "--url", hostile.url))
    rows = plain.splitlines()
    assert len(rows) == 2  # the heading and the one trace
    assert rows[1].split()[1] == hostile.trace
    assert "␛]0;pwned␇svc\\u202e" in rows[1]
    assert "forged" not in plain  # an error message is not a column of the list


def test_an_error_message_cannot_forge_a_row_of_the_tree(hostile: Hostile) -> None:
    plain = _only_our_colours(_rastir("trace", hostile.trace, "--url", hostile.url))
    (row,) = [row for row in plain.splitlines() if "forged" in row]
    assert "tool_error: ok ✓ 00000000000000000000000000000000 forged" in row
    assert row.startswith("└── ␛]0;pwned␇tool")
