"""The user documentation, read as a new user reads it, checked against the real code.

What stays true here (and what other tests already keep, so it is not repeated):

* every metric family docs/metrics.md lists has the labels a real collector gives it
  (the family names and types, both ways, are
  ``tests/collector/test_metrics.py::test_docs_list_every_family_the_collector_exposes``);
* every row of an option table, for the collector (``--flag``, ``RASTIR_COLLECTOR_*``,
  default) and for ``configure()`` (argument, ``RASTIR_*``, default), is what the parser
  and the settings have, and every collector flag is in one of those tables;
* every ``RASTIR_*`` variable the docs name is read by rastir, and every ``--flag`` on
  a documented ``rastir ...`` command line or in an option table exists;
* every Python snippet parses as Python 3.10, and every name it takes from rastir
  exists (names of the facade in ``rastir.__all__``);
* README's quick start, run as written (its push URL pointed at a real collector, the
  OpenAI client at a fake OpenAI API on loopback), delivers the trace the README
  describes, and README's testing example passes under pytest. The examples of
  ``examples/`` are run by ``tests/examples/``, and ``rastir demo`` by
  ``tests/cli/test_demo.py``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rastir
from rastir.collector import CollectorSettings
from rastir.collector.cli import build_parser as collector_parser
from rastir.demo.cli import build_parser as demo_parser
from rastir.viewer import QueryClient
from rastir.viewer.cli import trace_parser, traces_parser
from tests.adapters.live_api import TEXT, USAGE
from tests.adapters.live_api import serving as fake_provider_api
from tests.collector.conftest import RunCollector
from tests.examples.conftest import children, example_env

ROOT = Path(__file__).resolve().parents[2]
# docs/decisions.md is a log of choices, with the names they had then: not checked.
DOCS = [
    ROOT / "README.md",
    ROOT / "examples" / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "decisions.md"),
]
SUBCOMMANDS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "collector": collector_parser,
    "demo": demo_parser,
    "traces": traces_parser,
    "trace": trace_parser,
}
# A fenced block, indented or not (blocks inside list items are indented).
_FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.S | re.M)
_SHELL = ("bash", "sh", "shell", "console", "")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [textwrap.dedent(body) for lang, body in _FENCE.findall(text) if lang in languages]


def _rows(path: Path) -> Iterator[list[str]]:
    """The cells of every Markdown table row outside code blocks (``\\|`` is a bar)."""
    for raw in _FENCE.sub("", _text(path)).splitlines():
        line = raw.strip()
        if len(line) > 1 and line[0] == line[-1] == "|" and not set(line) <= set("|-: "):
            yield [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line[1:-1])]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def _flags(text: str) -> list[str]:
    return re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", text)


# -- metrics -----------------------------------------------------------------------------


def _documented_labels() -> dict[str, set[str]]:
    """``{family: labels}`` from the tables of docs/metrics.md."""
    out: dict[str, set[str]] = {}
    for cells in _rows(ROOT / "docs" / "metrics.md"):
        if (
            len(cells) >= 3
            and re.fullmatch(r"`rastir_[a-z0-9_]+`", cells[0])
            and cells[1] in ("counter", "gauge", "histogram")
        ):
            out[cells[0].strip("`")] = {x.strip() for x in cells[2].split(",") if x.strip()}
    return out


@pytest.mark.anyio
async def test_each_documented_metric_family_has_the_labels_the_collector_gives_it(
    run_collector: RunCollector,
) -> None:
    documented = _documented_labels()
    async with run_collector() as c:
        await c.scrape()  # the store is open and serving: its families are registered
        registered: dict[str, set[str]] = {}
        for family in c.app.state.registry.collect():
            name = family.name + "_total" if family.type == "counter" else family.name
            # A family without samples yet still says its labels when it was made with them.
            labels = set(getattr(family, "_labelnames", ()))
            for sample in family.samples:
                labels.update(k for k in sample.labels if k not in ("le", "quantile"))
            registered[name] = labels
    common = documented.keys() & registered.keys()
    assert "rastir_llm_calls_total" in common  # the tables were read
    wrong = {n: (sorted(documented[n]), sorted(registered[n])) for n in common}
    wrong = {n: labels for n, labels in wrong.items() if labels[0] != labels[1]}
    assert not wrong, f"docs/metrics.md labels (documented, registered) differ: {wrong}"


# -- collector options -------------------------------------------------------------------


def _collector_rows() -> list[tuple[str, str, str, str]]:
    """``(doc, flag, variable, default)`` of every row of a collector option table."""
    found = []
    for doc in DOCS:
        for cells in _rows(doc):
            if len(cells) < 3 or not cells[0].startswith("`--"):
                continue
            variable = re.match(r"`(RASTIR_COLLECTOR_[A-Z0-9_]+)`", cells[1])
            if variable:
                found.append((_rel(doc), _flags(cells[0])[0], variable.group(1), cells[2]))
    return found


COLLECTOR_ROWS = _collector_rows()


def test_the_collector_option_tables_are_found_and_cover_every_flag() -> None:
    documented = {flag for _, flag, _, _ in COLLECTOR_ROWS}
    assert {"--port", "--tail-ratio", "--eval-workers"} <= documented
    undocumented = _options(collector_parser()) - documented
    assert undocumented <= {"-h", "--help", "--version", "--no-access-log"}, undocumented


@pytest.mark.parametrize(
    ("doc", "flag", "variable", "default"),
    COLLECTOR_ROWS,
    ids=[f"{doc}:{flag}" for doc, flag, _, _ in COLLECTOR_ROWS],
)
def test_a_documented_collector_option_has_that_flag_variable_and_default(
    doc: str, flag: str, variable: str, default: str
) -> None:
    assert flag in _options(collector_parser()), f"{doc}: rastir collector has no {flag}"
    field = flag.removeprefix("--").replace("-", "_")
    assert variable == f"RASTIR_COLLECTOR_{field.upper()}"
    assert field in {f.name for f in dataclasses.fields(CollectorSettings)}
    actual = getattr(CollectorSettings(), field)
    if default == "none":  # no value (`none` in backticks is a value)
        assert not actual, f"{doc}: {flag} defaults to {actual!r}, not none"
    else:
        # The documented default, read as the variable, is the default.
        value = default.strip("`")
        documented = getattr(CollectorSettings.from_env({variable: value}), field)
        assert documented == actual, f"{doc}: {flag} defaults to {actual!r}, not {value}"


# -- configure() -------------------------------------------------------------------------


def _sdk_rows() -> list[tuple[str, str, str, str]]:
    """``(doc, argument, variable, default)`` of every row of a ``configure()`` table."""
    found = []
    for doc in DOCS:
        for cells in _rows(doc):
            argument = re.fullmatch(r"`([a-z_]+)`", cells[0])
            variable = re.match(r"`(RASTIR_[A-Z0-9_]+)`", cells[1]) if len(cells) > 2 else None
            if argument and variable and not variable.group(1).startswith("RASTIR_COLLECTOR_"):
                found.append((_rel(doc), argument.group(1), variable.group(1), cells[2]))
    return found


SDK_ROWS = _sdk_rows()


def test_the_configure_tables_are_found() -> None:
    assert {"service", "push_url", "sample_ratio"} <= {arg for _, arg, _, _ in SDK_ROWS}


@pytest.mark.parametrize(
    ("doc", "argument", "variable", "default"),
    SDK_ROWS,
    ids=[f"{doc}:{argument}" for doc, argument, _, _ in SDK_ROWS],
)
def test_a_documented_configure_setting_has_that_argument_variable_and_default(
    doc: str, argument: str, variable: str, default: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert argument in inspect.signature(rastir.configure).parameters, f"{doc}: {argument}"
    assert variable == f"RASTIR_{argument.upper()}"
    for name in list(os.environ):
        if name.startswith(("RASTIR_", "OTEL_")):
            monkeypatch.delenv(name)
    actual = getattr(rastir.configure(), argument)
    if default == "none":  # no value (`none` in backticks would be a value)
        assert actual in (None, {}), f"{doc}: {argument} defaults to {actual!r}, not none"
    else:
        value = default.strip("`")
        monkeypatch.setenv(variable, value)
        documented = getattr(rastir.configure(), argument)
        assert documented == actual, f"{doc}: {argument} defaults to {actual!r}, not {value}"


# -- variables and flags named anywhere ----------------------------------------------------


def _read_variables() -> set[str]:
    """``RASTIR_*`` names rastir's code reads: its exact string literals, and the
    collector's settings."""
    names = {f"RASTIR_COLLECTOR_{f.name.upper()}" for f in dataclasses.fields(CollectorSettings)}
    for path in (ROOT / "rastir").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and re.fullmatch(r"RASTIR_[A-Z0-9_]+", value):
                names.add(value)
    return names


