"""Several collector replicas sharing one PostgreSQL store, run as users scale out.

Every test runs real ``rastir collector`` processes on 127.0.0.1 with
``--store postgresql://...`` naming one database of a real PostgreSQL cluster
(``tests/_postgres.py``). Spans of one trace that reach different replicas must make
one trace, any replica must answer for every trace, and what a 202 promises must
hold when a replica is killed with SIGKILL and when PostgreSQL restarts under a
running replica. A password in the DSN must never leave the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from random import Random
from time import time_ns
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import psycopg
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from prometheus_client.parser import text_string_to_metric_families

from tests._postgres import PostgresServer, start_postgres
from tests.collector.spans import agent_trace, batch, encode, span, span_id, trace_id

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secret-pw"


# --- running replicas ------------------------------------------------------------------


@dataclass
class Replica:
    """One ``rastir collector`` process; ``output`` is everything it wrote, both streams."""

    process: Process
    url: str = ""
    output: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("msg") == msg]

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RASTIR_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


@asynccontextmanager
async def replica(
    *args: str, env: Mapping[str, str] | None = None, expect_start: bool = True
) -> AsyncIterator[Replica]:
    """``python -m rastir collector --port 0 --log-format json ...``, its output kept.

    With ``expect_start=False`` the replica may also exit without listening (a bad
    DSN): the context then yields once the process is gone (``url`` empty).
    """
    cmd = [sys.executable, "-m", "rastir", "collector", "--port", "0", "--log-format", "json"]
    process = await anyio.open_process(
        [*cmd, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(env),
    )
    rep = Replica(process)
    listening = anyio.Event()
    ended = anyio.Event()

    async def read() -> None:
        assert process.stdout is not None
        buf = ""
        async for chunk in TextReceiveStream(process.stdout):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                rep.output.append(line)
                try:
                    record = json.loads(line) if line.startswith("{") else {"msg": line}
                except ValueError:
                    record = {"msg": line}
                rep.records.append(record)
                if record.get("msg") == "listening":
                    rep.url = record["url"]
                    listening.set()
        if buf:
            rep.output.append(buf)
        listening.set()  # EOF: the process died; the caller finds no URL
        ended.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(60):
                await listening.wait()
            if expect_start:
                assert rep.url, f"collector did not start: {rep.text}"
            yield rep
            if process.returncode is None:
                process.kill()
            with anyio.fail_after(10):
                await ended.wait()
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(10, shield=True):
            await process.wait()
        await process.aclose()


async def stop(rep: Replica) -> int:
    """SIGTERM, and the exit status (the store flushes its queue first)."""
    rep.process.send_signal(signal.SIGTERM)
    with anyio.fail_after(30):
        return await rep.process.wait()


def counter_total(text: str, sample: str) -> float:
    """The sum of every series of one sample of a Prometheus exposition."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample
    )


def fresh_trace(service: str) -> tuple[str, list[dict[str, Any]]]:
    """``agent_trace``, dated now: the default retention (7 days) would sweep 2025."""
    tid, spans = agent_trace(service=service)
    shift = time_ns() - 60_000_000_000 - min(s["start_time_unix_nano"] for s in spans)
    for s in spans:
        s["start_time_unix_nano"] += shift
        s["end_time_unix_nano"] += shift
    return tid, spans


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node["children"]:
        yield from walk(child)


async def wait_for_traces(
    client: httpx.AsyncClient, expected: Mapping[str, int], within: float = 60
) -> dict[str, dict[str, Any]]:
    """Poll ``GET /v1/traces`` until it lists exactly ``expected`` (id -> span count)."""
    listed: dict[str, dict[str, Any]] = {}
    with anyio.fail_after(within):
        while True:
            r = await client.get("/v1/traces", params={"limit": 1000})
            assert r.status_code == 200, r.text
            traces = r.json()["traces"]
            listed = {t["trace_id"]: t for t in traces}
            assert len(listed) == len(traces), "a trace is listed twice"
            if {tid: t["span_count"] for tid, t in listed.items()} == dict(expected):
                return listed
            await anyio.sleep(0.1)


# --- two services, one trace, two replicas ---------------------------------------------

