"""The token parts that cost more than text, read through LangChain, LangGraph and
LlamaIndex: 1-hour cache writes, audio in and out.

The messages are real langchain-core objects. The integration packages are not
installed here, so their ``usage_metadata`` is built in the shape each one produces:

* langchain-anthropic, ``_create_usage_metadata`` in
  ``libs/partners/anthropic/langchain_anthropic/chat_models.py`` (langchain-ai/langchain):
  ``input_tokens`` is Anthropic's count plus the cache reads and writes;
  ``input_token_details`` holds ``cache_read``, ``cache_creation`` and the
  ``ephemeral_5m_input_tokens``/``ephemeral_1h_input_tokens`` of ``usage.cache_creation``.
  Since langchain-ai/langchain#35845 (March 2026) ``cache_creation`` is 0 when those two
  are set; before, it is the total. Streams carry the usage on the ``message_delta``
  chunk.
* langchain-openai, ``_create_usage_metadata`` in
  ``libs/partners/openai/langchain_openai/chat_models/base.py``: ``input_token_details``
  ``{"audio", "cache_read"}`` (``flex_cache_read``/``priority_cache_read`` and a
  ``flex``/``priority`` count for those service tiers) and ``output_token_details``
  ``{"audio", "reasoning"}``, copied from every Chat Completion, zeros included.
* langchain-google-genai, ``_response_to_result`` in
  ``libs/genai/langchain_google_genai/chat_models.py`` (langchain-ai/langchain-google):
  ``output_tokens`` is candidates plus thoughts, ``input_token_details`` only
  ``cache_read``, ``output_token_details`` ``reasoning``; no modality counts.
* llama-index-llms-anthropic (run-llama/llama_index,
  ``llama-index-integrations/llms/llama-index-llms-anthropic/llama_index/llms/anthropic/base.py``):
  ``AnthropicChatResponse``, a ``ChatResponse`` subclass, with ``raw=dict(response)``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

import rastir
from rastir.pricing import TokenUsage
from rastir.testing import capture_spans
from tests.adapters import objects

CLAUDE = "claude-sonnet-4-20250514"


def _llm_attrs(fn: Any) -> dict[str, Any]:
    with capture_spans() as spans:
        result = fn()
        if hasattr(result, "__next__"):
            list(result)
    return spans.one(kind="llm").attributes


def _returning(value: Any) -> dict[str, Any]:
    return _llm_attrs(rastir.llm(lambda: value))


def _price(provider: str, model: str, **counts: int) -> float:
    price = rastir.get_pricing().price(provider, model, TokenUsage(**counts))
    assert price is not None
    return price


# -- Claude through LangChain: 1-hour cache writes ------------------------------------------
# Anthropic's own usage: 100 uncached input tokens, 2_000 read from the cache, 10_000
# written (6_000 for an hour, 4_000 for five minutes), 100 output tokens.
CLAUDE_COUNTS: dict[str, int] = {
    "input_tokens": 100,
    "output_tokens": 100,
    "cache_read_tokens": 2_000,
    "cache_write_tokens": 10_000,
    "cache_write_1h_tokens": 6_000,
}


def _claude_usage(*, total_in_cache_creation: bool) -> dict[str, Any]:
    """langchain-anthropic's ``usage_metadata`` for the counts above."""
    return {
        "input_tokens": 100 + 2_000 + 10_000,
        "output_tokens": 100,
        "total_tokens": 12_200,
        "input_token_details": {
            "cache_read": 2_000,
            "cache_creation": 10_000 if total_in_cache_creation else 0,
            "ephemeral_5m_input_tokens": 4_000,
            "ephemeral_1h_input_tokens": 6_000,
        },
    }


def _claude(usage: dict[str, Any], cls: type = AIMessage) -> Any:
    return cls(
        content="Bonjour",
        usage_metadata=usage,
        response_metadata={
            "model_name": CLAUDE,
            "stop_reason": "end_turn",
            "model_provider": "anthropic",
        },
    )


