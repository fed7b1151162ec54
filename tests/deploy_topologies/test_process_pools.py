"""``ProcessPoolExecutor`` and ``multiprocessing.Pool``, forked and spawned, for real.

``pool_job`` runs in a subprocess, exporting to the real collector: a ``job`` span in
the parent and one ``tool`` span per task in the workers, each task given the job's
context explicitly. Every task's span arrives once, from its worker, as a child of
the job's span. Spans leave only when a process ends (``RASTIR_FLUSH_INTERVAL=60``),
so this also proves that each worker flushed on its way out.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from rastir.viewer import QueryClient
from tests.collector.conftest import Scrape
from tests.deploy_topologies._topology import PYTHON, ROOT
from tests.examples.conftest import example_env, nodes

_TASKS = 6


@pytest.mark.parametrize("pool", ["executor", "pool"])
@pytest.mark.parametrize(
    ("method", "configure"),
    [
        ("fork", "parent"),  # the workers inherit the parent's exporter
        ("fork", "workers"),  # forked before any exporter, configured in the worker
        ("spawn", "initializer"),  # a spawned worker must configure itself
    ],
)
def test_each_task_span_arrives_once_under_the_jobs_span(
    collector: str, pool: str, method: str, configure: str
) -> None:
    service = f"pool-{pool}-{method}-{configure}"
    env = example_env(collector)
    env.update(RASTIR_SERVICE=service, RASTIR_FLUSH_INTERVAL="60")
    argv = [PYTHON, "-m", "tests.deploy_topologies.pool_job", pool, method, configure]
    proc = subprocess.run(
        [*argv, str(_TASKS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rastir exporter" not in proc.stderr, proc.stderr
    job = json.loads(proc.stdout.splitlines()[-1])

    spans = nodes(QueryClient(collector).get_trace(job["trace_id"]))
    assert [(n["name"], n["service"]) for n in spans] == [("job", service)] + [
        ("square", service)
    ] * _TASKS, spans
    assert spans[0]["span_id"] == job["span_id"]
    assert all(n["parent_span_id"] == job["span_id"] for n in spans[1:])
    scrape = Scrape(httpx.get(f"{collector}/metrics", timeout=30).text)
    # Each span once: the store keeps the last of two copies, this counter both.
    assert scrape.value("rastir_collector_ingested_spans_total", service=service) == _TASKS + 1
    assert scrape.value("rastir_collector_client_dropped_spans_total", service=service) == 0