# A service running the real rastir SDK exporter in its own process (its own
# service.name and its own exporter). "front" runs an agent whose LLM call is flushed
# before the agent ends, prints the agent's traceparent, and ends the agent once told
# to on stdin; "back" continues that traceparent with a tool whose inner span is
# flushed before the tool ends. Every parent reaches its replica after its children.
SERVICE = r"""
import sys

import rastir

name, url, role = sys.argv[1:4]
rastir.configure(service=name, push_url=url, otel_bridge=False, flush_interval=60)


def flushed():
    if not rastir.flush(timeout=15):
        sys.exit("flush failed")


@rastir.llm(model="gpt-4o", provider="openai")
def ask():
    model_call = rastir.current_span()
    model_call.set_attribute("gen_ai.usage.input_tokens", 120)
    model_call.set_attribute("gen_ai.usage.output_tokens", 30)
    return "ok"


@rastir.agent(agent_name="planner")
def plan():
    ask()
    flushed()
    carrier = {}
    rastir.inject(carrier)
    print(carrier["traceparent"], flush=True)
    sys.stdin.readline()


@rastir.tool(tool_name="search")
def search():
    with rastir.span("lookup"):
        pass
    flushed()


if role == "front":
    plan()
else:
    with rastir.continue_trace({"traceparent": sys.stdin.readline().strip()}):
        search()
flushed()
print("done", flush=True)
"""


def run_service(name: str, url: str, role: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE, name, url, role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(None),
        cwd=ROOT,
    )


def finish(proc: subprocess.Popen[str], stdin: str = "") -> str:
    out, _ = proc.communicate(stdin, timeout=60)
    assert proc.returncode == 0, out
    return out


async def test_two_services_on_two_replicas_make_one_trace_any_replica_answers(
    postgres_dsn: str,
) -> None:
    args = ("--store", postgres_dsn, "--ack", "committed")
    async with replica(*args) as one, replica(*args) as two:
        front = run_service("front", one.url, "front")
        back = run_service("back", two.url, "back")
        try:
            assert front.stdout is not None
            traceparent = await anyio.to_thread.run_sync(front.stdout.readline)
            assert traceparent.startswith("00-"), traceparent
            # The back service's spans reach replica 2 while the front's agent is open.
            assert await anyio.to_thread.run_sync(finish, back, traceparent) == "done\n"
            assert await anyio.to_thread.run_sync(finish, front, "\n") == "done\n"
        finally:
            for proc in (front, back):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        tid = traceparent.split("-")[1]
        answers = []
        for rep in (one, two):
            async with httpx.AsyncClient(base_url=rep.url, timeout=30) as client:
                r = await client.get(f"/v1/traces/{tid}")
                assert r.status_code == 200, r.text
                answers.append(r.json())
                listed = (await client.get("/v1/traces", params={"limit": 1000})).json()
                assert [(t["trace_id"], t["span_count"]) for t in listed["traces"]] == [(tid, 4)]
                assert listed["traces"][0] == answers[-1]["summary"]
        assert answers[0] == answers[1]
        tree = answers[0]
        assert tree["summary"]["span_count"] == 4
        totals = (tree["summary"]["input_tokens"], tree["summary"]["output_tokens"])
        assert totals == (120, 30)
        assert sorted(tree["summary"]["services"]) == ["back", "front"]
        (root,) = tree["spans"]
        nodes = list(walk(root))
        assert not any(n["orphan"] for n in nodes)
        shape = sorted(
            (n["kind"], n["service"], sorted((c["kind"], c["service"]) for c in n["children"]))
            for n in nodes
        )
        assert shape == [
            ("agent", "front", [("llm", "front"), ("tool", "back")]),
            ("custom", "back", []),
            ("llm", "front", []),
            ("tool", "back", [("custom", "back")]),
        ]
        assert (root["name"], root["service"]) == ("planner", "front")
        by_kind = {n["kind"]: n for n in nodes}
        assert (by_kind["tool"]["name"], by_kind["custom"]["name"]) == ("search", "lookup")
        assert by_kind["tool"]["parent_span_id"] == root["span_id"]
        assert by_kind["custom"]["parent_span_id"] == by_kind["tool"]["span_id"]
        assert by_kind["llm"]["parent_span_id"] == root["span_id"]
        assert {n["trace_id"] for n in nodes} == {tid}
        # Each replica ingested its own service's spans, and only those.
        for rep, service in ((one, "front"), (two, "back")):
            async with httpx.AsyncClient(base_url=rep.url, timeout=30) as client:
                metrics = (await client.get("/metrics")).text
            assert counter_total(metrics, "rastir_collector_ingested_spans_total") == 2, service
        assert await stop(one) == 0
        assert await stop(two) == 0


