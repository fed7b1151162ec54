"""The price data loads off the application's thread, when @llm decorates."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_decorating_an_llm_function_loads_the_price_data_on_a_background_thread() -> None:
    # A fresh interpreter: in this one other tests have loaded the data already.
    code = textwrap.dedent(
        """
        import sys, threading
        import rastir
        from rastir.adapters import _apply

        assert "genai_prices" not in sys.modules

        @rastir.llm(model="gpt-4o-mini", provider="openai")
        def chat():
            return {"usage": {"prompt_tokens": 1000, "completion_tokens": 100}}

        loader = _apply.warm_pricing()
        assert loader is not None and loader is not threading.current_thread()
        assert loader.name == "rastir-pricing-preload"
        assert _apply.warm_pricing() is loader  # once per process
        loader.join(60)
        assert not loader.is_alive()
        assert "genai_prices" in sys.modules

        from rastir.pricing import get_pricing
        assert get_pricing().has_price_data

        from rastir.testing import capture_spans
        with capture_spans() as spans:
            chat()
        cost = spans.one(kind="llm").attributes["rastir.cost.usd"]
        assert isinstance(cost, float) and cost > 0, cost
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
