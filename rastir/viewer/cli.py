"""``rastir traces`` and ``rastir trace ID``: read a collector's traces from a terminal.

The collector's address comes from ``--url``, else ``RASTIR_QUERY_URL``, else
``RASTIR_PUSH_URL`` (the collector an application sends to), else
``http://127.0.0.1:8080``. The query token comes from ``--token`` or, better, from
``RASTIR_QUERY_TOKEN`` (a command line is visible to every user of the machine).

Exit status: 0 on success, 1 when the collector cannot answer (unreachable, token
missing or refused, unknown trace), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rastir.viewer.client import DEFAULT_URL, QueryAPIError, QueryClient, check_trace_id
from rastir.viewer.render import Style, _encodable, render_trace, render_trace_list

__all__ = ["trace_main", "traces_main"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE | re.ASCII)
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The longest minimum duration the collector takes: 64-bit nanoseconds, in ms.
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000
_MAX_LIMIT = 1000


def _seconds(raw: str, default_unit: str) -> float:
    m = _DURATION.match(raw)
    if m is None:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration (examples: 250ms, 2s, 15m)")
    return float(m.group(1)) * _UNITS_S[(m.group(2) or default_unit).lower()]


def _min_duration_ms(raw: str) -> float:
    """``--min-duration``: milliseconds when no unit is given."""
    value = _seconds(raw, "ms") * 1000.0
    if not value <= _MAX_DURATION_MS:  # inf too
        raise argparse.ArgumentTypeError(
            f"{raw!r} is longer than the collector keeps (about 292 years)"
        )
    return value


def _since(raw: str) -> float:
    """``--since``: seconds when no unit is given."""
    value = _seconds(raw, "s")
    if value <= 0:
        raise argparse.ArgumentTypeError("--since must be more than 0")
    return value


def _limit(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{raw!r}: give a number from 1 to {_MAX_LIMIT}")
    return value


def _width(out: TextIO) -> int | None:
    """The width to fit lines to on a terminal: ``$COLUMNS`` when set, else the
    terminal's. None (no limit) for a pipe or file, so scripts see whole lines."""
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return max(20, int(columns))
    try:
        return max(20, os.get_terminal_size(out.fileno()).columns)
    except (AttributeError, ValueError, OSError):
        return max(20, shutil.get_terminal_size().columns)


def _timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{raw!r}: give a number of seconds above 0, at most 3600")
    return value


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help=f"the collector (default: $RASTIR_QUERY_URL, $RASTIR_PUSH_URL or {DEFAULT_URL})",
    )
    p.add_argument("--token", help="query bearer token (default: $RASTIR_QUERY_TOKEN)")
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        help="seconds for each answer, in full (default 10)",
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON as it came")
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour: auto (on a terminal, unless NO_COLOR is set), always, never",
    )


def _client(args: argparse.Namespace, parser: argparse.ArgumentParser) -> QueryClient:
    url = (
        args.url
        or os.environ.get("RASTIR_QUERY_URL")
        or os.environ.get("RASTIR_PUSH_URL")
        or DEFAULT_URL
    )
    token = args.token or os.environ.get("RASTIR_QUERY_TOKEN") or None
    try:
        return QueryClient(url, token=token, timeout=args.timeout)
    except ValueError as e:
        parser.error(str(e))


def traces_parser(prog: str = "rastir traces") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="List recent traces from a rastir collector, newest first.",
    )
    p.add_argument("--service", help="traces with a span from this service")
    p.add_argument("--agent", help="traces with a span of this agent (gen_ai.agent.name)")
    p.add_argument("--model", help="traces that called this model")
    p.add_argument("--status", choices=("ok", "error"), help="ok or error traces only")
    p.add_argument(
        "--error-type", help="traces with an error of this category (timeout, tool_error, ...)"
    )
    p.add_argument(
        "--min-duration",
        type=_min_duration_ms,
        metavar="DURATION",
        help="traces at least this long: 250ms, 1.5s (a bare number is milliseconds)",
    )
    p.add_argument(
        "--since",
        type=_since,
        metavar="DURATION",
        help="traces started in the last 30s, 15m, 2h, 1d",
    )
    p.add_argument("--limit", type=_limit, default=20, help="at most this many traces (default 20)")
    _add_connection(p)
    return p


def trace_parser(prog: str = "rastir trace") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Print one trace from a rastir collector as a span tree.",
    )
    p.add_argument(
        "trace_id", metavar="TRACE_ID", help="32 hex digits, or 'latest' for the newest trace"
    )
    _add_connection(p)
    return p


def _print(text: str, out: TextIO) -> None:
    """Print what the stream's encoding can write; the rest as ``?``, never a crash."""
    print(_encodable(text, getattr(out, "encoding", None)), file=out)


def _fail(e: QueryAPIError | ValueError, out: TextIO) -> int:
    _print(f"rastir: {e}", out)
    return 1


def traces_main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "rastir traces",
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``rastir traces``; returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = traces_parser(prog)
    args = parser.parse_args(argv)
    client = _client(args, parser)
    start = None
    if args.since is not None:
        since = time.time() - args.since
        # Longer ago than 1970 (--since 100000d) is every trace, not a bad time.
        start = f"{since:.3f}" if math.isfinite(since) and since > 0 else "0"
    try:
        page = client.list_traces(
            service=args.service,
            agent=args.agent,
            model=args.model,
            status=args.status,
            error_type=args.error_type,
            min_duration_ms=args.min_duration,
            start=start,
            limit=args.limit,
        )
    except QueryAPIError as e:
        return _fail(e, err)
    traces = page.get("traces")
    if not isinstance(traces, list):
        return _fail(QueryAPIError(f"{client.url} answered without a list of traces"), err)
    if args.json:
        print(json.dumps(page, indent=2), file=out)
        return 0
    style = Style.for_stream(out, args.color)
    _print(render_trace_list(traces, style, width=_width(out)), out)
    if page.get("next_cursor"):
        if args.limit < _MAX_LIMIT:
            print(f"(more: raise --limit above {args.limit})", file=out)
        else:
            print(
                "(more: narrow the filters, e.g. --since; or page through them all with "
                "the query API's next_cursor: rastir traces --json)",
                file=out,
            )
    return 0


def trace_main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "rastir trace",
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``rastir trace ID``; returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = trace_parser(prog)
    args = parser.parse_args(argv)
    client = _client(args, parser)
    trace_id = args.trace_id
    if trace_id != "latest":
        try:
            trace_id = check_trace_id(trace_id)
        except ValueError as e:
            parser.error(str(e))
    try:
        if trace_id == "latest":
            page = client.list_traces(limit=1)
            traces = page.get("traces")
            if not traces or not isinstance(traces, list):
                _print(f"rastir: the collector at {client.url} has no traces yet", err)
                return 1
            newest = traces[0]
            trace_id = str(newest.get("trace_id") if isinstance(newest, dict) else newest)
        trace = client.get_trace(trace_id)
    except (QueryAPIError, ValueError) as e:
        return _fail(e, err)
    if args.json:
        print(json.dumps(trace, indent=2), file=out)
        return 0
    style = Style.for_stream(out, args.color)
    _print(render_trace(trace, style, width=_width(out)), out)
    return 0