def test_every_rastir_variable_the_docs_name_is_read_by_rastir() -> None:
    read = _read_variables()
    named = {
        (_rel(doc), name)
        for doc in DOCS
        for name in re.findall(r"RASTIR_[A-Z0-9_]+", _text(doc))
        if not name.endswith("_")  # a prefix: RASTIR_COLLECTOR_*
    }
    assert ("README.md", "RASTIR_PUSH_URL") in named
    unread = sorted(n for n in named if n[1] not in read)
    assert not unread, unread


def _command_lines(text: str) -> Iterator[str]:
    """Lines of shell blocks (continuations joined) and inline code spans."""
    for block in _blocks(text, _SHELL):
        yield from block.replace("\\\n", " ").splitlines()
    yield from re.findall(r"`([^`\n]+)`", _FENCE.sub("", text))


def test_every_flag_on_a_documented_rastir_command_line_exists() -> None:
    options = {name: _options(make()) for name, make in SUBCOMMANDS.items()}
    every = set().union(*options.values())
    unknown = []
    seen = 0
    for doc in DOCS:
        for line in _command_lines(_text(doc)):
            for m in re.finditer(r"\brastir (collector|demo|traces|trace)\b([^#;&|`]*)", line):
                seen += 1
                known = options[m.group(1)]
                found = [(_rel(doc), m.group(0), f) for f in _flags(m.group(2))]
                unknown += [u for u in found if u[2] not in known]
        for cells in _rows(doc):
            if cells and cells[0].startswith("`--"):
                unknown += [(_rel(doc), cells[0], f) for f in _flags(cells[0]) if f not in every]
    assert seen > 10  # the command lines were found
    assert not unknown, unknown


