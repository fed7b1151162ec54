"""The decorators' contract: shapes of functions, labels, errors, and the disabled path."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

import rastir
from rastir.export._pipeline import PIPELINE
from rastir.testing import CapturedSpans, capture_spans


@pytest.mark.parametrize(
    ("decorator", "kind"),
    [
        (rastir.trace, "trace"),
        (rastir.agent, "agent"),
        (rastir.llm, "llm"),
        (rastir.tool, "tool"),
        (rastir.retrieval, "retrieval"),
        (rastir.metric, "custom"),
    ],
)
def test_every_decorator_works_bare_and_with_parentheses(decorator: Any, kind: str) -> None:
    @decorator  # type: ignore[untyped-decorator]
    def bare(x: int) -> int:
        return x + 1

    @decorator()  # type: ignore[untyped-decorator]
    def called(x: int) -> int:
        return x + 2

    with capture_spans() as spans:
        assert bare(1) == 2
        assert called(1) == 3
    assert [s.kind for s in spans] == [kind, kind]
    assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in spans)
    assert all(s.duration_ns >= 0 and s.end_time_unix_nano >= s.start_time_unix_nano for s in spans)


def test_wrapping_preserves_name_doc_signature_and_coroutine_nature() -> None:
    async def fetch(url: str, *, retries: int = 3) -> bytes:
        """Fetch a URL."""
        return b""

    def gen(n: int) -> Iterator[int]:
        yield n

    async def agen(n: int) -> AsyncIterator[int]:
        yield n

    wrapped = rastir.tool(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch a URL."
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.isgeneratorfunction(rastir.trace(gen))
    assert inspect.isasyncgenfunction(rastir.trace(agen))
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]


def test_names_default_to_the_function_and_explicit_names_win() -> None:
    @rastir.agent
    def planner() -> None: ...

    @rastir.agent("named")
    def other() -> None: ...

    @rastir.tool(tool_name="search_web")
    def search() -> None: ...

    @rastir.trace(name="custom-name")
    def traced() -> None: ...

    with capture_spans() as spans:
        planner()
        other()
        search()
        traced()
    assert [s.name for s in spans] == ["planner", "named", "search_web", "custom-name"]
    assert spans.one("planner").attributes["gen_ai.agent.name"] == "planner"
    assert spans.one("search_web").attributes["gen_ai.tool.name"] == "search_web"
    assert spans.one("search_web").attributes["gen_ai.operation.name"] == "execute_tool"


def test_methods_static_and_class_methods_are_traced() -> None:
    class Bot:
        prefix = "p"

        @rastir.agent(agent_name="bot")
        def run(self, x: int) -> str:
            return f"{self.prefix}{x}"

        @rastir.tool
        @staticmethod
        def helper(x: int) -> int:
            return x * 2

        @rastir.trace
        @classmethod
        def build(cls) -> str:
            return cls.prefix

    with capture_spans() as spans:
        assert Bot().run(1) == "p1"
        assert Bot.helper(2) == 4
        assert Bot().helper(3) == 6
        assert Bot.build() == "p"
    assert [s.kind for s in spans] == ["agent", "tool", "tool", "trace"]


@pytest.mark.anyio
async def test_async_functions_generators_and_async_generators_are_spans() -> None:
    @rastir.trace("a")
    async def a() -> int:
        await asyncio.sleep(0)
        return 1

    @rastir.trace("g")
    def g() -> Iterator[int]:
        yield 1
        yield 2

    @rastir.trace("ag")
    async def ag() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0)
        yield 2

    with capture_spans() as spans:
        assert await a() == 1
        assert list(g()) == [1, 2]
        assert [x async for x in ag()] == [1, 2]
    assert [s.name for s in spans] == ["a", "g", "ag"]
    assert spans.one("g").attributes["rastir.generator.items"] == 2
    assert spans.one("ag").attributes["rastir.generator.items"] == 2


def test_generator_return_value_send_and_throw_pass_through() -> None:
    @rastir.trace("echo")
    def echo() -> Generator[int, int | None, None]:
        total = 0
        while True:
            try:
                got = yield total
            except ValueError:
                total = -1
                continue
            if got is None:
                return
            total += got

    with capture_spans() as spans:
        gen = echo()
        assert next(gen) == 0
        assert gen.send(5) == 5
        assert gen.throw(ValueError("x")) == -1
        with pytest.raises(StopIteration):
            gen.send(None)
    assert spans.one("echo").status == "ok"


def test_the_users_exception_is_re_raised_unchanged_and_recorded() -> None:
    original = ConnectionError("upstream down")

    @rastir.tool
    def flaky() -> None:
        raise original

    with capture_spans() as spans, pytest.raises(ConnectionError) as info:
        flaky()
    assert info.value is original
    span = spans.one("flaky")
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "ConnectionError"
    assert span.error["message"] == "upstream down"
    assert span.error["type"] in ("provider_error", "unknown")


def test_generator_errors_are_recorded_and_re_raised() -> None:
    @rastir.trace("bad")
    def bad() -> Iterator[int]:
        yield 1
        raise TimeoutError("slow")

    with capture_spans() as spans, pytest.raises(TimeoutError):
        list(bad())
    assert spans.one("bad").error == {
        "type": "timeout",
        "exception_type": "TimeoutError",
        "message": "slow",
    }


def test_llm_reads_model_tokens_and_finish_reason_from_a_dict_response() -> None:
    @rastir.llm(provider="openai")
    def chat(messages: list[str], model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        }

    @rastir.agent(agent_name="helper")
    def run() -> None:
        chat(["hello"], model="gpt-4o")

    with capture_spans() as spans:
        run()
    attrs = spans.one(kind="llm").attributes
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.agent.name"] == "helper"
    assert attrs["gen_ai.operation.name"] == "chat"


def test_llm_sets_model_and_provider_for_spans_inside_it() -> None:
    seen: dict[str, str | None] = {}

    @rastir.tool
    def inner() -> None:
        seen["model"] = rastir.current_model()
        seen["provider"] = rastir.current_provider()

    @rastir.llm(model="claude-x", provider="anthropic")
    def call() -> None:
        inner()

    call()
    assert seen == {"model": "claude-x", "provider": "anthropic"}
    assert rastir.current_model() is None


def test_llm_request_model_survives_an_exception() -> None:
    @rastir.llm
    def call(model: str) -> None:
        raise TimeoutError("deadline")

    with capture_spans() as spans, pytest.raises(TimeoutError):
        call(model="gpt-4o-mini")
    span = spans.one(kind="llm")
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert span.error is not None
    assert span.error["type"] == "timeout"


def test_tool_arguments_are_recorded_only_with_capture_content() -> None:
    @rastir.tool
    def search(query: str) -> list[str]:
        return []

    with capture_spans() as spans:
        search("secret prompt")
    assert "gen_ai.tool.call.arguments" not in spans.one("search").attributes

    rastir.configure(capture_content=True)
    with capture_spans() as spans:
        search("visible")
    assert "visible" in str(spans.one("search").attributes["gen_ai.tool.call.arguments"])


def test_retrieval_counts_returned_documents() -> None:
    @rastir.retrieval
    def lookup(q: str) -> list[str]:
        return ["a", "b", "c"]

    @rastir.agent(agent_name="rag")
    def run() -> None:
        lookup("x")

    with capture_spans() as spans:
        run()
    attrs = spans.one(kind="retrieval").attributes
    assert attrs["rastir.retrieval.documents"] == 3
    assert attrs["gen_ai.agent.name"] == "rag"


def test_metric_spans_carry_the_metric_name() -> None:
    @rastir.metric(name="embeddings_refresh")
    def refresh() -> None: ...

    with capture_spans() as spans:
        refresh()
    assert spans.one().attributes["rastir.metric.name"] == "embeddings_refresh"


def test_manual_span_context_manager_records_errors() -> None:
    with capture_spans() as spans:
        with rastir.span("parse", attributes={"size": 3}) as s:
            assert s is not None
            s.set_attribute("ok", True)
        with pytest.raises(ValueError), rastir.span("fail"):
            raise ValueError("bad")
    assert spans.one("parse").attributes == {"size": 3, "ok": True}
    assert spans.one("fail").status == "error"


def test_disabled_rastir_calls_straight_through_and_records_nothing() -> None:
    @rastir.agent
    def run() -> int:
        return 42

    @rastir.trace
    def gen() -> Iterator[int]:
        yield 1

    rastir.configure(enabled=False)
    with pytest.raises(TypeError, match="expected a function"):
        rastir.trace(name="x")(5)  # type: ignore[type-var]
    with capture_spans() as spans:
        assert run() == 42
        assert list(gen()) == [1]
        with rastir.span("x") as s:
            # A span the block can use as usual, which goes nowhere.
            s.set_attribute("size", 3)
            s.add_event("step")
            assert rastir.current_span() is None
    assert list(spans) == []


def test_calls_before_configure_work_and_the_queue_stays_bounded() -> None:
    @rastir.trace
    def early() -> int:
        return 1

    PIPELINE.queueing = True  # the state of a fresh process
    PIPELINE.max_queue = 100
    try:
        for _ in range(1000):
            assert early() == 1
        assert len(PIPELINE.queue) == 100
        assert PIPELINE.take_dropped() == 900
    finally:
        PIPELINE.max_queue = 8192


@pytest.mark.parametrize(
    "bad",
    [
        lambda: rastir.trace(kind="nope"),
        lambda: rastir.agent(agent_name=""),
        lambda: rastir.llm(model=""),
        lambda: rastir.span("x", kind="nope").__enter__(),
    ],
)
def test_bad_decorator_arguments_raise_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        bad()


def test_a_broken_sink_does_not_break_the_application() -> None:
    def broken(span: Any) -> None:
        raise RuntimeError("sink bug")

    @rastir.trace
    def fine() -> int:
        return 5

    PIPELINE.add_sink(broken)
    try:
        with capture_spans() as spans:
            assert fine() == 5
    finally:
        PIPELINE.remove_sink(broken)
    assert len(spans) == 1


def test_rastir_spans_fixture_is_registered(rastir_spans: CapturedSpans) -> None:
    @rastir.trace("fixture")
    def f() -> None: ...

    f()
    assert rastir_spans.one("fixture").kind == "trace"


def test_constant_attributes_reach_every_kind_of_function_and_each_span_owns_its_copy() -> None:
    constant: dict[str, str | int] = {"app.tier": "gold", "app.shard": 3}

    @rastir.trace(attributes=constant)
    def plain() -> None:
        span = rastir.current_span()
        assert span is not None
        span.set_attribute("app.tier", "changed")  # this span's copy only

    @rastir.trace(attributes=constant)
    async def coroutine() -> None:
        return None

    @rastir.trace(attributes=constant)
    def generator() -> Iterator[int]:
        yield 1

    with capture_spans() as spans:
        plain()
        plain()
        asyncio.run(coroutine())
        assert list(generator()) == [1]
    first, second, from_async, from_gen = spans
    assert first.attributes == second.attributes == {"app.tier": "changed", "app.shard": 3}
    assert first.attributes is not second.attributes
    for span in (from_async, from_gen):
        assert span.attributes["app.tier"] == "gold"
        assert span.attributes["app.shard"] == 3
    assert constant == {"app.tier": "gold", "app.shard": 3}  # the caller's dict untouched


def test_decorating_while_disabled_loads_no_price_data() -> None:
    code = (
        "import sys, time\n"
        "import rastir\n"
        "rastir.configure(enabled=False)\n"
        "@rastir.llm(model='gpt-4o')\n"
        "def chat():\n"
        "    return {}\n"
        "chat()\n"
        "time.sleep(0.5)\n"  # a warm-up thread, had one started, would be importing by now
        "print(sorted(m for m in sys.modules if m.startswith('genai_prices')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[]"
