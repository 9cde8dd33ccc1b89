"""A live stock subscription hands over what it has queued without waiting for the event loop:
a backlog of changes drains in one go, not one loop turn per change behind the orders."""

from __future__ import annotations

import asyncio

from api.stock_feed import StockUpdate, Subscription
from engine.stock_changes import StockChange


def update(level: int) -> StockUpdate:
    change = StockChange("sku-1", "paris", level, "order")
    return StockUpdate(change, f"{1000 + level}-0", None)


async def test_queued_changes_are_taken_without_a_loop_turn() -> None:
    subscription = Subscription("sku-1")
    for level in (3, 2, 1):
        assert subscription.offer(update(level))
    for level in (3, 2, 1):
        step = subscription.next(timeout_s=1.0)
        # A coroutine that finishes on its first step never gave the loop a turn.
        try:
            step.send(None)
        except StopIteration as done:
            assert done.value == update(level)
        else:
            step.close()
            raise AssertionError("next() waited for the loop with a change queued")


async def test_an_empty_queue_waits_for_the_next_change_or_the_timeout() -> None:
    subscription = Subscription("sku-1")
    assert await subscription.next(timeout_s=0.01) is None
    waiting = asyncio.ensure_future(subscription.next(timeout_s=1.0))
    await asyncio.sleep(0)
    assert subscription.offer(update(5))
    assert await waiting == update(5)
