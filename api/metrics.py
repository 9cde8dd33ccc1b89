"""Prometheus metrics of one API process, exposed on GET /metrics.

Counters the requests update (order outcomes, placement latency, responses per status class)
live in this process only: with several API processes, each is its own scrape target. They are
plain numbers (RequestCounts), made into metric families at scrape time: prometheus_client's own
counters take a lock per increment, and the order path counts three times per order. The
gauges of shared state (stream backlog, writer progress, dead letters, failed notices, Redis
memory per node) are read from the stores at scrape time, so every process reports the same
values for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from litestar import Response, get
from litestar.types import Message, Scope
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from redis.asyncio import RedisCluster

from api.state import Services
from api.types import Injected
from engine.errors import (
    IdempotencyKeyReused,
    OutcomeUnknown,
    OutOfStock,
    Overloaded,
    StoreFull,
    UnknownProduct,
)
from engine.stock_changes import StockChange
from stores.redis import RedisClient
from stores.streams import CONSUMER_GROUPS, dead_letter_count, persisted_counts, writer_backlog

# `error` is anything unexpected (a store down, a bug): the request answered 5xx.
ORDER_OUTCOMES: Final = (
    "confirmed",
    "replayed",
    "out_of_stock",
    "unknown_product",
    "key_conflict",
    "overloaded",
    "outcome_unknown",
    "store_full",
    "error",
)
ORDER_FAILURES: Final[dict[type[BaseException], str]] = {
    OutOfStock: "out_of_stock",
    UnknownProduct: "unknown_product",
    IdempotencyKeyReused: "key_conflict",
    Overloaded: "overloaded",
    OutcomeUnknown: "outcome_unknown",
    StoreFull: "store_full",
}
# The lower buckets span a batched placement's usual time (README, "Performance and scaling");
# the upper ones show a slow Redis or a retry storm.
PLACEMENT_BUCKETS_S: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Scrapes from several Prometheus servers (or a gateway fan-out) within this window share one
# read of the stores: the backlog alone is two pipelines over every partition stream.
STORE_CACHE_S: Final = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """One Redis node's memory, from INFO: at maxmemory (noeviction) a master refuses writes."""

    node: str  # host:port
    role: str  # "master" or "replica"
    used_bytes: int  # used_memory
    max_bytes: int  # maxmemory; 0 is no limit


@dataclass(frozen=True, slots=True)
class StoreReading:
    """The shared state, as read at one scrape."""

    backlog: dict[str, int]  # per group: entries not yet delivered
    pending: dict[str, int]  # per group: delivered, not yet acked
    persisted: dict[str, int]  # per group: entries acked since the counter key was created
    dead_letters: int  # entries in the dead-letter streams, every group's
    duplicate_orders: int | None  # orders that repeated an idempotency key (None: PG unreachable)
    notification_failures: int
    redis_memory: list[NodeMemory]  # every node that answered