@pytest.mark.parametrize("total_in_cache_creation", [True, False], ids=["before-35845", "after"])
def test_claude_one_hour_cache_writes_are_priced_at_their_rate(
    total_in_cache_creation: bool,
) -> None:
    attrs = _returning(_claude(_claude_usage(total_in_cache_creation=total_in_cache_creation)))
    assert attrs["gen_ai.usage.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 2_000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 10_000
    expected = _price("anthropic", CLAUDE, **CLAUDE_COUNTS)
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)
    # All 10_000 writes at the 5-minute rate would cost less.
    five_minutes = {**CLAUDE_COUNTS, "cache_write_1h_tokens": 0}
    assert expected > _price("anthropic", CLAUDE, **five_minutes)


@pytest.mark.parametrize(
    ("model_provider", "provider"),
    [("google_vertexai", "gcp.vertex_ai"), (None, None)],
    ids=["vertex", "no-provider"],
)
def test_claude_on_another_host_has_its_cache_counted_once(
    model_provider: str | None, provider: str | None
) -> None:
    # Claude on Vertex AI (or a message naming no provider): pricing reads the counts
    # in Anthropic's shape, so LangChain's inclusive input is turned back first.
    message = _claude(_claude_usage(total_in_cache_creation=False))
    if model_provider is None:
        del message.response_metadata["model_provider"]
    else:
        message.response_metadata["model_provider"] = model_provider
    attrs = _returning(message)
    assert attrs.get("gen_ai.provider.name") == provider
    assert attrs["gen_ai.usage.input_tokens"] == 100
    expected = _price(provider or "anthropic", CLAUDE, **CLAUDE_COUNTS)
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_a_model_other_than_claude_on_vertex_keeps_langchains_inclusive_input() -> None:
    message = AIMessage(
        content="Hi",
        usage_metadata={
            "input_tokens": 10_000,
            "output_tokens": 100,
            "total_tokens": 10_100,
            "input_token_details": {"cache_read": 8_000},
        },
        response_metadata={"model_name": "gemini-2.5-pro", "model_provider": "google_vertexai"},
    )
    attrs = _returning(message)
    assert attrs["gen_ai.usage.input_tokens"] == 10_000
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 8_000


def test_claude_without_one_hour_writes_is_priced_without_parts() -> None:
    usage = _claude_usage(total_in_cache_creation=True)
    usage["input_token_details"].update(ephemeral_5m_input_tokens=10_000)
    usage["input_token_details"].update(ephemeral_1h_input_tokens=0)
    attrs = _returning(_claude(usage))
    counts = {**CLAUDE_COUNTS, "cache_write_1h_tokens": 0}
    assert attrs["rastir.cost.usd"] == pytest.approx(_price("anthropic", CLAUDE, **counts))


def test_a_langchain_anthropic_stream_prices_its_one_hour_cache_writes() -> None:
    # langchain-anthropic: a chunk naming the model (message_start), content, then the
    # message_delta chunk with the whole usage.
    chunks = [
        AIMessageChunk(content="", response_metadata={"model_name": CLAUDE}),
        AIMessageChunk(content="Bon", response_metadata={"model_provider": "anthropic"}),
        AIMessageChunk(content="jour", response_metadata={"model_provider": "anthropic"}),
        _claude(_claude_usage(total_in_cache_creation=False), AIMessageChunk),
    ]

    @rastir.llm
    def stream() -> Any:
        yield from chunks

    attrs = _llm_attrs(stream)
    assert attrs["gen_ai.usage.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 10_000
    assert attrs["rastir.cost.usd"] == pytest.approx(_price("anthropic", CLAUDE, **CLAUDE_COUNTS))


# -- OpenAI's audio models through LangChain --------------------------------------------------
def _openai(model: str, usage: dict[str, Any] | None, cls: type = AIMessage) -> Any:
    return cls(
        content="",
        usage_metadata=usage,
        response_metadata={
            "model_name": model,
            "finish_reason": "stop",
            "model_provider": "openai",
        },
    )


def _openai_usage(
    prompt: int, completion: int, audio_in: int, audio_out: int, cached: int = 0
) -> dict[str, Any]:
    """langchain-openai's ``usage_metadata`` of a Chat Completion."""
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "input_token_details": {"audio": audio_in, "cache_read": cached},
        "output_token_details": {"audio": audio_out, "reasoning": 0},
    }