# --- load split over two replicas -----------------------------------------------------

TRACES = 40
SPANS_PER_TRACE = 25
BATCH = 5
RESENT = 20  # batches sent again to the other replica, as a retry after a lost answer


def load_traces(rng: Random) -> dict[str, list[dict[str, Any]]]:
    """Traces of ``SPANS_PER_TRACE`` spans, a chain and a fan-out, with known sums.

    Span ``j`` of a trace has ``j + 1`` input tokens: a span stored twice, or not at
    all, changes the trace's total.
    """
    now = time_ns() - 60_000_000_000
    out: dict[str, list[dict[str, Any]]] = {}
    for _ in range(TRACES):
        tid = trace_id()
        ids = [span_id() for _ in range(SPANS_PER_TRACE)]
        spans = []
        for j, sid in enumerate(ids):
            parent = None if j == 0 else ids[rng.randrange(j)]
            spans.append(
                span(
                    trace=tid,
                    sid=sid,
                    parent=parent,
                    kind="llm" if j else "agent",
                    start=now + j * 1_000_000,
                    duration_ms=10.0,
                    gen_ai__usage__input_tokens=j + 1,
                    gen_ai__usage__output_tokens=1,
                )
            )
        out[tid] = spans
    return out


async def post_until_answered(
    client: httpx.AsyncClient, url: str, body: bytes, statuses: list[int]
) -> None:
    """POST until 202; 429 and 503 are retried after their Retry-After (bounded)."""
    for _ in range(50):
        r = await client.post(f"{url}/v1/telemetry", content=body)
        statuses.append(r.status_code)
        if r.status_code == 202:
            return
        assert r.status_code in (429, 503), r.text
        await anyio.sleep(float(r.headers.get("retry-after", "1")))
    raise AssertionError("a batch was never accepted")


async def test_batches_split_over_two_replicas_are_stored_once_and_counted(
    postgres_dsn: str,
) -> None:
    rng = Random(7)
    traces = load_traces(rng)
    # Children before parents: every trace's spans in reverse, traces interleaved.
    # (A parent's index is below its children's, so reversed, children come first.)
    ordered = [
        s for spans in zip(*(reversed(v) for v in traces.values()), strict=True) for s in spans
    ]
    batches = [ordered[i : i + BATCH] for i in range(0, len(ordered), BATCH)]
    assert len(batches) == TRACES * SPANS_PER_TRACE // BATCH
    resent = rng.sample(range(len(batches)), RESENT)
    async with replica("--store", postgres_dsn) as one, replica("--store", postgres_dsn) as two:
        urls = (one.url, two.url)
        jobs = [(urls[i % 2], b) for i, b in enumerate(batches)]
        jobs += [(urls[(i + 1) % 2], batches[i]) for i in resent]
        statuses: list[int] = []
        pending = iter(jobs)  # shared by the senders: each job is taken once

        async def worker(client: httpx.AsyncClient) -> None:
            for url, spans in pending:
                body = encode(batch(spans, service="load"))
                await post_until_answered(client, url, body, statuses)

        async with httpx.AsyncClient(timeout=30) as client:
            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(worker, client)
            assert statuses.count(202) == len(jobs)
            expected = dict.fromkeys(traces, SPANS_PER_TRACE)
            listed = {}
            for url in urls:
                async with httpx.AsyncClient(base_url=url, timeout=30) as one_client:
                    listed[url] = await wait_for_traces(one_client, expected)
            assert listed[one.url] == listed[two.url]
            for summary in listed[one.url].values():
                assert summary["input_tokens"] == SPANS_PER_TRACE * (SPANS_PER_TRACE + 1) // 2
                assert summary["output_tokens"] == SPANS_PER_TRACE
                assert summary["services"] == ["load"]
            for n, tid in enumerate(traces):
                r = await client.get(f"{urls[n % 2]}/v1/traces/{tid}")
                assert r.status_code == 200
                (root,) = r.json()["spans"]
                nodes = list(walk(root))
                assert sorted(n["span_id"] for n in nodes) == sorted(
                    s["span_id"] for s in traces[tid]
                )
                assert not any(n["orphan"] for n in nodes)
                assert root["span_id"] == traces[tid][0]["span_id"]
            scraped = [(await client.get(f"{url}/metrics")).text for url in urls]
        ingested = [counter_total(m, "rastir_collector_ingested_spans_total") for m in scraped]
        # Each replica counts what it ingested; together, every span sent (repeats too).
        assert sum(ingested) == TRACES * SPANS_PER_TRACE + RESENT * BATCH
        assert all(n > 0 for n in ingested)
        batches_ingested = [
            counter_total(m, "rastir_collector_ingested_batches_total") for m in scraped
        ]
        assert sum(batches_ingested) == len(jobs)
        assert await stop(one) == 0
        assert await stop(two) == 0


