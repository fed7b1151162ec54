"""The built-in adapters, registered when the registry is first used."""

from __future__ import annotations

from rastir.adapters.base import BaseAdapter

__all__ = ["builtin_adapters"]


def builtin_adapters() -> list[BaseAdapter]:
    """One instance of each of the 15 built-in adapters."""
    from rastir.adapters.anthropic import AnthropicAdapter
    from rastir.adapters.azure_openai import AzureOpenAIAdapter
    from rastir.adapters.bedrock import BedrockAdapter
    from rastir.adapters.cohere import CohereAdapter
    from rastir.adapters.crewai import CrewAIAdapter
    from rastir.adapters.fallback import FallbackAdapter
    from rastir.adapters.gemini import GeminiAdapter
    from rastir.adapters.groq import GroqAdapter
    from rastir.adapters.langchain import LangChainAdapter
    from rastir.adapters.langgraph import LangGraphAdapter
    from rastir.adapters.llamaindex import LlamaIndexAdapter
    from rastir.adapters.mistral import MistralAdapter
    from rastir.adapters.openai import OpenAIAdapter
    from rastir.adapters.retrieval import RetrievalAdapter
    from rastir.adapters.tool import ToolAdapter

    return [
        LangGraphAdapter(),
        LangChainAdapter(),
        CrewAIAdapter(),
        LlamaIndexAdapter(),
        AzureOpenAIAdapter(),
        GroqAdapter(),
        OpenAIAdapter(),
        AnthropicAdapter(),
        GeminiAdapter(),
        CohereAdapter(),
        MistralAdapter(),
        BedrockAdapter(),
        RetrievalAdapter(),
        ToolAdapter(),
        FallbackAdapter(),
    ]
