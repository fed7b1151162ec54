"""``examples/langgraph_agent``: LangGraph's tool loop under plain rastir decorators."""

from __future__ import annotations

import subprocess
import sys

from tests.examples.conftest import EXAMPLES, children, example_env, trace

SCRIPT = EXAMPLES / "langgraph_agent" / "agent.py"


def _run(collector: str | None) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=example_env(collector),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_without_a_collector_the_example_prints_its_tree() -> None:
    lines = _run(None)
    assert lines[0] == "About 545,000 people live in Lisbon."
    assert [line.rsplit(" ", 2)[0] for line in lines[2:6]] == [
        "census (agent)",
        "├── call_model (llm)",
        "├── population (tool)",
        "└── call_model (llm)",
    ]


def test_the_graph_run_is_one_trace_in_the_collector(collector: str) -> None:
    lines = _run(collector)
    assert lines[-1].startswith("trace ")
    tree = trace(collector, lines[-1].split()[1])
    (root,) = tree["spans"]
    assert (root["name"], root["kind"], root["service"]) == ("census", "agent", "census-agent")
    assert children(root) == [
        ("call_model", "llm"),
        ("population", "tool"),
        ("call_model", "llm"),
    ]
    first, _, second = root["children"]
    assert first["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
    assert first["attributes"]["gen_ai.usage.input_tokens"] == 42
    assert second["attributes"]["gen_ai.usage.output_tokens"] == 9
    assert root["children"][1]["attributes"]["gen_ai.agent.name"] == "census"
    assert tree["summary"]["input_tokens"] == 42 + 61
