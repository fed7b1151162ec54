"""The registry: custom adapters, capability flags, priorities, per-class caching and
failure containment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import rastir
from rastir.adapters import (
    FRAMEWORK,
    AdapterRegistry,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    get_registry,
    register_adapter,
    unregister_adapter,
)
from rastir.adapters._builtin import builtin_adapters
from rastir.testing import capture_spans
from tests.adapters import objects


class AcmeReply:
    """A response object of an in-house model gateway."""

    def __init__(self, model: str, used: tuple[int, int], done: str) -> None:
        self.model_used = model
        self.used = used
        self.done = done


class AcmeAdapter(BaseAdapter):
    name = "acme"
    priority = 160
    supports_streaming = True
    type_checks = 0

    def match_type(self, cls: type) -> bool | None:
        AcmeAdapter.type_checks += 1
        return cls is AcmeReply

    def transform(self, result: Any) -> AdapterResult:
        return AdapterResult(
            model=result.model_used,
            provider="acme",
            tokens_input=result.used[0],
            tokens_output=result.used[1],
            finish_reason=result.done,
            extra_attributes={"acme.gateway": "eu-1"},
        )

    def match_stream_type(self, cls: type) -> bool | None:
        return cls is AcmeReply

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        return TokenDelta(
            tokens_output=chunk.used[1], model=chunk.model_used, content=True, cumulative=False
        )


@pytest.fixture
def acme() -> Iterator[AcmeAdapter]:
    adapter = register_adapter(AcmeAdapter())
    assert isinstance(adapter, AcmeAdapter)
    yield adapter
    assert unregister_adapter("acme")


def test_the_fifteen_builtin_adapters_in_priority_order() -> None:
    names = [a.name for a in get_registry().adapters if a.name != "acme"]
    assert names == [
        "langgraph",
        "langchain",
        "crewai",
        "llamaindex",
        "azure_openai",
        "groq",
        "openai",
        "anthropic",
        "gemini",
        "cohere",
        "mistral",
        "bedrock",
        "retrieval",
        "tool",
        "fallback",
    ]
    assert len(builtin_adapters()) == 15


def test_a_custom_adapter_reads_its_responses_and_streams(acme: AcmeAdapter) -> None:
    @rastir.llm
    def ask() -> AcmeReply:
        return AcmeReply("acme-7b", (10, 4), "done")

    @rastir.llm
    def stream() -> Iterator[AcmeReply]:
        yield AcmeReply("acme-7b", (0, 2), "")
        yield AcmeReply("acme-7b", (0, 3), "")

    before = AcmeAdapter.type_checks
    with capture_spans() as spans:
        for _ in range(5):
            ask()
        list(stream())
    # The class was examined once for the five responses: the answer is cached.
    assert AcmeAdapter.type_checks - before == 1
    attrs = spans.find("ask")[0].attributes
    assert attrs["gen_ai.response.model"] == "acme-7b"
    assert attrs["gen_ai.provider.name"] == "acme"
    assert attrs["gen_ai.usage.input_tokens"] == 10
    assert attrs["gen_ai.response.finish_reasons"] == ("done",)
    assert attrs["acme.gateway"] == "eu-1"
    assert attrs["rastir.cost.unknown"] is True
    streamed = spans.one("stream").attributes
    assert streamed["gen_ai.usage.output_tokens"] == 5
    assert streamed["rastir.ttft_ms"] > 0


def test_registration_checks_kind_priority_and_names() -> None:
    reg = AdapterRegistry()

    class Bad(BaseAdapter):
        name = "bad"
        kind = FRAMEWORK
        priority = 150

    with pytest.raises(ValueError, match=r"200\.\.300"):
        reg.register(Bad())
    Bad.kind = "plugin"
    with pytest.raises(ValueError, match="kind"):
        reg.register(Bad())
    with pytest.raises(TypeError):
        reg.register(object())  # type: ignore[arg-type]

    class Good(BaseAdapter):
        name = "good"

    reg.register(Good())
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Good(), replace=False)
    reg.register(Good())
    assert [a.name for a in reg.adapters] == ["good"]
    assert reg.unregister("good")
    assert not reg.unregister("good")


def test_capability_flags_are_honoured() -> None:
    reg = AdapterRegistry()
    calls: list[str] = []

    class RequestOnly(BaseAdapter):
        name = "request-only"
        supports_request = True
        supports_response = False

        def match_type(self, cls: type) -> bool | None:
            calls.append("match_type")
            return True

        def match_request_type(self, cls: type) -> bool:
            return cls is AcmeReply

        def extract_request_object(self, obj: Any) -> AdapterResult | None:
            return AdapterResult(model=obj.model_used)

    reg.register(RequestOnly())
    assert reg.response(objects.openai_chat()) == []
    assert calls == []
    assert reg.stream_delta(object()) is None
    found = reg.request((AcmeReply("m-1", (0, 0), ""),), {})
    assert [r.model for r in found] == ["m-1"]


def test_framework_unwrapping_is_repeated_and_bounded() -> None:
    reg = AdapterRegistry()

    class Box:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

    class Unbox(BaseAdapter):
        name = "unbox"
        kind = FRAMEWORK
        priority = 220

        def match_type(self, cls: type) -> bool | None:
            return cls is Box

        def transform(self, result: Any) -> AdapterResult:
            return AdapterResult(unwrapped_result=result.inner)

    reg.register(Unbox())
    for adapter in builtin_adapters():
        if adapter.kind != FRAMEWORK:
            reg.register(adapter)
    chain = reg.response(Box(Box(Box(objects.openai_chat()))))
    assert len(chain) == 4
    assert chain[-1].model == "gpt-4o-2024-08-06"

    loop = Box(None)
    loop.inner = Box(loop)  # a cycle never hangs the call
    assert len(reg.response(loop)) == 8 + 1  # eight unwrap rounds, then the fallback


def test_a_failing_adapter_never_breaks_the_call() -> None:
    class Broken(BaseAdapter):
        name = "broken"
        priority = 199
        supports_request = True
        supports_streaming = True

        def match_type(self, cls: type) -> bool | None:
            return cls is AcmeReply

        def transform(self, result: Any) -> AdapterResult:
            raise RuntimeError("adapter bug")

        def match_request_type(self, cls: type) -> bool:
            return cls is AcmeReply

        def extract_request_object(self, obj: Any) -> AdapterResult | None:
            raise RuntimeError("adapter bug")

        def match_stream_type(self, cls: type) -> bool | None:
            return cls is AcmeReply

        def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
            raise RuntimeError("adapter bug")

    register_adapter(Broken())
    try:
        reply = AcmeReply("x", (1, 1), "done")

        @rastir.llm(model="m")
        def ask(r: AcmeReply) -> AcmeReply:
            return r

        @rastir.llm(model="m")
        def stream(r: AcmeReply) -> Iterator[AcmeReply]:
            yield r

        with capture_spans() as spans:
            assert ask(reply) is reply
            assert list(stream(reply)) == [reply]
        assert spans.one("ask").status == "ok"
        assert spans.one("stream").attributes["rastir.stream.chunks"] == 1
    finally:
        unregister_adapter("broken")


def test_value_dependent_adapters_are_asked_per_object() -> None:
    # Dicts: a LangGraph state, a Bedrock response, or anything else, by content.
    reg = get_registry()
    assert reg.framework_for({"messages": []}) is None
    assert reg.framework_for({"other": 1}) is None
    bedrock = reg.provider_for(objects.bedrock_converse())
    assert bedrock is not None
    assert bedrock.name == "bedrock"
    fallback = reg.provider_for({"model": "x"})
    assert fallback is not None
    assert fallback.name == "fallback"


def test_fallback_reads_common_shapes_without_naming_a_provider() -> None:
    @rastir.llm
    def call() -> dict[str, Any]:
        return {
            "model": "local-llama",
            "usage": {"prompt_tokens": 5, "completion_tokens": 6},
            "choices": [{"finish_reason": "stop"}],
        }

    with capture_spans() as spans:
        call()
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.response.model"] == "local-llama"
    assert attrs["gen_ai.usage.input_tokens"] == 5
    assert attrs["gen_ai.usage.output_tokens"] == 6
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.provider.name" not in attrs


def test_retrieval_and_tool_results() -> None:
    from langchain_core.documents import Document
    from langchain_core.messages import ToolMessage

    @rastir.llm
    def docs() -> list[Document]:
        return [Document("a"), Document("b"), Document("c")]

    @rastir.llm
    def tool_result() -> ToolMessage:
        return ToolMessage("boom", tool_call_id="call-1", name="search", status="error")

    with capture_spans() as spans:
        docs()
        tool_result()
    assert spans.one("docs").attributes["rastir.retrieval.documents"] == 3
    tool = spans.one("tool_result").attributes
    assert tool["gen_ai.tool.name"] == "search"
    assert tool["gen_ai.tool.call.id"] == "call-1"
    assert tool["rastir.tool.error"] is True


def test_adapters_import_no_provider_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rastir\n"
        "from rastir.adapters import get_registry, apply_response\n"
        "get_registry()\n"
        "sdks = ['openai', 'anthropic', 'groq', 'mistralai', 'cohere', 'google.genai',\n"
        "        'botocore', 'langchain_core', 'langgraph', 'llama_index', 'crewai']\n"
        "print([m for m in sdks if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_rastir_loads_no_adapter() -> None:
    import subprocess
    import sys

    code = "import sys, rastir\nprint(sorted(m for m in sys.modules if 'adapters' in m))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _SlowReply:
    def __init__(self) -> None:
        self.model = "slow-model"


class _SlowAdapter(BaseAdapter):
    """Records when the response phase starts: after the call's own time has ended."""

    name = "slow-reader"
    kind = "provider"
    priority = 190

    def __init__(self) -> None:
        self.started_at: list[int] = []

    def match_type(self, cls: type) -> bool | None:
        return cls is _SlowReply

    def transform(self, result: Any) -> AdapterResult:
        self.started_at.append(time.perf_counter_ns())
        time.sleep(0.05)  # slow work after the call (a price table loading, say)
        return AdapterResult(model=result.model, provider="acme")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_llm_spans_duration_is_the_calls_own_not_the_response_phases(is_async: bool) -> None:
    adapter = _SlowAdapter()
    register_adapter(adapter)
    try:
        if is_async:

            @rastir.llm
            async def acall() -> _SlowReply:
                return _SlowReply()

            def call() -> None:
                asyncio.run(acall())
        else:

            @rastir.llm
            def call() -> _SlowReply:  # type: ignore[misc]
                return _SlowReply()

        with capture_spans() as spans:
            before = time.perf_counter_ns()
            call()
        span = spans.one(kind="llm")
        assert span.attributes["gen_ai.response.model"] == "slow-model"
        # The span started after `before` and ended before the adapter ran: its
        # duration cannot exceed that interval, whatever the machine's speed.
        (adapter_start,) = adapter.started_at
        assert 0 < span.duration_ns <= adapter_start - before
    finally:
        unregister_adapter("slow-reader")
