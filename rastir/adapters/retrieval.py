"""Retrieval adapter (priority 50): lists of retrieved documents returned by an
``@llm`` function (LangChain ``Document``, LlamaIndex ``NodeWithScore``/``TextNode``,
vector-store points). No model and no tokens: it counts the documents."""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters.base import AdapterResult, BaseAdapter

__all__ = ["RetrievalAdapter"]

_DOCUMENTS: Final = frozenset(
    ("Document", "NodeWithScore", "TextNode", "ScoredPoint", "QueryResult", "SearchResult")
)


def _is_document(obj: Any) -> bool:
    cls = type(obj)
    return cls.__name__ in _DOCUMENTS and not cls.__module__.startswith("builtins")


class RetrievalAdapter(BaseAdapter):
    name = "retrieval"
    priority = 50

    def match_type(self, cls: type) -> bool | None:
        return None if cls in (list, tuple) else False

    def can_handle(self, result: Any) -> bool:
        return bool(result) and _is_document(result[0])

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        r.extra_attributes["rastir.retrieval.documents"] = len(result)
        return r
