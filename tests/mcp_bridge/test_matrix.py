"""The interop matrix: every client against every server on every transport.

Each cell calls the ``echo`` tool once and rebuilds the trace from the spans of every
process involved (rastir's and the OpenTelemetry SDK's), then asserts the exact parent
chain from the tool's inner span (``matrix.inner``) up to the root: one trace id, no
missing link, nothing else in between.

Clients
    ``rastir``: ``rastir.wrap(Client(...))`` inside an ``@agent`` span (over HTTP its
    httpx2 client is instrumented too). ``otel``: a plain mcp client inside an OTel SDK
    span. ``plain``: a plain mcp client and nothing else.
Servers
    ``endpoint``: tools under ``@mcp_endpoint``. ``plain-sdk``: a plain MCPServer (its
    built-in OTel middleware) in a process with an OTel SDK; rastir's bridge is on by
    default there. ``plain-nosdk``: the same without an SDK, rastir configured with
    ``otel_bridge=True`` (the API alone). ``plain-nosdk-default``: without the bridge.
Transports
    ``direct``: ``Client(server)`` in-process, mcp's direct dispatcher (no JSON-RPC).
    ``legacy``: ``Client(server, mode="legacy")``, in-process JSON-RPC over memory
    streams. ``stdio``: a server subprocess. ``http``: streamable HTTP, a uvicorn
    server subprocess on 127.0.0.1 behind ``RastirMiddleware``.

Cells that cannot be built: in-process, an OTel SDK is global to the process, so an
``otel`` client (which needs one) cannot face a server without one, and a ``plain``
client cannot face a server with one (the SDK would trace the client too). These are
covered by the stdio and HTTP columns.

Cells that cannot join, by design, and what they assert instead:

* ``plain`` clients have no trace to continue: the server's spans start one, rooted
  at the server's first span (the HTTP request over HTTP).
* ``plain-nosdk-default``: a plain MCPServer with no SDK and no bridge never reads
  ``_meta`` into rastir's context, so the tool's span is a new root. Configure
  ``otel_bridge=True`` (the ``plain-nosdk`` column) to join.
* In-process, the direct dispatcher sends no ``_meta`` trace context and opens no OTel
  client span: an ``otel`` client's trace still reaches the server through the shared
  task context.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from rastir.testing import capture_spans
from tests.mcp_bridge import matrix
from tests.mcp_bridge.conftest import ServerProcess, read_records, run_matrix_client

pytestmark = pytest.mark.anyio

Record = dict[str, Any]


class ServerSpec(NamedTuple):
    kind: str
    otel_sdk: bool
    bridge: str


SERVERS = {
    "endpoint": ServerSpec("endpoint", False, "auto"),
    "plain-sdk": ServerSpec("plain", True, "auto"),
    "plain-nosdk": ServerSpec("plain", False, "on"),
    "plain-nosdk-default": ServerSpec("plain", False, "auto"),
}

A = "agent:matrix-agent"
MC = "mcp.client:tools/call echo"
MS = "mcp.server:tools/call echo"
INNER = "trace:matrix.inner"
OC = "otel.internal:matrix-caller"
OS = "otel.client:MCP send tools/call echo"
OSRV = "otel.server:tools/call echo"
H = "http.server:POST /mcp"
HC = "http.client:POST"

# (transport, client, server) -> the chain from the root down to the tool's inner span.
EXPECTED: dict[tuple[str, str, str], list[str]] = {
    # in-process, direct dispatcher
    ("direct", "rastir", "endpoint"): [A, MC, MS, INNER],
    ("direct", "rastir", "plain-sdk"): [A, MC, OSRV, INNER],
    ("direct", "rastir", "plain-nosdk"): [A, MC, INNER],
    ("direct", "otel", "endpoint"): [OC, OSRV, MS, INNER],
    ("direct", "otel", "plain-sdk"): [OC, OSRV, INNER],
    ("direct", "plain", "endpoint"): [MS, INNER],
    ("direct", "plain", "plain-nosdk"): [INNER],
    # in-process, JSON-RPC over memory streams
    ("legacy", "rastir", "endpoint"): [A, MC, MS, INNER],
    ("legacy", "rastir", "plain-sdk"): [A, MC, OS, OSRV, INNER],
    ("legacy", "rastir", "plain-nosdk"): [A, MC, INNER],
    ("legacy", "otel", "endpoint"): [OC, OS, OSRV, MS, INNER],
    ("legacy", "otel", "plain-sdk"): [OC, OS, OSRV, INNER],
    ("legacy", "plain", "endpoint"): [MS, INNER],
    ("legacy", "plain", "plain-nosdk"): [INNER],
    # stdio subprocess
    ("stdio", "rastir", "endpoint"): [A, MC, MS, INNER],
    ("stdio", "rastir", "plain-sdk"): [A, MC, OSRV, INNER],
    ("stdio", "rastir", "plain-nosdk"): [A, MC, INNER],
    ("stdio", "rastir", "plain-nosdk-default"): [INNER],
    ("stdio", "otel", "endpoint"): [OC, OS, MS, INNER],
    ("stdio", "otel", "plain-sdk"): [OC, OS, OSRV, INNER],
    ("stdio", "otel", "plain-nosdk"): [OC, OS, INNER],
    ("stdio", "plain", "endpoint"): [MS, INNER],
    ("stdio", "plain", "plain-sdk"): [OSRV, INNER],
    ("stdio", "plain", "plain-nosdk"): [INNER],
    # streamable HTTP, uvicorn subprocess behind RastirMiddleware
    ("http", "rastir", "endpoint"): [A, MC, MS, INNER],
    ("http", "rastir", "plain-sdk"): [A, MC, OSRV, INNER],
    ("http", "rastir", "plain-nosdk"): [A, MC, INNER],
    ("http", "otel", "endpoint"): [OC, OS, MS, INNER],
    ("http", "otel", "plain-sdk"): [OC, OS, OSRV, INNER],
    ("http", "otel", "plain-nosdk"): [OC, OS, INNER],
    ("http", "plain", "endpoint"): [H, MS, INNER],
    ("http", "plain", "plain-sdk"): [H, OSRV, INNER],
    ("http", "plain", "plain-nosdk"): [H, INNER],
}


def _inner(records: list[Record], token: str) -> Record | None:
    found = [
        r
        for r in records
        if r["label"] == INNER and r["attributes"].get(matrix.TOKEN_ATTR) == token
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def chain(records: list[Record], leaf: Record) -> list[str]:
    """Labels from the root down to ``leaf``; fails on a parent that is not there."""
    by_id = {(r["trace_id"], r["span_id"]): r for r in records}
    path = [leaf]
    current = leaf
    while current["parent_span_id"] is not None:
        parent = by_id.get((current["trace_id"], current["parent_span_id"]))
        if parent is None:
            labels = sorted(r["label"] for r in records if r["trace_id"] == leaf["trace_id"])
            raise AssertionError(
                f"the parent of {current['label']} is missing: the chain is broken "
                f"({[r['label'] for r in reversed(path)]}; spans of the trace: {labels})"
            )
        path.append(parent)
        current = parent
    return [r["label"] for r in reversed(path)]


def _one(records: list[Record], label: str, trace_id: str) -> Record:
    found = [r for r in records if r["label"] == label and r["trace_id"] == trace_id]
    assert len(found) == 1, (label, [r["label"] for r in records if r["trace_id"] == trace_id])
    return found[0]


async def _run_in_this_process(
    client: str, transport: str, token: str, bridge: str, **kwargs: Any
) -> list[Record]:
    matrix.configure_rastir("matrix", bridge)
    with capture_spans() as spans:
        assert await matrix.call_echo(client, transport, token, **kwargs) == token
    return [matrix.rastir_record(s) for s in spans]


def _client_args(client: str, transport: str, token: str) -> list[str]:
    args = ["--client", client, "--transport", transport, "--token", token]
    if client == "otel":
        args.append("--otel-sdk")
    return args


async def _run_cell(
    transport: str,
    client: str,
    server_name: str,
    token: str,
    tmp_path: Path,
    http_server: Callable[[str, bool, str], ServerProcess],
) -> tuple[list[Record], ServerProcess | None]:
    spec = SERVERS[server_name]
    if transport in ("direct", "legacy"):
        # Client and server share the process, and with it any OTel SDK.
        if client == "otel" or spec.otel_sdk:
            args = _client_args(client, transport, token)
            args += ["--server", spec.kind, "--bridge", spec.bridge]
            if "--otel-sdk" not in args:
                args.append("--otel-sdk")
            return run_matrix_client(args), None
        server = matrix.build_server(spec.kind)
        return await _run_in_this_process(
            client, transport, token, spec.bridge, server=server
        ), None
    if transport == "stdio":
        spans_file = tmp_path / "server-spans.jsonl"
        if client == "otel":
            args = _client_args(client, transport, token)
            args += ["--server", spec.kind, "--server-bridge", spec.bridge]
            args += ["--server-spans", str(spans_file)]
            if spec.otel_sdk:
                args.append("--server-otel-sdk")
            records = run_matrix_client(args)
        else:
            params = matrix.stdio_params(
                spec.kind, otel_sdk=spec.otel_sdk, bridge=spec.bridge, spans=str(spans_file)
            )
            records = await _run_in_this_process(client, transport, token, "auto", stdio=params)
        # The server process has exited when the client's ``async with`` is done.
        return records + read_records(spans_file), None
    server_proc = http_server(spec.kind, spec.otel_sdk, spec.bridge)
    if client == "otel":
        records = run_matrix_client(
            [*_client_args(client, transport, token), "--url", server_proc.url]
        )
    else:
        records = await _run_in_this_process(client, transport, token, "auto", url=server_proc.url)
    # The tool's span ends before the answer is sent, so it is already on its way; the
    # server's http.server span ends after the answer, so it may come later still.
    try:
        server_records = server_proc.wait_for(lambda rs: _complete(records + rs, token))
    except AssertionError:  # never complete: the caller's assertions say what is missing
        server_records = server_proc.wait_for(lambda rs: True)
    return records + server_records, server_proc


def _complete(records: list[Record], token: str) -> bool:
    """Whether the tool's inner span and each of its ancestors are in ``records``."""
    leaf = _inner(records, token)
    if leaf is None:
        return False
    try:
        chain(records, leaf)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize(
    ("transport", "client", "server"),
    list(EXPECTED),
    ids=[f"{t}-{c}-{s}" for t, c, s in EXPECTED],
)
async def test_one_trace_with_the_exact_parent_chain(
    transport: str,
    client: str,
    server: str,
    tmp_path: Path,
    http_server: Callable[[str, bool, str], ServerProcess],
) -> None:
    token = uuid.uuid4().hex
    records, server_proc = await _run_cell(transport, client, server, token, tmp_path, http_server)
    leaf = _inner(records, token)
    assert leaf is not None, "the tool's inner span was not recorded"
    assert chain(records, leaf) == EXPECTED[(transport, client, server)]

    if transport == "http" and server == "endpoint":
        assert server_proc is not None
        trace_id = leaf["trace_id"]
        ms = _one(records, MS, trace_id)
        if client == "plain":
            # No _meta context: the HTTP request's span is the parent, not a link.
            assert ms["links"] == []
            return
        # The mcp.server span links the HTTP request that carried the call.
        assert len(ms["links"]) == 1
        link_trace, link_span = ms["links"][0]
        records = server_proc.wait_for(lambda rs: any(r["span_id"] == link_span for r in rs)) + [
            r for r in records if r["src"] == "rastir" and r["kind"] != "http.server"
        ]
        http = next(r for r in records if r["span_id"] == link_span)
        assert http["label"] == H
        if client == "rastir":
            # instrument_httpx put traceparent on the request: the HTTP spans share the
            # trace, under the same mcp.client span.
            assert link_trace == trace_id
            assert chain(records, http) == [A, MC, HC, H]
        else:
            # A plain httpx2 client sends no traceparent: the HTTP request starts a
            # trace of its own, tied to the MCP call by the link.
            assert http["parent_span_id"] is None
            assert link_trace == http["trace_id"] != trace_id
