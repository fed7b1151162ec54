"""Cohere without a model, and Gemini's operation name, on the real SDKs' objects.

Cohere: no answer class of the cohere SDK (v1 and v2 chat, embed, rerank, stream
events) has a model field, so a call made without ``model=`` has no model to record;
it must stay unnamed and unpriced (``rastir.cost.unknown``), never guessed. Gemini:
``gen_ai.operation.name`` follows the answer (``generate_content``, ``embeddings``),
not the decorator's ``chat`` default. The live cases use the SDK clients against the
fake provider API on loopback (tests/adapters/live_api.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cohere
import pytest
from cohere import (
    EmbedByTypeResponse,
    EmbedFloatsResponse,
    NonStreamedChatResponse,
    RerankResponse,
    StreamEndStreamedChatResponse,
    StreamStartStreamedChatResponse,
    TextGenerationStreamedChatResponse,
)
from google import genai
from google.genai import types as genai_types

import rastir
from rastir.testing import capture_spans
from tests.adapters import objects
from tests.adapters.live_api import USAGE, FakeAPI, serving
from tests.adapters.test_providers import _run

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def _attrs(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with capture_spans() as spans:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    return dict(spans.one(kind="llm").attributes)


def _no_model_no_price(attrs: dict[str, Any]) -> None:
    assert "gen_ai.request.model" not in attrs
    assert "gen_ai.response.model" not in attrs
    assert attrs["rastir.cost.unknown"] is True
    assert "rastir.cost.usd" not in attrs


def _v1_chat() -> Any:
    return NonStreamedChatResponse.model_validate(
        {
            "text": "Ciao",
            "generation_id": "gen-1",
            "response_id": "resp-v1",
            "finish_reason": "COMPLETE",
            "meta": {"billed_units": {"input_tokens": 7, "output_tokens": 3}},
        }
    )


def _embed_by_type() -> Any:
    return EmbedByTypeResponse.model_validate(
        {
            "response_type": "embeddings_by_type",
            "id": "emb-1",
            "embeddings": {"float": [[0.1, 0.2]]},
            "texts": ["cats"],
            "meta": {"billed_units": {"input_tokens": 6}},
        }
    )


def _embed_floats() -> Any:
    return EmbedFloatsResponse.model_validate(
        {
            "id": "emb-2",
            "embeddings": [[0.1, 0.2]],
            "texts": ["cats"],
            "meta": {"billed_units": {"input_tokens": 6}},
        }
    )


def _rerank() -> Any:
    return RerankResponse.model_validate(
        {
            "id": "rr-1",
            "results": [{"index": 0, "relevance_score": 0.9}],
            "meta": {"billed_units": {"search_units": 1}},
        }
    )


# -- Cohere answers without model= -------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "operation", "tokens", "response_id"),
    [
        (objects.cohere_response, "chat", (15, 4), "co-1"),
        (_v1_chat, "chat", (7, 3), "resp-v1"),
        (_embed_by_type, "embeddings", (6, None), "emb-1"),
        (_embed_floats, "embeddings", (6, None), "emb-2"),
    ],
)
def test_a_cohere_answer_without_a_model_is_unnamed_and_unpriced(
    build: Any, operation: str, tokens: tuple[int, int | None], response_id: str
) -> None:
    rastir.configure(push_url=None)
    attrs = _run(build())
    _no_model_no_price(attrs)
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.operation.name"] == operation
    assert attrs["gen_ai.response.id"] == response_id
    assert attrs["gen_ai.usage.input_tokens"] == tokens[0]
    assert attrs.get("gen_ai.usage.output_tokens") == tokens[1]


def test_a_rerank_is_never_priced_by_tokens_even_with_its_model() -> None:
    rastir.configure(push_url=None)
    attrs = _run(_rerank(), model="rerank-v3.5")
    assert attrs["gen_ai.request.model"] == "rerank-v3.5"
    assert attrs["gen_ai.operation.name"] == "rerank"
    assert attrs["cohere.billed_units.search_units"] == 1
    assert attrs["rastir.cost.unknown"] is True
    assert "rastir.cost.usd" not in attrs
    assert "gen_ai.usage.input_tokens" not in attrs


def test_a_cohere_chat_with_its_model_is_priced_by_that_model() -> None:
    rastir.configure(push_url=None)
    attrs = _run(objects.cohere_response(), model="command-r-plus")
    assert attrs["gen_ai.request.model"] == "command-r-plus"
    assert "gen_ai.response.model" not in attrs  # the answer names none
    assert attrs["rastir.cost.usd"] > 0
    assert "rastir.cost.unknown" not in attrs


def test_a_v1_chat_stream_is_read_from_its_events() -> None:
    rastir.configure(push_url=None)
    events = [
        StreamStartStreamedChatResponse(generation_id="gen-1"),
        TextGenerationStreamedChatResponse(text="Cia"),
        TextGenerationStreamedChatResponse(text="o"),
        StreamEndStreamedChatResponse(finish_reason="COMPLETE", response=_v1_chat()),
    ]

    @rastir.llm
    def ask() -> Iterator[Any]:
        yield from events

    attrs = _attrs(ask)
    _no_model_no_price(attrs)
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.usage.input_tokens"] == 7
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ("COMPLETE",)
    assert attrs["gen_ai.response.id"] == "resp-v1"
    assert attrs["rastir.ttft_ms"] >= 0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with serving() as running:
        yield running


def test_a_live_cohere_call_whose_model_rastir_cannot_see_is_not_guessed(api: FakeAPI) -> None:
    rastir.configure(push_url=None)
    client = cohere.ClientV2(api_key="co-test", base_url=api.url, timeout=5)

    @rastir.llm
    def ask(co: cohere.ClientV2, which: str) -> Any:  # the model is no ``model=`` argument
        return co.chat(model=which, messages=MESSAGES)

    try:
        attrs = _attrs(ask, client, "command-r-plus")
        stream_attrs = _attrs(
            rastir.llm(lambda co, which: co.chat_stream(model=which, messages=MESSAGES)),
            client,
            "command-r-plus",
        )
    finally:
        client._client_wrapper.httpx_client.httpx_client.close()
    for found in (attrs, stream_attrs):
        _no_model_no_price(found)
        assert found["gen_ai.provider.name"] == "cohere"
        assert found["gen_ai.usage.input_tokens"] == USAGE["input"]
        assert found["gen_ai.usage.output_tokens"] == USAGE["output"]


# -- Gemini: the operation follows the answer ----------------------------------------------------
def test_gemini_generate_content_and_embeddings_name_their_operation(api: FakeAPI) -> None:
    rastir.configure(push_url=None)
    client = genai.Client(
        api_key="gemini-test",
        http_options=genai_types.HttpOptions(
            base_url=api.url, timeout=5000, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )

    @rastir.llm
    def generate(model: str) -> Any:
        return client.models.generate_content(model=model, contents="hi")

    @rastir.llm
    def stream(model: str) -> Any:
        return client.models.generate_content_stream(model=model, contents="hi")

    @rastir.llm
    def session(model: str) -> Any:
        return client.chats.create(model=model).send_message("hi")

    try:
        found = [_attrs(f, model="gemini-2.5-flash") for f in (generate, stream, session)]
    finally:
        client.close()
    for attrs in found:
        assert attrs["gen_ai.operation.name"] == "generate_content"
        assert attrs["gen_ai.provider.name"] == "gcp.gemini"
        assert attrs["gen_ai.response.model"] == "gemini-2.5-flash"
        assert attrs["rastir.cost.usd"] > 0

    embedded = genai_types.EmbedContentResponse.model_validate(
        {
            "embeddings": [
                {"values": [0.1], "statistics": {"token_count": 3}},
                {"values": [0.2], "statistics": {"token_count": 4}},
            ]
        }
    )
    attrs = _run(embedded, model="gemini-embedding-001")
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.usage.input_tokens"] == 7
    assert "gen_ai.usage.output_tokens" not in attrs
    assert "gen_ai.output.messages" not in attrs


def test_a_gemini_embedding_counts_its_usage_metadata_first() -> None:
    if "usage_metadata" not in genai_types.EmbedContentResponse.model_fields:
        # google-genai 2.x, the last for Python 3.10: statistics only (tested above)
        pytest.skip("this google-genai's EmbedContentResponse has no usage_metadata")
    rastir.configure(push_url=None, capture_content=True)
    embedded = genai_types.EmbedContentResponse.model_validate(
        {
            "embeddings": [{"values": [0.1]}],  # no statistics: usage_metadata says it
            "usage_metadata": {"prompt_token_count": 11},
        }
    )
    attrs = _run(embedded)
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.usage.input_tokens"] == 11
    assert "gen_ai.output.messages" not in attrs


def test_an_operation_named_on_the_decorator_beats_the_answers() -> None:
    """``@llm(operation=...)`` wins over the adapter's, as ``model=`` does, for a
    returned answer and for a stream; without it the answer decides."""

    @rastir.llm(operation="chat")
    def named() -> Any:
        return objects.gemini_response()

    @rastir.llm(operation="chat")
    def named_stream() -> Iterator[Any]:
        yield objects.gemini_response("Ho", usage=False, finish=None)
        yield objects.gemini_response("la")

    @rastir.llm
    def unnamed() -> Any:
        return objects.gemini_response()

    assert _attrs(named)["gen_ai.operation.name"] == "chat"
    assert _attrs(named_stream)["gen_ai.operation.name"] == "chat"
    assert _attrs(unnamed)["gen_ai.operation.name"] == "generate_content"
