"""A hostile client against the collector: slow and oversized requests, nested OTLP values.

The slow-client tests run real uvicorn on 127.0.0.1 with the protocol ``rastir
collector`` serves with (:class:`StampedHttpToolsProtocol`), its deadlines shortened
so that the tests take a second, not the 10 to 30 s of the defaults. The client is a
plain socket: httpx cannot send a request a byte at a time.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from rastir.collector import CollectorSettings, create_app
from rastir.collector.cli import MAX_HEAD_BYTES, StampedHttpToolsProtocol
from rastir.collector.otlp.receive import decode_json, decode_protobuf
from tests.collector.conftest import Scrape
from tests.collector.server import RunningServer
from tests.collector.spans import batch, encode, span

# Generous bounds on how long a socket waits for the server: never reached when the
# server behaves, and what the test fails on when it does not.
_WAIT = 15.0
_TRICKLE = 0.05  # seconds between the slow client's bytes


class _Quick(StampedHttpToolsProtocol):
    head_timeout = 0.5
    body_timeout = 1.0


@contextmanager
def _collector(**overrides: Any) -> Iterator[str]:
    """A collector on real uvicorn with the ``rastir collector`` protocol, quick deadlines."""
    options: dict[str, Any] = {
        "store": "memory",
        "access_log": False,
        "max_loop_lag": None,
        "retention": None,
    }
    options.update(overrides)
    server = RunningServer(create_app(CollectorSettings(**options)))
    server.server.config.http = _Quick  # uvicorn takes a protocol class as it is
    server.server.config.timeout_keep_alive = 1
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=_WAIT)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _scrape(url: str) -> Scrape:
    return Scrape(httpx.get(f"{url}/metrics", timeout=_WAIT).text)


def _post(url: str) -> httpx.Response:
    body = encode(batch([span()]))
    return httpx.post(
        f"{url}/v1/telemetry",
        content=body,
        headers={"content-type": "application/json"},
        timeout=_WAIT,
    )


def test_a_connection_that_never_sends_a_byte_is_closed() -> None:
    # Before: uvicorn armed its keep-alive timer only after a response, so a client
    # that connected and sent nothing held its connection until it chose to leave.
    with _collector() as url, _connect(url) as sock:
        assert _read_all(sock) == b""  # closed by the server, with nothing to say


def test_headers_sent_a_byte_at_a_time_are_answered_408_and_closed() -> None:
    with _collector() as url, _connect(url) as sock:
        sock.sendall(b"POST /v1/telemetry HTTP/1.1\r\nhost: x\r\nx-slow: ")
        answer = b""
        for _ in range(int(_WAIT / _TRICKLE)):  # bounded: the server cuts it off first
            try:
                sock.sendall(b"a")
                time.sleep(_TRICKLE)  # the slowness under test, not a wait for an event
            except OSError:  # reset: the server has closed
                break
            sock.settimeout(0.0)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                continue
            finally:
                sock.settimeout(_WAIT)
            break
        answer += _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"error":"request_timeout"' in answer
    assert b"connection: close" in answer


def _trickle_until_closed(sock: socket.socket, byte: bytes) -> bool:
    """Send ``byte`` every ``_TRICKLE`` seconds until the server closes the connection
    (True), for at most ``_WAIT`` seconds (False). The slowness is what is under test."""
    for _ in range(int(_WAIT / _TRICKLE)):
        try:
            sock.sendall(byte)
        except OSError:
            return True
        time.sleep(_TRICKLE)
        sock.settimeout(0.0)
        try:
            if sock.recv(65536) == b"":
                return True
        except BlockingIOError:
            pass
        finally:
            sock.settimeout(_WAIT)
    return False


def test_a_body_sent_a_byte_at_a_time_gives_its_ingest_place_back() -> None:
    # Before: a body trickling in held one of the --max-inflight places for as long
    # as the client liked; as many slow clients as places refused everyone else 429.
    with _collector(max_inflight=1) as url, _connect(url) as slow:
        slow.sendall(
            b"POST /v1/telemetry HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\n\r\n{"
        )
        # The slow request holds the only place: another sender is refused meanwhile.
        refused = _post(url)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "inflight_limit"
        assert _trickle_until_closed(slow, b" ")
        accepted = _post(url)
        assert accepted.status_code == 202, accepted.text
        scrape = _scrape(url)
    assert scrape.value("rastir_collector_rejected_requests_total", reason="client_disconnected")
    assert scrape.value("rastir_collector_inflight_requests") == 0


def test_a_body_still_arriving_after_an_early_refusal_is_cut_off_too() -> None:
    # A 413 is sent before the body is read; uvicorn then reads and discards the rest
    # for as long as it comes, each byte postponing its keep-alive timer.
    with _collector(max_body_bytes=1024) as url, _connect(url) as sock:
        sock.sendall(
            b"POST /v1/telemetry HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000000\r\n\r\n"
        )
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 413 "), head[:200]
        assert _trickle_until_closed(sock, b"x")


def _head(url_path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + url_path + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(
    "extra",
    [
        b"x-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n",  # one huge header
        b"x-a: b\r\n" * (MAX_HEAD_BYTES // 8 + 1),  # many small ones
        b"authorization: Bearer " + b"t" * MAX_HEAD_BYTES + b"\r\n",
    ],
    ids=["one-header", "many-headers", "authorization"],
)
def test_a_head_beyond_the_limit_is_431_and_never_read_whole(extra: bytes) -> None:
    # Before: a 20 MiB header was read whole and handed to the app (+70 MB of memory
    # for one request); nothing bounded it but the client's patience.
    with _collector() as url, _connect(url) as sock:
        try:
            sock.sendall(_head(b"/health", extra) + extra * 64)  # far more than the limit
        except OSError:  # the server may close before it has read all of it
            pass
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"error":"head_too_large"' in answer


def test_the_longest_legal_query_fits_in_the_head() -> None:
    # A 4096-character agent filter, each character three UTF-8 bytes, percent-encoded
    # (36 KiB), a model filter half as long, and a token: near the 64 KiB that
    # httptools' URL parser takes at most, whatever the head limit.
    agent, model = quote("界" * 4096).encode(), quote("界" * 2400).encode()
    token = b"authorization: Bearer " + b"t" * 32 * 1024 + b"\r\n"
    with _collector() as url, _connect(url) as sock:
        sock.sendall(_head(b"/v1/traces?agent=" + agent + b"&model=" + model, token))
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b'{"traces":[],"next_cursor":null}')
    assert len(agent) + len(model) + len(token) > 88 * 1024  # beyond 64 KiB + 16 KiB


# -- nested OTLP values -----------------------------------------------------------------------

_TRACE, _SPAN = "ab" * 16, "cd" * 8


def _nested_json(depth: int) -> bytes:
    value = '{"stringValue":"x"}'
    for _ in range(depth):
        value = '{"arrayValue":{"values":[' + value + "]}}"
    head = '{"resourceSpans":[{"scopeSpans":[{"spans":[{'
    ids = f'"traceId":"{_TRACE}","spanId":"{_SPAN}",'
    rest = '"name":"n","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"a",'
    return (head + ids + rest + '"value":' + value + "}]}]}]}]}").encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_protobuf(depth: int) -> bytes:
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value{values: [value]}
    attribute = _field(1, b"a") + _field(2, value)  # KeyValue
    span_ = (
        _field(1, bytes.fromhex(_TRACE))
        + _field(2, bytes.fromhex(_SPAN))
        + _field(5, b"n")
        + b"\x39"
        + (1).to_bytes(8, "little")  # start_time_unix_nano (fixed64)
        + b"\x41"
        + (2).to_bytes(8, "little")  # end_time_unix_nano
        + _field(9, attribute)
    )
    return _field(1, _field(2, _field(2, span_)))  # request > resource_spans > scope_spans


def _attribute_sizes(body: bytes, decode: Any) -> int:
    try:
        decoded = decode(body)
    except Exception:  # refusing a value nested too deep is a fine answer too
        return 0
    return sum(
        len(str(value))
        for _, spans in decoded.groups
        for s in spans
        for value in s.attributes.values()
    )


@pytest.mark.parametrize(
    ("decode", "make"), [(decode_json, _nested_json), (decode_protobuf, _nested_protobuf)]
)
def test_a_deeply_nested_otlp_value_decodes_to_text_linear_in_its_size(
    decode: Any, make: Any
) -> None:
    # Depth 40: under 1.5 KB of body became 2 MiB of attribute text (depth 60: 2 GiB,
    # depth 100 never finished), all of it before max_attr_value_len cut it.
    body = make(40)
    assert _attribute_sizes(body, decode) <= 4 * len(body)


def test_an_otlp_json_value_nested_beyond_the_decoders_depth_is_a_400() -> None:
    # 503 asks the sender to retry: an OTLP exporter would send it again and again.
    with _collector() as url:
        r = httpx.post(
            f"{url}/v1/traces",
            content=_nested_json(5000),
            headers={"content-type": "application/json"},
            timeout=_WAIT,
        )
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("decode", "make"), [(decode_json, _nested_json), (decode_protobuf, _nested_protobuf)]
)
def test_a_nested_value_is_json_encoded_once_and_cut_below_32_levels(
    decode: Any, make: Any
) -> None:
    def attribute(depth: int) -> Any:
        (_, spans), *_ = decode(make(depth)).groups
        return spans[0].attributes["a"]

    assert attribute(1) == ["x"]  # a list of scalars stays a list
    assert attribute(3) == '[[["x"]]]'  # deeper: its JSON, encoded once, not re-escaped
    assert json.loads(attribute(32)) == json.loads("[" * 32 + '"x"' + "]" * 32)
    deep = json.loads(attribute(40))
    for _ in range(32):
        (deep,) = deep
    assert deep == "[nested deeper than 32 levels]"


@pytest.mark.parametrize("order", [("good", "bad"), ("bad", "good")])
def test_a_repeated_authorization_header_is_no_credentials_on_every_endpoint(
    order: tuple[str, str],
) -> None:
    """A proxy in front may have checked either copy; trusting one of them (ingest read
    the last, the query API the first) let a wrong token through one of the two."""
    tokens = {"good": "Bearer s3cret", "bad": "Bearer wrong"}
    headers = [("authorization", tokens[order[0]]), ("authorization", tokens[order[1]])]
    with _collector(ingest_token="s3cret", query_token="s3cret") as url:
        body = encode(batch([span()]))
        ingest = httpx.post(f"{url}/v1/telemetry", content=body, headers=headers, timeout=_WAIT)
        query = httpx.get(f"{url}/v1/traces", headers=headers, timeout=_WAIT)
        one = httpx.get(f"{url}/v1/traces", headers=[headers[0]], timeout=_WAIT)
    assert (ingest.status_code, query.status_code) == (401, 401)
    assert one.status_code == (200 if order[0] == "good" else 403)


def test_repeated_content_encoding_lines_are_one_list() -> None:
    """``gzip`` then ``identity`` is ``gzip, identity`` (RFC 9110): refused with 415,
    not read as a plain body because the last line said so."""
    body = encode(batch([span()]))
    headers = [("content-encoding", "gzip"), ("content-encoding", "identity")]
    with _collector() as url:
        r = httpx.post(f"{url}/v1/telemetry", content=body, headers=headers, timeout=_WAIT)
        plain = httpx.post(f"{url}/v1/telemetry", content=body, timeout=_WAIT)
    assert r.status_code == 415, r.text
    assert plain.status_code == 202
