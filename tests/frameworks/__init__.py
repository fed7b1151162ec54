import sys

import pytest

#: LangGraph hands its run context (``get_config()``, which ``interrupt()`` uses, and
#: the callbacks ``stream_mode="messages"`` listens on) to async nodes only on Python
#: 3.11 and later, where asyncio tasks take a context: on 3.10 those calls fail or
#: stream nothing with rastir disabled too. An upstream limitation, not rastir's.
NEEDS_ASYNC_CONTEXT = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="LangGraph passes its run context to async nodes only from Python 3.11",
)
