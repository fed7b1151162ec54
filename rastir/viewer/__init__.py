"""Read traces from a collector's query API and show them in a terminal.

Standard library only, so the viewers work wherever rastir is installed:

* :class:`QueryClient`: ``GET /v1/traces`` and ``GET /v1/traces/{id}``, every failure a
  :class:`QueryAPIError` with a message that says what to do;
* :func:`render_trace` and :func:`render_trace_list`: the text ``rastir trace``,
  ``rastir traces`` and ``rastir demo`` print.
"""

from rastir.viewer.client import (
    DEFAULT_URL,
    CollectorUnreachable,
    QueryAPIError,
    QueryClient,
    TraceNotFound,
    Unauthorized,
    check_trace_id,
)
from rastir.viewer.render import (
    Style,
    format_cost,
    format_duration,
    iter_spans,
    render_trace,
    render_trace_list,
)

__all__ = [
    "DEFAULT_URL",
    "CollectorUnreachable",
    "QueryAPIError",
    "QueryClient",
    "Style",
    "TraceNotFound",
    "Unauthorized",
    "check_trace_id",
    "format_cost",
    "format_duration",
    "iter_spans",
    "render_trace",
    "render_trace_list",
]
