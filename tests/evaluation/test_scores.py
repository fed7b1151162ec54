"""``POST /v1/scores``: validation, auth, unknown traces, and the spans and metrics it makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rastir.collector import CollectorSettings, create_app
from tests.collector.server import serving
from tests.collector.spans import batch, encode, trace_id
from tests.evaluation.conftest import RunCollector
from tests.evaluation.spans import agent_with_llms


@pytest.mark.anyio
async def test_a_score_on_a_span_becomes_an_evaluation_span_with_metrics(
    run_collector: RunCollector,
) -> None:
    async with run_collector() as c:
        tid, spans = agent_with_llms(("q", "a"))
        assert (await c.post(encode(batch(spans, service="chat")))).status_code == 202
        llm = spans[1]
        r = await c.client.post(
            "/v1/scores",
            json={
                "trace_id": tid.upper(),  # folded, like the query API
                "span_id": llm["span_id"],
                "name": "user_feedback",
                "score": 0.25,
                "threshold": 0.5,
                "reason": "thumbs down",
                "source": "web-ui",
            },
        )
        assert r.status_code == 202, r.text
        reply = r.json()
        assert reply["trace_id"] == tid
        assert reply["parent_span_id"] == llm["span_id"]
        tree = (await c.client.get(f"/v1/traces/{tid}")).json()
        m = await c.scrape()
    (agent,) = tree["spans"]
    (llm_node,) = agent["children"]
    (ev,) = llm_node["children"]
    assert ev["span_id"] == reply["span_id"]
    assert ev["kind"] == "evaluation"
    assert ev["service"] == "chat"
    a = ev["attributes"]
    assert a["rastir.evaluation.name"] == "user_feedback"
    assert a["rastir.evaluation.score"] == 0.25
    assert a["rastir.evaluation.passed"] is False  # 0.25 < threshold 0.5
    assert a["rastir.evaluation.reason"] == "thumbs down"
    assert a["rastir.evaluation.source"] == "web-ui"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.agent.name"] == "planner"
    labels = {"service": "chat", "evaluation": "user_feedback"}
    assert m.total("rastir_evaluations_total", **labels, result="failed") == 1
    assert m.total("rastir_evaluation_score_count", **labels) == 1
    assert m.total("rastir_evaluation_score_bucket", **labels, le="0.3") == 1


@pytest.mark.anyio
async def test_a_score_without_span_id_goes_to_the_root_span(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        tid, spans = agent_with_llms(("q", "a"), ("q2", "a2"))
        # Children first: the root is found by structure, not by arrival order.
        assert (await c.post(encode(batch(spans[::-1])))).status_code == 202
        r = await c.client.post(
            "/v1/scores", json={"trace_id": tid, "name": "reviewed", "passed": True}
        )
        assert r.status_code == 202, r.text
        m = await c.scrape()
    assert r.json()["parent_span_id"] == spans[0]["span_id"]
    assert (
        m.total("rastir_evaluations_total", service="svc", evaluation="reviewed", result="passed")
        == 1
    )
    assert m.total("rastir_evaluation_score_count", service="svc", evaluation="reviewed") == 0


VALID: dict[str, Any] = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "name": "x", "score": 0.5}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "invalid score: JSON is malformed"),
        (b"[]", "Expected `object`, got `array`"),
        (encode({"name": "x", "score": 1}), "missing required field `trace_id`"),
        (encode({**VALID, "trace_id": "xyz"}), "malformed trace id 'xyz': expected 32 hex digits"),
        (encode({**VALID, "trace_id": "0" * 32}), "all zeros"),
        (encode({**VALID, "span_id": "123"}), "span_id '123' must be 16 hex digits"),
        (encode({**VALID, "score": 1.5}), "score=1.5 must be between 0 and 1 - at `$.score`"),
        (encode({**VALID, "score": -0.1}), "score=-0.1 must be between 0 and 1"),
        (encode({**VALID, "score": "high"}), "Expected `float | null`, got `str` - at `$.score`"),
        (encode({**VALID, "threshold": 2}), "threshold=2.0 must be between 0 and 1"),
        (encode({"trace_id": VALID["trace_id"], "name": "x"}), "give a score (0..1), passed"),
        (encode({**VALID, "name": ""}), "name must be 1-64 letters"),
        (encode({**VALID, "name": "has spaces"}), "name must be 1-64 letters"),
        (encode({**VALID, "name": "n" * 65}), "name must be 1-64 letters"),
        (encode({**VALID, "passed": "yes"}), "Expected `bool | null`, got `str` - at `$.passed`"),
        (encode({**VALID, "source": "a b"}), "source must be"),
        (encode({**VALID, "colour": "red"}), "unknown field `colour`"),
    ],
)
async def test_bad_scores_are_refused_with_a_clear_400(
    run_collector: RunCollector, body: bytes, message: str
) -> None:
    async with run_collector() as c:
        r = await c.client.post("/v1/scores", content=body)
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"
    assert message in r.json()["message"]


@pytest.mark.anyio
async def test_an_oversized_score_body_is_refused(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        r = await c.client.post("/v1/scores", json={**VALID, "reason": "x" * 70_000})
    assert r.status_code == 413


@pytest.mark.anyio
async def test_unknown_trace_or_span_is_a_clear_404(run_collector: RunCollector) -> None:
    async with run_collector() as c:
        tid, spans = agent_with_llms(("q", "a"))
        assert (await c.post(encode(batch(spans)))).status_code == 202
        unknown = trace_id()
        r1 = await c.client.post("/v1/scores", json={**VALID, "trace_id": unknown})
        r2 = await c.client.post(
            "/v1/scores", json={**VALID, "trace_id": tid, "span_id": "00f067aa0ba902b7"}
        )
        m = await c.scrape()
    assert r1.status_code == 404
    assert r1.json() == {
        "error": "not_found",
        "message": f"trace {unknown} is unknown: its spans have not reached this collector "
        "(or are still in the store's write queue: retry), were not sent (the sending "
        "service's head sampling), or were deleted by retention",
    }
    assert r2.status_code == 404
    assert r2.json()["message"] == f"span 00f067aa0ba902b7 is not part of trace {tid}"
    assert m.total("rastir_evaluations_total") == 0


@pytest.mark.anyio
async def test_scores_take_the_ingest_token_not_the_query_token(
    run_collector: RunCollector,
) -> None:
    async with run_collector(ingest_token="in-secret", query_token="read-secret") as c:
        tid, spans = agent_with_llms(("q", "a"))
        ingest = {"authorization": "Bearer in-secret"}
        assert (await c.post(encode(batch(spans)), headers=ingest)).status_code == 202
        body = {"trace_id": tid, "name": "x", "score": 0.5}
        none = await c.client.post("/v1/scores", json=body)
        query = await c.client.post(
            "/v1/scores", json=body, headers={"authorization": "Bearer read-secret"}
        )
        wrong = await c.client.post(
            "/v1/scores", json=body, headers={"authorization": "Bearer nope"}
        )
        # Auth comes before validation: a bad body without a token is still a 401.
        bad = await c.client.post("/v1/scores", content=b"garbage")
        ok = await c.client.post("/v1/scores", json=body, headers=ingest)
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="rastir"'
    assert query.status_code == 403
    assert wrong.status_code == 403
    assert bad.status_code == 401
    assert ok.status_code == 202, ok.text


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from([VALID["trace_id"], "00f067aa0ba902b7", "0" * 32, "x"]),
    st.lists(st.integers(), max_size=3),
)
_bodies = st.dictionaries(
    st.sampled_from(
        ["trace_id", "span_id", "name", "score", "passed", "threshold", "reason", "source", "x"]
    ),
    _values,
    max_size=9,
)


def test_any_json_body_gets_a_2xx_or_a_4xx_never_a_server_error(tmp_path: Path) -> None:
    app = create_app(CollectorSettings(store="memory", access_log=False, data_dir=tmp_path))
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        tid, spans = agent_with_llms(("q", "a"))
        assert client.post("/v1/telemetry", content=encode(batch(spans))).status_code == 202

        @settings(max_examples=150, deadline=None, derandomize=True)
        @given(body=_bodies, known=st.booleans())
        def check(body: dict[str, Any], known: bool) -> None:
            if known and "trace_id" in body:
                body["trace_id"] = tid
            r = client.post("/v1/scores", content=msgspec.json.encode(body))
            assert r.status_code in (202, 400, 404), r.text
            assert r.json()["error" if r.status_code != 202 else "span_id"]

        check()
