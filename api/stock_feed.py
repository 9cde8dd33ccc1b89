"""The live stock feed of one API worker: one task tails every partition stream and hands each
stock change to the subscribers of its product (GET /inventory/stream).

Plain XREAD, not a consumer group: a group shares its entries out between its consumers, and every
worker needs every event for its own subscribers. Nothing is acknowledged and nothing is kept:
what a worker misses while it is down, a reconnecting client recovers from the current levels it
is sent first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import RedisCluster

from engine.events import decode_event
from engine.stock_changes import LowStockThresholds, StockChange, stock_changes_of
from stores.redis import RedisClient
from stores.streams import PARTITION_STREAMS, node_of
from stores.tasks import cancel_and_wait

READ_BLOCK_MS: Final = 500  # one Redis: how long one XREAD waits; below the socket timeout
READ_COUNT_PER_STREAM: Final = 250  # entries: one holds every order of a script call
# Redis Cluster: streams of different slots cannot share one XREAD, and one blocking XREAD per
# stream would hold 16 connections; each round reads every stream without blocking, in one
# pipeline, and sleeps between rounds that found nothing.
CLUSTER_IDLE_MIN_S: Final = 0.005
CLUSTER_IDLE_MAX_S: Final = 0.05
RETRY_S: Final = 1.0
SUBSCRIBER_QUEUE_SIZE: Final = 1_000  # changes waiting for one client before it is dropped
EMPTY_STREAM_ID: Final = "0-0"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StockUpdate:
    change: StockChange
    entry_id: str  # the stream entry's ID: its first part is when Redis appended it (ms)
    low_threshold_units: int | None  # set when the change left the level at or below it


@dataclass(frozen=True, slots=True)
class Dropped:
    """The last item a subscriber gets when it fell SUBSCRIBER_QUEUE_SIZE changes behind."""

    reason: str


FeedItem = StockUpdate | Dropped


class Subscription:
    def __init__(self, product_id: str) -> None:
        self.product_id = product_id
        self.queue: asyncio.Queue[FeedItem] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)

    async def next(self, timeout_s: float) -> FeedItem | None:
        """The next item, or None after timeout_s without one."""
        # What is queued already is taken at once: wait_for runs its awaitable as a task of its
        # own, one loop turn per item, and a backlog of changes then drains at one per turn of a
        # loop that is busy placing orders.
        with contextlib.suppress(asyncio.QueueEmpty):
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None

    def offer(self, update: StockUpdate) -> bool:
        """Queue an update without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            return False
        return True

    def drop(self, reason: str) -> None:
        # What is queued is dropped too: the client has to reconnect, and is then sent the
        # current levels, which supersede every queued change.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(Dropped(reason))


