"""``@mcp_endpoint``: the server span, the unchanged tool schema, and untrusted ``_meta``."""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from pydantic import BaseModel, Field

import rastir
from rastir.mcp_bridge import mcp_endpoint
from rastir.mcp_bridge.server import HIDDEN_CONTEXT
from rastir.propagation import format_traceparent
from rastir.testing import CapturedSpans, capture_spans
from tests.mcp_bridge.tools import Probe, as_meta, build

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])


class Point(BaseModel):
    x: int
    y: int = 0


def _shapes() -> list[Callable[..., Any]]:
    """Fresh tool functions of every shape MCPServer reads a schema from."""

    async def plain(x: int, label: str = "d") -> int:
        """A plain async tool."""
        return x

    def sync_tool(items: list[str], flag: bool = False) -> dict[str, int]:
        return {i: len(i) for i in items}

    async def described(
        query: Annotated[str, Field(description="what to look for")], ctx: Context
    ) -> str:
        return f"{query}:{ctx.request_id}"

    def model_in_out(point: Point) -> Point:
        return point

    async def keyword_only(n: int, *, limit: int | None = None) -> list[int]:
        return list(range(n))[:limit]

    def optional_context(text: str, context: Context | None = None) -> str:
        return text if context is None else f"{text}:{context.request_id}"

    def untyped(a, b=2):  # type: ignore[no-untyped-def]
        return a + b

    return [plain, sync_tool, described, model_in_out, keyword_only, optional_context, untyped]


def _listing(decorate: bool) -> list[dict[str, Any]]:
    server = MCPServer("schemas")
    for fn in _shapes():
        server.tool()(mcp_endpoint(fn) if decorate else fn)
    tools = server._tool_manager.list_tools()
    return [
        {
            "name": t.name,
            "description": t.description,
            "input": t.parameters,
            "output": t.output_schema,
            "context": t.context_kwarg is not None,
            "async": t.is_async,
        }
        for t in tools
    ]


def test_mcpserver_builds_the_same_schemas_for_decorated_tools() -> None:
    plain = _listing(decorate=False)
    traced = _listing(decorate=True)
    assert [t["name"] for t in traced] == [t["name"] for t in plain]
    for before, after in zip(plain, traced, strict=True):
        assert after["input"] == before["input"], after["name"]
        assert after["output"] == before["output"], after["name"]
        assert after["description"] == before["description"]
        assert after["async"] == before["async"]
        # Every traced tool receives a Context: its own parameter or the hidden one.
        assert after["context"] is True
    assert HIDDEN_CONTEXT not in str(traced)


def test_the_hidden_context_parameter_is_keyword_only_and_optional() -> None:
    async def tool(a: int, **extra: Any) -> int:
        return a

    traced = mcp_endpoint(tool)
    params = inspect.signature(traced).parameters
    assert list(params) == ["a", HIDDEN_CONTEXT, "extra"]
    assert params[HIDDEN_CONTEXT].kind is inspect.Parameter.KEYWORD_ONLY
    assert params[HIDDEN_CONTEXT].default is None
    assert find_context_parameter(traced) == HIDDEN_CONTEXT
    assert traced.__wrapped__ is tool  # type: ignore[attr-defined]
    assert tool.__annotations__ == {"a": "int", "extra": "Any", "return": "int"}


def test_a_tool_with_its_own_context_parameter_keeps_it() -> None:
    async def tool(a: int, ctx: Context) -> int:
        return a

    traced = mcp_endpoint(tool)
    assert list(inspect.signature(traced).parameters) == ["a", "ctx"]
    assert find_context_parameter(traced) == "ctx"


@MODES
async def test_context_is_still_injected_into_tools_that_ask_for_it(mode: str) -> None:
    server = MCPServer("ctx")
    for fn in _shapes():
        server.tool()(mcp_endpoint(fn))
    async with Client(server, mode=mode) as client:
        described = await client.call_tool("described", {"query": "q"})
        optional = await client.call_tool("optional_context", {"text": "t"})
        untyped = await client.call_tool("untyped", {"a": 1})
    assert described.content[0].text.startswith("q:")  # type: ignore[union-attr]
    assert optional.content[0].text.startswith("t:")  # type: ignore[union-attr]
    assert untyped.content[0].text == "3"  # type: ignore[union-attr]


@pytest.fixture
async def client(mode: str) -> AsyncIterator[Client]:
    async with Client(build(Probe()), mode=mode) as c:
        yield c


