"""Service B of the two-service test, run in its own process so that it reports its own
``service.name``: Starlette under RastirMiddleware with a ``@rastir.tool`` handler.

    python -m tests.middleware.service_b --collector http://127.0.0.1:PORT

Binds 127.0.0.1 on a port the OS picks, prints ``PORT <n>``, and serves until SIGTERM.
``POST /flush`` (excluded from tracing) sends every finished span to the collector.
"""

from __future__ import annotations

import argparse
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rastir
from rastir.middleware import RastirMiddleware


@rastir.tool(tool_name="lookup_weather")
async def lookup(request: Request) -> JSONResponse:
    city = request.path_params["city"]
    return JSONResponse({"city": city, "forecast": "sunny", "trace": rastir.current_trace_id()})


async def flush(request: Request) -> JSONResponse:
    return JSONResponse({"flushed": rastir.flush(timeout=10)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--collector", required=True)
    args = parser.parse_args()
    rastir.configure(service="service-b", push_url=args.collector)
    app = Starlette(
        routes=[Route("/weather/{city}", lookup), Route("/flush", flush, methods=["POST"])]
    )
    app.add_middleware(RastirMiddleware, excluded_paths=["/flush"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, http="httptools", log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
