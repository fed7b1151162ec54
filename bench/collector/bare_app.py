"""The ceiling: a bare Starlette endpoint that reads the body and answers 202.

Served by the same uvicorn (httptools) as the collector, so the difference between
the two is what ingest itself costs.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def telemetry(request: Request) -> Response:
    body = await request.body()
    return Response(
        b'{"accepted":%d}' % (len(body) > 0), status_code=202, media_type="application/json"
    )


app = Starlette(routes=[Route("/v1/telemetry", telemetry, methods=["POST"])])
