"""The whole path: the SDK with ``capture_content`` → collector → judge → evaluation span."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import pytest
from openai.types.chat import ChatCompletion

import rastir
from tests.evaluation.conftest import RunCollector, wait_for
from tests.evaluation.judge_server import run_judge
from tests.evaluation.test_service import evaluations_under, walk


def _completion(text: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        }
    )


@rastir.llm(provider="openai")
def chat(messages: list[dict[str, Any]], model: str) -> ChatCompletion:
    return _completion("Sunny in Lisbon, 24 degrees.")


@rastir.agent(agent_name="planner")
def plan(city: str) -> ChatCompletion:
    prompt = f"Weather in {city}? Reply to ops@example.com"
    return chat(messages=[{"role": "user", "content": prompt}], model="gpt-4o")


@pytest.mark.anyio
async def test_an_sdk_llm_call_is_judged_and_the_result_lands_under_it(
    run_collector: RunCollector,
) -> None:
    config = {"evaluators": [{"name": "relevance", "type": "relevance"}]}
    async with (
        run_judge() as judge,
        run_collector(config, eval_judge_url=judge.base_url, eval_judge_model="judge-1") as c,
    ):
        rastir.configure(service="trip-planner", push_url=c.url, capture_content=True)
        plan("Lisbon")
        assert await anyio.to_thread.run_sync(rastir.flush, 10.0)
        m = await wait_for(c, lambda m: m.total("rastir_evaluations_total") == 1)
        page = (await c.client.get("/v1/traces", params={"service": "trip-planner"})).json()
        (summary,) = page["traces"]
        tree = (await c.client.get(f"/v1/traces/{summary['trace_id']}")).json()
    (llm,) = [n for n in walk(tree["spans"]) if n["kind"] == "llm"]
    ev = evaluations_under(tree, llm["span_id"])["relevance"]
    a = ev["attributes"]
    assert a["rastir.evaluation.passed"] is True
    assert a["rastir.evaluation.score"] == 0.95
    assert a["gen_ai.agent.name"] == "planner"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    # The agent and model labels come from the judged LLM span.
    assert (
        m.value(
            "rastir_evaluations_total",
            service="trip-planner",
            agent="planner",
            model="gpt-4o-2024-08-06",
            evaluation="relevance",
            result="passed",
        )
        == 1
    )
    (request,) = judge.requests
    sent = request["messages"][1]["content"]
    assert "user: Weather in Lisbon? Reply to [REDACTED]" in sent
    assert "Sunny in Lisbon, 24 degrees." in sent
    assert "ops@example.com" not in sent
