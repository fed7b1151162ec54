"""Azure OpenAI adapter (priority 155): OpenAI responses served by Azure.

Azure returns the ``openai`` SDK's own classes, so the class cannot tell; the content
filter annotations Azure adds (``prompt_filter_results`` on the response,
``content_filter_results`` on each choice) can. ``AzureOpenAI`` client objects among
the arguments name the provider before the call. A choice stopped by the content
filter is recorded as a guardrail intervention.
"""

from __future__ import annotations

from typing import Any

from rastir.adapters.base import AdapterResult, TokenDelta, class_name
from rastir.adapters.openai import _CHUNKS, _RESPONSES, OpenAIAdapter

__all__ = ["AzureOpenAIAdapter"]


def _azure_marked(obj: Any) -> bool:
    # pydantic keeps undeclared fields in ``__pydantic_extra__``; Azure adds
    # ``prompt_filter_results`` to every response and to the first stream chunk.
    extra = getattr(obj, "__pydantic_extra__", None)
    if extra and "prompt_filter_results" in extra:
        return True
    choices = getattr(obj, "choices", None)
    if choices:
        cextra = getattr(choices[0], "__pydantic_extra__", None)
        if cextra and "content_filter_results" in cextra:
            return True
    return False


def _filter_hits(obj: Any) -> list[str]:
    """Categories whose Azure content filter result says ``filtered``."""
    hits: list[str] = []
    for choice in getattr(obj, "choices", None) or ():
        results = (getattr(choice, "__pydantic_extra__", None) or {}).get("content_filter_results")
        if isinstance(results, dict):
            for category, verdict in results.items():
                if isinstance(verdict, dict) and verdict.get("filtered") is True:
                    hits.append(category)
    return hits


class AzureOpenAIAdapter(OpenAIAdapter):
    name = "azure_openai"
    priority = 155
    provider = "azure.ai.openai"
    clients = frozenset(("AzureOpenAI", "AsyncAzureOpenAI"))

    def match_type(self, cls: type) -> bool | None:
        # Same classes as OpenAI: decided per value.
        return None if class_name(cls) in _RESPONSES and self._ours(cls) else False

    def can_handle(self, result: Any) -> bool:
        # Inlined _azure_marked: this runs for every openai response.
        extra = result.__pydantic_extra__
        if extra and "prompt_filter_results" in extra:
            return True
        choices = getattr(result, "choices", None)
        if choices:
            cextra = getattr(choices[0], "__pydantic_extra__", None)
            return cextra is not None and "content_filter_results" in cextra
        return False

    def transform(self, result: Any) -> AdapterResult:
        r = super().transform(result)
        hits = _filter_hits(result)
        if hits or r.finish_reason == "content_filter":
            r.extra_attributes["rastir.guardrail.intervened"] = True
            r.extra_attributes["rastir.guardrail.action"] = "BLOCKED"
            r.extra_attributes["rastir.guardrail.category"] = hits[0] if hits else "content_filter"
        return r

    def match_stream_type(self, cls: type) -> bool | None:
        return None if cls.__name__ in _CHUNKS and self._ours(cls) else False

    def can_handle_stream(self, chunk: Any) -> bool:
        return _azure_marked(chunk)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = super().extract_stream_delta(chunk)
        if d is not None and d.finish_reason == "content_filter":
            d.extra_attributes = {
                "rastir.guardrail.intervened": True,
                "rastir.guardrail.action": "BLOCKED",
                "rastir.guardrail.category": "content_filter",
            }
        return d
