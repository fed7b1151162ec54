"""The ``rastir`` command dispatches to its subcommands."""

from __future__ import annotations

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
