"""A fork while the exporter thread is busy, as in ``gunicorn --preload``.

The master configures rastir and ends a span while importing the app, so its
exporter thread starts and opens its first connection while the master forks the
workers. ``socket.getaddrinfo`` encodes a host name with the ``idna`` codec, whose
module (``encodings.idna``) is imported the first time: on the exporter thread, a
module lock held for the length of the import. A fork at that moment leaves the lock
held in the worker by a thread that does not exist there, and the worker's first use
of the codec (werkzeug routes every request with it) hangs until gunicorn's timeout
kills the worker.

Here the moment is made certain rather than likely: an import hook holds the
exporter thread inside that import until the fork is done.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.recording_server import recording_server

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import importlib.abc
import importlib.machinery
import os
import signal
import sys
import threading
import time
import warnings

assert "encodings.idna" not in sys.modules and "stringprep" not in sys.modules
inside = threading.Event()
forked = threading.Event()


class Held(importlib.abc.Loader):
    # Runs with the module locks of encodings.idna (which imports stringprep) and
    # stringprep held, and without importlib's global lock, which os.fork() takes.
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        inside.set()
        forked.wait(20)
        self.loader.exec_module(module)


class Gate(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "stringprep" or threading.current_thread().name != "rastir-exporter":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Held(spec.loader)
        return spec


sys.meta_path.insert(0, Gate())

import rastir
from rastir import _config

rastir.configure(service="preload", push_url=URL, flush_interval=60)
with rastir.span("master.startup"):
    pass  # starts the exporter thread, which connects
exporter = _config._exporter_or_none()
for _ in range(2000):  # bounded: 20 s
    if inside.is_set() or exporter.stats.batches_sent:
        break
    time.sleep(0.01)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
    pid = os.fork()
if pid == 0:
    signal.alarm(10)  # a hung worker dies of SIGALRM instead of hanging the test
    "worker.example".encode("idna")  # what werkzeug does on the first request
    with rastir.span("worker.request"):
        pass
    os._exit(0 if rastir.flush(10) else 3)
forked.set()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), pid, flush=True)
assert rastir.flush(10)
"""


def test_a_worker_forked_while_the_exporter_connects_does_not_hang() -> None:
    with recording_server() as server:
        script = f"URL = {server.url!r}\n" + textwrap.dedent(_SCRIPT)
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("child ")]
        _, code, child_pid = line.split()
        assert code == "0", f"the forked worker ended with {code} (-14: hung, killed by SIGALRM)"
        assert "rastir exporter" not in proc.stderr, proc.stderr
        sent = sorted(
            (r.body["resource"]["process.pid"] == int(child_pid), s["name"])
            for r in server.received
            for s in r.body["spans"]
        )
    # Each span once, from the process that made it: the master's startup span is
    # the master's to send (D10), the worker's request span the worker's.
    assert sent == [(False, "master.startup"), (True, "worker.request")]
