"""Bedrock adapter (priority 140): ``converse`` and ``converse_stream``, as botocore
returns them (plain dicts), guardrail traces included.

The response names no model; the request's ``modelId`` does (parsed by the request
phase: ``anthropic.claude-3-sonnet`` is model ``claude-3-sonnet`` from vendor
``anthropic``). A guardrail that intervened becomes ``rastir.guardrail.*``:
``intervened``, ``id``, ``action`` and ``category`` (the policy type).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    add_usage_detail,
    int_or_none,
    str_or_none,
)

__all__ = ["BedrockAdapter", "guardrail_attributes"]

_STREAM_KEYS: Final = frozenset(
    (
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    )
)
# Guardrail assessment policy -> the category label.
_POLICIES: Final = {
    "topicPolicy": "topic",
    "contentPolicy": "content",
    "wordPolicy": "word",
    "sensitiveInformationPolicy": "sensitive_information",
    "contextualGroundingPolicy": "contextual_grounding",
    "automatedReasoningPolicy": "automated_reasoning",
}
_QUIET: Final = frozenset(("NONE", "", None))


def _policy_hit(policy: Any) -> str | None:
    """The first action other than NONE in one policy's findings."""
    if not isinstance(policy, Mapping):
        return None
    for findings in policy.values():
        if not isinstance(findings, list):
            continue
        for item in findings:
            if isinstance(item, Mapping):
                action = item.get("action")
                if action not in _QUIET and item.get("detected", True) is not False:
                    return str(action)
    return None


def _assessments(trace: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(source, guardrail id, assessment) for the input and every output assessment."""
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    inputs = trace.get("inputAssessment")
    if isinstance(inputs, Mapping):
        for gid, assessment in inputs.items():
            if isinstance(assessment, Mapping):
                found.append(("input", str(gid), assessment))
    outputs = trace.get("outputAssessments")
    if isinstance(outputs, Mapping):
        for gid, items in outputs.items():
            for assessment in items if isinstance(items, list) else [items]:
                if isinstance(assessment, Mapping):
                    found.append(("output", str(gid), assessment))
    return found


def guardrail_attributes(trace: Any, stop_reason: str | None) -> dict[str, Any]:
    """``rastir.guardrail.*`` from a converse ``trace.guardrail`` and the stop reason."""
    attrs: dict[str, Any] = {}
    guard = trace.get("guardrail") if isinstance(trace, Mapping) else None
    intervened = stop_reason == "guardrail_intervened"
    if isinstance(guard, Mapping):
        for source, gid, assessment in _assessments(guard):
            attrs.setdefault("rastir.guardrail.id", gid)
            for policy, category in _POLICIES.items():
                action = _policy_hit(assessment.get(policy))
                if action is not None:
                    intervened = True
                    attrs["rastir.guardrail.id"] = gid
                    attrs["rastir.guardrail.action"] = action
                    attrs["rastir.guardrail.category"] = category
                    attrs["rastir.guardrail.source"] = source
                    break
            if "rastir.guardrail.action" in attrs:
                break
        reason = guard.get("actionReason")
        if isinstance(reason, str) and reason and intervened:
            attrs["rastir.guardrail.reason"] = reason[:256]
    if guard is not None or intervened:
        attrs["rastir.guardrail.intervened"] = intervened
        if intervened:
            attrs.setdefault("rastir.guardrail.action", "GUARDRAIL_INTERVENED")
            attrs.setdefault("rastir.guardrail.category", "unknown")
    return attrs


def _usage(r: AdapterResult | TokenDelta, usage: Any) -> None:
    if isinstance(usage, Mapping):
        r.tokens_input = int_or_none(usage.get("inputTokens"))
        r.tokens_output = int_or_none(usage.get("outputTokens"))
        r.cache_read_tokens = int_or_none(usage.get("cacheReadInputTokens"))
        r.cache_write_tokens = int_or_none(usage.get("cacheWriteInputTokens"))
        details = usage.get("cacheDetails")
        if r.cache_write_tokens and isinstance(details, list):
            # Converse reports each cache write's lifetime; 1-hour writes cost more.
            hour = [
                int_or_none(d.get("inputTokens"))
                for d in details
                if isinstance(d, Mapping) and d.get("ttl") == "1h"
            ]
            if hour and None not in hour:
                add_usage_detail(r, "cache_write_1h_tokens", sum(x or 0 for x in hour))


class BedrockAdapter(BaseAdapter):
    name = "bedrock"
    priority = 140
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return None if issubclass(cls, Mapping) else False

    def can_handle(self, result: Any) -> bool:
        return "stopReason" in result and ("output" in result or "usage" in result)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult(provider="aws.bedrock")
        stop = str_or_none(result.get("stopReason"))
        r.finish_reason = stop
        _usage(r, result.get("usage"))
        meta = result.get("ResponseMetadata")
        if isinstance(meta, Mapping):
            r.response_id = str_or_none(meta.get("RequestId"))
        metrics = result.get("metrics")
        if isinstance(metrics, Mapping):
            latency = int_or_none(metrics.get("latencyMs"))
            if latency is not None:
                r.extra_attributes["aws.bedrock.latency_ms"] = latency
        guard = guardrail_attributes(result.get("trace"), stop)
        if guard:
            r.extra_attributes.update(guard)
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        output = result.get("output")
        message = output.get("message") if isinstance(output, Mapping) else None
        if not isinstance(message, Mapping):
            return None
        return [
            {
                "role": str(message.get("role", "assistant")),
                "parts": to_parts(message.get("content")),
                "finish_reason": str(result.get("stopReason", "")),
            }
        ]

    # A boto3 ``bedrock-runtime`` client among the arguments names the provider.
    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in ("BedrockRuntime", "AgentsforBedrockRuntime") and (
            cls.__module__.startswith(("botocore", "boto3", "aiobotocore"))
        )

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        return AdapterResult(provider="aws.bedrock")

    def match_stream_type(self, cls: type) -> bool | None:
        return None if issubclass(cls, Mapping) else False

    def can_handle_stream(self, chunk: Any) -> bool:
        return len(chunk) == 1 and next(iter(chunk)) in _STREAM_KEYS

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta(provider="aws.bedrock")
        ((key, body),) = chunk.items()
        if not isinstance(body, Mapping):
            return d
        if key == "contentBlockDelta":
            delta = body.get("delta")
            d.content = True
            if isinstance(delta, Mapping) and isinstance(delta.get("text"), str):
                d.text = delta["text"]
        elif key == "contentBlockStart":
            d.content = "toolUse" in (body.get("start") or {})
        elif key == "messageStop":
            d.finish_reason = str_or_none(body.get("stopReason"))
            if d.finish_reason == "guardrail_intervened":
                d.extra_attributes = guardrail_attributes(None, d.finish_reason)
        elif key == "metadata":
            _usage(d, body.get("usage"))
            guard = guardrail_attributes(body.get("trace"), None)
            if guard:
                d.extra_attributes = guard
        return d
