"""A real Prometheus server (Debian's ``prometheus`` package) for the operations tests."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

_T = TypeVar("_T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusError(AssertionError):
    """Prometheus answered a query with an error."""


class Prometheus:
    """The HTTP API of a running server."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.client = httpx.Client(base_url=url, timeout=10)

    def _get(self, path: str, params: Any) -> Any:
        r = self.client.get(path, params=params)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {r.status_code} {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector, or a scalar wrapped in a list)."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, seconds: float = 30, step: float = 1) -> list[dict[str, Any]]:
        end = time.time()
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": end - seconds, "end": end, "step": step},
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, match: str) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self._get("/api/v1/series", [("match[]", match)])
        return result

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._get("/api/v1/rules", {})["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets", {})["activeTargets"]
        return active

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample that is a number (not NaN) in an instant or range result."""
    for series in result:
        values = series.get("values") or [series["value"]]
        if any(not math.isnan(float(v[1])) for v in values):
            return True
    return False


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float, poll: float = 0.25) -> _T:
    """``probe()`` until it returns something; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except (httpx.HTTPError, PrometheusError) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({last_error})")
        time.sleep(poll)


@contextmanager
def running_prometheus(
    binary: str,
    workdir: Path,
    scrape_target: str,
    rule_files: Sequence[Path],
    *,
    interval: str = "1s",
    bearer_token: str | None = None,
) -> Iterator[Prometheus]:
    """Prometheus scraping ``scrape_target`` (host:port) with ``rule_files`` loaded."""
    scrape: dict[str, Any] = {
        "job_name": "rastir-collector",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [scrape_target]}],
    }
    if bearer_token is not None:
        scrape["authorization"] = {"type": "Bearer", "credentials": bearer_token}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [scrape],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", log)
    try:

        def ready() -> bool | None:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {log.read_text(errors='replace')}")
            return True if prom.client.get("/-/ready").status_code == 200 else None

        wait_for("prometheus to be ready", ready, timeout=20)
        yield prom
    finally:
        prom.client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
