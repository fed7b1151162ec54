"""A Flask app under ``RastirWSGIMiddleware``, for gunicorn in the topology tests.

Configured at import from ``RASTIR_*`` variables, as a deployment would be: with
``--preload`` that happens in gunicorn's master, before it forks the workers. The
import also ends one span (``app.startup``) in the importing process, which starts
that process's exporter thread: with ``--preload`` the span is the master's to send,
never a worker's.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

import rastir
from rastir.middleware import RastirWSGIMiddleware

rastir.configure()
with rastir.span("app.startup"):
    pass


@rastir.tool(tool_name="lookup")
def lookup(key: str) -> str:
    return key.upper()


flask_app = Flask(__name__)


@flask_app.get("/work/<key>")
def work(key: str) -> ResponseReturnValue:
    return jsonify(value=lookup(key), pid=os.getpid(), trace_id=rastir.current_trace_id())


app = RastirWSGIMiddleware(flask_app)
