"""Stopping a task ends it even when a cancellation is lost, as Python 3.11's `wait_for` can lose
one inside a store driver's send (stores/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from stores.tasks import cancel_and_wait


async def loses_cancellations(lost: int, cancelled: list[int]) -> None:
    """Goes on after its first `lost` cancellations, as a task inside `wait_for` can."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(1)
            if len(cancelled) > lost:
                raise


@pytest.mark.parametrize("lost", [0, 1, 2])
async def test_a_task_is_cancelled_until_it_ends(lost: int) -> None:
    cancelled: list[int] = []
    task = asyncio.create_task(loses_cancellations(lost, cancelled))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert len(cancelled) == lost + 1


async def test_what_the_task_raised_is_raised() -> None:
    async def fails() -> None:
        raise LookupError("gone")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match="gone"):
        await cancel_and_wait(task)


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0, result="done"))
    await task
    await cancel_and_wait(task)
    assert task.result() == "done"
