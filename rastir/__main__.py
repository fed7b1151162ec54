"""The ``rastir`` command. Subcommands are imported only when chosen.

rastir collector [options]     run the collector (needs the collector extra)
rastir demo [options]          a traced agent, MCP server and collector on loopback
rastir traces [filters]        list recent traces from a collector
rastir trace ID                print one trace as a tree
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a ``rastir`` subcommand; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="rastir", description="rastir command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("collector", help="run the collector (rastir collector --help)", add_help=False)
    sub.add_parser("demo", help="run a traced agent on loopback, print its trace", add_help=False)
    sub.add_parser("traces", help="list recent traces from a collector", add_help=False)
    sub.add_parser("trace", help="print one trace as a tree (rastir trace ID)", add_help=False)
    if args and args[0] in ("-h", "--help"):
        parser.print_help(sys.stdout)
        return 0
    if args and args[0] == "--version":
        print(f"rastir {_version()}")
        return 0
    if not args or args[0] not in ("collector", "demo", "traces", "trace"):
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
    if command == "demo":
        from rastir.demo.cli import main as demo_main

        return demo_main(rest, prog="rastir demo")
    from rastir.viewer.cli import trace_main, traces_main

    try:
        return (traces_main if command == "traces" else trace_main)(rest)
    except BrokenPipeError:
        # The reader went away (`rastir trace latest | head`): stop quietly, as a
        # command killed by SIGPIPE would, without a traceback at exit either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rastir")
    except Exception:
        from rastir import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())
