"""A real LlamaIndex FunctionAgent on ``MockFunctionCallingLLM`` with function tools.

The mock LLM is llama-index-core's own; the subclass only reports a model name and
token usage the way provider integrations do (``additional_kwargs`` of each
``ChatResponse``), and answers from the conversation: a tool call first, then the
tool's result.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import BaseTool, FunctionTool
from pydantic.warnings import PydanticDeprecationWarning

MODEL = "mock-fc-1"
USAGE = ((12, 4), (30, 6))


class ToolFailure(RuntimeError):
    pass


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a == 13:
        raise ToolFailure("13 is unlucky")
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def reply(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    results = [m for m in messages if m.role == MessageRole.TOOL]
    if results:
        return ChatMessage(
            role=MessageRole.ASSISTANT, content=f"The answer is {results[-1].content}"
        )
    question = next(m for m in messages if m.role == MessageRole.USER)
    a, b = (int(n) for n in re.findall(r"-?\d+", str(question.content))[:2])
    call = ToolCallBlock(tool_call_id="call_1", tool_name="multiply", tool_kwargs={"a": a, "b": b})
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])


class MeteredMockLLM(MockFunctionCallingLLM):
    model: str = MODEL

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        message = reply(messages, **kwargs)
        turn = min(sum(m.role == MessageRole.TOOL for m in messages), 1)
        tokens_in, tokens_out = USAGE[turn]
        words = (message.content or "").split(" ") if message.content else [""]

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                text += delta
                last = i == len(words) - 1
                yield ChatResponse(
                    message=message if last else ChatMessage(role="assistant", content=text),
                    delta=delta,
                    additional_kwargs=(
                        {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
                        if last
                        else {}
                    ),
                )

        return gen()


def build_agent() -> FunctionAgent:
    tools: list[BaseTool | Callable[..., Any]] = [
        FunctionTool.from_defaults(multiply),
        FunctionTool.from_defaults(add),
    ]
    with warnings.catch_warnings():
        # llama-index's workflow step discovery reads pydantic's deprecated __fields__
        # (workflows/utils.py, inspect.getmembers); not ours to fix.
        warnings.simplefilter("ignore", PydanticDeprecationWarning)
        return FunctionAgent(tools=tools, llm=MeteredMockLLM(), system_prompt="Be exact.")
