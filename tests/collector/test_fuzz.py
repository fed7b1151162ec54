"""Fuzzing ``POST /v1/telemetry``: whatever arrives, never a 5xx, and the collector stays well.

Three kinds of input: arbitrary bytes, arbitrary JSON, and valid batches with one
random mutation (the inputs most likely to slip past decoding into the code after it).
The big run goes through the ASGI app in-process for speed; a smaller one goes
through real uvicorn and httptools.
"""

from __future__ import annotations

import copy
import gzip
from typing import Any, cast

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from rastir.collector import CollectorSettings, create_app
from tests.collector.server import serving
from tests.collector.spans import agent_trace, batch, encode, llm_span, span

ALLOWED = {202, 400, 413, 415}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
# Values chosen to sit on the edges of what the wire schema and the checks allow.
edge_values = st.sampled_from(
    [
        "",
        "0" * 16,
        "0" * 32,
        "A" * 32,
        "g" * 16,
        "x" * 5000,
        -1,
        0,
        2**63,
        2**64 + 1,
        1.5,
        True,
        None,
        [],
        {},
        ["a", 1, 2.5, False],
        [["nested"]],
        {"deep": {"er": [1]}},
        "error",
        "cancelled",
        "llm",
        "\x00\ud7ff",
    ]
)


def _valid_doc() -> dict[str, Any]:
    _, spans = agent_trace(n_llm=2)
    spans.append(llm_span(rastir__ttft_ms=120.0, rastir__guardrail__intervened=True))
    spans.append(span(kind="mcp.server", status="error", error_type="tool_error"))
    spans[-1]["events"] = [{"name": "first_token", "time_unix_nano": 5, "attributes": {"a": 1}}]
    spans[-1]["links"] = [{"trace_id": spans[0]["trace_id"], "span_id": spans[0]["span_id"]}]
    return batch(spans, service="fuzz", dropped=1)


TEMPLATE = _valid_doc()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid batch with one change somewhere: a key dropped, added, or a value replaced."""
    doc = copy.deepcopy(TEMPLATE)
    node: Any = doc
    # Walk down a random path, then change what is there.
    for _ in range(draw(st.integers(0, 5))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        elif isinstance(node, list) and node:
            node = node[draw(st.integers(0, len(node) - 1))]
            if not isinstance(node, (dict, list)):
                break
        else:
            break
    op = draw(st.sampled_from(["replace", "delete", "add", "edge"]))
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if op == "delete":
            del node[key]
        elif op == "add":
            node[draw(st.text(max_size=12))] = draw(json_values)
        else:
            node[key] = draw(edge_values if op == "edge" else json_values)
    elif isinstance(node, list) and node:
        i = draw(st.integers(0, len(node) - 1))
        if op == "delete":
            del node[i]
        elif op == "add":
            node.append(draw(json_values))
        else:
            node[i] = draw(edge_values if op == "edge" else json_values)
    return encode(doc)


bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(encode),
    mutated(),
    mutated(),  # weighted: mutations find more than noise
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str | bytes]]:
    body = draw(bodies)
    content_type = draw(st.sampled_from([b"application/json", b"text/plain", b"", b"x/\xe9"]))
    headers: dict[str, str | bytes] = {"content-type": content_type}
    encoding = draw(
        st.sampled_from([None, None, "gzip", "gzip-bad", "identity", "br", "GZip", "x-gzip"])
    )
    if encoding in ("gzip", "GZip", "x-gzip"):
        body = gzip.compress(body)
        headers["content-encoding"] = encoding
    elif encoding == "gzip-bad":
        headers["content-encoding"] = "gzip"  # claims gzip, is not
    elif encoding is not None:
        headers["content-encoding"] = encoding
    return body, headers


def _settings() -> CollectorSettings:
    # Small limits, so that the limit paths are fuzzed too.
    return CollectorSettings(
        store="memory",
        access_log=False,
        max_body_bytes=16_384,
        max_spans_per_batch=6,
        max_attr_value_len=64,
        max_attrs_per_span=8,
        max_label_values=50,
        # Load shedding answers 429 on a machine busy enough to lag the loop; the
        # fuzzing is about what the input gets, so it is off here.
        max_loop_lag=None,
        max_queue_delay=None,
    )


def _after(client: Any) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    good = client.post("/v1/telemetry", content=encode(TEMPLATE))
    assert good.status_code == 202, good.text
    metrics = client.get("/metrics").text
    assert 'reason="internal_error"' not in metrics
    assert client.get("/v1/traces?limit=1000").status_code == 200


def test_fuzzed_requests_never_get_a_5xx_in_process() -> None:
    app = create_app(_settings())
    with TestClient(app) as client:

        @settings(
            max_examples=1000,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def check(request: tuple[bytes, dict[str, str | bytes]]) -> None:
            body, headers = request
            r = client.post("/v1/telemetry", content=body, headers=headers)
            assert r.status_code in ALLOWED, (r.status_code, r.text)
            if r.status_code != 202:
                assert r.json()["message"]

        check()
        _after(client)
        # Every trace that was accepted can be read back as a tree.
        for t in client.get("/v1/traces?limit=1000").json()["traces"]:
            assert client.get(f"/v1/traces/{t['trace_id']}").status_code == 200


def test_fuzzed_requests_never_get_a_5xx_over_uvicorn() -> None:
    app = create_app(_settings())
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:

        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def check(request: tuple[bytes, dict[str, str | bytes]]) -> None:
            body, headers = request
            r = client.post("/v1/telemetry", content=body, headers=cast(Any, headers))
            assert r.status_code in ALLOWED, (r.status_code, r.text)

        check()
        _after(client)


def test_the_fuzz_template_is_valid() -> None:
    app = create_app(_settings())
    with TestClient(app) as client:
        r = client.post("/v1/telemetry", content=encode(TEMPLATE))
        assert r.json() == {"accepted": len(TEMPLATE["spans"])}
