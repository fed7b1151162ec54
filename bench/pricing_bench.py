"""Cost of ``PricingRegistry.price()`` per call, against genai-prices' own ``calc_price``.

Run: ``python bench/pricing_bench.py [--quick] [--rounds N]``. Prints a table and
writes ``bench/results/pricing_bench.json``.

Variants, interleaved in one process, ns per call:

* ``floor``: a method with ``price()``'s signature that only looks the
  ``(provider, model)`` key up in a dict: the cheapest conceivable price lookup, to
  show how much of the cost is Python's call overhead on this machine;
* ``rastir price() gpt-4o``: a repeated call for a cached model (OpenAI, with cached
  tokens), which is what ``@llm`` pays on every call;
* ``rastir price() gemini-2.5-pro``: a tiered model (the tier chosen per call);
* ``rastir price() unknown``: a cached miss (returns None);
* ``genai_prices.calc_price``: the peer, the same gpt-4o usage priced by genai-prices
  directly (its lookup cache warm).

Each row shows ns per call (thread CPU time, median over rounds) and the ratio to the
peer. The goal is the brief's: a repeated ``price()`` well under 1 µs, inside
``@llm``'s 5 µs budget.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as h
import genai_prices

from rastir.pricing import PricingRegistry, TokenUsage

GOAL_NS = 1000.0


def _timed(fn: Callable[[], object]) -> h.Runner:
    def run(n: int) -> tuple[int, int]:
        f = fn
        w0, c0 = h.wall_ns(), h.cpu_ns()
        for _ in range(n):
            f()
        return h.wall_ns() - w0, h.cpu_ns() - c0

    return run


def main() -> None:
    args = h.base_parser(__doc__).parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    target = 2e6 if args.quick else 2e7

    registry = PricingRegistry()
    usage = TokenUsage(input_tokens=1200, output_tokens=300, cache_read_tokens=400)
    gp_usage = genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=400)
    table: dict[tuple[str | None, str], float] = {("openai", "gpt-4o"): 2.5e-6}
    for provider, model in (
        ("openai", "gpt-4o"),
        ("gcp.gemini", "gemini-2.5-pro"),
        (None, "no-such-model"),
    ):
        registry.price(provider, model, usage)
    genai_prices.calc_price(gp_usage, "gpt-4o", provider_id="openai")

    class Lookup:
        """The floor: a method with price()'s signature that only does the dict lookup."""

        def price(self, provider: str | None, model: str, usage: TokenUsage) -> float | None:
            return table.get((provider, model))

    floor = Lookup()

    variants = [
        h.Variant(
            "floor: method doing one dict lookup",
            _timed(lambda: floor.price("openai", "gpt-4o", usage)),
        ),
        h.Variant(
            "rastir price() gpt-4o", _timed(lambda: registry.price("openai", "gpt-4o", usage))
        ),
        h.Variant(
            "rastir price() gemini-2.5-pro (tiered)",
            _timed(lambda: registry.price("gcp.gemini", "gemini-2.5-pro", usage)),
        ),
        h.Variant(
            "rastir price() unknown model",
            _timed(lambda: registry.price(None, "no-such-model", usage)),
        ),
        h.Variant(
            "genai_prices.calc_price gpt-4o",
            _timed(lambda: genai_prices.calc_price(gp_usage, "gpt-4o", provider_id="openai")),
        ),
    ]
    h.interleave(variants, rounds=rounds, target_ns=target)
    peer = h.median(variants[-1].samples["cpu"])
    rows = []
    results: dict[str, dict[str, float | list[float]]] = {}
    for v in variants:
        cpu = h.median(v.samples["cpu"])
        wall = h.median(v.samples["wall"])
        lo, hi = h.spread(v.samples["cpu"])
        rows.append(
            [v.name, f"{cpu:,.0f}", f"{lo:,.0f}-{hi:,.0f}", f"{wall:,.0f}", h.fmt_ratio(cpu, peer)]
        )
        results[v.name] = {"cpu_ns": cpu, "wall_ns": wall, "iqr_cpu_ns": [lo, hi]}
    print(
        h.table(
            ["variant", "ns/call (CPU)", "IQR", "ns/call (wall)", "vs calc_price"],
            rows,
            title=f"price() per call, {rounds} rounds; {h.load_note()}",
        )
    )
    ours = h.median(variants[1].samples["cpu"])
    print(f"\nrepeated price() <= {GOAL_NS:.0f} ns: {ours:,.0f} ns  {h.verdict(ours, GOAL_NS)}")
    if not args.no_json:
        path = h.write_json(
            "pricing_bench", {"goal_ns": GOAL_NS, "results": results}, quick=args.quick
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
