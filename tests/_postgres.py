"""A throwaway PostgreSQL server for the tests: a real cluster on 127.0.0.1.

The cluster is made with the machine's own ``initdb`` (Debian's ``postgresql``
package keeps it in ``/usr/lib/postgresql/<version>/bin``), listens on a free
loopback port with trust authentication, and is removed when the test session ends.
PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
user the Debian package creates. Each test takes a fresh database from
:meth:`PostgresServer.new_database`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_postgres_bin", "start_postgres"]

_START_TIMEOUT = 30.0


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or None when not installed."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A running cluster; ``dsn(database)`` names one of its databases."""

    def __init__(self, bin_dir: Path, root: Path, user: str | None, *, fsync: bool) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = _free_port()
        self._user = user  # run the server binaries as this user (None: as ourselves)
        self._names = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None

    def _command(self, *args: str) -> list[str]:
        if self._user is None:
            return list(args)
        return ["runuser", "-u", self._user, "--", *args]

    def start(self) -> None:
        self.data.mkdir(parents=True)
        self.sockets.mkdir()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.data, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._command(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        self._spawn()

    def _spawn(self) -> None:
        self._process = subprocess.Popen(
            self._command(
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.sockets),
                "-c",
                f"fsync={'on' if self.fsync else 'off'}",
                "-c",
                "max_connections=200",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def halt(self) -> None:
        """Fast shutdown (open sessions are cut, as in a restart or a failover)."""
        subprocess.run(
            self._command(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert self._process is not None
        self._process.wait(timeout=30)
        if self._process.stderr is not None:
            self._process.stderr.close()

    def resume(self) -> None:
        """Start again after :meth:`halt`: the same data on the same port."""
        self._spawn()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"postgres exited at start: {err}")
            ready = subprocess.run(
                [
                    str(self.bin_dir / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                ],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not accept connections in time")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its DSN."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # SIGTERM: smart shutdown
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, fsync: bool = False, for_tests: bool = True) -> PostgresServer:
    """Start a cluster; ``fsync`` off unless asked (tests kill processes, not machines).

    For tests, a missing PostgreSQL skips the test (fails it under
    ``RASTIR_TEST_REQUIRE_SERVERS``); otherwise it raises ``RuntimeError``.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (Debian package postgresql)"
        if not for_tests:
            raise RuntimeError(message)
        if os.environ.get("RASTIR_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise RuntimeError("running as root, and no 'postgres' user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="rastir-pg-"))
    if user is not None:
        root.chmod(0o755)
    server = PostgresServer(bin_dir, root, user, fsync=fsync)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