class RequestCounts(Collector):
    """What the request path counts, as plain numbers. Every update comes from the event loop's
    one thread, so none needs a lock; collect() reads them at scrape time."""

    def __init__(self) -> None:
        self.orders = dict.fromkeys(ORDER_OUTCOMES, 0)
        self.responses = [0] * len(STATUS_CLASSES)
        self.low_stock = 0
        # One count per bucket of PLACEMENT_BUCKETS_S, then one past the last bound (+Inf).
        self.placements = [0] * (len(PLACEMENT_BUCKETS_S) + 1)
        self.placement_sum_s = 0.0
        self._created = time.time()

    def observe_placement(self, seconds: float) -> None:
        # A bucket counts the values at or below its bound (Prometheus' `le`).
        self.placements[bisect_left(PLACEMENT_BUCKETS_S, seconds)] += 1
        self.placement_sum_s += seconds

    def collect(self) -> Iterator[Metric]:
        created = self._created
        orders = CounterMetricFamily("orders", "POST /orders by outcome", labels=["outcome"])
        for outcome, count in self.orders.items():
            orders.add_metric([outcome], count, created=created)
        yield orders
        cumulative, buckets = 0, []
        for bound, count in zip((*PLACEMENT_BUCKETS_S, float("inf")), self.placements, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        placement = HistogramMetricFamily(
            "placement_seconds",
            "Time in OrderPlacer.place (BasketPlacer.place for a basket), every outcome",
        )
        placement.add_metric([], buckets, self.placement_sum_s)
        yield placement
        responses = CounterMetricFamily(
            "http_responses", "HTTP responses by status class", labels=["status_class"]
        )
        for status_class, count in zip(STATUS_CLASSES, self.responses, strict=True):
            responses.add_metric([status_class], count, created=created)
        yield responses
        # No product label: products are unbounded, and the log line names each one.
        yield CounterMetricFamily(
            "low_stock_changes",
            "Stock changes that left a level at or below its product's threshold",
            value=self.low_stock,
            created=created,
        )


class StoreCollector(Collector):
    """Exports the last StoreReading; `Metrics.refresh` takes a new one before each exposition,
    because collect() is synchronous and the stores are read asynchronously."""

    def __init__(self) -> None:
        self.reading: StoreReading | None = None  # None: the stores did not answer

    def collect(self) -> Iterator[Metric]:
        reading = self.reading
        if reading is None:  # absent rather than stale, so alerts on absence can fire
            return
        backlog = GaugeMetricFamily(
            "stream_backlog", "Stream entries not yet delivered to the group", labels=["group"]
        )
        pending = GaugeMetricFamily(
            "stream_pending", "Stream entries delivered to the group, not acked", labels=["group"]
        )
        persisted = CounterMetricFamily(
            "writer_persisted", "Stream entries persisted and acked by the group", labels=["group"]
        )
        for group in reading.backlog:
            backlog.add_metric([group], reading.backlog[group])
            pending.add_metric([group], reading.pending[group])
            persisted.add_metric([group], reading.persisted.get(group, 0))
        yield backlog
        yield pending
        yield persisted
        yield GaugeMetricFamily(
            "dead_letters",
            "Stream entries the writers gave up on, in the dead-letter streams",
            value=reading.dead_letters,
        )
        if reading.duplicate_orders is not None:
            yield GaugeMetricFamily(
                "duplicate_orders",
                "Orders that repeated an idempotency key after it left Redis, caught and "
                "cancelled by the orders writer (duplicate_orders in PostgreSQL)",
                value=reading.duplicate_orders,
            )
        yield GaugeMetricFamily(
            "notification_failures",
            "Notices that failed for good (rq FailedJobRegistry)",
            value=reading.notification_failures,
        )
        used = GaugeMetricFamily(
            "redis_memory_used_bytes",
            "Memory Redis uses (INFO used_memory), per node",
            labels=["node", "role"],
        )
        limit = GaugeMetricFamily(
            "redis_memory_max_bytes",
            "Redis maxmemory per node (0: no limit); a master past it refuses writes",
            labels=["node", "role"],
        )
        for node in reading.redis_memory:
            used.add_metric([node.node, node.role], node.used_bytes)
            limit.add_metric([node.node, node.role], node.max_bytes)
        yield used
        yield limit


class EngineCollector(Collector):
    """This process's engine: its bounded order queue, resends after lost replies, and writes a
    replica did not acknowledge in time. Read from the live objects at each scrape."""

    def __init__(self) -> None:
        self.services: Services | None = None

    def collect(self) -> Iterator[Metric]:
        services = self.services
        if services is None:
            return
        yield GaugeMetricFamily(
            "order_queue_depth",
            "Orders waiting to be sent to Redis in this process (bounded; past it: 503)",
            value=services.order_placer.queued,
        )
        runner = services.order_placer.runner
        yield CounterMetricFamily(
            "redis_command_resends",
            "Script calls sent again after a lost reply (connection cut, timeout)",
            value=runner.resends,
        )
        yield CounterMetricFamily(
            "replica_acks_short",
            "Node pipelines whose writes fewer replicas than REDIS_WAIT_REPLICAS acknowledged",
            value=0 if runner.acks is None else runner.acks.short,
        )


class Metrics:
    """One registry per application, so tests (and several apps in one process) do not share
    counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counts = RequestCounts()
        self.registry.register(self._counts)
        self._stores = StoreCollector()
        self.registry.register(self._stores)
        self._engine = EngineCollector()
        self.registry.register(self._engine)
        self._stores_read_at = -STORE_CACHE_S

    def order_placed(self, replayed: bool, placement_s: float) -> None:
        counts = self._counts
        counts.orders["replayed" if replayed else "confirmed"] += 1
        counts.observe_placement(placement_s)

    def order_failed(self, exc: BaseException, placement_s: float) -> str:
        """Count a failed placement; returns its outcome label (for the log line)."""
        outcome = ORDER_FAILURES.get(type(exc), "error")
        self._counts.orders[outcome] += 1
        self._counts.observe_placement(placement_s)
        return outcome

    def count_low_stock(self, _: StockChange) -> None:
        """The live stock feed's low-stock hook (api/stock_feed.py)."""
        self._counts.low_stock += 1

    async def count_response(self, message: Message, _: Scope) -> None:
        """Litestar's before_send hook: sees every response, error handlers' included."""
        if message["type"] == "http.response.start":
            self.count_status(message["status"])

    def count_status(self, status: int) -> None:
        """One response by its status class (also for api.order_intake, which Litestar skips)."""
        if 100 <= status < 600:
            self._counts.responses[status // 100 - 1] += 1

    async def refresh(self, services: Services) -> None:
        self._engine.services = services
        now = time.monotonic()
        if now - self._stores_read_at < STORE_CACHE_S:
            return
        self._stores_read_at = now
        try:
            self._stores.reading = await read_stores(services)
        except Exception:  # a scrape must still serve this process's counters
            log.warning("metrics: reading the stores failed", exc_info=True)
            self._stores.reading = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def read_stores(services: Services) -> StoreReading:
    report = await writer_backlog(services.redis, CONSUMER_GROUPS)
    persisted = await persisted_counts(services.redis, CONSUMER_GROUPS)
    dead = await dead_letter_count(services.redis)
    # rq's client is blocking: off the event loop, like every other notice call.
    failures = await asyncio.to_thread(services.notices.failed_count)
    return StoreReading(
        backlog={g.group: g.lag for g in report},
        pending={g.group: g.pending for g in report},
        persisted=persisted,
        dead_letters=dead,
        duplicate_orders=await services.archive.duplicate_count(),
        notification_failures=failures,
        redis_memory=await redis_memory(services.redis),
    )


async def redis_memory(redis: RedisClient) -> list[NodeMemory]:
    """INFO memory and replication of every node (a cluster's masters and replicas, or the one
    server). A node that does not answer is left out, with a warning: one replica down must not
    take the backlog series with it."""
    replies: list[Any]
    if isinstance(redis, RedisCluster):
        nodes = redis.get_nodes()
        names = [node.name for node in nodes]
        # One call per node: with a single target redis-py answers that node's INFO as it is.
        replies = await asyncio.gather(
            *(redis.info("memory", "replication", target_nodes=node) for node in nodes),
            return_exceptions=True,
        )
    else:  # the one server not answering fails the whole reading, like the reads above
        address = redis.connection_pool.connection_kwargs
        names = [f"{address.get('host', 'localhost')}:{address.get('port', 6379)}"]
        replies = [await redis.info("memory", "replication")]
    memory: list[NodeMemory] = []
    for name, info in zip(names, replies, strict=True):
        if isinstance(info, BaseException):
            log.warning("metrics: INFO memory of redis %s failed: %s", name, info)
            continue
        role = "master" if info["role"] == "master" else "replica"
        memory.append(NodeMemory(name, role, int(info["used_memory"]), int(info["maxmemory"])))
    return memory


@get("/metrics", include_in_schema=False)
async def metrics(metrics: Injected[Metrics], services: Injected[Services]) -> Response[bytes]:
    await metrics.refresh(services)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
