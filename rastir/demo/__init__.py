"""``rastir demo``: the whole product on one machine, offline, in a few seconds.

* :mod:`rastir.demo.cli`: the command; starts the processes and prints the trace.
* :mod:`rastir.demo.agent_service`: a FastAPI agent service traced by
  ``RastirMiddleware``, calling an LLM and MCP tools.
* :mod:`rastir.demo.tools_server`: an MCP server on streamable HTTP with
  ``@mcp_endpoint`` tools.
* :mod:`rastir.demo.fake_llm`: a deterministic stand-in for ``openai.AsyncOpenAI``
  that returns real ``openai`` response objects.

This package is an application of rastir, not part of the SDK: the SDK never
imports it, and importing it needs fastapi, openai and mcp only in the modules that
run the services.
"""