class StockFeed:
    def __init__(self, redis: RedisClient, thresholds: LowStockThresholds) -> None:
        self._redis = redis
        self._thresholds = thresholds
        self._subscribers: dict[str, set[Subscription]] = {}
        self._last_ids: dict[str, str] = {}
        self._tailer: asyncio.Task[None] | None = None  # the one task that publishes
        self._retired: set[asyncio.Task[None]] = set()  # former tailers not yet ended
        self._stopped = False
        self.low_stock_count = 0  # low-stock changes seen by this worker (logs, tests)
        # Set by the app to count them in its metrics (api/metrics.py imports api/state.py, which
        # builds this feed: a callback rather than an import cycle).
        self.on_low_stock: Callable[[StockChange], None] | None = None

    # --- subscribers ---

    async def subscribe(self, product_id: str) -> Subscription:
        """Changes from now on; the first subscriber starts the tailer, and its read positions are
        resolved before this returns, so a snapshot read afterwards misses no change."""
        subscription = Subscription(product_id)
        self._subscribers.setdefault(product_id, set()).add(subscription)
        if not self.tailing:
            try:
                await self._start_tailing()
            except BaseException:  # Redis down, or the client left: nobody else would remove it
                self.unsubscribe(subscription)
                raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The last subscriber leaving stops the tailer: a worker nobody watches reads nothing
        (the read would otherwise run beside every order)."""
        subscribers = self._subscribers.get(subscription.product_id)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._subscribers[subscription.product_id]
        if not self._subscribers:
            self._retire_tailer()

    @property
    def tailing(self) -> bool:
        return self._tailer is not None and not self._tailer.done()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    # --- the tailer ---

    async def _start_tailing(self) -> None:
        """From the streams' current ends (what `$` means), resolved to IDs once so that nothing
        appended between two reads is skipped."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in PARTITION_STREAMS:
            pipe.xrevrange(stream, count=1)
        lasts = await pipe.execute()
        if self.tailing or self._stopped:
            # A tailer started while this read the ends: the subscriber was registered before,
            # so every change that tailer hands out from now on reaches it, and what came
            # earlier is in the levels its caller reads next.
            return
        self._last_ids = {
            stream: str(last[0][0]) if last else EMPTY_STREAM_ID
            for stream, last in zip(PARTITION_STREAMS, lasts, strict=True)
        }
        self._tailer = asyncio.create_task(self._run(), name="stock-feed")

    def _retire_tailer(self) -> None:
        """Stop the tailer. Its cancellation can be lost (stores/tasks.py says how): a retired
        tailer also stops at its next turn and publishes nothing more, and `stop` waits for it."""
        tailer, self._tailer = self._tailer, None
        if tailer is not None and not tailer.done():
            tailer.cancel()
            self._retired.add(tailer)
            tailer.add_done_callback(self._retired.discard)

    async def stop(self) -> None:
        """Ends every tailer, and keeps a subscriber that is starting one from doing so."""
        self._stopped = True
        self._retire_tailer()
        for tailer in list(self._retired):
            await cancel_and_wait(tailer)

    async def _run(self) -> None:
        this = asyncio.current_task()
        cluster = isinstance(self._redis, RedisCluster)
        idle_s = CLUSTER_IDLE_MIN_S
        while self._tailer is this:
            try:
                streams = await (self._read_cluster() if cluster else self._read_single())
                if self._tailer is not this:
                    return  # retired while it read
                read = self.publish(streams)
                if cluster:
                    await asyncio.sleep(0 if read else idle_s)
                    idle_s = CLUSTER_IDLE_MIN_S if read else min(idle_s * 2, CLUSTER_IDLE_MAX_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down or failing over: keep the positions, read again later
                if self._tailer is not this:
                    return  # retired while it read (its connection may have been closed under it)
                log.warning("stock feed: reading the streams failed", exc_info=True)
                await asyncio.sleep(RETRY_S)

    async def _read_single(self) -> list[Any]:
        # One Redis holds every partition: one blocking XREAD names all the streams.
        reply = await self._redis.execute_command(
            "XREAD",
            "COUNT",
            READ_COUNT_PER_STREAM,
            "BLOCK",
            READ_BLOCK_MS,
            "STREAMS",
            *self._last_ids.keys(),
            *self._last_ids.values(),
        )
        return list(reply or ())

    async def _read_cluster(self) -> list[Any]:
        assert isinstance(self._redis, RedisCluster)
        pipe = self._redis.pipeline(transaction=False)
        for stream, last_id in self._last_ids.items():
            # XREAD's keys are "movable": naming the node spares a COMMAND GETKEYS round trip.
            pipe.execute_command(
                "XREAD",
                "COUNT",
                READ_COUNT_PER_STREAM,
                "STREAMS",
                stream,
                last_id,
                **node_of(self._redis, stream),
            )
        return [item for reply in await pipe.execute() for item in reply or ()]

    # --- fan-out ---

    def publish(self, streams: list[Any]) -> int:
        """Hand the entries of one read ([[stream, [(id, fields), ...]], ...]) to the subscribers.
        Never waits: a subscriber whose queue is full is dropped. Returns the entries seen."""
        seen = 0
        for stream, entries in streams:
            for entry_id, fields in entries:
                self._last_ids[stream] = entry_id
                seen += 1
                for change in stock_changes_of(decode_event(fields)):
                    self._deliver(StockUpdate(change, entry_id, self._low_threshold(change)))
        return seen

    def _low_threshold(self, change: StockChange) -> int | None:
        if not self._thresholds.is_low(change):
            return None
        self.low_stock_count += 1
        if self.on_low_stock is not None:
            self.on_low_stock(change)
        threshold = self._thresholds.of(change.product_id)
        log.info(
            "low stock: %s at %s has %d units (threshold %d, %s)",
            change.product_id,
            change.warehouse_id,
            change.level,
            threshold,
            change.reason,
        )
        return threshold

    def _deliver(self, update: StockUpdate) -> None:
        subscribers = self._subscribers.get(update.change.product_id)
        if not subscribers:
            return
        for subscription in list(subscribers):
            if not subscription.offer(update):
                self.unsubscribe(subscription)
                subscription.drop(f"more than {SUBSCRIBER_QUEUE_SIZE} changes behind")