@MODES
async def test_a_sync_tool_runs_in_a_worker_thread_inside_its_span(
    client: Client, rastir_spans: CapturedSpans, mode: str
) -> None:
    result = await client.call_tool("mul", {"a": 3, "b": 4})
    assert result.content[0].text == "12"  # type: ignore[union-attr]
    server = rastir_spans.one("tools/call mul", kind="mcp.server")
    assert rastir_spans.one("tool.inner").psid == server.sid
    assert server.attributes["gen_ai.tool.name"] == "mul"
    assert server.attributes["mcp.method.name"] == "tools/call"
    assert server.attributes["gen_ai.operation.name"] == "execute_tool"


def test_a_direct_call_is_a_span_under_the_current_one(rastir_spans: CapturedSpans) -> None:
    @mcp_endpoint(name="lookup", attributes={"team": "search"})
    def find(term: str) -> str:
        return term.upper()

    @rastir.trace
    def caller() -> str:
        return find("x")

    assert caller() == "X"
    span = rastir_spans.one("tools/call lookup")
    assert span.kind == "mcp.server"
    assert span.psid == rastir_spans.one("caller").sid
    assert span.attributes["team"] == "search"
    assert "jsonrpc.request.id" not in span.attributes


def test_mcp_endpoint_is_exported_by_rastir() -> None:
    assert rastir.mcp_endpoint is mcp_endpoint
    assert "mcp_endpoint" in dir(rastir)


def test_misuse_is_refused() -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError):
        mcp_endpoint(gen)
    with pytest.raises(TypeError):
        mcp_endpoint(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="name"):
        mcp_endpoint(name="")


# -- untrusted _meta --------------------------------------------------------------------
VALID = format_traceparent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1)
HUGE = "x" * 1_000_000

# _meta sent by a plain client -> what the server span does:
#   "restart" a new root, marked invalid; "join" the valid traceparent; "ambient" the
#   span current on the caller's side (in-process, the server shares the caller's context).
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("int", {"traceparent": 12345}, "restart"),
    ("object", {"traceparent": {"version": "00"}}, "restart"),
    ("bool", {"traceparent": True}, "restart"),
    ("garbage", {"traceparent": "not a traceparent"}, "restart"),
    ("zero-trace-id", {"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"}, "restart"),
    ("zero-span-id", {"traceparent": f"00-{'1' * 32}-{'0' * 16}-01"}, "restart"),
    ("version-ff", {"traceparent": "ff" + VALID[2:]}, "restart"),
    ("uppercase", {"traceparent": VALID.upper()}, "restart"),
    ("huge", {"traceparent": HUGE}, "restart"),
    ("other-case", {"TraceParent": "00-broken"}, "restart"),
    ("bad-tracestate", {"traceparent": VALID, "tracestate": 7, "baggage": "k=v"}, "join"),
    ("bad-baggage-text", {"traceparent": VALID, "baggage": ",,=;%zz\x00"}, "join"),
    (
        "huge-tracestate-and-baggage",
        {"traceparent": VALID, "tracestate": HUGE, "baggage": HUGE},
        "join",
    ),
    ("only-junk", {"tracestate": HUGE, "baggage": {"a": 1}, "x": HUGE}, "ambient"),
    ("null", {"traceparent": None}, "ambient"),
]


