"""A FastAPI service whose endpoint runs a traced agent: one trace per request.

    python examples/fastapi_agent/app.py --port 8000
    curl -s -XPOST 127.0.0.1:8000/ask -H 'content-type: application/json' \\
         -d '{"question": "What should I wear in Lisbon?"}'

``RastirMiddleware`` makes each request an ``http.server`` span (continuing the
caller's ``traceparent`` if it sent one); the agent, its tool and its model call are
children of it. The model is a stand-in that returns real ``openai`` ``ChatCompletion``
objects offline; swap in ``openai.AsyncOpenAI().chat.completions`` to use the real one.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

import rastir
from rastir.middleware import RastirMiddleware

app = FastAPI(title="concierge")
app.add_middleware(RastirMiddleware)

_FORECASTS = {"lisbon": "sunny, 24 °C", "oslo": "sleet, 3 °C"}


class OfflineCompletions:
    """Answers like ``AsyncOpenAI().chat.completions``, without a network or a key."""

    async def create(self, *, model: str, messages: list[dict[str, str]]) -> ChatCompletion:
        await anyio.sleep(0.02)
        prompt = messages[-1]["content"]
        answer = f"Given {prompt.split(': ', 1)[-1]}, dress for it."
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
                        "message": {"role": "assistant", "content": answer},
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt) // 4 + 8,
                    "completion_tokens": len(answer) // 4,
                    "total_tokens": len(prompt) // 4 + 8 + len(answer) // 4,
                },
            }
        )


completions = OfflineCompletions()


@rastir.tool(tool_name="weather")
async def weather(city: str) -> str:
    await anyio.sleep(0.005)
    try:
        return _FORECASTS[city.lower()]
    except KeyError:
        raise LookupError(f"no forecast for {city}") from None


@rastir.llm(provider="openai")
async def chat(messages: list[dict[str, str]], model: str) -> ChatCompletion:
    return await completions.create(model=model, messages=messages)


@rastir.agent(agent_name="concierge")
async def concierge(question: str) -> str:
    city = question.rstrip("?.! ").split()[-1]
    try:
        forecast = await weather(city)
    except LookupError:
        forecast = "unknown weather"  # the tool's span records the error; the agent goes on
    completion = await chat(
        [{"role": "user", "content": f"{question} Forecast: {forecast}"}], model="gpt-4o-mini"
    )
    return completion.choices[0].message.content or ""


class Question(BaseModel):
    question: str


@app.post("/ask")
async def ask(body: Question) -> dict[str, Any]:
    answer = await concierge(body.question)
    return {"answer": answer, "trace_id": rastir.current_trace_id()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    rastir.configure(service="concierge-api")  # RASTIR_PUSH_URL names the collector
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    print(f"serving on http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))

    # uvicorn stops gracefully on SIGTERM, then sends the signal again to the handler
    # it found: with the default one the process would die before flushing its spans.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        rastir.shutdown()  # delivers what is still queued


if __name__ == "__main__":
    main()
