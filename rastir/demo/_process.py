"""Child processes of the demo: started, watched for a ready line, stopped by pid.

Each child's stdout and stderr are read by a thread into a bounded buffer, so a
chatty child can never fill its pipe and stall; the last lines are shown when it
fails to start. Every wait is bounded.
"""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

__all__ = ["Child", "ChildFailed"]

_KEEP_LINES = 200


class ChildFailed(RuntimeError):
    """A child did not become ready; the message holds its last lines of output."""


class Child:
    """One subprocess, its output lines, and a way to wait for one of them.

    Args:
        name: what to call it in messages.
        argv: the command.
        env: its whole environment.
        pass_fds: file descriptors it inherits (listening sockets).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=_KEEP_LINES)
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout,), name=f"demo-{name}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        """The first line (still buffered) for which ``match`` is true.

        Raises:
            ChildFailed: the child exited, or ``timeout`` seconds passed, first.
        """
        with self._cond:
            found: list[str] = []

            def ready() -> bool:
                found[:] = [line for line in self.lines if match(line)][:1]
                return bool(found) or self._eof

            self._cond.wait_for(ready, timeout=timeout)
            if found:
                return found[0]
            tail = "\n".join(f"    {line}" for line in list(self.lines)[-15:])
            why = (
                f"exited with status {self.proc.poll()}"
                if self._eof
                else f"was not ready after {timeout:g}s"
            )
            raise ChildFailed(f"{self.name} (pid {self.pid}) {why}; its last output:\n{tail}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
