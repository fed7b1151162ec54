"""HTTP on both sides: server middleware that continues traces, clients that carry them.

* :class:`RastirMiddleware`: pure ASGI (Starlette, FastAPI, any ASGI app).
* :class:`RastirWSGIMiddleware`: WSGI (Flask, Django, any WSGI app).
* :func:`instrument_httpx` and :class:`RastirTransport`: outbound propagation for one
  ``httpx`` or ``httpx2`` client, sync or async, through the client's transport.

Nothing here imports a web framework or an HTTP client at import time.
"""

from rastir.middleware._http import MiddlewareStats, stats
from rastir.middleware.asgi import RastirMiddleware
from rastir.middleware.httpx import RastirAsyncTransport, RastirTransport, instrument_httpx
from rastir.middleware.wsgi import RastirWSGIMiddleware

__all__ = [
    "MiddlewareStats",
    "RastirAsyncTransport",
    "RastirMiddleware",
    "RastirTransport",
    "RastirWSGIMiddleware",
    "instrument_httpx",
    "stats",
]
