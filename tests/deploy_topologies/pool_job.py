"""A job fanned out to worker processes, for the topology tests: run as a program.

``python -m tests.deploy_topologies.pool_job POOL METHOD CONFIGURE N``

* POOL: ``executor`` (``concurrent.futures.ProcessPoolExecutor``) or ``pool``
  (``multiprocessing.Pool``, closed and joined: a ``with Pool()`` block terminates
  its workers with SIGTERM, which no exporter survives);
* METHOD: the start method, ``fork`` or ``spawn``;
* CONFIGURE: ``parent`` (only the parent calls ``rastir.configure()``; a forked
  worker inherits it, a spawned one has no exporter), ``initializer`` (each worker
  calls it too) or ``workers`` (each worker calls it; the parent only once the
  pool is done, so the workers are forked from a process without an exporter).

The parent runs the job under a span, passes its context to each task explicitly
(``rastir.inject`` into a dict, ``rastir.continue_trace`` in the worker), and prints
one JSON line: the job's trace and span ids and the pid of each task's worker.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import rastir


@rastir.tool(tool_name="square")
def square(x: int) -> int:
    return x * x


def task(carrier: dict[str, str], x: int) -> tuple[int, int]:
    """One task in a worker: its span is a child of the job's span in the parent."""
    with rastir.continue_trace(carrier):
        return os.getpid(), square(x)


def configure_worker() -> None:
    rastir.configure()  # RASTIR_* variables, inherited from the parent


def main(pool_kind: str, method: str, configure: str, n: int) -> None:
    if configure != "workers":
        rastir.configure()
    ctx = multiprocessing.get_context(method)
    init = None if configure == "parent" else configure_worker
    with rastir.span("job") as job:
        carrier: dict[str, str] = {}
        rastir.inject(carrier)
        args = [(carrier, x) for x in range(n)]
        if pool_kind == "executor":
            with ProcessPoolExecutor(2, mp_context=ctx, initializer=init) as executor:
                results = list(executor.map(task, *zip(*args, strict=True)))
        else:
            pool = ctx.Pool(2, initializer=init)
            try:
                results = pool.starmap(task, args)
                pool.close()
                pool.join()  # the workers end their own way: their spans are sent
            finally:
                pool.terminate()
    if configure == "workers":
        rastir.configure()  # the job's span waited in the queue for it
    assert [r[1] for r in results] == [x * x for x in range(n)]
    print(
        json.dumps(
            {
                "trace_id": f"{job.tid:032x}",
                "span_id": f"{job.sid:016x}",
                "pids": sorted({r[0] for r in results}),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
