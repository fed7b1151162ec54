"""What ``import rastir`` must not load, and the id generator that replaced ``random``.

``import rastir`` has a budget of 30 ms (PERFORMANCE.md). The modules below used to be
imported eagerly and are now loaded where they are used; these tests keep them out.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from rastir.propagation import extract, format_baggage, parse_baggage
from rastir.spans import new_span_id, new_trace_id


def test_import_rastir_leaves_out_modules_it_does_not_need_yet() -> None:
    code = (
        "import sys\n"
        "import rastir\n"
        "heavy = ('dataclasses', 'urllib.parse', 'ipaddress', 'binascii', 'random',\n"
        "         'genai_prices', 'rastir.pricing')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[]"


def test_lazily_imported_helpers_still_work() -> None:
    ctx = extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert ctx is not None
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    encoded = format_baggage([("user", "Zoë, 1"), ("k", "plain")])
    assert encoded == "user=Zo%C3%AB%2C%201,k=plain"
    assert parse_baggage(encoded) == (("user", "Zoë, 1"), ("k", "plain"))


def test_ids_do_not_depend_on_the_applications_random_seed() -> None:
    random.seed(1234)
    first = (new_trace_id(), new_span_id())
    random.seed(1234)
    second = (new_trace_id(), new_span_id())
    assert first != second
    # and drawing ids leaves the application's sequence alone
    random.seed(99)
    expected = random.random()
    random.seed(99)
    new_trace_id()
    assert random.random() == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_different_ids_from_its_parent() -> None:
    # In a fresh interpreter, so that no thread of this test process is forked.
    code = (
        "import os\n"
        "from rastir.spans import new_span_id, new_trace_id\n"
        "new_trace_id()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, f'{new_trace_id()} {new_span_id()}'.encode())\n"
        "    os._exit(0)\n"
        "os.close(w)\n"
        "child = os.read(r, 200).decode()\n"
        "os.waitpid(pid, 0)\n"
        "print(child)\n"
        "print(f'{new_trace_id()} {new_span_id()}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    child, parent = out[0], out[1]
    assert len(child.split()) == 2
    assert child != parent
