"""CrewAI adapter (framework, priority 245).

Response: ``CrewOutput`` from ``crew.kickoff()`` (token usage summed over the crew's
tasks, task count, output kinds) and ``TaskOutput``. Request: a ``Crew``, ``Agent`` or
``LLM`` among the arguments; CrewAI names models the litellm way
(``gemini/gemini-2.5-flash``), which gives the provider. Streaming: the ``StreamChunk``
items of ``CrewStreamingOutput``; the final ``CrewOutput`` is read when the stream ends.
"""

from __future__ import annotations

from typing import Any, Final

from rastir.adapters._content import to_parts
from rastir.adapters.base import (
    FRAMEWORK,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
    int_or_none,
    str_or_none,
)

__all__ = ["CrewAIAdapter", "split_litellm_model"]

# litellm's provider prefixes -> OTel provider names.
_LITELLM: Final = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}


def split_litellm_model(model: str) -> tuple[str, str | None]:
    """``("gemini-2.5-flash", "gcp.gemini")`` from ``"gemini/gemini-2.5-flash"``."""
    prefix, slash, rest = model.partition("/")
    if slash and prefix in _LITELLM and rest:
        return rest, _LITELLM[prefix]
    return model, None


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("crewai")


def _llm_info(llm: Any) -> AdapterResult | None:
    if isinstance(llm, str):
        model, provider = split_litellm_model(llm)
        return AdapterResult(model=model, provider=provider)
    raw = BaseAdapter._extract_model_attr(llm, ("model",))
    if raw is None:
        return None
    model, provider = split_litellm_model(raw)
    declared = str_or_none(getattr(llm, "provider", None))
    if provider is None and declared is not None:
        provider = _LITELLM.get(declared, declared)
    return AdapterResult(model=model, provider=provider)


class CrewAIAdapter(BaseAdapter):
    name = "crewai"
    kind = FRAMEWORK
    priority = 245
    supports_request = True
    supports_streaming = True

    def match_type(self, cls: type) -> bool | None:
        return cls.__name__ in ("CrewOutput", "TaskOutput") and _ours(cls)

    def transform(self, result: Any) -> AdapterResult:
        r = AdapterResult()
        extra = r.extra_attributes
        raw = getattr(result, "raw", None)
        if isinstance(raw, str):
            extra["crewai_raw_length"] = len(raw)
        if type(result).__name__ == "TaskOutput":
            description = getattr(result, "description", None)
            if isinstance(description, str):
                extra["crewai_task_description"] = description[:256]
            agent = getattr(result, "agent", None) or getattr(result, "name", None)
            if isinstance(agent, str):
                extra["crewai_agent"] = agent
            return r
        usage = getattr(result, "token_usage", None)
        if usage is not None:
            r.tokens_input = int_or_none(getattr(usage, "prompt_tokens", None))
            r.tokens_output = int_or_none(getattr(usage, "completion_tokens", None))
            cached = int_or_none(getattr(usage, "cached_prompt_tokens", None))
            if cached:
                r.cache_read_tokens = cached
            total = int_or_none(getattr(usage, "total_tokens", None))
            if total is not None:
                extra["crewai_total_tokens"] = total
            requests = int_or_none(getattr(usage, "successful_requests", None))
            if requests is not None:
                extra["crewai_successful_requests"] = requests
        tasks = getattr(result, "tasks_output", None)
        if isinstance(tasks, list):
            extra["crewai_task_count"] = len(tasks)
        extra["crewai_has_json_output"] = getattr(result, "json_dict", None) is not None
        extra["crewai_has_pydantic_output"] = getattr(result, "pydantic", None) is not None
        return r

    def extract_output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        raw = getattr(result, "raw", None)
        return [{"role": "assistant", "parts": to_parts(raw)}] if isinstance(raw, str) else None

    # -- request ---------------------------------------------------------------------------
    def match_request_type(self, cls: type) -> bool:
        return cls.__name__ in ("Crew", "Agent", "LLM") and _ours(cls)

    def extract_request_object(self, obj: Any) -> AdapterResult | None:
        name = type(obj).__name__
        if name == "LLM":
            return _llm_info(obj)
        if name == "Agent":
            llm = getattr(obj, "llm", None)
            return None if llm is None else _llm_info(llm)
        for agent in getattr(obj, "agents", None) or ():
            llm = getattr(agent, "llm", None)
            if llm is not None:
                found = _llm_info(llm)
                if found is not None:
                    return found
        return None

    # -- streaming -------------------------------------------------------------------------
    def match_stream_type(self, cls: type) -> bool | None:
        return cls.__name__ == "StreamChunk" and _ours(cls)

    def extract_stream_delta(self, chunk: Any) -> TokenDelta | None:
        d = TokenDelta()
        content = getattr(chunk, "content", None)
        if content or getattr(chunk, "tool_call", None) is not None:
            d.content = True
            if isinstance(content, str):
                d.text = content
        role = getattr(chunk, "agent_role", None)
        if isinstance(role, str) and role:
            d.extra_attributes = {"crewai_agent": role}
        return d
