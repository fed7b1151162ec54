"""How MCP outcomes are recorded on a span: JSON-RPC errors, ``isError`` results.

mcp raises one exception class, ``MCPError``, for every JSON-RPC error; its code says
what went wrong. The code is mapped here, at the boundary, to rastir's categories
(CONVENTIONS: "map third-party errors in one place"). Anything else goes through
:func:`rastir._instrument.record_exception` like any other exception.
"""

from __future__ import annotations

from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
    UNSUPPORTED_PROTOCOL_VERSION,
)

from rastir import _config
from rastir._instrument import record_exception
from rastir.spans import Span

__all__ = ["record_mcp_exception", "record_result"]

TOOL_ERROR: Final = "tool_error"

# JSON-RPC 2.0 §5.1 and the MCP codes: the request itself was refused.
_VALIDATION_CODES: Final = frozenset(
    (
        PARSE_ERROR,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        INVALID_PARAMS,
        HEADER_MISMATCH,
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
    )
)
_MAX_MESSAGE: Final = 512


def _category(code: int, *, server: bool) -> str:
    if code == REQUEST_TIMEOUT:
        return "timeout"
    if code in _VALIDATION_CODES:
        return "validation_error"
    if code == CONNECTION_CLOSED:
        return "provider_error"
    # An internal error (-32603, or the code 0 mcp uses for unmapped exceptions) is the
    # server's own failure: seen from the client it is the remote side's.
    return "internal_error" if server else "provider_error"


def record_mcp_exception(span: Span, exc: BaseException, *, server: bool) -> None:
    """Record an exception that ended an MCP span. Never raises."""
    try:
        if isinstance(exc, MCPError):
            code = exc.code
            span.attributes["rpc.response.status_code"] = str(code)
            span.set_error(
                _category(code, server=server),
                f"{type(exc).__module__}.{type(exc).__qualname__}",
                str(exc)[:_MAX_MESSAGE],
            )
            return
        if server and isinstance(exc, ToolError) and not isinstance(exc, UnexpectedToolError):
            # A ToolError is the tool reporting failure to the model: MCPServer turns
            # it into an isError result, so it is recorded as one.
            span.set_error(
                TOOL_ERROR, f"{type(exc).__module__}.{type(exc).__qualname__}", _message(exc)
            )
            return
    except Exception:  # pragma: no cover - str() of a hostile exception
        span.status = "error"
        return
    record_exception(span, exc)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:_MAX_MESSAGE]
    except Exception:
        return ""


def _is_error(result: Any) -> bool:
    if isinstance(result, dict):
        # A raw-dict result: only a literal true counts (what reaches the wire as one).
        return result.get("isError") is True
    return getattr(result, "is_error", None) is True


def record_result(span: Span, result: Any) -> None:
    """Mark the span ``tool_error`` when a tool result has ``isError``. Never raises."""
    try:
        if not _is_error(result):
            return
        message = "the tool returned isError"
        if _config.get_settings().capture_content:
            # Tool output may hold user data: kept only when content capture is on.
            content = result.get("content") if isinstance(result, dict) else result.content
            for block in content or ():
                text = (
                    block.get("text") if isinstance(block, dict) else getattr(block, "text", None)
                )
                if isinstance(text, str):
                    message = text[:_MAX_MESSAGE]
                    break
        span.set_error(TOOL_ERROR, "CallToolResult", message)
    except Exception:
        span.set_error(TOOL_ERROR, "CallToolResult", "the tool returned isError")