# --- committed mode: kill -9 ----------------------------------------------------------


async def push_until_killed(rep: Replica, at_least: int) -> tuple[list[str], list[str]]:
    """Four senders post 4-span traces; once ``at_least`` were answered 202, the replica
    gets SIGKILL mid-stream. Returns (acknowledged, sent) trace ids."""
    acked: list[str] = []
    sent: list[str] = []
    enough = anyio.Event()
    async with httpx.AsyncClient(base_url=rep.url, timeout=30) as client:

        async def send(n: int) -> None:
            for _ in range(n):
                tid, spans = fresh_trace("durable")
                sent.append(tid)
                try:
                    r = await client.post("/v1/telemetry", content=encode(batch(spans, "durable")))
                except httpx.TransportError:
                    return
                if r.status_code == 202:
                    acked.append(tid)
                    if len(acked) >= at_least:
                        enough.set()
                else:
                    assert r.status_code in (429, 503), r.text

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(send, 2_000)
            with anyio.fail_after(60):
                await enough.wait()
            rep.process.send_signal(signal.SIGKILL)
    return acked, sent


async def test_committed_mode_loses_no_acknowledged_span_to_kill_9(postgres_dsn: str) -> None:
    args = ("--store", postgres_dsn, "--ack", "committed")
    async with replica(*args) as doomed:
        acked, sent = await push_until_killed(doomed, 60)
        with anyio.fail_after(10):
            assert await doomed.process.wait() == -signal.SIGKILL
    assert len(acked) >= 60
    assert len(sent) > len(acked)  # some were in flight when it died
    async with replica(*args) as survivor:
        async with httpx.AsyncClient(base_url=survivor.url, timeout=30) as client:
            missing = []
            for tid in acked:
                r = await client.get(f"/v1/traces/{tid}")
                if r.status_code != 200 or r.json()["summary"]["span_count"] != 4:
                    missing.append(tid)
        assert missing == []
        assert await stop(survivor) == 0


# --- PostgreSQL restarting under a running replica ------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, which it may stop, restart or reconfigure."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


