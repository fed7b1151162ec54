"""Groq adapter (priority 152): the ``groq`` SDK's OpenAI-shaped responses.

Streaming usage arrives in the last chunk's ``x_groq.usage``.
"""

from __future__ import annotations

from typing import Any

from rastir.adapters.base import TokenDelta
from rastir.adapters.openai import OpenAIAdapter, read_chat_usage

__all__ = ["GroqAdapter"]


class GroqAdapter(OpenAIAdapter):
    name = "groq"
    priority = 152
    provider = "groq"
    package = "groq"
    clients = frozenset(("Groq", "AsyncGroq"))

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = super().extract_stream_delta(chunk)
        x_groq = getattr(chunk, "x_groq", None)
        usage = getattr(x_groq, "usage", None) if x_groq is not None else None
        if d is not None and usage is not None:
            read_chat_usage(d, usage)
        return d
