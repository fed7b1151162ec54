"""The shared request-path helpers, the public surface, and ASGI message edge cases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import rastir.middleware
from rastir.middleware import RastirMiddleware
from rastir.middleware._http import remote_parent, traceparent_ids
from rastir.middleware.asgi import Message, Receive, Scope, Send
from rastir.propagation import parse_traceparent
from tests.middleware.servers import VALID, VALID_SID, VALID_TID, SpanWaiter, StatsDelta

HEX = "0123456789abcdef"
# Strings near the traceparent grammar, so hypothesis reaches the interesting cases.
near_traceparent = st.builds(
    lambda v, t, s, f, rest: f"{v}-{t}-{s}-{f}{rest}",
    st.sampled_from(["00", "01", "cc", "fe", "ff", "0A", "0g"]),
    st.one_of(st.text(HEX, min_size=32, max_size=32), st.sampled_from(["0" * 32, "A" * 32])),
    st.one_of(st.text(HEX, min_size=16, max_size=16), st.sampled_from(["0" * 16, "G" * 16])),
    st.one_of(st.text(HEX, min_size=2, max_size=2), st.sampled_from(["0x", "FF", "1"])),
    st.sampled_from(["", "-", "-x", ".x", " ", "\t", "é"]),
)


@given(st.one_of(near_traceparent, st.text(max_size=80)))
@example(VALID)
@example(" " + VALID)
@example(VALID + "\t")
def test_the_fast_traceparent_path_agrees_with_the_core_parser(value: str) -> None:
    assert traceparent_ids(value) == parse_traceparent(value)
    raw = value.encode("utf-8")
    assert traceparent_ids(raw) == parse_traceparent(raw.decode("latin-1"))


@pytest.mark.parametrize("value", [None, 55, 5.5, ["x"], object()])
def test_a_traceparent_of_any_other_type_is_invalid_and_never_raises(value: Any) -> None:
    assert traceparent_ids(value) is None


def test_remote_parent_counts_each_refusal_once(counted: StatsDelta) -> None:
    assert remote_parent(b"garbage", b"a=1", b"k=v") is None
    context = remote_parent(VALID.encode(), b"BAD KEY=1", b"=,;")
    assert context is not None
    assert (context.tid, context.sid, context.tracestate, context.baggage) == (
        VALID_TID,
        VALID_SID,
        None,
        (),
    )
    assert counted["invalid_traceparent"] == 1
    assert counted["invalid_tracestate"] == 1
    assert counted["invalid_baggage"] == 1


def test_the_public_names_are_exactly_the_exports() -> None:
    # (pytest may add "@py_builtins" when it rewrites asserts in an imported package.)
    exported = {n for n in dir(rastir.middleware) if not n.startswith(("_", "@"))}
    modules = {"asgi", "wsgi", "httpx"}
    assert set(rastir.middleware.__all__) == exported - modules
    for name in rastir.middleware.__all__:
        assert getattr(rastir.middleware, name) is not None


def test_stats_read_together_and_print() -> None:
    snapshot = rastir.middleware.stats.as_dict()
    assert set(snapshot) == {
        "invalid_traceparent",
        "invalid_tracestate",
        "invalid_baggage",
        "hook_errors",
    }
    assert "invalid_traceparent" in repr(rastir.middleware.stats)


# -- ASGI messages beyond the usual two --------------------------------------------------
async def drive(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await RastirMiddleware(app)(scope, receive, send)
    return sent


def http_scope(**extra: Any) -> Scope:
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    scope.update(extra)
    return scope


@pytest.mark.anyio
async def test_with_trailers_the_span_ends_at_the_last_trailers_message(
    spans: SpanWaiter,
) -> None:
    ended_at: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        ended_at.append(len(spans.spans))  # still open after the last body
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})
        ended_at.append(len(spans.spans))

    await drive(app, http_scope())
    assert ended_at == [0, 1]


@pytest.mark.anyio
async def test_a_pathsend_response_ends_the_span(spans: SpanWaiter) -> None:
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.pathsend", "path": "/etc/hostname"})
        seen.append(len(spans.spans))

    sent = await drive(app, http_scope())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    assert seen == [1]


@pytest.mark.anyio
async def test_streamed_body_messages_pass_through_unchanged_and_unbuffered(
    spans: SpanWaiter,
) -> None:
    messages: list[Message] = [
        {"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]},
        {"type": "http.response.body", "body": b"a", "more_body": True},
        {"type": "http.response.body", "body": b"b", "more_body": True},
        {"type": "http.response.body", "body": b""},
    ]
    delivered: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for i, message in enumerate(messages):
            await send(message)
            delivered.append(i)

    sent = await drive(app, http_scope())
    assert all(a is b for a, b in zip(sent, messages, strict=True))
    assert delivered == [0, 1, 2, 3]
    assert spans.one("http.server").attributes["http.response.status_code"] == 200


@pytest.mark.anyio
async def test_a_cancelled_request_is_recorded_as_cancelled_not_as_an_error(
    spans: SpanWaiter,
) -> None:
    import anyio

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0):
        await drive(app, http_scope())
    span = spans.one("http.server")
    assert span.status == "cancelled"
    assert "http.response.status_code" not in span.attributes


@pytest.mark.anyio
async def test_a_route_the_application_puts_in_the_scope_is_used(spans: SpanWaiter) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # What a Django middleware would do with request.resolver_match.route.
        scope["rastir.route"] = "articles/<int:year>/"
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})

    await drive(app, http_scope(path="/articles/2024/"))
    span = spans.one("http.server")
    assert span.name == "GET articles/<int:year>/"
    assert span.attributes["http.route"] == "articles/<int:year>/"
