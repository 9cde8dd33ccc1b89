"""A live stock subscription hands over what it has queued without waiting for the event loop:
a backlog of changes drains in one go, not one loop turn per change behind the orders. The feed
runs one tailer at a time, and a tailer that lost its cancellation hands out nothing more."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.stock_feed import StockFeed, StockUpdate, Subscription
from engine.stock_changes import LowStockThresholds, StockChange
from stores.streams import PARTITION_STREAMS


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


def entry(entry_id: str, level: int) -> tuple[str, dict[str, str]]:
    fields = {"type": "stock.changed", "product": "sku-1", "warehouse": "paris"}
    return entry_id, {**fields, "level": str(level), "reason": "count"}


class EndsOfStreams:
    """The pipeline that reads each stream's last entry: every stream is empty."""

    def xrevrange(self, stream: str, count: int) -> None:
        pass

    async def execute(self) -> list[list[Any]]:
        await asyncio.sleep(0)  # a round trip: other subscribers run meanwhile
        return [[] for _ in PARTITION_STREAMS]


class FakeStreams:
    """Blocking XREADs answered from `replies`. With `lose_cancel`, a read cancelled while it
    waits answers `lose_cancel` instead, as redis-py's send does on Python 3.11 when the
    cancellation lands in the turn its write completes."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.lose_cancel: list[Any] | None = None
        self.reads_started = 0
        self.cancels_lost = 0

    def pipeline(self, transaction: bool) -> EndsOfStreams:
        return EndsOfStreams()

    async def execute_command(self, *args: Any) -> list[Any]:
        self.reads_started += 1
        try:
            return await self.replies.get()
        except asyncio.CancelledError:
            if self.lose_cancel is None:
                raise
            self.cancels_lost += 1
            reply, self.lose_cancel = self.lose_cancel, None  # once
            return reply


# Longer than any step below needs: past it, a regression fails the test instead of hanging it.
STEP_LIMIT_S = 2.0


def feed_on(streams: FakeStreams) -> StockFeed:
    return StockFeed(streams, LowStockThresholds(0, {}))  # type: ignore[arg-type]


def tailers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "stock-feed" and not t.done()]


async def test_subscribers_arriving_together_start_one_tailer() -> None:
    feed = feed_on(FakeStreams())
    first, second = await asyncio.gather(feed.subscribe("sku-1"), feed.subscribe("sku-1"))
    assert len(tailers()) == 1
    feed.unsubscribe(first)
    feed.unsubscribe(second)
    async with asyncio.timeout(STEP_LIMIT_S):
        await feed.stop()
    assert tailers() == []


async def test_a_subscriber_still_starting_a_tailer_when_the_feed_stops_starts_none() -> None:
    feed = feed_on(FakeStreams())
    subscribing = asyncio.create_task(feed.subscribe("sku-1"))
    await asyncio.sleep(0)  # it is reading the streams' ends
    await feed.stop()
    await subscribing
    assert tailers() == []


async def test_a_tailer_that_lost_its_cancellation_hands_out_nothing_and_ends() -> None:
    streams = FakeStreams()
    feed = feed_on(streams)
    first = await feed.subscribe("sku-1")
    streams.replies.put_nowait([[PARTITION_STREAMS[0], [entry("1-0", 5)]]])
    assert isinstance(await first.next(timeout_s=STEP_LIMIT_S), StockUpdate)
    async with asyncio.timeout(STEP_LIMIT_S):
        while streams.reads_started < 2:  # the tailer waits in its next read
            await asyncio.sleep(0)

    streams.lose_cancel = [[PARTITION_STREAMS[0], [entry("2-0", 4)]]]
    feed.unsubscribe(first)
    second = await feed.subscribe("sku-1")
    async with asyncio.timeout(STEP_LIMIT_S):
        await feed.stop()

    assert streams.cancels_lost == 1  # the old tailer read on after its cancellation
    assert first.queue.empty() and second.queue.empty()  # and what it read went nowhere
    assert tailers() == []


class UnreachableStreams(FakeStreams):
    def pipeline(self, transaction: bool) -> EndsOfStreams:
        raise ConnectionError("Redis is down")


async def test_a_subscriber_whose_tailer_cannot_start_is_not_kept() -> None:
    feed = feed_on(UnreachableStreams())
    with pytest.raises(ConnectionError):
        await feed.subscribe("sku-1")
    assert feed.subscriber_count == 0
    assert tailers() == []
