"""``python -m rastir.collector``: the same as ``rastir collector``."""

from __future__ import annotations

import sys

from rastir.collector.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m rastir.collector"))
