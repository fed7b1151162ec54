"""A real ReAct-style LangGraph graph: a tool-calling chat model and two real tools.

The model is langchain-core's ``GenericFakeChatModel`` with a script that depends only
on the conversation (so one compiled graph can serve concurrent runs): the first turn
asks for ``add``, the second for ``multiply``, the third answers. Each turn reports its
usage the way provider integrations do, and streams in chunks when streamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

MODEL = "gpt-4o-mini"
# (input, output) tokens of each of the three turns
USAGE = ((11, 3), (23, 4), (37, 9))


class ToolFailure(RuntimeError):
    """What the failing tool raises."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a == 13:
        raise ToolFailure("13 is unlucky")
    return a * b


class ScriptedChatModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` answering from the conversation, with tool calls."""

    messages: Iterator[AIMessage | str] = iter(())
    model_name: str = MODEL

    def bind_tools(self, tools: Any, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        return self

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"  # what ChatOpenAI reports
        return params

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        turn = len(results)
        tokens_in, tokens_out = USAGE[min(turn, 2)]
        usage = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        meta = {"model_name": self.model_name, "finish_reason": "stop"}
        numbers = [int(n) for n in re.findall(r"-?\d+", str(messages[0].content))]
        a, b, c = (*numbers, 2, 2, 2)[:3]
        if turn == 0:
            call = {"name": "add", "args": {"a": a, "b": b}, "id": "call_add"}
        elif turn == 1:
            total = int(str(results[0].content))
            call = {"name": "multiply", "args": {"a": total, "b": c}, "id": "call_mul"}
        else:
            text = f"The answer is {results[-1].content}"
            return AIMessage(content=text, usage_metadata=usage, response_metadata=meta)
        meta["finish_reason"] = "tool_calls"
        return AIMessage(
            content="", tool_calls=[call], usage_metadata=usage, response_metadata=meta
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        words = str(reply.content).split(" ") if reply.content else []
        for i, word in enumerate(words):
            text = word if i == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            tool_call_chunks=[
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(reply.tool_calls)
            ],
            usage_metadata=reply.usage_metadata,
            response_metadata=reply.response_metadata,
            chunk_position="last",
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


def build_graph(
    tools: list[BaseTool] | None = None, model: ScriptedChatModel | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """agent → (tools → agent)* → end, as ``create_react_agent`` wires it."""
    llm = (model or ScriptedChatModel()).bind_tools(tools or [add, multiply])

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [llm.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    from langchain_core.runnables import RunnableLambda

    graph = StateGraph(MessagesState)
    graph.add_node("agent", RunnableLambda(call_model, afunc=acall_model, name="agent"))
    graph.add_node("tools", ToolNode(tools or [add, multiply]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()
