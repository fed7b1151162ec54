"""``examples/fastapi_agent``: the FastAPI service, its requests traced into a collector."""

from __future__ import annotations

import httpx

from tests.examples.conftest import EXAMPLES, children, nodes, start_server, trace


def test_each_request_is_one_trace_with_the_agent_tool_and_model(collector: str) -> None:
    server, url = start_server(EXAMPLES / "fastapi_agent" / "app.py", collector)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            lisbon = client.post("/ask", json={"question": "What should I wear in Lisbon?"})
            atlantis = client.post("/ask", json={"question": "And in Atlantis?"})
    finally:
        assert server.stop() == 0  # SIGTERM: uvicorn stops, then the spans are flushed
    assert lisbon.status_code == 200, lisbon.text
    assert lisbon.json()["answer"] == "Given sunny, 24 °C, dress for it."

    tree = trace(collector, lisbon.json()["trace_id"])
    (root,) = tree["spans"]
    assert (root["name"], root["kind"], root["service"]) == (
        "POST /ask",
        "http.server",
        "concierge-api",
    )
    assert root["attributes"]["http.response.status_code"] == 200
    assert children(root) == [("concierge", "agent")]
    agent = root["children"][0]
    assert children(agent) == [("weather", "tool"), ("chat", "llm")]
    llm = agent["children"][1]["attributes"]
    assert llm["gen_ai.request.model"] == "gpt-4o-mini"
    assert llm["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert llm["gen_ai.agent.name"] == "concierge"
    assert llm["gen_ai.usage.input_tokens"] > 0
    assert llm["gen_ai.usage.output_tokens"] > 0
    assert all(n["status"] == "ok" for n in nodes(tree))

    # No forecast for Atlantis: the tool's span is the error, the request still succeeds.
    assert atlantis.status_code == 200
    failed = trace(collector, atlantis.json()["trace_id"])
    by_kind = {n["kind"]: n for n in nodes(failed)}
    assert by_kind["tool"]["status"] == "error"
    assert by_kind["tool"]["error"]["exception_type"].endswith("LookupError")
    assert by_kind["agent"]["status"] == "ok"
    assert failed["summary"]["error_count"] == 1
