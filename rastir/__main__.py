"""The ``rastir`` command. Subcommands are imported only when chosen.

rastir collector [options]     run the collector (needs the collector extra)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a ``rastir`` subcommand; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="rastir", description="rastir command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("collector", help="run the collector (rastir collector --help)", add_help=False)
    if args and args[0] in ("-h", "--help"):
        parser.print_help(sys.stdout)
        return 0
    if not args or args[0] != "collector":
        parser.print_help(sys.stderr)
        if args:
            print(f"\nrastir: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "collector":
        try:
            from rastir.collector.cli import main as collector_main
        except ImportError as e:
            print(
                f"rastir collector needs its extra: pip install 'rastir[collector]' ({e})",
                file=sys.stderr,
            )
            return 1
        return collector_main(rest, prog="rastir collector")
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
