"""The ``rastir`` command dispatches to its subcommands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rastir.__main__ import main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ")}
    assert {"collector", "demo", "traces", "trace"} <= listed


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tracez"]) == 2
    assert "rastir: unknown command 'tracez'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["traces", "trace", "demo"])
def test_each_viewer_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: rastir {command}" in capsys.readouterr().out


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("rastir ")
    assert out.split()[1][0].isdigit()


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "soon", "99999"])
@pytest.mark.parametrize("command", ["traces", "trace"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    command: str, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--timeout", timeout, "latest"][: 4 if command == "trace" else 3])
    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_viewer_quietly() -> None:
    # What `rastir trace latest | head -1` meets once head has exited: the viewer's
    # write raises BrokenPipeError. A stand-in viewer raises it; no traceback follows,
    # not even from the interpreter flushing stdout at exit.
    code = (
        "import sys\n"
        "import rastir.viewer.cli as viewer\n"
        "def broken(argv):\n"
        "    print('x' * 100, flush=True)\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "viewer.trace_main = broken\n"
        "from rastir.__main__ import main\n"
        "sys.exit(main(['trace', 'latest']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 141
    assert proc.stderr == ""
