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
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from rastir.viewer.client import DEFAULT_URL, QueryAPIError, QueryClient, check_trace_id
from rastir.viewer.render import Style, render_trace, render_trace_list

__all__ = ["trace_main", "traces_main"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(raw: str, default_unit: str) -> float:
    m = _DURATION.match(raw)
    if m is None:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration (examples: 250ms, 2s, 15m)")
    return float(m.group(1)) * _UNITS_S[(m.group(2) or default_unit).lower()]


def _min_duration_ms(raw: str) -> float:
    """``--min-duration``: milliseconds when no unit is given."""
    return _seconds(raw, "ms") * 1000.0


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
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{raw!r}: give a number from 1 to 1000")
    return value


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
        "--timeout", type=_timeout, default=10.0, help="seconds per request (default 10)"
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


def _fail(e: QueryAPIError | ValueError, out: TextIO) -> int:
    print(f"rastir: {e}", file=out)
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
        start = f"{time.time() - args.since:.3f}"
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
    if args.json:
        print(json.dumps(page, indent=2), file=out)
        return 0
    traces: list[dict[str, Any]] = page.get("traces") or []
    print(render_trace_list(traces, Style.for_stream(out, args.color)), file=out)
    if page.get("next_cursor"):
        print(f"(more: raise --limit above {args.limit})", file=out)
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
            if not page.get("traces"):
                print(f"rastir: the collector at {client.url} has no traces yet", file=err)
                return 1
            trace_id = str(page["traces"][0]["trace_id"])
        trace = client.get_trace(trace_id)
    except (QueryAPIError, ValueError) as e:
        return _fail(e, err)
    if args.json:
        print(json.dumps(trace, indent=2), file=out)
        return 0
    print(render_trace(trace, Style.for_stream(out, args.color)), file=out)
    return 0