@MODES
@pytest.mark.parametrize(("case", "meta", "expect"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_meta_gets_a_normal_answer_and_never_a_false_parent(
    client: Client,
    rastir_spans: CapturedSpans,
    case: str,
    meta: dict[str, Any],
    expect: str,
    mode: str,
) -> None:
    @rastir.trace
    async def caller() -> Any:
        return await client.call_tool("add", {"a": 1, "b": 2}, meta=as_meta(meta))

    result = await caller()
    assert not result.is_error
    assert result.content[0].text == "3"
    server = rastir_spans.one("tools/call add", kind="mcp.server")
    assert rastir_spans.one("tool.inner").psid == server.sid
    if expect == "restart":
        assert server.psid == 0
        assert server.attributes["rastir.mcp.invalid_trace_context"] is True
    elif expect == "join":
        assert (server.trace_id, server.parent_span_id) == (VALID[3:35], VALID[36:52])
        assert server.tracestate is None
    else:
        assert server.psid == rastir_spans.one("caller").sid
        assert "rastir.mcp.invalid_trace_context" not in server.attributes


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# "tracestate" and "baggage" themselves only hold text or a number here: on some other
# values mcp's own middleware fails before any tool runs (see the xfail test below).
_keys = st.sampled_from(["traceparent", "Traceparent", "Tracestate", "BAGGAGE", "x"])
_traceparents = st.from_regex(r"[0-9a-f-]{0,60}", fullmatch=True) | st.just(VALID)
_headerish = st.none() | st.integers() | st.text(max_size=60)
_metas = st.builds(
    lambda base, state, bag: {
        **base,
        **({} if state is None else {"tracestate": state}),
        **({} if bag is None else {"baggage": bag}),
    },
    st.dictionaries(_keys, _json | _traceparents, max_size=4),
    _headerish,
    st.none() | st.text(max_size=60),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=_metas)
def test_any_meta_is_answered_and_gives_a_single_well_formed_server_span(
    meta: dict[str, Any],
) -> None:
    async def run() -> Any:
        async with Client(build(Probe()), mode="legacy") as client:
            return await client.call_tool("add", {"a": 2, "b": 2}, meta=as_meta(meta))

    with capture_spans() as spans:
        result = anyio.run(run)
    assert result.content[0].text == "4"
    server = spans.one("tools/call add", kind="mcp.server")
    if server.psid:
        # A parent is only ever taken from a valid traceparent.
        assert meta.get("traceparent") == VALID or meta.get("Traceparent") == VALID
        assert (server.trace_id, server.parent_span_id) == (VALID[3:35], VALID[36:52])


@pytest.mark.xfail(
    strict=True,
    reason=(
        "mcp 2.3.0: mcp.shared._otel.extract_trace_context catches only ValueError and "
        "TypeError, and OpenTelemetry's propagators raise AttributeError on a non-string "
        "'baggage' or a 'tracestate' list of non-strings, so MCPServer's built-in OTel "
        "middleware answers an internal error before any tool runs. Not rastir's code: "
        "to report upstream."
    ),
)
@pytest.mark.parametrize(
    "meta",
    [{"baggage": 5}, {"traceparent": VALID, "tracestate": [[]]}],
    ids=["baggage-int", "tracestate-nested-list"],
)
async def test_some_non_string_trace_keys_break_mcps_own_middleware(meta: dict[str, Any]) -> None:
    server = MCPServer("upstream")

    @server.tool()
    def ping() -> str:
        return "pong"

    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("ping", {}, meta=as_meta(meta))
    assert result.content[0].text == "pong"  # type: ignore[union-attr]


def test_sync_tools_keep_working_from_many_threads(rastir_spans: CapturedSpans) -> None:
    @mcp_endpoint
    def work(n: int) -> int:
        return n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rastir_spans.find("tools/call work")) == 8


# -- resources ----------------------------------------------------------------------------
def _resource_server() -> MCPServer:
    server = MCPServer("resources")

    @server.resource("res://doc")
    @mcp_endpoint(uri="res://doc")
    def doc() -> str:
        return "the doc"

    @server.resource("res://items/{item}")
    @mcp_endpoint
    async def item(item: str) -> str:
        return f"item {item}"

    return server


@MODES
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
async def test_static_and_template_resources_are_server_spans_under_the_read(
    rastir_spans: CapturedSpans, mode: str, cache: bool
) -> None:
    options: dict[str, Any] = {} if cache else {"cache": None}
    async with rastir.wrap(Client(_resource_server(), mode=mode, **options)) as client:
        static = await client.read_resource("res://doc")
        template = await client.read_resource("res://items/7")
    assert static.contents[0].text == "the doc"  # type: ignore[union-attr]
    assert template.contents[0].text == "item 7"  # type: ignore[union-attr]
    reads = rastir_spans.find("resources/read", kind="mcp.client")
    served = rastir_spans.find("resources/read", kind="mcp.server")
    assert [s.attributes["mcp.resource.uri"] for s in served] == ["res://doc", "res://items/7"]
    for read, server in zip(reads, served, strict=True):
        assert server.psid == read.sid
        assert server.attributes["mcp.method.name"] == "resources/read"
    # The template resource is given the request; the static one (no Context) is not.
    assert "jsonrpc.request.id" not in served[0].attributes
    assert served[1].attributes["jsonrpc.request.id"] == reads[1].attributes["jsonrpc.request.id"]


def test_a_static_resource_needs_uri_as_mcpserver_gives_it_no_context() -> None:
    server = MCPServer("static")

    def doc() -> str:
        return "d"

    # Without uri=, the hidden Context parameter is one MCPServer refuses here.
    with pytest.raises(ValueError, match="Context injection for static resources"):
        server.resource("res://doc")(mcp_endpoint(doc))
    traced = mcp_endpoint(uri="res://doc")(doc)
    assert list(inspect.signature(traced).parameters) == []
    assert server.resource("res://doc")(traced) is traced


def test_uri_is_refused_on_a_function_with_parameters_and_when_empty() -> None:
    def item(item: str) -> str:
        return item

    with pytest.raises(ValueError, match="static resource"):
        mcp_endpoint(uri="res://items/{item}")(item)
    with pytest.raises(ValueError, match="uri"):
        mcp_endpoint(uri="")
