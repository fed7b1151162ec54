"""The OTLP export target of ``otlp_export_bench.py``: reads each body and answers 200.

An empty 200 is a full success in OTLP/HTTP (no ``partial_success``). Nothing is
decoded, so the sink costs as little as a receiver can, and what the benchmark sees
is the collector's own cost of exporting.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

received = {"requests": 0, "bytes": 0}


async def traces(request: Request) -> Response:
    body = await request.body()
    received["requests"] += 1
    received["bytes"] += len(body)
    return Response(b"", status_code=200, media_type="application/x-protobuf")


async def stats(request: Request) -> Response:
    return Response(b'{"requests":%d,"bytes":%d}' % (received["requests"], received["bytes"]))


app = Starlette(
    routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/stats", stats, methods=["GET"])]
)
