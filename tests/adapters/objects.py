"""Real SDK response objects, built offline from the payloads each API returns."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx

OPENAI_CHAT: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 34,
        "total_tokens": 1234,
        "prompt_tokens_details": {"cached_tokens": 1024},
    },
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris."},
            "finish_reason": "stop",
        }
    ],
}


def openai_chat(**changes: Any) -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({**OPENAI_CHAT, **changes})


def azure_chat(filtered: bool = False) -> Any:
    from openai.types.chat import ChatCompletion

    verdict = {"filtered": filtered, "severity": "high" if filtered else "safe"}
    payload = {
        **OPENAI_CHAT,
        "model": "gpt-4o-2024-11-20",
        "prompt_filter_results": [
            {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}
        ],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None if filtered else "Paris."},
                "finish_reason": "content_filter" if filtered else "stop",
                "content_filter_results": {"violence": verdict, "hate": {"filtered": False}},
            }
        ],
    }
    return ChatCompletion.model_validate(payload)


def groq_chat() -> Any:
    from groq.types.chat import ChatCompletion

    return ChatCompletion.model_validate(
        {
            **OPENAI_CHAT,
            "model": "llama-3.3-70b-versatile",
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "length",
                }
            ],
        }
    )


def anthropic_message() -> Any:
    from anthropic.types import Message

    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": "Bonjour"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 100,
                "output_tokens": 20,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 500,
            },
        }
    )


def gemini_response(text: str = "Hola", usage: bool = True, finish: str | None = "STOP") -> Any:
    from google.genai import types

    payload: dict[str, Any] = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                **({"finish_reason": finish} if finish else {}),
            }
        ],
        "model_version": "gemini-2.5-flash",
        "response_id": "resp-1",
    }
    if usage:
        payload["usage_metadata"] = {
            "prompt_token_count": 40,
            "candidates_token_count": 12,
            "cached_content_token_count": 8,
            "thoughts_token_count": 5,
            "total_token_count": 57,
        }
    return types.GenerateContentResponse.model_validate(payload)


def cohere_response() -> Any:
    from cohere.v2.types import V2ChatResponse

    return V2ChatResponse.model_validate(
        {
            "id": "co-1",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "Ciao"}]},
            "usage": {
                "billed_units": {"input_tokens": 15, "output_tokens": 4},
                "tokens": {"input_tokens": 215, "output_tokens": 4},
            },
        }
    )


def mistral_response() -> Any:
    from mistralai.client.models import ChatCompletionResponse

    return ChatCompletionResponse.model_validate(
        {
            "id": "mi-1",
            "object": "chat.completion",
            "model": "mistral-large-latest",
            "created": 1700000000,
            "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hallo"},
                    "finish_reason": "stop",
                }
            ],
        }
    )


def bedrock_converse(guardrail: bool = False) -> dict[str, Any]:
    """A ``converse`` response as botocore parses it."""
    response: dict[str, Any] = {
        "ResponseMetadata": {
            "RequestId": "req-123",
            "HTTPStatusCode": 200,
            "HTTPHeaders": {"content-type": "application/json"},
            "RetryAttempts": 0,
        },
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello there"}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 30,
            "outputTokens": 7,
            "totalTokens": 37,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 0,
        },
        "metrics": {"latencyMs": 412},
    }
    if guardrail:
        response["stopReason"] = "guardrail_intervened"
        response["output"] = {
            "message": {"role": "assistant", "content": [{"text": "Sorry, I can't help."}]}
        }
        response["trace"] = {
            "guardrail": {
                "inputAssessment": {
                    "gr-abc123": {
                        "topicPolicy": {
                            "topics": [
                                {
                                    "name": "Investment advice",
                                    "type": "DENY",
                                    "action": "BLOCKED",
                                    "detected": True,
                                }
                            ]
                        },
                        "contentPolicy": {
                            "filters": [
                                {
                                    "type": "VIOLENCE",
                                    "confidence": "NONE",
                                    "filterStrength": "HIGH",
                                    "action": "NONE",
                                    "detected": False,
                                }
                            ]
                        },
                        "invocationMetrics": {"guardrailProcessingLatency": 120},
                    }
                },
                "actionReason": "Guardrail blocked.",
            }
        }
    return response


def bedrock_stream_events(guardrail: bool = False) -> list[dict[str, Any]]:
    """``converse_stream`` events as botocore yields them from ``response["stream"]``."""
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "guardrail_intervened" if guardrail else "end_turn"}},
    ]
    metadata: dict[str, Any] = {
        "usage": {"inputTokens": 25, "outputTokens": 2, "totalTokens": 27},
        "metrics": {"latencyMs": 300},
    }
    if guardrail:
        metadata["trace"] = {
            "guardrail": {
                "outputAssessments": {
                    "gr-xyz": [
                        {
                            "sensitiveInformationPolicy": {
                                "piiEntities": [
                                    {"match": "x@y.z", "type": "EMAIL", "action": "ANONYMIZED"}
                                ]
                            }
                        }
                    ]
                }
            }
        }
    events.append({"metadata": metadata})
    return events


# -- streams -----------------------------------------------------------------------------------
_CHUNK = {
    "id": "chatcmpl-s",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o-mini",
}


def openai_chunks() -> list[dict[str, Any]]:
    """Chat completion chunks with ``stream_options={"include_usage": True}``."""
    return [
        {
            **_CHUNK,
            "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
        },
        {**_CHUNK, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        {**_CHUNK, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
        {**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **_CHUNK,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    ]


def sse_response(events: list[dict[str, Any]], *, named: bool = False) -> httpx.Response:
    """An HTTP response whose body is the server-sent events of a stream."""
    body = b""
    for event in events:
        if named:
            body += f"event: {event['type']}\n".encode()
        body += b"data: " + json.dumps(event).encode() + b"\n\n"
    if not named:
        body += b"data: [DONE]\n\n"
    return httpx.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat"),
    )


def openai_stream(events: list[dict[str, Any]] | None = None) -> Any:
    """A real ``openai.Stream`` of chunks, reading a canned HTTP body."""
    from openai import OpenAI
    from openai._streaming import Stream
    from openai.types.chat import ChatCompletionChunk

    client = OpenAI(api_key="sk-test-not-a-key", base_url="http://127.0.0.1:9/v1")
    response = sse_response(events if events is not None else openai_chunks())
    return Stream(cast_to=ChatCompletionChunk, response=response, client=client)


def openai_async_stream() -> Any:
    """A real ``openai.AsyncStream`` of chunks."""
    from openai import AsyncOpenAI
    from openai._streaming import AsyncStream
    from openai.types.chat import ChatCompletionChunk

    client = AsyncOpenAI(api_key="sk-test-not-a-key", base_url="http://127.0.0.1:9/v1")
    sync = sse_response(openai_chunks())
    response = httpx.Response(
        200,
        stream=_AsyncBody(sync.content),
        headers={"content-type": "text/event-stream"},
        request=sync.request,
    )
    return AsyncStream(cast_to=ChatCompletionChunk, response=response, client=client)


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> Any:
        for i in range(0, len(self.body), 64):
            yield self.body[i : i + 64]


def anthropic_events(cache_write: int | None = None) -> list[dict[str, Any]]:
    usage: dict[str, Any] = {"input_tokens": 50, "output_tokens": 1, "cache_read_input_tokens": 10}
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_s",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Bon"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "jour"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
        {"type": "message_stop"},
    ]


def anthropic_stream(cache_write: int | None = None) -> Any:
    """A real ``anthropic.Stream`` of raw message events."""
    from anthropic import Anthropic
    from anthropic._streaming import Stream
    from anthropic.types import RawMessageStreamEvent

    client = Anthropic(api_key="sk-ant-test-not-a-key", base_url="http://127.0.0.1:9")
    response = sse_response(anthropic_events(cache_write), named=True)
    return Stream(
        cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]  # a union, as the SDK passes it
        response=response,
        client=client,
    )


def anthropic_async_stream(cache_write: int | None = None) -> Any:
    """A real ``anthropic.AsyncStream`` of raw message events."""
    from anthropic import AsyncAnthropic
    from anthropic._streaming import AsyncStream
    from anthropic.types import RawMessageStreamEvent

    client = AsyncAnthropic(api_key="sk-ant-test-not-a-key", base_url="http://127.0.0.1:9")
    sync = sse_response(anthropic_events(cache_write), named=True)
    response = httpx.Response(
        200,
        stream=_AsyncBody(sync.content),
        headers={"content-type": "text/event-stream"},
        request=sync.request,
    )
    return AsyncStream(
        cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]  # a union, as the SDK passes it
        response=response,
        client=client,
    )


# -- OpenAI Responses API ----------------------------------------------------------------------
RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 1200,
        "output_tokens": 40,
        "total_tokens": 1240,
        "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}


def response_events(
    *, deltas: tuple[str, ...] = ("Hel", "lo"), end: str = "completed"
) -> list[dict[str, Any]]:
    """The server-sent events of ``responses.create(stream=True)``, ending with
    ``response.<end>`` (``completed``, ``incomplete`` or ``failed``)."""
    started = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    final = dict(RESPONSE)
    if end == "incomplete":
        final.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    elif end == "failed":
        final.update(status="failed", error={"code": "server_error", "message": "boom"})
    text = "".join(deltas)
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {**RESPONSE["output"][0], "content": [part]}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
    ]
    for delta in deltas:
        events.append(
            {"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []}
        )
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": f"response.{end}", "response": {**final, "output": [item]}},
    ]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return events


def openai_client_streaming(events: list[dict[str, Any]]) -> Any:
    """A real ``openai.OpenAI`` client whose every request is answered with ``events``
    as server-sent events, by an in-process transport (no network)."""
    from openai import OpenAI

    def answer(request: httpx.Request) -> httpx.Response:
        return sse_response(events, named=True)

    return OpenAI(
        api_key="sk-test-not-a-key",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )
