"""``examples/quickstart.py``: a traced agent in-process, printed as a tree."""

from __future__ import annotations

import subprocess
import sys

from tests.examples.conftest import EXAMPLES, example_env


def test_the_quickstart_prints_its_agent_tree() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=example_env(None),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "answer: echo: Lisbon: doc about Lisbon; sunny in Lisbon"
    tree = [line.rsplit(" ", 2)[0] for line in lines[2:7]]
    assert tree == [
        "trip_planner (agent)",
        "├── search_docs (retrieval)",
        "├── weather (tool)",
        "├── weather (tool) [error internal_error]",
        "└── chat (llm)",
    ]
    llm = lines[8]
    assert "'gen_ai.request.model': 'gpt-4o'" in llm
    assert "'gen_ai.response.model': 'gpt-4o-2024-08-06'" in llm
    assert "'gen_ai.usage.input_tokens': 9" in llm
    assert "'gen_ai.agent.name': 'trip_planner'" in llm
