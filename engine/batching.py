"""Micro-batching: requests that arrive together share one round trip to Redis.

Items submitted during one event-loop turn, and those that queue up while `max_in_flight` batches
are already on the wire, are sent as one batch. Under light load a batch holds one item and adds
no wait; under heavy load batches grow, which is what lets one worker keep up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SendBatch = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class MicroBatcher(Generic[T, R]):
    def __init__(self, send: SendBatch[T, R], max_items: int, max_in_flight: int) -> None:
        self._send = send
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._flush_scheduled = False

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._queue and not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue[: self._max_items], self._queue[self._max_items :]
        self._in_flight += 1
        task = asyncio.ensure_future(self._run(batch))
        task.add_done_callback(self._batch_done)
        self._schedule()

    def _batch_done(self, _task: asyncio.Future[None]) -> None:
        self._in_flight -= 1
        self._schedule()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except BaseException as exc:  # the whole round trip failed: every caller learns why
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away (client disconnected)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
