"""A FastAPI app under ``RastirMiddleware``, for ``uvicorn --workers`` in the topology tests.

Each worker process (uvicorn spawns them) imports this module and so configures rastir
from ``RASTIR_*`` variables and ends its own ``app.startup`` span.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

import rastir
from rastir.middleware import RastirMiddleware

rastir.configure()
with rastir.span("app.startup"):
    pass


@rastir.tool(tool_name="lookup")
async def lookup(key: str) -> str:
    return key.upper()


api = FastAPI()


@api.get("/work/{key}")
async def work(key: str) -> dict[str, Any]:
    return {"value": await lookup(key), "pid": os.getpid(), "trace_id": rastir.current_trace_id()}


app = RastirMiddleware(api)
