"""A deterministic stand-in for ``openai.AsyncOpenAI`` that answers offline.

``FakeOpenAI().chat.completions.create(model=..., messages=..., tools=...)`` returns a
real ``openai.types.chat.ChatCompletion``, built with the openai package's own types,
with a response model, token usage and finish reasons, so ``@rastir.llm`` reads it
exactly as it reads a real answer. No network, no API key: the "model" follows a
small script.

* A user message naming order numbers (``1042``) asks for ``lookup_order`` on each;
  one that also says "return" or "refund" asks for ``get_policy("returns")`` too, in
  the same turn (the agent runs both tool calls concurrently).
* After tool results, it answers with a sentence built from them.
* Anything else gets a short greeting.

Token counts are a pure function of the text (about four characters a token), and
the simulated latency of the counts, so every run of the demo looks the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
from openai.types.chat import ChatCompletion

__all__ = ["FakeOpenAI", "count_tokens"]

# Real snapshot names, so the response model differs from the requested alias.
_SNAPSHOTS: Final = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}
_ORDER: Final = re.compile(r"\b(\d{4})\b")


def count_tokens(text: str) -> int:
    """A deterministic token estimate: about four characters a token."""
    return max(1, (len(text) + 3) // 4)


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


class _Completions:
    def __init__(self, latency: float) -> None:
        self._latency = latency
        self._calls = 0

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **_: Any,
    ) -> ChatCompletion:
        """One chat completion, decided by the script in the module docstring."""
        self._calls += 1
        tool_names = {str(t.get("function", {}).get("name")) for t in tools or ()}
        last = messages[-1] if messages else {}
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if last.get("role") == "tool":
            results = [_content(m) for m in messages if m.get("role") == "tool"]
            message["content"] = "Here is what I found: " + " ".join(results)
            finish = "stop"
        else:
            text = _content(last)
            calls = [("lookup_order", {"order_id": o}) for o in _ORDER.findall(text)]
            if calls and re.search(r"\b(return|refund)", text, re.IGNORECASE):
                calls.append(("get_policy", {"topic": "returns"}))
            calls = [c for c in calls if c[0] in tool_names]
            if calls:
                digest = hashlib.sha256(text.encode()).hexdigest()
                message["tool_calls"] = [
                    {
                        "id": f"call_{digest[i * 8 : i * 8 + 12]}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                    for i, (name, args) in enumerate(calls)
                ]
                finish = "tool_calls"
            else:
                message["content"] = "Happy to help: ask me about any order by its number."
                finish = "stop"

        prompt_tokens = sum(count_tokens(_content(m)) + 4 for m in messages)
        prompt_tokens += sum(count_tokens(json.dumps(t)) for t in tools or ())
        completion_tokens = count_tokens(message["content"] or "") + 12 * len(
            message.get("tool_calls", ())
        )
        # A model takes longer the more it writes.
        await anyio.sleep(self._latency * (1 + completion_tokens / 40))
        seed = json.dumps([_content(m) for m in messages]).encode()
        return ChatCompletion.model_validate(
            {
                "id": "chatcmpl-" + hashlib.sha256(seed).hexdigest()[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": _SNAPSHOTS.get(model, model),
                "choices": [
                    {"index": 0, "finish_reason": finish, "message": message, "logprobs": None}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_rastir_demo",
            }
        )


class _Chat:
    def __init__(self, latency: float) -> None:
        self.completions = _Completions(latency)


class FakeOpenAI:
    """The part of ``openai.AsyncOpenAI`` the demo uses: ``chat.completions.create``.

    Args:
        latency: seconds a short answer takes; longer answers take proportionally more.
    """

    def __init__(self, *, latency: float = 0.03) -> None:
        self.chat = _Chat(latency)