async def test_queued_spans_acknowledged_during_a_postgres_outage_are_written_after_it(
    own_postgres: PostgresServer,
) -> None:
    dsn = own_postgres.new_database()
    capacity = 2_000
    async with replica("--store", dsn, "--queue-capacity", str(capacity)) as rep:
        async with httpx.AsyncClient(base_url=rep.url, timeout=60) as client:
            before, spans = fresh_trace("outage")
            r = await client.post("/v1/telemetry", content=encode(batch(spans, "outage")))
            assert r.status_code == 202
            await wait_for_traces(client, {before: len(spans)})

            await anyio.to_thread.run_sync(own_postgres.halt)
            acked: dict[str, int] = {before: len(spans)}
            statuses: list[int] = []
            ready_while_full: list[int] = []
            batch_spans = 100
            for n in count():
                # Bounded: five times the queue, while it is written nowhere.
                assert n < 5 * capacity // batch_spans, statuses
                tid = trace_id()
                now = time_ns()
                body = [
                    span(trace=tid, start=now + i, duration_ms=1.0, kind="tool")
                    for i in range(batch_spans)
                ]
                r = await client.post("/v1/telemetry", content=encode(batch(body, "outage")))
                statuses.append(r.status_code)
                if r.status_code == 202:
                    acked[tid] = batch_spans
                    continue
                assert r.status_code in (429, 503), r.text
                ready = await client.get("/ready")
                ready_while_full.append(ready.status_code)
                break
            assert statuses[-1] in (429, 503)
            assert ready_while_full == [503]
            assert len(acked) > 1  # the queue took some while the server was down
            # Queries during the outage fail cleanly.
            r = await client.get("/v1/traces")
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_error"
            assert r.json()["message"].startswith("could not read traces: ")

            await anyio.to_thread.run_sync(own_postgres.resume)
            await wait_for_traces(client, acked, within=90)
            for _ in range(300):
                if (await client.get("/ready")).status_code == 200:
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("not ready 30 s after PostgreSQL came back")
            r = await client.post("/v1/telemetry", content=encode(batch(spans, "outage")))
            assert r.status_code == 202
            metrics = (await client.get("/metrics")).text
        assert counter_total(metrics, "rastir_collector_store_failed_spans_total") == 0
        # The writer met the outage, and kept what it had acknowledged.
        assert counter_total(metrics, "rastir_collector_store_write_errors_total") >= 1
        assert await stop(rep) == 0
    answered = [r.get("status") for r in rep.logged("request")]
    assert answered
    assert 500 not in answered
    assert set(statuses) <= {202, 429, 503}


# --- secrets ---------------------------------------------------------------------------


async def test_a_password_in_the_dsn_is_in_no_log_nor_answer(
    postgres_server: PostgresServer,
) -> None:
    role = f"pw_{os.getpid()}"
    database = f"pwdb_{os.getpid()}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f'CREATE DATABASE "{database}" OWNER {role}')
    base = f"postgresql://{role}:{quote(PASSWORD)}@127.0.0.1:{postgres_server.port}"
    dsn = f"{base}/{database}"
    # By environment, as the docs advise, and on the command line.
    async with (
        replica("--log-level", "debug", env={"RASTIR_COLLECTOR_STORE": dsn}) as by_env,
        replica("--store", dsn, "--log-level", "debug") as by_arg,
    ):
        tid, spans = fresh_trace("secret")
        answers = []
        for rep in (by_env, by_arg):
            async with httpx.AsyncClient(base_url=rep.url, timeout=30) as client:
                r = await client.post("/v1/telemetry", content=encode(batch(spans, "secret")))
                assert r.status_code == 202
                await wait_for_traces(client, {tid: len(spans)})
                for path in ("/ready", "/metrics", "/health", "/v1/traces", f"/v1/traces/{tid}"):
                    r = await client.get(path)
                    assert r.status_code == 200, (path, r.text)
                    answers.append(r.text)
        for rep in (by_env, by_arg):
            assert await stop(rep) == 0
    # A replica that cannot use its database says so, without the password.
    async with replica(
        "--store", f"{base}/no_such_database", "--log-level", "debug", expect_start=False
    ) as failed:
        if failed.url:  # it started, and reports why it is not ready
            async with httpx.AsyncClient(base_url=failed.url, timeout=30) as client:
                r = await client.get("/ready")
                assert r.status_code == 503
                answers.append(r.text)
                r = await client.post("/v1/telemetry", content=encode(batch(spans, "secret")))
                assert r.status_code in (429, 503)
                answers.append(r.text)
            assert await stop(failed) in (0, 1)
        else:
            with anyio.fail_after(30):
                assert await failed.process.wait() != 0
    assert "no_such_database" in failed.text
    for rep in (by_env, by_arg, failed):
        assert rep.output
        assert PASSWORD not in rep.text
        assert quote(PASSWORD) not in rep.text
    for text in answers:
        assert PASSWORD not in text
