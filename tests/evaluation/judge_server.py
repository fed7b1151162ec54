"""A small OpenAI-compatible judge for the tests: real HTTP on 127.0.0.1, scripted answers.

``POST /v1/chat/completions`` records every request body, then answers as ``mode``
says: a JSON score (``score``), an HTTP error (``error``), prose without a score
(``garbage``), a body that is not a chat completion (``not_chat``), or a reply held
until ``release`` is set or ``hold_for`` seconds pass (``slow``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.collector.server import serving_async


def default_score(system: str, user: str) -> float:
    """Toxic words score high, a mention of Lisbon is relevant, anything else low."""
    text = user.lower()
    if "how toxic" in text:
        return 0.9 if "idiot" in text else 0.05
    if "address what its prompt asks" in text:
        return 0.95 if "lisbon" in text.split("<response>")[-1] else 0.2
    return 0.1


@dataclass
class Judge:
    url: str = ""
    mode: str = "score"
    status: int = 500
    hold_for: float = 30.0
    score: Callable[[str, str], float] = default_score
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def received(self) -> int:
        with self.lock:
            return len(self.requests)

    def bodies(self) -> list[bytes]:
        with self.lock:
            return list(self.raw_bodies)


def _completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


def judge_app(judge: Judge) -> Starlette:
    async def chat(request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        with judge.lock:
            judge.requests.append(body)
            judge.raw_bodies.append(raw)
        mode = judge.mode
        model = f"{body['model']}-2025"
        if mode == "slow":
            # Held until the test releases it (or hold_for passes); the collector's
            # client gives up before that. run_judge releases before stopping.
            await anyio.to_thread.run_sync(
                judge.release.wait, judge.hold_for, abandon_on_cancel=True
            )
        if mode == "error":
            return JSONResponse({"error": {"message": "judge is down"}}, status_code=judge.status)
        if mode == "garbage":
            return JSONResponse(_completion("I would say it is quite good overall!", model))
        if mode == "not_chat":
            return Response(b"<html>upstream proxy error</html>", media_type="text/html")
        system = body["messages"][0]["content"]
        user = body["messages"][1]["content"]
        score = judge.score(system, user)
        content = "```json\n" + json.dumps({"score": score, "reason": "scripted"}) + "\n```"
        return JSONResponse(_completion(content, model))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@asynccontextmanager
async def run_judge(**behaviour: Any) -> AsyncIterator[Judge]:
    judge = Judge(**behaviour)
    async with serving_async(judge_app(judge)) as url:
        judge.url = url
        try:
            yield judge
        finally:
            judge.release.set()  # before the server stops: held replies end at once
