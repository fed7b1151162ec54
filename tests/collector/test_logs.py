"""Structured logs: the formatters and the per-request access line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from rastir.collector.logs import ACCESS_LOGGER, AccessLogMiddleware, JsonFormatter, LogfmtFormatter


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(
        "rastir.collector", logging.INFO, __file__, 1, "hello %s", ("world",), None
    )
    record.__dict__.update(extra)
    return record


def test_logfmt_quotes_only_what_needs_quoting() -> None:
    line = LogfmtFormatter().format(
        _record(path="/v1/traces", note='say "hi"', ms=1.23456, ok=True)
    )
    assert line.startswith("ts=")
    assert ' level=info logger=rastir.collector msg="hello world" path=/v1/traces ' in line
    assert 'note="say \\"hi\\""' in line
    assert "ms=1.235" in line
    assert "ok=true" in line


def test_json_lines_parse_and_carry_the_extras() -> None:
    line = JsonFormatter().format(_record(status=202, spans=100))
    rec = json.loads(line)
    assert rec["msg"] == "hello world"
    assert (rec["status"], rec["spans"], rec["level"]) == (202, 100, "info")
    assert rec["ts"].endswith("Z")


@pytest.mark.anyio
async def test_the_access_log_writes_one_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["rastir.accepted"] = 3
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    mw = AccessLogMiddleware(app)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/telemetry",
        "client": ("10.0.0.1", 4242),
    }
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await mw(scope, receive, send)
        await mw({"type": "lifespan"}, receive, send)  # passed through, not logged
    (record,) = caplog.records
    assert record.getMessage() == "request"
    fields = record.__dict__
    assert (fields["method"], fields["path"], fields["status"], fields["spans"]) == (
        "POST",
        "/v1/telemetry",
        202,
        3,
    )
    assert fields["client"] == "10.0.0.1:4242"
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
