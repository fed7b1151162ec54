"""``examples/flask_app``: a WSGI app behind ``RastirWSGIMiddleware``."""

from __future__ import annotations

import httpx

from tests.examples.conftest import EXAMPLES, children, nodes, start_server, trace


def test_each_request_is_a_trace_with_the_retrieval_and_model_call(collector: str) -> None:
    server, url = start_server(EXAMPLES / "flask_app" / "app.py", collector)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            found = client.get("/articles/otel/summary")
            missing = client.get("/articles/nothing/summary", headers={"x-probe": "1"})
    finally:
        assert server.stop() == 0  # SIGTERM leaves serve_forever; spans are flushed
    assert found.status_code == 200, found.text
    assert found.json()["summary"].startswith("OpenTelemetry defines trace context")

    tree = trace(collector, found.json()["trace_id"])
    (root,) = tree["spans"]
    assert (root["kind"], root["service"]) == ("http.server", "articles-web")
    assert root["name"] == "GET /articles/<slug>/summary"
    assert root["attributes"]["http.route"] == "/articles/<slug>/summary"
    assert root["attributes"]["url.path"] == "/articles/otel/summary"
    assert root["attributes"]["http.response.status_code"] == 200
    assert children(root) == [("articles.fetch", "retrieval"), ("summarise", "llm")]
    llm = root["children"][1]["attributes"]
    assert llm["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert llm["gen_ai.usage.input_tokens"] > 0

    # The 404: the request span is not an error (only 5xx is), the retrieval's is.
    assert missing.status_code == 404
    traces = httpx.get(f"{collector}/v1/traces", params={"service": "articles-web"}).json()
    (other,) = [t for t in traces["traces"] if t["trace_id"] != tree["trace_id"]]
    spans = nodes(trace(collector, other["trace_id"]))
    assert [(n["kind"], n["status"]) for n in spans] == [
        ("http.server", "ok"),
        ("retrieval", "error"),
    ]
    assert spans[0]["attributes"]["http.response.status_code"] == 404
