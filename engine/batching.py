"""Micro-batching: requests that arrive together share one round trip to Redis, and a bounded
queue in front of it.

Items submitted during one event-loop turn, and those that queue up while `max_in_flight` batches
are already on the wire, are sent as one batch. Under light load a batch holds one item and adds
no wait; under heavy load batches grow, which is what lets one worker keep up.

The queue is bounded twice, so a slow or paused Redis turns into fast refusals instead of a
growing backlog of requests whose callers have long given up: an item is refused (`Overloaded`)
when `max_queued` items already wait, or when it waited `max_wait_s` without being sent. A refused
item was never sent, so nothing is ever placed for it; an item whose caller went away (its future
cancelled) is dropped before sending.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from engine.errors import Overloaded

T = TypeVar("T")
R = TypeVar("R")

# Sends a batch: returns each item's result (or the exception for it), and may hand results over
# earlier through its `deliver(index, result)` argument, so that items whose answer is known do
# not wait for the slowest of the batch (a node failing over, a slot being moved). It calls
# `release()` once what is left of the batch no longer needs one of the `max_in_flight` slots
# (the order placer: it waits only on resends to a moving cluster slot): otherwise batches stuck
# there would hold every slot, and orders bound elsewhere would queue behind them until refused.
Deliver = Callable[[int, R | BaseException], None]
Release = Callable[[], None]
SendBatch = Callable[[list[T], Deliver[R], Release], Awaitable[Sequence[R | BaseException]]]


@dataclass(slots=True)
class _Queued(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        send: SendBatch[T, R],
        *,
        max_items: int,
        max_in_flight: int,
        max_queued: int,
        max_wait_s: float,
    ) -> None:
        self._send = send
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._max_queued = max_queued
        self._max_wait_s = max_wait_s
        self._queue: deque[_Queued[T, R]] = deque()
        self._in_flight = 0  # batches holding a slot
        self._sending: set[asyncio.Future[None]] = set()  # batches not yet done
        self._flush_scheduled = False
        self._expiry: asyncio.TimerHandle | None = None
        self.refused = 0  # items answered Overloaded: for the metrics

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, item: T) -> R:
        if len(self._queue) >= self._max_queued:
            self.refused += 1
            raise Overloaded(self._max_wait_s)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(item, future))
        self._schedule()
        try:
            return await future
        finally:
            # A failed future holds its exception, whose traceback holds this frame and so the
            # future: without this, every refused order would leave a cycle for the collector.
            del future

    def _schedule(self) -> None:
        if not self._queue:
            return
        if self._in_flight < self._max_in_flight:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        elif self._expiry is None:
            # Every batch slot is on the wire: items may now wait; refuse those that wait too long.
            self._expiry = asyncio.get_running_loop().call_later(
                self._max_wait_s / 4, self._refuse_stale
            )

    def _refuse_stale(self) -> None:
        self._expiry = None
        oldest_allowed = time.monotonic() - self._max_wait_s
        while self._queue and self._queue[0].queued_at <= oldest_allowed:
            stale = self._queue.popleft()
            if not stale.future.done():
                self.refused += 1
                stale.future.set_exception(Overloaded(self._max_wait_s))
        self._schedule()

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch: list[_Queued[T, R]] = []
        while self._queue and len(batch) < self._max_items:
            queued = self._queue.popleft()
            if not queued.future.done():  # its caller went away: never send it
                batch.append(queued)
        if batch:
            self._in_flight += 1
            release = self._slot_release()
            task = asyncio.ensure_future(self._run(batch, release))
            self._sending.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._sending.discard)
            task.add_done_callback(lambda _: release())
        self._schedule()

    def _slot_release(self) -> Release:
        """Frees one batch's slot, once however often it is called."""
        holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._in_flight -= 1
                self._schedule()

        return release

    async def _run(self, batch: list[_Queued[T, R]], release: Release) -> None:
        def deliver(index: int, result: R | BaseException) -> None:
            future = batch[index].future
            if future.done():  # delivered already, or the caller went away
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        try:
            results = await self._send([queued.item for queued in batch], deliver, release)
        except BaseException as exc:  # the whole round trip failed: every caller learns why
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for index, result in enumerate(results):
            deliver(index, result)
