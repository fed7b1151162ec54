"""Fake provider APIs on 127.0.0.1, speaking each provider's HTTP wire format, for the
real SDK clients to talk to (tests/adapters/test_live_sdk.py).

One Starlette app serves every provider under its own path prefix (the SDKs are
pointed at it with ``base_url``/``endpoint_url``). What a request gets is decided by
the model it names:

* any ordinary name: a success, JSON or a stream (SSE, or AWS event-stream for
  Bedrock's ``converse-stream``), with fixed token counts (see ``USAGE``);
* ``err-<status>``: that HTTP status, with the provider's error body (and
  ``retry-after`` on a 429);
* ``flaky-<anything>``: a 429 the first time that name is seen, then a success;
* ``hang``: the server waits (bounded by ``HANG_LIMIT_S``, cut short on shutdown)
  before answering, so a client with a small timeout gives up first;
* ``long``: a stream of ``LONG_CHUNKS`` content chunks, for abandoned streams;
* ``midstream-error`` (Anthropic): a stream that sends an ``error`` event after the
  first text delta, as the API does when it is overloaded mid-answer.

Every request is logged (``FakeAPI.hits``), so tests can count the SDK's retries.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.collector.server import serving as serve_app

__all__ = ["HANG_LIMIT_S", "LONG_CHUNKS", "USAGE", "FakeAPI", "serving"]

HANG_LIMIT_S = 10.0
LONG_CHUNKS = 200
CREATED = 1_700_000_000

# The counts every success reports: input, output, cache read, cache write.
USAGE = {"input": 9, "output": 2, "cache_read": 4, "cache_write": 3}
TEXT = ("Hel", "lo")


class FakeAPI:
    """The shared state of one fake server: its request log and shutdown flag."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []  # (path, model)
        self.seen: dict[str, int] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.url = ""

    def count(self, model: str) -> int:
        with self.lock:
            return sum(1 for _, m in self.hits if m == model)

    def _log(self, path: str, model: str) -> int:
        with self.lock:
            self.hits.append((path, model))
            n = self.seen[model] = self.seen.get(model, 0) + 1
            return n

    async def _hang(self) -> None:
        # Bounded, and cut short when the server stops (a thread's Event: polled).
        deadline = time.monotonic() + HANG_LIMIT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def outcome(self, request: Request, model: str) -> int | None:
        """The error status to answer with, or None for a success (after any hang)."""
        n = self._log(request.url.path, model)
        if model.startswith("err-"):
            return int(model[4:])
        if model.startswith("flaky-") and n == 1:
            return 429
        if model == "hang":
            await self._hang()
            return 500
        return None

    # -- the app ---------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/responses", self.openai_responses, methods=["POST"]),
            Route(
                "/openai/deployments/{deployment}/chat/completions",
                self.azure_chat,
                methods=["POST"],
            ),
            Route("/openai/v1/chat/completions", self.groq_chat, methods=["POST"]),
            Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            Route("/mistral/v1/chat/completions", self.mistral_chat, methods=["POST"]),
            Route("/v2/chat", self.cohere_chat, methods=["POST"]),
            Route("/v1beta/models/{call:path}", self.gemini, methods=["POST"]),
            Route("/v1/models/{call:path}", self.gemini, methods=["POST"]),
            Route("/model/{model_id}/{action}", self.bedrock, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    # -- OpenAI-shaped (openai, Azure, Groq, Mistral) ------------------------------------
    @staticmethod
    def _oai_error(status: int) -> Response:
        kind = {
            429: "rate_limit_exceeded",
            400: "invalid_request_error",
            401: "invalid_api_key",
            404: "model_not_found",
        }.get(status, "server_error")
        headers = {"retry-after": "0", "retry-after-ms": "1"} if status == 429 else {}
        body = {"error": {"message": f"fake {status}", "type": kind, "param": None, "code": kind}}
        return JSONResponse(body, status_code=status, headers=headers)

    @staticmethod
    def _chat_usage() -> dict[str, Any]:
        tin, tout = USAGE["input"], USAGE["output"]
        return {
            "prompt_tokens": tin,
            "completion_tokens": tout,
            "total_tokens": tin + tout,
            "prompt_tokens_details": {"cached_tokens": USAGE["cache_read"], "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _chat_body(
        self, model: str, extra: dict[str, Any] | None = None, suffix: str = ""
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(TEXT), "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
        body: dict[str, Any] = {
            "id": "chatcmpl-live",
            "object": "chat.completion",
            "created": CREATED,
            "model": model + suffix,
            "choices": [choice],
            "usage": self._chat_usage(),
            "system_fingerprint": "fp_live",
        }
        if extra:
            body.update(extra)
        return body

    def _chat_chunks(
        self,
        model: str,
        usage: bool,
        usage_key: str = "usage",
        chunk_extra: Any = None,
        suffix: str = "",
    ) -> Iterator[dict[str, Any]]:
        texts = TEXT if model != "long" else tuple(f"t{i} " for i in range(LONG_CHUNKS))

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": "chatcmpl-live",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model + suffix,
                "system_fingerprint": "fp_live",
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
            if chunk_extra:
                c.update(chunk_extra)
            return c

        yield chunk({"role": "assistant", "content": ""}, None)
        for t in texts:
            yield chunk({"content": t}, None)
        last = chunk({}, "stop")
        if usage_key != "usage" and usage:
            last[usage_key] = {"id": "req_live", "usage": self._chat_usage()}
        yield last
        if usage and usage_key == "usage":
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = self._chat_usage()
            yield final

    @staticmethod
    def _sse(events: Iterator[tuple[str | None, Any]], done: bool) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for name, data in events:
                head = f"event: {name}\n" if name else ""
                yield f"{head}data: {json.dumps(data)}\n\n".encode()
                await asyncio.sleep(0)
            if done:
                yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def _openai_like(
        self,
        request: Request,
        model: str | None = None,
        extra: dict[str, Any] | None = None,
        usage_key: str = "usage",
        chunk_extra: Any = None,
        suffix: str = "-2024-07-18",
    ) -> Response:
        body = await request.json()
        model = model or body["model"]
        status = await self.outcome(request, model)
        if status is not None:
            return self._oai_error(status)
        if body.get("stream"):
            usage = usage_key != "usage" or bool(
                (body.get("stream_options") or {}).get("include_usage")
            )
            chunks = self._chat_chunks(model, usage, usage_key, chunk_extra, suffix)
            return self._sse(((None, c) for c in chunks), done=True)
        return JSONResponse(self._chat_body(model, extra, suffix))

    async def openai_chat(self, request: Request) -> Response:
        return await self._openai_like(request)

    async def azure_chat(self, request: Request) -> Response:
        filters = {
            "hate": {"filtered": False, "severity": "safe"},
            "violence": {"filtered": False, "severity": "safe"},
        }
        prompt_filter = [{"prompt_index": 0, "content_filter_results": filters}]
        body = await request.json()
        body_model = request.path_params["deployment"]
        # Azure names the deployment in the path; the answer names the model.
        if body.get("stream"):
            return await self._openai_like(
                request, body_model, chunk_extra={"prompt_filter_results": prompt_filter}
            )
        response = await self._openai_like(
            request, body_model, extra={"prompt_filter_results": prompt_filter}
        )
        if isinstance(response, JSONResponse) and response.status_code == 200:
            data = json.loads(bytes(response.body))
            data["choices"][0]["content_filter_results"] = filters
            return JSONResponse(data)
        return response

    async def groq_chat(self, request: Request) -> Response:
        return await self._openai_like(request, usage_key="x_groq", suffix="")

    async def mistral_chat(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        status = await self.outcome(request, model)
        if status is not None:
            return JSONResponse({"object": "error", "message": f"fake {status}"}, status)
        usage = {
            "prompt_tokens": USAGE["input"],
            "completion_tokens": USAGE["output"],
            "total_tokens": USAGE["input"] + USAGE["output"],
            "prompt_tokens_details": {"cached_tokens": USAGE["cache_read"]},
        }
        if body.get("stream"):

            def chunks() -> Iterator[tuple[str | None, Any]]:
                for i, t in enumerate(TEXT):
                    c: dict[str, Any] = {
                        "id": "mistral-live",
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": t},
                                "finish_reason": "stop" if i == len(TEXT) - 1 else None,
                            }
                        ],
                    }
                    if i == len(TEXT) - 1:
                        c["usage"] = usage
                    yield None, c

            return self._sse(chunks(), done=True)
        return JSONResponse(
            {
                "id": "mistral-live",
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "usage": usage,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(TEXT)},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    # -- OpenAI Responses API --------------------------------------------------------------
    def _response(self, model: str, status: str, text: str | None) -> dict[str, Any]:
        output = []
        if text is not None:
            output.append(
                {
                    "type": "message",
                    "id": "msg_live",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        usage = None
        if status == "completed":
            usage = {
                "input_tokens": USAGE["input"],
                "input_tokens_details": {"cached_tokens": USAGE["cache_read"]},
                "output_tokens": USAGE["output"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": USAGE["input"] + USAGE["output"],
            }
        return {
            "id": "resp_live",
            "object": "response",
            "created_at": CREATED,
            "model": f"{model}-2024-07-18",
            "status": status,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "tool_choice": "auto",
            "tools": [],
        }

    async def openai_responses(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        status = await self.outcome(request, model)
        if status is not None:
            return self._oai_error(status)
        if not body.get("stream"):
            return JSONResponse(self._response(model, "completed", "".join(TEXT)))

        def events() -> Iterator[tuple[str | None, Any]]:
            seq = iter(range(1000))
            item = {
                "type": "message",
                "id": "msg_live",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            part = {"type": "output_text", "text": "", "annotations": []}
            pos = {"item_id": "msg_live", "output_index": 0, "content_index": 0}
            started = self._response(model, "in_progress", None)
            yield (
                "response.created",
                {
                    "type": "response.created",
                    "sequence_number": next(seq),
                    "response": started,
                },
            )
            yield (
                "response.in_progress",
                {
                    "type": "response.in_progress",
                    "sequence_number": next(seq),
                    "response": started,
                },
            )
            yield (
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": item,
                },
            )
            yield (
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "sequence_number": next(seq),
                    "part": part,
                    **pos,
                },
            )
            for t in TEXT:
                yield (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": next(seq),
                        "delta": t,
                        "logprobs": [],
                        **pos,
                    },
                )
            full = "".join(TEXT)
            yield (
                "response.output_text.done",
                {
                    "type": "response.output_text.done",
                    "sequence_number": next(seq),
                    "text": full,
                    "logprobs": [],
                    **pos,
                },
            )
            yield (
                "response.content_part.done",
                {
                    "type": "response.content_part.done",
                    "sequence_number": next(seq),
                    "part": {**part, "text": full},
                    **pos,
                },
            )
            done_item = self._response(model, "completed", full)["output"][0]
            yield (
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": done_item,
                },
            )
            yield (
                "response.completed",
                {
                    "type": "response.completed",
                    "sequence_number": next(seq),
                    "response": self._response(model, "completed", full),
                },
            )

        return self._sse(events(), done=False)

    # -- Anthropic -------------------------------------------------------------------------
    async def anthropic_messages(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        status = await self.outcome(request, model)
        if status is not None:
            kind = {
                429: "rate_limit_error",
                400: "invalid_request_error",
                401: "authentication_error",
                404: "not_found_error",
                529: "overloaded_error",
            }.get(status, "api_error")
            headers = {"retry-after": "0", "retry-after-ms": "1"} if status == 429 else {}
            return JSONResponse(
                {"type": "error", "error": {"type": kind, "message": f"fake {status}"}},
                status_code=status,
                headers=headers,
            )
        usage = {
            "input_tokens": USAGE["input"],
            "output_tokens": USAGE["output"],
            "cache_read_input_tokens": USAGE["cache_read"],
            "cache_creation_input_tokens": USAGE["cache_write"],
        }
        served = f"{model}-20250219"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "msg_live",
                    "type": "message",
                    "role": "assistant",
                    "model": served,
                    "content": [{"type": "text", "text": "".join(TEXT)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        texts = TEXT if model != "long" else tuple(f"t{i} " for i in range(LONG_CHUNKS))

        def events() -> Iterator[tuple[str | None, Any]]:
            start_usage = {**usage, "output_tokens": 1}
            yield (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_live",
                        "type": "message",
                        "role": "assistant",
                        "model": served,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield "ping", {"type": "ping"}
            for t in texts:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": t},
                    },
                )
                if model == "midstream-error":
                    error = {"type": "overloaded_error", "message": "Overloaded"}
                    yield "error", {"type": "error", "error": error}
                    return
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            yield (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": USAGE["output"]},
                },
            )
            yield "message_stop", {"type": "message_stop"}

        return self._sse(events(), done=False)

    # -- Cohere v2 -------------------------------------------------------------------------
    async def cohere_chat(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        status = await self.outcome(request, model)
        if status is not None:
            return JSONResponse({"message": f"fake {status}"}, status_code=status)
        usage = {
            "billed_units": {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"]},
            "tokens": {"input_tokens": USAGE["input"] + 200, "output_tokens": USAGE["output"]},
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "cohere-live",
                    "finish_reason": "COMPLETE",
                    "message": {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "".join(TEXT)}],
                    },
                    "usage": usage,
                }
            )

        def events() -> Iterator[tuple[str | None, Any]]:
            yield (
                None,
                {
                    "type": "message-start",
                    "id": "cohere-live",
                    "delta": {"message": {"role": "assistant"}},
                },
            )
            yield (
                None,
                {
                    "type": "content-start",
                    "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                },
            )
            for t in TEXT:
                yield (
                    None,
                    {
                        "type": "content-delta",
                        "index": 0,
                        "delta": {"message": {"content": {"text": t}}},
                    },
                )
            yield None, {"type": "content-end", "index": 0}
            yield (
                None,
                {
                    "type": "message-end",
                    "delta": {"finish_reason": "COMPLETE", "usage": usage},
                },
            )

        return self._sse(events(), done=False)

    # -- Gemini (google-genai) ---------------------------------------------------------
    async def gemini(self, request: Request) -> Response:
        model, _, method = request.path_params["call"].partition(":")
        status = await self.outcome(request, model)
        if status is not None:
            name = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}
            return JSONResponse(
                {
                    "error": {
                        "code": status,
                        "message": f"fake {status}",
                        "status": name.get(status, "INTERNAL"),
                    }
                },
                status_code=status,
            )

        def chunk(text: str, last: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": text}]},
                "index": 0,
            }
            if last:
                cand["finishReason"] = "STOP"
            return {
                "candidates": [cand],
                "usageMetadata": {
                    "promptTokenCount": USAGE["input"],
                    "candidatesTokenCount": USAGE["output"] if last else 1,
                    "cachedContentTokenCount": USAGE["cache_read"],
                    "thoughtsTokenCount": 5,
                    "totalTokenCount": USAGE["input"] + USAGE["output"] + 5,
                },
                "modelVersion": model,
                "responseId": "gemini-live",
            }

        if method == "streamGenerateContent":
            events = ((None, chunk(t, i == len(TEXT) - 1)) for i, t in enumerate(TEXT))
            return self._sse(events, done=False)
        return JSONResponse(chunk("".join(TEXT), True))

    # -- Bedrock runtime -----------------------------------------------------------------
    async def bedrock(self, request: Request) -> Response:
        model = unquote(request.path_params["model_id"])
        action = request.path_params["action"]
        status = await self.outcome(request, model)
        if status is not None:
            code = {
                429: "ThrottlingException",
                400: "ValidationException",
                403: "AccessDeniedException",
                404: "ResourceNotFoundException",
            }.get(status, "InternalServerException")
            return JSONResponse(
                {"message": f"fake {status}"},
                status_code=status,
                headers={"x-amzn-errortype": f"{code}:http://internal.amazon.com/"},
            )
        usage = {
            "inputTokens": USAGE["input"],
            "outputTokens": USAGE["output"],
            "totalTokens": USAGE["input"] + USAGE["output"],
            "cacheReadInputTokens": USAGE["cache_read"],
            "cacheWriteInputTokens": USAGE["cache_write"],
        }
        if action == "converse":
            return JSONResponse(
                {
                    "output": {
                        "message": {"role": "assistant", "content": [{"text": "".join(TEXT)}]}
                    },
                    "stopReason": "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 42},
                },
                headers={"x-amzn-requestid": "bedrock-live"},
            )

        def events() -> Iterator[tuple[str, dict[str, Any]]]:
            yield "messageStart", {"role": "assistant"}
            for t in TEXT:
                yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}
            yield "contentBlockStop", {"contentBlockIndex": 0}
            yield "messageStop", {"stopReason": "end_turn"}
            yield "metadata", {"usage": usage, "metrics": {"latencyMs": 42}}

        async def gen() -> AsyncIterator[bytes]:
            for name, payload in events():
                yield event_stream_message(name, payload)
                await asyncio.sleep(0)

        return StreamingResponse(
            gen(),
            media_type="application/vnd.amazon.eventstream",
            headers={"x-amzn-requestid": "bedrock-live"},
        )


def _header(name: str, value: str) -> bytes:
    raw_name = name.encode()
    raw_value = value.encode()
    # name length, name, value type 7 (string), value length, value
    size = struct.pack(">H", len(raw_value))
    return bytes([len(raw_name)]) + raw_name + b"\x07" + size + raw_value


def event_stream_message(event: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event-stream encoding (what converse-stream sends)."""
    headers = (
        _header(":event-type", event)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


@contextmanager
def serving() -> Iterator[FakeAPI]:
    """A FakeAPI served by uvicorn on 127.0.0.1:<free port> in a thread."""
    api = FakeAPI()
    with serve_app(api.app()) as url:
        api.url = url
        try:
            yield api
        finally:
            api.stopping.set()  # hanging handlers return, so the server can stop
