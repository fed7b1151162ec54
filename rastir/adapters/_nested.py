"""One LLM call seen by two nested LLM spans is counted once.

A framework's LLM span often wraps a call that is traced again further in: LangChain's
chat model calling an ``@llm`` function, an ``@llm`` function returning what an inner
``@llm`` (or a LangChain model inside a traced graph) returned. Both spans then carry
the same token counts, and every sum over spans (the collector's token and cost
metrics, a trace's totals) would count that call twice.

The rule: when an LLM span's usage is written, and an LLM span started directly inside
it reported the same input and output token counts (and the same response id, when
both have one), the outer span is the same call seen from further out. It gets
``rastir.llm.counted_in``, the inner span's id, and the collector counts the call, its
tokens and its cost on the inner span only. An outer span whose counts differ, such as
an ``@llm`` that makes its own call and also calls a moderation model, is counted as
before.
"""

from __future__ import annotations

from typing import Final

from rastir.spans import Span

__all__ = ["COUNTED_IN", "mark_if_counted_inside", "note_inner"]

COUNTED_IN: Final = "rastir.llm.counted_in"
_IN: Final = "gen_ai.usage.input_tokens"
_OUT: Final = "gen_ai.usage.output_tokens"
_ID: Final = "gen_ai.response.id"
# An LLM span keeps at most this many of the LLM spans started inside it (a loop of
# retries): the last ones are those its own usage can repeat.
_MAX_INNER: Final = 16


def note_inner(parent: Span, span: Span) -> None:
    """Record that the LLM span ``span`` started directly inside ``parent``.

    The caller has checked that ``parent`` is a :class:`Span` of kind ``llm``.
    """
    inner = parent._inner_llm
    if inner is None:
        parent._inner_llm = [span]
    else:
        if len(inner) >= _MAX_INNER:
            del inner[0]
        inner.append(span)


def mark_if_counted_inside(span: Span) -> None:
    """After ``span``'s usage was written: mark it when an inner LLM span reported it."""
    inner = span._inner_llm
    if inner is None:
        return
    attrs = span._attrs
    if not attrs:
        return
    tin = attrs.get(_IN)
    tout = attrs.get(_OUT)
    if tin is None and tout is None:
        return
    rid = attrs.get(_ID)
    for other in reversed(inner):
        a = other._attrs
        if not a or a.get(_IN) != tin or a.get(_OUT) != tout:
            continue
        other_id = a.get(_ID)
        if rid is not None and other_id is not None and rid != other_id:
            continue
        # An inner span counted further in points there: the chain ends where the
        # call is counted.
        attrs[COUNTED_IN] = a.get(COUNTED_IN) or other.span_id
        return
