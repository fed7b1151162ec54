"""How MCP outcomes are recorded on a span: JSON-RPC errors, ``isError`` results.

mcp raises one exception class, ``MCPError``, for every JSON-RPC error; its code says
what went wrong. The code is mapped here, at the boundary, to rastir's categories
(CONVENTIONS: "map third-party errors in one place"). Anything else goes through
:func:`rastir._instrument.record_exception` like any other exception.
"""

from __future__ import annotations

from typing import Any, Final

from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
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
    CallToolResult,
)

from rastir import _config
from rastir._instrument import record_exception
from rastir.spans import Span

__all__ = ["is_error_result", "record_error_data", "record_mcp_exception", "record_result"]

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
            attributes = span.attributes
            # MCP semantic conventions: on a JSON-RPC error both rpc.response.status_code
            # and error.type are the error code as a string; the category stays rastir's.
            attributes["rpc.response.status_code"] = attributes["error.type"] = str(code)
            span.set_error(
                _category(code, server=server),
                f"{type(exc).__module__}.{type(exc).__qualname__}",
                str(exc)[:_MAX_MESSAGE],
            )
            return
        if server and _deliberate(exc):
            # A ToolError (or ResourceError) is the tool reporting failure to the model:
            # MCPServer turns it into an isError result, so it is recorded as one.
            span.set_error(
                TOOL_ERROR, f"{type(exc).__module__}.{type(exc).__qualname__}", _message(exc)
            )
            return
    except Exception:  # pragma: no cover - str() of a hostile exception
        span.status = "error"
        return
    record_exception(span, exc)


def record_error_data(span: Span, data: Any) -> None:
    """Record an ``ErrorData`` a client callback returned: mcp answers the server with
    that JSON-RPC error (or raises it as ``MCPError`` in the multi-round-trip driver),
    so it is a failure of the request, mapped by its code as a raised one is. Never
    raises."""
    try:
        code = data.code
        attributes = span.attributes
        attributes["rpc.response.status_code"] = attributes["error.type"] = str(code)
        span.set_error(
            _category(code, server=True), "mcp_types.ErrorData", str(data.message)[:_MAX_MESSAGE]
        )
    except Exception:
        span.status = "error"


def _deliberate(exc: BaseException) -> bool:
    """A failure the tool raised on purpose, as MCPServer tells it (``Tool.run``): a
    ``ToolError`` or ``ResourceError``, not their ``Unexpected*`` crash wrappers."""
    if isinstance(exc, ToolError):
        return not isinstance(exc, UnexpectedToolError)
    return isinstance(exc, ResourceError) and not isinstance(exc, UnexpectedResourceError)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:_MAX_MESSAGE]
    except Exception:
        return ""


def is_error_result(result: Any) -> bool:
    """Whether ``result`` is a ``CallToolResult`` with ``isError`` set.

    Only a ``CallToolResult`` is: MCPServer passes it through as the result, while any
    other value a tool returns, a dict with an ``"isError"`` key included, is the
    tool's output (content and structured content), never the result's flag.
    """
    return isinstance(result, CallToolResult) and result.is_error is True


def record_result(span: Span, result: Any) -> None:
    """Mark the span ``tool_error`` when ``result`` is a ``CallToolResult`` with
    ``isError``. Never raises."""
    try:
        if not is_error_result(result):
            return
        message = "the tool returned isError"
        if _config.get_settings().capture_content:
            # Tool output may hold user data: kept only when content capture is on.
            for block in result.content or ():
                text = getattr(block, "text", None)
                if isinstance(text, str):
                    message = text[:_MAX_MESSAGE]
                    break
        span.set_error(TOOL_ERROR, "CallToolResult", message)
    except Exception:
        span.set_error(TOOL_ERROR, "CallToolResult", "the tool returned isError")
