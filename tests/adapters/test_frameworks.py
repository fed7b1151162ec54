"""Framework adapters: LangChain, LangGraph (a real compiled graph), LlamaIndex and
CrewAI, unwrapping down to the provider's numbers."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

import rastir
from rastir.testing import capture_spans
from tests.adapters import crewai_fake, objects


def _ai(**meta: Any) -> AIMessage:
    return AIMessage(
        content="Paris",
        usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        response_metadata={
            "model_name": "gpt-4o-mini-2024-07-18",
            "finish_reason": "stop",
            "model_provider": "openai",
            **meta,
        },
    )


class NamedFakeChatModel(GenericFakeChatModel):
    """A user's chat model: a LangChain subclass that names its model."""

    model_name: str = "gpt-4o-mini"


def _one_llm(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with capture_spans() as spans:
        fn(*args, **kwargs)
    return spans.one(kind="llm").attributes


def test_langchain_ai_message_usage_and_response_metadata() -> None:
    attrs = _one_llm(rastir.llm(lambda: _ai()))
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["rastir.cost.usd"] > 0


def test_langchain_anthropic_counts_are_turned_back_into_anthropic_semantics() -> None:
    message = AIMessage(
        content="Bonjour",
        usage_metadata={
            "input_tokens": 2600,  # LangChain: 100 fresh + 2000 cache read + 500 written
            "output_tokens": 20,
            "total_tokens": 2620,
            "input_token_details": {"cache_read": 2000, "cache_creation": 500},
        },
        response_metadata={
            "model": "claude-sonnet-4-20250514",
            "stop_reason": "end_turn",
            "model_provider": "anthropic",
        },
    )
    attrs = _one_llm(rastir.llm(lambda: message))
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.response.model"] == "claude-sonnet-4-20250514"
    assert attrs["gen_ai.usage.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 2000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 500
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_langchain_chat_result_unwraps_to_its_message() -> None:
    result = ChatResult(generations=[ChatGeneration(message=_ai())], llm_output={})
    attrs = _one_llm(rastir.llm(lambda: result))
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.usage.output_tokens"] == 3


def test_langchain_model_object_in_arguments_survives_a_failure() -> None:
    model = NamedFakeChatModel(messages=iter([]))

    @rastir.llm
    def ask(chat_model: Any, question: str) -> Any:
        raise TimeoutError("upstream timed out")

    with capture_spans() as spans, pytest.raises(TimeoutError):
        ask(model, "hi")
    span = spans.one(kind="llm")
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert span.status == "error"
    assert span.error is not None
    assert span.error["type"] == "timeout"


def _graph(model: Any) -> Any:
    def chatbot(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chatbot", chatbot)
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    return builder.compile(checkpointer=InMemorySaver())


def test_langgraph_state_of_a_real_compiled_graph() -> None:
    app = _graph(GenericFakeChatModel(messages=iter([_ai()])))
    config: Any = {"configurable": {"thread_id": "t1"}}

    @rastir.llm
    def run(question: str) -> Any:
        return app.invoke({"messages": [HumanMessage(question)]}, config)

    attrs = _one_llm(run, "capital of France?")
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["langgraph_message_count"] == 2
    assert attrs["langgraph_ai_message_count"] == 1
    assert attrs["langgraph_tool_message_count"] == 0

    snapshot = app.get_state(config)
    assert type(snapshot).__name__ == "StateSnapshot"
    attrs = _one_llm(rastir.llm(lambda: snapshot))
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["langgraph_step"] == 1
    assert attrs["langgraph_source"] == "loop"
    assert attrs["langgraph_next_nodes"] == []
    assert attrs["langgraph_task_count"] == 0


def test_langgraph_counts_tool_messages() -> None:
    state = {
        "messages": [
            HumanMessage("weather?"),
            AIMessage(content="", tool_calls=[{"name": "w", "args": {}, "id": "c1"}]),
            ToolMessage(content="sunny", tool_call_id="c1"),
            _ai(),
        ]
    }
    attrs = _one_llm(rastir.llm(lambda: state))
    assert attrs["langgraph_message_count"] == 4
    assert attrs["langgraph_ai_message_count"] == 2
    assert attrs["langgraph_tool_message_count"] == 1
    assert attrs["gen_ai.usage.output_tokens"] == 3


def test_langgraph_compiled_graph_argument_names_the_model_of_its_node() -> None:
    app = _graph(NamedFakeChatModel(messages=iter([_ai()])))

    @rastir.llm
    def run(graph: Any) -> Any:
        raise ConnectionError("network down")

    with capture_spans() as spans, pytest.raises(ConnectionError):
        run(app)
    assert spans.one(kind="llm").attributes["gen_ai.request.model"] == "gpt-4o-mini"


def test_langgraph_message_stream_records_ttft_and_node() -> None:
    app = _graph(GenericFakeChatModel(messages=iter([AIMessage(content="Hello there friend")])))

    @rastir.llm
    def stream(question: str) -> Any:
        yield from app.stream(
            {"messages": [HumanMessage(question)]},
            {"configurable": {"thread_id": "s1"}},
            stream_mode="messages",
        )

    with capture_spans() as spans:
        items = list(stream("hi"))
    assert items
    attrs = spans.one(kind="llm").attributes
    assert attrs["langgraph_node"] == "chatbot"
    assert attrs["rastir.ttft_ms"] > 0
    assert attrs["rastir.stream.chunks"] == len(items)
    assert "rastir.stream.partial" not in attrs


def test_llamaindex_chat_response_unwraps_to_the_raw_provider_response() -> None:
    from llama_index.core.llms import ChatMessage, ChatResponse

    response = ChatResponse(
        message=ChatMessage(role="assistant", content="Paris."), raw=objects.openai_chat()
    )
    attrs = _one_llm(rastir.llm(lambda: response))
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 34
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


def test_llamaindex_llm_argument_and_raw_dict() -> None:
    from llama_index.core.llms import ChatMessage, ChatResponse, MockLLM

    class ConverseLLM(MockLLM):
        model: str = "us.anthropic.claude-3-5-haiku-20241022-v1:0"

    response = ChatResponse(
        message=ChatMessage(role="assistant", content="Hi"), raw=objects.bedrock_converse()
    )

    @rastir.llm
    def chat(llm: Any) -> Any:
        return response

    attrs = _one_llm(chat, ConverseLLM(max_tokens=None))
    assert attrs["gen_ai.request.model"] == "claude-3-5-haiku-20241022-v1:0"
    assert attrs["aws.bedrock.model_id"] == "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.usage.input_tokens"] == 30
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)


def _crew() -> crewai_fake.Crew:
    usage = crewai_fake.UsageMetrics(
        total_tokens=1500, prompt_tokens=1200, completion_tokens=300, successful_requests=4
    )
    output = crewai_fake.CrewOutput(
        raw="Tokyo, about 14 million people",
        tasks_output=[
            crewai_fake.TaskOutput(description="Find capital", agent="Geography", raw="Tokyo"),
            crewai_fake.TaskOutput(description="Find population", agent="Demo", raw="14M"),
        ],
        token_usage=usage,
    )
    llm = crewai_fake.LLM(model="gemini/gemini-2.5-flash", api_key="gm-secret-value")
    return crewai_fake.Crew(agents=[crewai_fake.Agent("Geography", llm)], result=output)


def test_crewai_crew_output_and_crew_argument() -> None:
    crew = _crew()

    @rastir.llm
    def invoke(c: Any) -> Any:
        return c.kickoff()

    attrs = _one_llm(invoke, crew)
    assert attrs["gen_ai.request.model"] == "gemini-2.5-flash"
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["crewai_total_tokens"] == 1500
    assert attrs["crewai_successful_requests"] == 4
    assert attrs["crewai_task_count"] == 2
    assert attrs["crewai_has_json_output"] is False
    assert "gm-secret-value" not in repr(attrs)


def test_crewai_task_output() -> None:
    task = crewai_fake.TaskOutput(description="Find capital", agent="Geography", raw="Tokyo")
    attrs = _one_llm(rastir.llm(lambda: task))
    assert attrs["crewai_agent"] == "Geography"
    assert attrs["crewai_task_description"] == "Find capital"
    assert attrs["crewai_raw_length"] == 5


def test_crewai_streaming_output_records_ttft_and_final_usage() -> None:
    crew = _crew()

    @rastir.llm
    def invoke(c: Any) -> Any:
        return c.kickoff_streaming(["To", "kyo"])

    with capture_spans() as spans:
        stream = invoke(crew)
        assert not spans.find(kind="llm")  # open until the stream ends
        assert [chunk.content for chunk in stream] == ["To", "kyo"]
    attrs = spans.one(kind="llm").attributes
    assert attrs["rastir.ttft_ms"] > 0
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["crewai_agent"] == "Geography"
    assert attrs["gen_ai.request.model"] == "gemini-2.5-flash"


def _usage(tokens_in: int, tokens_out: int) -> Any:
    """A chunk's ``usage_metadata`` (LangChain types it as a TypedDict)."""
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def test_langchain_stream_chunks_add_up() -> None:
    chunks = [
        AIMessageChunk(
            content="",
            usage_metadata=_usage(40, 0),
            response_metadata={"model_provider": "anthropic"},
        ),
        AIMessageChunk(content="Bon"),
        AIMessageChunk(content="jour"),
        AIMessageChunk(
            content="",
            usage_metadata=_usage(0, 7),
            response_metadata={"stop_reason": "end_turn", "model_name": "claude-3-5-haiku-latest"},
        ),
    ]

    @rastir.llm
    def stream() -> Any:
        yield from chunks

    with capture_spans() as spans:
        assert len(list(stream())) == 4
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.usage.input_tokens"] == 40
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.response.model"] == "claude-3-5-haiku-latest"
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