# -- Python snippets ---------------------------------------------------------------------

PYTHON_BLOCKS = [
    (_rel(doc), i, code)
    for doc in DOCS
    for i, code in enumerate(_blocks(_text(doc), ("python", "py")))
]


@pytest.mark.parametrize(
    ("doc", "index", "code"),
    PYTHON_BLOCKS,
    ids=[f"{doc}#{i}" for doc, i, _ in PYTHON_BLOCKS],
)
def test_a_python_snippet_parses_as_python_3_10_and_takes_only_real_names(
    doc: str, index: int, code: str
) -> None:
    # feature_version catches grammar newer than 3.10 (except*, type statements).
    tree = ast.parse(code, feature_version=(3, 10))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rastir":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{doc}: {node.module} has no {alias.name}"
                if node.module == "rastir":
                    assert alias.name in rastir.__all__, f"{doc}: rastir.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rastir":
                    importlib.import_module(alias.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "rastir"
        ):
            assert node.attr in rastir.__all__, f"{doc}: rastir.{node.attr}"


# -- README's quick start, run --------------------------------------------------------------

README = ROOT / "README.md"
PUSH_URL = 'push_url="http://127.0.0.1:8080"'


def _readme_block(heading: str) -> tuple[str, str]:
    """The first Python block under a README heading, and the paragraph after it."""
    text = _text(README).split(f"\n{heading}\n", 1)[1]
    match = _FENCE.search(text)
    assert match, f"no code block under {heading}"
    assert match.group(1) == "python", f"the first block under {heading} is not Python"
    return match.group(2), text[match.end() :].strip().split("\n\n", 1)[0]


def _quickstart(collector: str) -> str:
    code, _ = _readme_block("## Quickstart")
    # The quick start names its collector; the test's is on another port.
    assert code.count(PUSH_URL) == 1, f"the quick start no longer says {PUSH_URL}"
    return code.replace(PUSH_URL, f'push_url="{collector}"')


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=180
    )


def _env(collector: str, provider_url: str) -> dict[str, str]:
    """A user's environment: an API key (a placeholder) and OpenAI's base URL, here the
    fake API's."""
    env = {k: v for k, v in example_env(collector).items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_API_KEY="sk-placeholder", OPENAI_BASE_URL=f"{provider_url}/v1")
    # The flush at exit waits for the collector however busy the machine is.
    env["RASTIR_SHUTDOWN_TIMEOUT"] = "60"
    return env


def test_readme_quickstart_delivers_the_trace_the_readme_describes(
    collector: str, tmp_path: Path
) -> None:
    _, promise = _readme_block("## Quickstart")
    call = re.match(r"`([a-z_]+\(.*?\))`", promise)
    assert call, f"the paragraph after the quick start no longer opens with the call: {promise}"
    attributes = dict(re.findall(r'`(gen_ai\.[a-z_.]+)(?:="([^"]*)")?`', promise))
    assert "gen_ai.usage.input_tokens" in attributes
    script = tmp_path / "quickstart.py"
    script.write_text(f"{_quickstart(collector)}\n\nprint({call.group(1)})\n", encoding="utf-8")
    client = QueryClient(collector)
    before = client.list_traces(service="trip-planner")["traces"]
    with fake_provider_api() as api:
        done = _run([sys.executable, str(script)], tmp_path, _env(collector, api.url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(TEXT) + "\n"  # the fake model's answer

    # The collector acknowledges once stored, and the process flushed at exit.
    after = client.list_traces(service="trip-planner")["traces"]
    assert len(after) == len(before) + 1
    (root,) = client.get_trace(after[0]["trace_id"])["spans"]
    assert root["kind"] == "agent"
    assert [kind for _, kind in children(root)] == ["tool", "llm"]
    llm = root["children"][1]["attributes"]
    for name, value in attributes.items():
        assert name in llm, f"README promises {name} on the llm span: {llm}"
        if value:
            assert llm[name] == value
    assert llm["gen_ai.usage.input_tokens"] == USAGE["input"]
    assert llm["gen_ai.usage.output_tokens"] == USAGE["output"]


def test_readme_testing_example_passes_under_pytest(collector: str, tmp_path: Path) -> None:
    testing, _ = _readme_block("### Testing your instrumentation")
    # README: "Under pytest the same is the fixture `rastir_spans`".
    fixture = (
        "def test_the_fixture_is_registered(rastir_spans):\n"
        '    plan("Lisbon")\n'
        '    agent = rastir_spans.one(kind="agent")\n'
        '    assert rastir_spans.one("weather").parent_span_id == agent.span_id\n'
    )
    test_file = tmp_path / "test_readme.py"
    test_file.write_text(f"{_quickstart(collector)}\n\n{testing}\n\n{fixture}", encoding="utf-8")
    with fake_provider_api() as api:
        done = _run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name],
            tmp_path,
            _env(collector, api.url),
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