# genai-prices 0.2.5 lists audio prices for gpt-audio only; gpt-4o-audio-preview's
# audio costs its text rates there, and the parts must still add up.
@pytest.mark.parametrize("model", ["gpt-audio", "gpt-4o-audio-preview-2024-12-17"])
def test_audio_in_and_out_are_priced_at_the_audio_rates(model: str) -> None:
    attrs = _returning(_openai(model, _openai_usage(10_000, 5_000, 9_000, 4_500)))
    expected = _price(
        "openai",
        model,
        input_tokens=10_000,
        output_tokens=5_000,
        input_audio_tokens=9_000,
        output_audio_tokens=4_500,
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_gpt_audio_costs_more_than_its_text_rate() -> None:
    attrs = _returning(_openai("gpt-audio", _openai_usage(10_000, 5_000, 9_000, 4_500)))
    text_rate = _price("openai", "gpt-audio", input_tokens=10_000, output_tokens=5_000)
    assert attrs["rastir.cost.usd"] > 2 * text_rate


def test_audio_the_uncached_prompt_cannot_hold_is_taken_as_cached_audio() -> None:
    # 10_000 prompt tokens, 6_000 of them cached, 9_000 audio: at least 5_000 of the
    # audio came from the cache. Pricing the parts as they are would raise.
    attrs = _returning(_openai("gpt-audio", _openai_usage(10_000, 100, 9_000, 0, cached=6_000)))
    expected = _price(
        "openai",
        "gpt-audio",
        input_tokens=10_000,
        output_tokens=100,
        cache_read_tokens=6_000,
        input_audio_tokens=9_000,
        cache_audio_read_tokens=5_000,
    )
    assert "rastir.cost.unknown" not in attrs
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_a_streamed_audio_reply_prices_its_audio() -> None:
    # langchain-openai: content chunks, then the include_usage chunk.
    chunks = [
        _openai("gpt-audio", None, AIMessageChunk),
        AIMessageChunk(content="Hi", response_metadata={"model_provider": "openai"}),
        _openai("gpt-audio", _openai_usage(10_000, 5_000, 9_000, 4_500), AIMessageChunk),
    ]

    @rastir.llm
    def stream() -> Any:
        yield from chunks

    expected = _price(
        "openai",
        "gpt-audio",
        input_tokens=10_000,
        output_tokens=5_000,
        input_audio_tokens=9_000,
        output_audio_tokens=4_500,
    )
    assert _llm_attrs(stream)["rastir.cost.usd"] == pytest.approx(expected)


@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_a_service_tiers_cache_reads_are_priced_as_cache_reads(tier: str) -> None:
    usage = _openai_usage(10_000, 100, 0, 0)
    usage["input_token_details"] = {"audio": 0, f"{tier}_cache_read": 8_000, tier: 2_000}
    usage["output_token_details"] = {"audio": 0, f"{tier}_reasoning": 0, tier: 100}
    attrs = _returning(_openai("gpt-4o-2024-08-06", usage))
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 8_000
    expected = _price(
        "openai",
        "gpt-4o-2024-08-06",
        input_tokens=10_000,
        output_tokens=100,
        cache_read_tokens=8_000,
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


# -- Gemini through LangChain: thinking tokens are output already -----------------------------
def test_gemini_reasoning_is_inside_the_output_count_and_not_added_again() -> None:
    message = AIMessage(
        content="42",
        usage_metadata={
            "input_tokens": 1_000,
            "output_tokens": 100 + 900,  # candidates + thoughts
            "total_tokens": 2_000,
            "input_token_details": {"cache_read": 400},
            "output_token_details": {"reasoning": 900},
        },
        response_metadata={
            "model_name": "gemini-2.5-flash",
            "finish_reason": "STOP",
            "model_provider": "google_genai",
        },
    )
    attrs = _returning(message)
    assert attrs["gen_ai.usage.output_tokens"] == 1_000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 900  # shown, not added
    expected = _price(
        "gcp.gemini",
        "gemini-2.5-flash",
        input_tokens=1_000,
        output_tokens=1_000,
        cache_read_tokens=400,
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


def test_xai_reasoning_langchain_xai_already_added_is_not_added_again() -> None:
    # langchain-xai (ChatXAI._create_chat_result) adds the reasoning tokens to
    # output_tokens itself, as xAI's completion_tokens leave them out.
    message = AIMessage(
        content="42",
        usage_metadata={
            "input_tokens": 1_000,
            "output_tokens": 100 + 900,
            "total_tokens": 2_000,
            "input_token_details": {"audio": 0, "cache_read": 0},
            "output_token_details": {"audio": 0, "reasoning": 900},
        },
        response_metadata={
            "model_name": "grok-3-mini",
            "finish_reason": "stop",
            "model_provider": "xai",
        },
    )
    attrs = _returning(message)
    assert attrs["gen_ai.provider.name"] == "x_ai"
    assert attrs["gen_ai.usage.output_tokens"] == 1_000
    expected = _price("x_ai", "grok-3-mini", input_tokens=1_000, output_tokens=1_000)
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


# -- messages without parts are priced as before ---------------------------------------------
@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 1_200, "output_tokens": 80, "total_tokens": 1_280},
        {
            "input_tokens": 1_200,
            "output_tokens": 80,
            "total_tokens": 1_280,
            "input_token_details": {},
            "output_token_details": {},
        },
        _openai_usage(1_200, 80, 0, 0),
    ],
    ids=["no-details", "empty-details", "zero-details"],
)
def test_a_message_without_parts_is_priced_by_its_counts_alone(
    usage: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rastir.adapters import _apply

    _apply._load_pricing()
    called: list[str] = []

    def parts(*args: Any) -> Any:
        called.append(args[1])
        raise AssertionError("a message without parts took price_parts")

    monkeypatch.setattr(_apply, "_pricing_parts", parts)
    attrs = _returning(_openai("gpt-4o-mini-2024-07-18", usage))
    assert called == []
    expected = rastir.get_pricing().price_counts("openai", "gpt-4o-mini-2024-07-18", 1_200, 80)
    assert attrs["rastir.cost.usd"] == expected
    assert expected == _price(
        "openai", "gpt-4o-mini-2024-07-18", input_tokens=1_200, output_tokens=80
    )


# -- LangGraph: a real compiled graph ending in such a message --------------------------------
class ChunkedChatModel(BaseChatModel):
    """Streams the chunks it is given, the way an integration streams a reply (its
    usage on the last chunk); ``invoke`` answers with their sum."""

    chunks: list[AIMessageChunk]

    @property
    def _llm_type(self) -> str:
        return "chunked-fake"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        total = self.chunks[0]
        for chunk in self.chunks[1:]:
            total = total + chunk
        message = AIMessage(
            content=total.content,
            usage_metadata=total.usage_metadata,
            response_metadata=total.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        for chunk in self.chunks:
            yield ChatGenerationChunk(message=chunk)


def _graph(model: BaseChatModel) -> Any:
    def chatbot(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chatbot", chatbot)
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    return builder.compile(checkpointer=InMemorySaver())


def test_a_langgraph_state_and_snapshot_price_the_last_messages_parts() -> None:
    message = _claude(_claude_usage(total_in_cache_creation=True))
    app = _graph(GenericFakeChatModel(messages=iter([message])))
    config: Any = {"configurable": {"thread_id": "parts"}}
    expected = _price("anthropic", CLAUDE, **CLAUDE_COUNTS)

    state = app.invoke({"messages": [HumanMessage("hi")]}, config)
    assert _returning(state)["rastir.cost.usd"] == pytest.approx(expected)
    assert _returning(app.get_state(config))["rastir.cost.usd"] == pytest.approx(expected)


def test_a_langgraph_message_stream_prices_the_parts_of_its_chunks() -> None:
    chunks = [
        AIMessageChunk(content="Bon", response_metadata={"model_provider": "openai"}),
        AIMessageChunk(content="jour", response_metadata={"model_provider": "openai"}),
        _openai("gpt-audio", _openai_usage(10_000, 5_000, 9_000, 4_500), AIMessageChunk),
    ]
    app = _graph(ChunkedChatModel(chunks=chunks))

    @rastir.llm
    def stream() -> Any:
        yield from app.stream(
            {"messages": [HumanMessage("hi")]},
            {"configurable": {"thread_id": "parts-stream"}},
            stream_mode="messages",
        )

    attrs = _llm_attrs(stream)
    assert attrs["langgraph_node"] == "chatbot"
    expected = _price(
        "openai",
        "gpt-audio",
        input_tokens=10_000,
        output_tokens=5_000,
        input_audio_tokens=9_000,
        output_audio_tokens=4_500,
    )
    assert attrs["rastir.cost.usd"] == pytest.approx(expected)


# -- LlamaIndex ------------------------------------------------------------------------------
def test_llamaindex_unwrap_keeps_the_audio_parts_of_the_raw_chat_completion() -> None:
    from llama_index.core.llms import ChatMessage, ChatResponse

    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 5_000,
        "total_tokens": 15_000,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 9_000},
        "completion_tokens_details": {"audio_tokens": 4_500},
    }
    response = ChatResponse(
        message=ChatMessage(role="assistant", content=""),
        raw=objects.openai_chat(model="gpt-audio", usage=usage),
        additional_kwargs={"prompt_tokens": 10_000, "completion_tokens": 5_000},
    )
    expected = _price(
        "openai",
        "gpt-audio",
        input_tokens=10_000,
        output_tokens=5_000,
        input_audio_tokens=9_000,
        output_audio_tokens=4_500,
    )
    assert _returning(response)["rastir.cost.usd"] == pytest.approx(expected)


ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": CLAUDE,
    "content": [{"type": "text", "text": "Bonjour"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 100,
        "cache_read_input_tokens": 2_000,
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 6_000, "ephemeral_5m_input_tokens": 4_000},
    },
}


