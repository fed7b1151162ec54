"""Requests the server sends back while a tool runs: sampling, elicitation, roots.

The real mcp SDK on both sides, over two transports: mcp's in-memory JSON-RPC
(``Client(server, mode="legacy")``), and streamable HTTP to a real uvicorn on
127.0.0.1, in a thread of its own (so the client's receive loop shares nothing with
the server's tasks). Both sides run in this process, so one capture sees the whole
trace. Where the 2026-07-28 protocol matters (``mode="auto"``), it is said.

``ServerSession.create_message`` and ``list_roots`` are deprecated by mcp as of the
2026-07-28 protocol (SEP-2577), but they are how a tool asks at 2025-11-25, hence the
module-wide filter for that one warning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, ClientSession
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Resolve, Sample
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_REQUEST,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    Root,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel, FileUrl

import rastir
from rastir.context import current_baggage
from rastir.mcp_bridge import mcp_endpoint
from rastir.mcp_bridge import wrap as wrap_mcp
from rastir.middleware import RastirMiddleware
from rastir.spans import Span
from rastir.testing import CapturedSpans, capture_spans
from tests.collector.server import serving_async

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SAMPLE = "sampling/createMessage"
ELICIT = "elicitation/create"
ROOTS = "roots/list"
LLM = "client.llm"
ASK = "client.ask_user"
TRANSPORTS = pytest.mark.parametrize("transport", ["memory", "http"])


# -- the server ---------------------------------------------------------------------
class Confirmation(BaseModel):
    ok: bool


def _prompt(text: str) -> list[SamplingMessage]:
    return [SamplingMessage(role="user", content=TextContent(type="text", text=text))]


def _text(result: Any) -> str:
    content = result.content
    block = content[0] if isinstance(content, list) else content
    assert isinstance(block, TextContent), result
    return block.text


def want_summary(token: str) -> Sample:
    """A resolver: at 2026-07-28 MCPServer asks through an InputRequiredResult."""
    return Sample(_prompt(token), max_tokens=16)


def build_server(*, endpoint: bool = True) -> MCPServer:
    """The same tools with ``@mcp_endpoint`` or, for ``endpoint=False``, without rastir."""
    server = MCPServer("server-requests")

    def traced(fn: Any) -> Any:
        return mcp_endpoint(fn) if endpoint else fn

    @server.tool()
    @traced
    async def summarize(token: str, ctx: Context) -> str:
        result = await ctx.session.create_message(
            _prompt(token), max_tokens=16, related_request_id=ctx.request_id
        )
        return _text(result)

    @server.tool()
    @traced
    async def confirm(ctx: Context) -> str:
        outcome = await ctx.elicit("Proceed?", Confirmation)
        return f"{outcome.action} {getattr(outcome, 'data', None)}"

    @server.tool()
    @traced
    async def roots(ctx: Context) -> str:
        # No related request: the connection's own channel (the GET stream over HTTP).
        result = await ctx.session.list_roots()
        return ",".join(str(root.uri) for root in result.roots)

    @server.tool()
    @traced
    async def capabilities(ctx: Context) -> list[str]:
        caps = ctx.session.client_capabilities
        assert caps is not None
        return sorted(k for k in ("sampling", "elicitation", "roots") if getattr(caps, k))

    @server.tool()
    @traced
    async def ask_raw(token: str, ctx: Context) -> str:
        """What the tool sees when the client fails or refuses: compared across runs."""
        try:
            await ctx.session.create_message(
                _prompt(token), max_tokens=16, related_request_id=ctx.request_id
            )
        except MCPError as e:
            return f"{e.error.code}: {e.error.message}"
        return "answered"

    @server.tool()
    @traced
    async def resolved(
        token: str, sampled: Annotated[CreateMessageResult, Resolve(want_summary)]
    ) -> str:
        return _text(sampled)

    return server


@asynccontextmanager
async def running(server: MCPServer, transport: str) -> AsyncIterator[Any]:
    """What ``Client`` connects to: the server itself, or its URL on a real uvicorn."""
    if transport == "memory":
        yield server
        return
    async with serving_async(RastirMiddleware(server.streamable_http_app())) as base:
        yield f"{base}/mcp"


# -- the client's callbacks -----------------------------------------------------------
@rastir.llm(name=LLM)
async def client_llm(prompt: str) -> str:
    span = rastir.current_span()
    assert span is not None
    span.set_attribute("test.prompt", prompt)
    await anyio.lowlevel.checkpoint()
    return prompt.upper()


async def sample(
    context: ClientRequestContext, params: CreateMessageRequestParams
) -> CreateMessageResult:
    answer = await client_llm(_text(params.messages[0]))
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=answer), model="echo-1"
    )


@rastir.trace(name=ASK)
async def ask_user(message: str) -> bool:
    return message == "Proceed?"


async def elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"ok": await ask_user(params.message)})


async def list_roots(context: ClientRequestContext) -> ListRootsResult:
    with rastir.span("client.roots"):
        return ListRootsResult(roots=[Root(uri=FileUrl("file:///srv/project"))])


CALLBACKS: dict[str, Any] = {
    "sampling_callback": sample,
    "elicitation_callback": elicit,
    "list_roots_callback": list_roots,
}


# -- reading the trace ----------------------------------------------------------------
def chain(span: Span, spans: CapturedSpans) -> list[str]:
    """``kind:name`` of the span and of each ancestor captured, innermost first."""
    by_id = {(s.tid, s.sid): s for s in spans}
    out: list[str] = []
    current: Span | None = span
    while current is not None:
        out.append(f"{current.kind}:{current.name}")
        current = by_id.get((current.tid, current.psid)) if current.psid else None
    return out


# -- one trace, client -> server -> client --------------------------------------------
@TRANSPORTS
@pytest.mark.parametrize("bridge", [False, True])
async def test_sampling_from_a_tool_is_a_span_under_the_tool_call(
    transport: str, bridge: bool, rastir_spans: CapturedSpans
) -> None:
    rastir.configure(otel_bridge=bridge)
    async with running(build_server(), transport) as target:
        with rastir.span("caller") as caller:
            async with rastir.wrap(Client(target, mode="legacy", **CALLBACKS)) as client:
                result = await client.call_tool("summarize", {"token": "rain in lisbon"})
    assert _text(result) == "RAIN IN LISBON"  # the client's LLM answered the tool
    llm = rastir_spans.one(LLM)
    assert chain(llm, rastir_spans) == [
        f"llm:{LLM}",
        f"mcp.server:{SAMPLE}",
        "mcp.server:tools/call summarize",
        "mcp.client:tools/call summarize",
        "custom:caller",
    ]
    assert llm.trace_id == caller.trace_id
    assert llm.attributes["test.prompt"] == "rain in lisbon"
    span = rastir_spans.one(SAMPLE)
    attrs = span.attributes
    assert attrs["mcp.method.name"] == SAMPLE
    assert attrs["mcp.protocol.version"] == "2025-11-25"
    assert attrs["jsonrpc.request.id"] == "1"  # the server's first request to this client
    assert span.status == "ok"
    if transport == "http":
        assert attrs["network.transport"] == "tcp"
    else:
        assert "network.transport" not in attrs


@TRANSPORTS
async def test_elicitation_from_a_tool_is_a_span_under_the_tool_call(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    async with running(build_server(), transport) as target:
        with rastir.span("caller") as caller:
            async with rastir.wrap(Client(target, mode="legacy", **CALLBACKS)) as client:
                result = await client.call_tool("confirm", {})
    assert _text(result) == "accept ok=True"
    asked = rastir_spans.one(ASK)
    assert chain(asked, rastir_spans) == [
        f"trace:{ASK}",
        f"mcp.server:{ELICIT}",
        "mcp.server:tools/call confirm",
        "mcp.client:tools/call confirm",
        "custom:caller",
    ]
    assert asked.trace_id == caller.trace_id
    assert rastir_spans.one(ELICIT).attributes["mcp.method.name"] == ELICIT


@TRANSPORTS
async def test_a_roots_request_on_the_connection_channel_is_traced_too(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    async with running(build_server(), transport) as target:
        with rastir.span("caller") as caller:
            async with rastir.wrap(Client(target, mode="legacy", **CALLBACKS)) as client:
                result = await client.call_tool("roots", {})
    assert _text(result) == "file:///srv/project"
    inner = rastir_spans.one("client.roots")
    assert chain(inner, rastir_spans) == [
        "custom:client.roots",
        f"mcp.server:{ROOTS}",
        "mcp.server:tools/call roots",
        "mcp.client:tools/call roots",
        "custom:caller",
    ]
    assert inner.trace_id == caller.trace_id


@TRANSPORTS
async def test_concurrent_tool_calls_each_get_their_own_sampling_span(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    calls = 20
    arrived = 0
    everyone = anyio.Event()

    async def gathered(
        context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        # Every callback waits for all the others: they all run at the same time.
        nonlocal arrived
        arrived += 1
        if arrived == calls:
            everyone.set()
        await everyone.wait()
        return await sample(context, params)

    callers: dict[str, Span] = {}
    answers: dict[str, str] = {}
    async with running(build_server(), transport) as target:
        client = Client(target, mode="legacy", sampling_callback=gathered)
        async with rastir.wrap(client) as c:
            await c.list_tools()

            async def one(token: str) -> None:
                with rastir.span(f"caller {token}") as caller:
                    callers[token] = caller
                    result = await c.call_tool("summarize", {"token": token})
                    answers[token] = _text(result)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for i in range(calls):
                        tg.start_soon(one, f"t{i}")
    assert answers == {f"t{i}": f"T{i}" for i in range(calls)}
    llms = rastir_spans.find(LLM)
    assert len(llms) == calls
    assert len(rastir_spans.find(SAMPLE)) == calls
    for llm in llms:
        token = llm.attributes["test.prompt"]
        assert llm.trace_id == callers[token].trace_id, token
        assert chain(llm, rastir_spans) == [
            f"llm:{LLM}",
            f"mcp.server:{SAMPLE}",
            "mcp.server:tools/call summarize",
            "mcp.client:tools/call summarize",
            f"custom:caller {token}",
        ]
    assert len({llm.trace_id for llm in llms}) == calls


# -- failures -------------------------------------------------------------------------
async def _ask_raw(target: Any, wrapped: bool, callback: Any) -> str:
    client = Client(target, mode="legacy", sampling_callback=callback)
    async with rastir.wrap(client) if wrapped else client as c:
        return _text(await c.call_tool("ask_raw", {"token": "x"}))


@TRANSPORTS
async def test_a_callback_that_raises_is_an_error_and_the_server_sees_the_same(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    raised: list[BaseException] = []

    async def broken(
        context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        error = ValueError("no model configured")
        raised.append(error)
        raise error

    async with running(build_server(), transport) as target:
        plain = await _ask_raw(target, False, broken)
        traced = await _ask_raw(target, True, broken)
    assert traced == plain  # what mcp answered the server did not change
    assert "no model configured" in plain
    span = rastir_spans.one(SAMPLE)
    assert span.status == "error"
    assert span.error is not None
    assert span.error["exception_type"] == "ValueError"
    assert span.error["message"] == "no model configured"
    assert len(raised) == 2  # the callback ran in both runs
    # Under the server span of the second (traced) run, which stays ok: the tool
    # caught the error and answered.
    server = rastir_spans.find("tools/call ask_raw", kind="mcp.server")[-1]
    assert span.psid == server.sid
    assert server.status == "ok"


@TRANSPORTS
async def test_a_refusal_returned_as_error_data_is_an_error_with_its_code(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    async def refuse(
        context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> ErrorData:
        return ErrorData(code=INVALID_REQUEST, message="sampling is off for this user")

    async with running(build_server(), transport) as target:
        plain = await _ask_raw(target, False, refuse)
        traced = await _ask_raw(target, True, refuse)
    assert traced == plain == f"{INVALID_REQUEST}: sampling is off for this user"
    span = rastir_spans.one(SAMPLE)
    assert span.status == "error"
    assert span.error is not None
    assert span.error["type"] == "validation_error"
    assert span.error["message"] == "sampling is off for this user"
    assert span.attributes["rpc.response.status_code"] == str(INVALID_REQUEST)


# -- what is not rastir's stays as it was ---------------------------------------------
@TRANSPORTS
async def test_a_server_without_rastir_still_puts_the_answer_in_the_callers_trace(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    # No @mcp_endpoint: mcp's own middleware makes the caller's context current while
    # the tool runs, and mcp's dispatcher writes it into the request's _meta.
    async with running(build_server(endpoint=False), transport) as target:
        with rastir.span("caller") as caller:
            async with rastir.wrap(Client(target, mode="legacy", **CALLBACKS)) as client:
                result = await client.call_tool("summarize", {"token": "plain server"})
    assert _text(result) == "PLAIN SERVER"
    assert [s.name for s in rastir_spans.find(kind="mcp.server")] == [SAMPLE]
    assert chain(rastir_spans.one(LLM), rastir_spans) == [
        f"llm:{LLM}",
        f"mcp.server:{SAMPLE}",
        "mcp.client:tools/call summarize",
        "custom:caller",
    ]
    assert rastir_spans.one(LLM).trace_id == caller.trace_id


@TRANSPORTS
async def test_a_client_without_wrap_keeps_its_callbacks_and_records_no_request_span(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    async with running(build_server(), transport) as target:
        client = Client(target, mode="legacy", **CALLBACKS)
        async with client as c:
            result = await c.call_tool("summarize", {"token": "unwrapped"})
            assert c.session._sampling_callback is sample  # mcp's own attribute, untouched
    assert _text(result) == "UNWRAPPED"
    assert client.sampling_callback is sample
    assert client.elicitation_callback is elicit
    assert rastir_spans.find(SAMPLE) == []
    assert rastir_spans.find(kind="mcp.client") == []
    rastir_spans.one(LLM)  # the callback ran; its span is wherever mcp ran it


@pytest.mark.parametrize("given", [{}, {"sampling_callback": sample}, CALLBACKS])
async def test_the_capabilities_the_client_declares_do_not_change(given: dict[str, Any]) -> None:
    # mcp declares a capability when its callback is not mcp's default, and reads that
    # at initialize: wrap() must neither hide a callback nor make a default look like one.
    expected = sorted(
        {"sampling_callback": "sampling", "elicitation_callback": "elicitation"}.get(k, "roots")
        for k in given
    )

    async def declared(target: Any, wrapped: bool) -> Any:
        client = Client(target, mode="legacy", **given)
        async with rastir.wrap(client) if wrapped else client as c:
            return (await c.call_tool("capabilities", {})).structured_content

    async with running(build_server(), "http") as url:
        for wrapped in (False, True):
            # A bare session, wrapped before it initializes.
            async with streamable_http_client(url) as (read, write):
                raw = ClientSession(read, write, **given)
                session = rastir.wrap(raw) if wrapped else raw
                async with session:
                    await session.initialize()
                    result = await session.call_tool("capabilities", {})
            assert result.structured_content == {"result": expected}, wrapped
            assert await declared(url, wrapped) == {"result": expected}, wrapped


async def test_a_declined_elicitation_is_not_an_error(rastir_spans: CapturedSpans) -> None:
    async def decline(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    client = Client(build_server(), mode="legacy", elicitation_callback=decline)
    async with rastir.wrap(client) as c:
        assert _text(await c.call_tool("confirm", {})) == "decline None"
    assert rastir_spans.one(ELICIT).status == "ok"


async def test_wrapping_twice_or_reaching_the_session_traces_a_callback_once(
    rastir_spans: CapturedSpans,
) -> None:
    client = Client(build_server(), mode="legacy", **CALLBACKS)
    wrapped = rastir.wrap(rastir.wrap(client))
    assert client.sampling_callback is not sample
    assert client.sampling_callback.__wrapped__ is sample  # type: ignore[union-attr]
    async with wrapped as c:
        session = rastir.wrap(c.session)
        assert session is c.session  # the session's proxy, made once
        await c.call_tool("summarize", {"token": "once"})
    assert len(rastir_spans.find(SAMPLE)) == 1
    assert len(rastir_spans.find(LLM)) == 1


async def test_a_client_wrapped_after_it_was_entered_traces_its_session_callbacks(
    rastir_spans: CapturedSpans,
) -> None:
    client = Client(build_server(), mode="legacy", **CALLBACKS)
    async with client:
        wrapped = rastir.wrap(client)
        await wrapped.call_tool("summarize", {"token": "late"})
    assert chain(rastir_spans.one(LLM), rastir_spans)[:3] == [
        f"llm:{LLM}",
        f"mcp.server:{SAMPLE}",
        "mcp.server:tools/call summarize",
    ]


async def test_exclude_leaves_that_callback_alone(rastir_spans: CapturedSpans) -> None:
    client = Client(build_server(), mode="legacy", **CALLBACKS)
    async with rastir.wrap(client, exclude={"sampling_callback"}) as c:
        await c.call_tool("summarize", {"token": "a"})
        await c.call_tool("confirm", {})
    assert client.sampling_callback is sample
    assert rastir_spans.find(SAMPLE) == []
    rastir_spans.one(ELICIT)


async def test_a_bare_client_session_over_http_is_traced_when_wrapped(
    rastir_spans: CapturedSpans,
) -> None:
    async with (
        running(build_server(), "http") as url,
        streamable_http_client(url) as (read, write),
    ):
        session = ClientSession(read, write, sampling_callback=sample)
        with rastir.span("caller") as caller:
            traced = wrap_mcp(session, network_transport="tcp")
            async with traced:
                await traced.initialize()
                result = await traced.call_tool("summarize", {"token": "bare"})
    assert _text(result) == "BARE"
    llm = rastir_spans.one(LLM)
    assert llm.trace_id == caller.trace_id
    assert chain(llm, rastir_spans)[:4] == [
        f"llm:{LLM}",
        f"mcp.server:{SAMPLE}",
        "mcp.server:tools/call summarize",
        "mcp.client:tools/call summarize",
    ]
    assert rastir_spans.one(SAMPLE).attributes["network.transport"] == "tcp"


# -- the 2026-07-28 protocol: input requests ride the result ---------------------------
@TRANSPORTS
async def test_input_requests_are_answered_under_the_client_call(
    transport: str, rastir_spans: CapturedSpans
) -> None:
    # mode="auto" negotiates 2026-07-28 on both transports: the server returns an
    # InputRequiredResult and the client's call_tool runs the callback itself, then
    # calls again with the answer. There is no server request, so no _meta: the
    # callback's span is the child of the call that ran it.
    async with running(build_server(), transport) as target:
        with rastir.span("caller") as caller:
            async with rastir.wrap(Client(target, mode="auto", **CALLBACKS)) as client:
                await client.list_tools()
                result = await client.call_tool("resolved", {"token": "two rounds"})
                version = client.protocol_version
    assert version == "2026-07-28"
    assert _text(result) == "TWO ROUNDS"
    llm = rastir_spans.one(LLM)
    assert chain(llm, rastir_spans) == [
        f"llm:{LLM}",
        f"mcp.server:{SAMPLE}",
        "mcp.client:tools/call resolved",
        "custom:caller",
    ]
    assert llm.trace_id == caller.trace_id
    # The id mcp gives the callback there is the input request's key, not a JSON-RPC id.
    assert "jsonrpc.request.id" not in rastir_spans.one(SAMPLE).attributes


# -- the request's _meta --------------------------------------------------------------
REMOTE = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


@asynccontextmanager
async def bare_session(**callbacks: Any) -> AsyncIterator[ClientSession]:
    """A ``ClientSession`` that is never connected: for its ``dispatch_input_request``."""
    send, receive = anyio.create_memory_object_stream[Any](1)
    async with send, receive:
        yield ClientSession(receive, send, **callbacks)


def _request(text: str) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(messages=_prompt(text), max_tokens=4)
    )


async def test_the_request_meta_is_the_parent_and_its_baggage_is_current(
    rastir_spans: CapturedSpans,
) -> None:
    seen: dict[str, str] = {}

    async def note(
        context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        seen.update(current_baggage())
        return await sample(context, params)

    async with bare_session(sampling_callback=note) as raw:
        session = rastir.wrap(raw)
        meta: Any = {"traceparent": REMOTE, "baggage": "tenant=acme"}
        with rastir.span("elsewhere"):  # what the receive loop might carry: not the parent
            await session.dispatch_input_request(
                ClientRequestContext(session=raw, request_id=7, meta=meta), _request("hi")
            )
    span = rastir_spans.one(SAMPLE)
    assert span.trace_id == "a" * 32
    assert span.parent_span_id == "b" * 16
    assert span.attributes["jsonrpc.request.id"] == "7"
    assert seen == {"tenant": "acme"}
    assert rastir_spans.one(LLM).psid == span.sid


@pytest.mark.parametrize("bad", ["00-zz", 42, "00-" + "0" * 32 + "-" + "b" * 16 + "-01"])
async def test_an_invalid_traceparent_in_the_request_starts_a_new_trace(
    bad: Any, rastir_spans: CapturedSpans
) -> None:
    async with bare_session(sampling_callback=sample) as raw:
        session = rastir.wrap(raw)
        with rastir.span("elsewhere") as elsewhere:
            await session.dispatch_input_request(
                ClientRequestContext(
                    session=raw, request_id=1, meta=cast(Any, {"traceparent": bad})
                ),
                _request("hi"),
            )
    span = rastir_spans.one(SAMPLE)
    assert span.psid == 0
    assert span.trace_id != elsewhere.trace_id
    assert span.attributes["rastir.mcp.invalid_trace_context"] is True


@settings(max_examples=60, deadline=None)
@given(
    meta=st.one_of(
        st.none(),
        st.integers(),
        st.dictionaries(
            st.sampled_from(["traceparent", "tracestate", "baggage", "TraceParent", "other"]),
            st.one_of(st.text(max_size=80), st.integers(), st.none(), st.lists(st.text())),
            max_size=5,
        ),
    )
)
def test_whatever_the_meta_holds_the_callback_answers_unchanged(meta: Any) -> None:
    async def run() -> tuple[Any, list[Span]]:
        captured: list[Span] = []
        with capture_spans() as spans:
            async with bare_session(sampling_callback=sample) as raw:
                session = rastir.wrap(raw)
                answer = await session.dispatch_input_request(
                    ClientRequestContext(session=raw, request_id=1, meta=meta), _request("ok")
                )
            captured.extend(spans)
        return answer, captured

    answer, spans = anyio.run(run)
    assert isinstance(answer, CreateMessageResult)
    assert _text(answer) == "OK"
    assert [s.name for s in spans if s.kind == "mcp.server"] == [SAMPLE]
