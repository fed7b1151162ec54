"""The evaluation queue: bounded, first in first out, no wake-up lost to a cancellation."""

from __future__ import annotations

import anyio
import pytest

from rastir.collector.evaluation._queue import BoundedQueue


@pytest.mark.anyio
async def test_the_queue_is_bounded_and_first_in_first_out() -> None:
    q: BoundedQueue[int] = BoundedQueue(3)
    assert [q.put_nowait(i) for i in range(5)] == [True, True, True, False, False]
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == [0, 1, 2]
    assert q.put_nowait(9)
    assert q.clear() == 1
    assert len(q) == 0


@pytest.mark.anyio
async def test_no_item_is_left_behind_when_a_woken_getter_is_cancelled() -> None:
    q: BoundedQueue[str] = BoundedQueue(10)
    got: list[str] = []

    async def take() -> None:
        got.append(await q.get())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            cancelled = anyio.CancelScope()

            async def doomed() -> None:
                with cancelled:
                    await take()

            tg.start_soon(doomed)
            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            q.put_nowait("a")  # wakes the first waiter...
            cancelled.cancel()  # ...which is cancelled before it runs
            await anyio.wait_all_tasks_blocked()
            # Whichever task ran, the item was taken: none sits in the queue while a
            # getter sleeps.
            assert got == ["a"]
            assert len(q) == 0
            tg.cancel_scope.cancel()