def _anthropic_chat_response_class() -> type:
    """llama-index-llms-anthropic's ``AnthropicChatResponse`` (not installed here): a
    ``ChatResponse`` subclass with a ``citations`` field."""
    from llama_index.core.llms import ChatResponse

    namespace = {
        "__module__": "llama_index.llms.anthropic.base",
        "__annotations__": {"citations": list[dict[str, Any]]},
        "citations": [],
    }
    return type("AnthropicChatResponse", (ChatResponse,), namespace)


@pytest.mark.parametrize("subclass", [False, True], ids=["ChatResponse", "AnthropicChatResponse"])
@pytest.mark.parametrize("dumped", [False, True], ids=["dict(message)", "model_dump"])
def test_llamaindex_anthropic_raw_dict_prices_cache_and_one_hour_writes(
    subclass: bool, dumped: bool
) -> None:
    from anthropic.types import Message
    from llama_index.core.llms import ChatMessage, ChatResponse

    message = Message.model_validate(ANTHROPIC_MESSAGE)
    raw = message.model_dump() if dumped else dict(message)
    cls = _anthropic_chat_response_class() if subclass else ChatResponse
    response = cls(message=ChatMessage(role="assistant", content="Bonjour"), raw=raw)
    attrs = _returning(response)
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.response.model"] == CLAUDE
    assert attrs["gen_ai.usage.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 2_000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 10_000
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["rastir.cost.usd"] == pytest.approx(_price("anthropic", CLAUDE, **CLAUDE_COUNTS))


def test_llamaindex_subclass_stream_chunks_are_read_as_llamaindex_chunks() -> None:
    from anthropic.types import RawContentBlockDeltaEvent
    from llama_index.core.llms import ChatMessage

    rastir.configure(push_url=None, capture_content=True)
    cls = _anthropic_chat_response_class()
    chunks = []
    for text in ("Bon", "jour"):
        event = RawContentBlockDeltaEvent.model_validate(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
        )
        message = ChatMessage(role="assistant", content=text)
        chunks.append(cls(message=message, delta=text, raw=dict(event)))

    @rastir.llm
    def stream() -> Any:
        yield from chunks

    attrs = _llm_attrs(stream)
    assert attrs["rastir.stream.chunks"] == 2
    assert "Bonjour" in attrs["gen_ai.output.messages"]  # the chunks' delta texts
