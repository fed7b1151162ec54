"""A Flask (WSGI) app whose requests are traced, model calls and retrievals inside them.

    python examples/flask_app/app.py --port 5000
    curl -s 127.0.0.1:5000/articles/otel/summary

``RastirWSGIMiddleware`` wraps ``app.wsgi_app``: each request is an ``http.server``
span, and the spans of the work done for it (a ``@retrieval``, an ``@llm`` call) are its
children. A missing article is a 404 (not an error: HTTP semantic conventions count
only 5xx as server errors); the retrieval's own span records the ``LookupError``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import Any

from flask import Flask, abort, jsonify
from flask.typing import ResponseReturnValue
from openai.types.chat import ChatCompletion
from werkzeug.serving import make_server

import rastir
from rastir.middleware import RastirWSGIMiddleware

app = Flask(__name__)
app.wsgi_app = RastirWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]

_ARTICLES = {
    "otel": "OpenTelemetry defines trace context, spans and semantic conventions.",
    "mcp": "The Model Context Protocol connects models to tools and data.",
}


@rastir.retrieval(name="articles.fetch")
def fetch_article(slug: str) -> str:
    time.sleep(0.003)
    try:
        return _ARTICLES[slug]
    except KeyError:
        raise LookupError(f"no article {slug!r}") from None


def offline_completion(model: str, messages: list[dict[str, str]]) -> ChatCompletion:
    """A stand-in for ``OpenAI().chat.completions.create``: a real object, no network."""
    time.sleep(0.01)
    text = messages[-1]["content"]
    summary = text.split(": ", 1)[-1].split(".")[0][:60] + "."
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-offline",
            "object": "chat.completion",
            "created": 1_733_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": summary},
                }
            ],
            "usage": {
                "prompt_tokens": len(text) // 4 + 6,
                "completion_tokens": len(summary) // 4,
                "total_tokens": len(text) // 4 + 6 + len(summary) // 4,
            },
        }
    )


@rastir.llm(provider="openai")
def summarise(text: str, model: str) -> ChatCompletion:
    return offline_completion(model, [{"role": "user", "content": f"Summarise: {text}"}])


@app.get("/articles/<slug>/summary")
def summary(slug: str) -> ResponseReturnValue:
    try:
        article = fetch_article(slug)
    except LookupError:
        abort(404)
    completion = summarise(article, model="gpt-4o-mini")
    body: dict[str, Any] = {
        "summary": completion.choices[0].message.content,
        "trace_id": rastir.current_trace_id(),
    }
    return jsonify(body)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # leaves serve_forever, so that the spans are flushed below


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    args = parser.parse_args(argv)
    rastir.configure(service="articles-web")  # RASTIR_PUSH_URL names the collector
    server = make_server(args.host, args.port, app, threaded=True)
    # Let server_close() wait for requests still being handled: a request's span ends
    # when the server closes its response body, which can come after the client has
    # the whole response, and a span that ends after rastir.shutdown() is not sent.
    server.daemon_threads = False
    print(f"serving on http://{args.host}:{server.port}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        rastir.shutdown()


if __name__ == "__main__":
    main()
