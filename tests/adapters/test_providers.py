"""Provider adapters on real SDK response objects: model, provider, tokens, finish
reason and cost, through ``@llm`` as users write it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import rastir
from rastir.testing import capture_spans
from tests.adapters import objects


def _run(result: Any, **kwargs: Any) -> dict[str, Any]:
    @rastir.llm
    def call(**_: Any) -> Any:
        return result

    with capture_spans() as spans:
        assert call(**kwargs) is result
    return spans.one(kind="llm").attributes


CASES: list[tuple[str, Callable[[], Any], dict[str, Any], dict[str, Any]]] = [
    (
        "openai",
        objects.openai_chat,
        {"model": "gpt-4o"},
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 34,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.response.id": "chatcmpl-1",
        },
    ),
    (
        "azure",
        objects.azure_chat,
        {"model": "my-deployment"},
        {
            "gen_ai.request.model": "my-deployment",
            "gen_ai.response.model": "gpt-4o-2024-11-20",
            "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 34,
            "gen_ai.response.finish_reasons": ("stop",),
        },
    ),
    (
        "groq",
        objects.groq_chat,
        {},
        {
            "gen_ai.request.model": "llama-3.3-70b-versatile",
            "gen_ai.response.model": "llama-3.3-70b-versatile",
            "gen_ai.provider.name": "groq",
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 9,
            "gen_ai.response.finish_reasons": ("length",),
        },
    ),
    (
        "anthropic",
        objects.anthropic_message,
        {"model": "claude-sonnet-4-20250514", "max_tokens": 512},
        {
            "gen_ai.response.model": "claude-sonnet-4-20250514",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 2000,
            "gen_ai.usage.cache_creation.input_tokens": 500,
            "gen_ai.response.finish_reasons": ("end_turn",),
            "gen_ai.request.max_tokens": 512,
        },
    ),
    (
        "gemini",
        objects.gemini_response,
        {"model": "gemini-2.5-flash"},
        {
            "gen_ai.operation.name": "generate_content",
            "gen_ai.response.model": "gemini-2.5-flash",
            "gen_ai.provider.name": "gcp.gemini",
            "gen_ai.usage.input_tokens": 40,
            "gen_ai.usage.output_tokens": 17,  # 12 candidates + 5 thoughts
            "gen_ai.usage.cache_read.input_tokens": 8,
            "gen_ai.usage.reasoning.output_tokens": 5,
            "gen_ai.response.finish_reasons": ("STOP",),
        },
    ),
    (
        "cohere",
        objects.cohere_response,
        {"model": "command-r-plus-08-2024"},
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "command-r-plus-08-2024",
            "gen_ai.provider.name": "cohere",
            "gen_ai.usage.input_tokens": 15,
            "gen_ai.usage.output_tokens": 4,
            "gen_ai.response.finish_reasons": ("COMPLETE",),
            "gen_ai.response.id": "co-1",
        },
    ),
    (
        "mistral",
        objects.mistral_response,
        {"model": "mistral-large-latest", "temperature": 0.2},
        {
            "gen_ai.response.model": "mistral-large-latest",
            "gen_ai.provider.name": "mistral_ai",
            "gen_ai.usage.input_tokens": 11,
            "gen_ai.usage.output_tokens": 6,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.request.temperature": 0.2,
        },
    ),
    (
        "bedrock",
        objects.bedrock_converse,
        {"modelId": "anthropic.claude-3-sonnet-20240229-v1:0"},
        {
            "gen_ai.request.model": "claude-3-sonnet-20240229-v1:0",
            "rastir.model.vendor": "anthropic",
            "aws.bedrock.model_id": "anthropic.claude-3-sonnet-20240229-v1:0",
            "gen_ai.provider.name": "aws.bedrock",
            "gen_ai.usage.input_tokens": 30,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.response.finish_reasons": ("end_turn",),
            "gen_ai.response.id": "req-123",
            "aws.bedrock.latency_ms": 412,
        },
    ),
]


@pytest.mark.parametrize(("name", "build", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_provider_response_gives_model_provider_tokens_and_finish_reason(
    name: str, build: Callable[[], Any], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    attrs = _run(build(), **kwargs)
    for key, value in expected.items():
        assert attrs.get(key) == value, (key, attrs)
    # Every one of these models is in the price data: priced, never flagged unknown.
    assert "rastir.cost.unknown" not in attrs, attrs
    assert isinstance(attrs.get("rastir.cost.usd"), float)
    assert attrs["rastir.cost.usd"] > 0


def test_bedrock_guardrail_intervention_becomes_guardrail_attributes() -> None:
    attrs = _run(
        objects.bedrock_converse(guardrail=True),
        modelId="us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        guardrailConfig={"guardrailIdentifier": "gr-abc123", "guardrailVersion": "3"},
    )
    assert attrs["rastir.guardrail.intervened"] is True
    assert attrs["rastir.guardrail.id"] == "gr-abc123"
    assert attrs["rastir.guardrail.version"] == "3"
    assert attrs["rastir.guardrail.action"] == "BLOCKED"
    assert attrs["rastir.guardrail.category"] == "topic"
    assert attrs["rastir.guardrail.source"] == "input"
    assert attrs["gen_ai.response.finish_reasons"] == ("guardrail_intervened",)
    assert attrs["gen_ai.request.model"] == "claude-3-5-sonnet-20240620-v1:0"


def test_bedrock_response_without_guardrail_trace_records_no_guardrail() -> None:
    attrs = _run(objects.bedrock_converse(), modelId="amazon.nova-pro-v1:0")
    assert not any(k.startswith("rastir.guardrail.") for k in attrs)
    assert attrs["gen_ai.request.model"] == "nova-pro-v1:0"
    assert attrs["rastir.model.vendor"] == "amazon"


def test_azure_content_filter_is_a_guardrail_intervention() -> None:
    attrs = _run(objects.azure_chat(filtered=True), model="gpt-4o")
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert attrs["gen_ai.response.finish_reasons"] == ("content_filter",)
    assert attrs["rastir.guardrail.intervened"] is True
    assert attrs["rastir.guardrail.category"] == "violence"


def test_openai_responses_api_response() -> None:
    from openai.types.responses import Response

    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700000000,
            "model": "gpt-4.1-mini-2025-04-14",
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "m1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 30,
                "output_tokens": 5,
                "total_tokens": 35,
                "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    attrs = _run(response)
    assert attrs["gen_ai.response.model"] == "gpt-4.1-mini-2025-04-14"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 30
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 10
    assert attrs["gen_ai.response.finish_reasons"] == ("completed",)


def test_output_content_recorded_only_with_capture_content() -> None:
    attrs = _run(objects.anthropic_message(), messages=[{"role": "user", "content": "Hi"}])
    assert "gen_ai.input.messages" not in attrs
    assert "gen_ai.output.messages" not in attrs

    rastir.configure(push_url=None, capture_content=True)
    attrs = _run(
        objects.anthropic_message(),
        system="Be brief.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    )
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Bonjour"}],
            "finish_reason": "end_turn",
        }
    ]


@pytest.mark.parametrize(
    "build",
    [
        objects.openai_chat,
        objects.gemini_response,
        objects.mistral_response,
        objects.cohere_response,
    ],
)
def test_output_messages_for_each_provider_with_capture_content(build: Callable[[], Any]) -> None:
    rastir.configure(push_url=None, capture_content=True)
    attrs = _run(build(), model="m", messages=[{"role": "user", "content": "Hi"}])
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant"
    assert output[0]["parts"][0]["type"] == "text"
    assert output[0]["parts"][0]["content"]
