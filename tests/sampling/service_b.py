"""Service B of the two-service sampling test, run as its own process.

Reads one ``traceparent`` per line on stdin. For each, it continues the trace with a
child span (as any service handling a request would), then prints the line
``<trace_id> <flags of its span> <root decision at its own ratio>``. Configured
entirely by environment: ``RASTIR_SERVICE``, ``RASTIR_PUSH_URL``,
``RASTIR_SAMPLE_RATIO``.
"""

from __future__ import annotations

import sys

import rastir
from rastir.sampling import is_sampled


def main() -> int:
    rastir.configure(flush_interval=0.05)
    for line in sys.stdin:
        traceparent = line.strip()
        if not traceparent:
            continue
        with rastir.continue_trace({"traceparent": traceparent}) as parent:
            assert parent is not None
            with rastir.span("handle") as span:
                assert span is not None
                headers: dict[str, str] = {}
                rastir.inject(headers)
        flags = headers["traceparent"][-2:]
        root = "1" if is_sampled(parent.tid) else "0"
        print(parent.trace_id, flags, root, span.sampled, flush=True)
    return 0 if rastir.flush(10) else 1


if __name__ == "__main__":
    sys.exit(main())
