"""The soak's instruments: what Redis, its streams and PostgreSQL hold, sampled every few seconds
while the API takes orders at a fixed rate beside the writers; the verdict (Redis memory flat once
the hot window has turned over, every confirmed order in PostgreSQL), and what a day at 100,000
orders/s needs, from the figures measured. Its plot is drawn by loadtest/plots.py."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from engine import keys
from loadtest.memory import KeyCosts
from stores.redis import RedisClient
from stores.streams import (
    CONSUMER_GROUPS,
    INVENTORY_GROUP,
    NOTIFIER_GROUP,
    ORDERS_GROUP,
    backlog,
)
from writers.consumer import TRIM_INTERVAL_S

SAMPLE_INTERVAL_S: Final = 5.0
SCAN_COUNT: Final = 5_000
# Judged from this many hot windows on: by then the first orders' records have left, and every
# record that leaves is replaced by one that arrives.
STEADY_AFTER_WINDOWS: Final = 2
FLAT_TOLERANCE: Final = 0.10
NOTICE_QUEUE_KEY: Final = "rq:queue:notices"
DAY_S: Final = 24 * 3600
# A delivered order's history: confirmed, picking, packed, shipped, delivered.
HISTORY_ROWS_PER_DELIVERED_ORDER: Final = 5


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # since the load started
    used_bytes: int  # INFO memory used_memory
    dataset_bytes: int  # used_memory_dataset
    keys: int  # DBSIZE
    order_keys: int  # order:* (SCAN)
    idempotency_keys: int  # idem:* (SCAN)
    stream_entries: int  # XLEN of the partition streams, summed
    stream_bytes: int  # MEMORY USAGE of the partition streams (groups' pending lists included)
    # Per consumer group: entries not yet delivered (lag) and delivered but not acked (pending).
    orders_lag: int
    orders_pending: int
    inventory_lag: int
    inventory_pending: int
    notifier_lag: int
    notifier_pending: int
    persisted: int  # PostgreSQL: SELECT count(*) FROM orders
    queue_bytes: int  # the notice queue's Redis (QUEUE_REDIS_URL): used_memory
    queued_notices: int  # its notice jobs waiting

    @property
    def backlog(self) -> int:
        return (
            self.orders_lag
            + self.orders_pending
            + self.inventory_lag
            + self.inventory_pending
            + self.notifier_lag
            + self.notifier_pending
        )


class Probe:
    """Reads one sample: the engine's Redis, the notice queue's Redis, PostgreSQL."""

    def __init__(
        self, redis: RedisClient, queue: RedisClient, postgres: asyncpg.Connection
    ) -> None:
        self._redis = redis
        self._queue = queue
        self._postgres = postgres

    async def sample(self, t_s: float) -> Sample:
        memory = await self._redis.info("memory")
        streams = [keys.stream(p) for p in range(keys.PARTITIONS)]
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
            pipe.memory_usage(stream, samples=0)  # every node, not an estimate
        replies = await pipe.execute()
        groups = {g.group: g for g in await backlog(self._redis, CONSUMER_GROUPS)}
        queue_memory = await self._queue.info("memory")
        return Sample(
            t_s=t_s,
            used_bytes=int(memory["used_memory"]),
            dataset_bytes=int(memory["used_memory_dataset"]),
            keys=int(await self._redis.dbsize()),
            order_keys=await self._count("order:*"),
            idempotency_keys=await self._count("idem:*"),
            stream_entries=sum(int(r or 0) for r in replies[0::2]),
            stream_bytes=sum(int(r or 0) for r in replies[1::2]),
            orders_lag=groups[ORDERS_GROUP].lag,
            orders_pending=groups[ORDERS_GROUP].pending,
            inventory_lag=groups[INVENTORY_GROUP].lag,
            inventory_pending=groups[INVENTORY_GROUP].pending,
            notifier_lag=groups[NOTIFIER_GROUP].lag,
            notifier_pending=groups[NOTIFIER_GROUP].pending,
            persisted=int(await self._postgres.fetchval("SELECT count(*) FROM orders")),
            queue_bytes=int(queue_memory["used_memory"]),
            queued_notices=int(await self._queue.llen(NOTICE_QUEUE_KEY)),
        )

    async def _count(self, pattern: str) -> int:
        # SCAN skips keys past their expiry that Redis has not reclaimed yet: these are counted
        # in used_memory but not here, which is what a hot order costs.
        count = 0
        async for _ in self._redis.scan_iter(match=pattern, count=SCAN_COUNT):
            count += 1
        return count


async def settle(probe: Probe, timeout_s: float) -> Sample:
    """Waits until every group has acked every entry and the streams are trimmed empty (the
    seed's `stock.changed` events), and returns the sample that showed it."""
    deadline = time.monotonic() + timeout_s
    while True:
        sample = await probe.sample(0.0)
        if sample.backlog == 0 and sample.stream_entries == 0:
            return sample
        if time.monotonic() > deadline:
            raise RuntimeError(f"the writers did not settle in {timeout_s:.0f} s: {sample}")
        await asyncio.sleep(1.0)


async def sample_every(
    probe: Probe, started: float, stop: asyncio.Event, samples: list[Sample]
) -> None:
    """Appends a sample every SAMPLE_INTERVAL_S until `stop` is set, and one more then."""
    while True:
        samples.append(await probe.sample(time.monotonic() - started))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)


@dataclass(frozen=True, slots=True)
class PostgresBytes:
    orders: int
    orders_bytes: int  # pg_total_relation_size: table, TOAST, every index
    history_rows: int
    history_bytes: int

    @property
    def per_order_row(self) -> float:
        return self.orders_bytes / max(self.orders, 1)

    @property
    def per_history_row(self) -> float:
        return self.history_bytes / max(self.history_rows, 1)

    @property
    def per_delivered_order(self) -> float:
        return self.per_order_row + HISTORY_ROWS_PER_DELIVERED_ORDER * self.per_history_row


async def postgres_bytes(postgres: asyncpg.Connection) -> PostgresBytes:
    await postgres.execute("VACUUM ANALYZE orders, order_status_history")
    row = await postgres.fetchrow(
        """
        SELECT (SELECT count(*) FROM orders) AS orders,
               pg_total_relation_size('orders') AS orders_bytes,
               (SELECT count(*) FROM order_status_history) AS history_rows,
               pg_total_relation_size('order_status_history') AS history_bytes
        """
    )
    assert row is not None
    return PostgresBytes(
        row["orders"], row["orders_bytes"], row["history_rows"], row["history_bytes"]
    )


@dataclass(frozen=True, slots=True)
class SoakResult:
    rate: float  # orders/s asked of the driver
    products: int  # the catalogue the orders are drawn from, by popularity
    load_s: float
    window_s: int
    baseline_bytes: int  # used_memory with the stock seeded and no order
    samples: list[Sample]
    confirmed: int  # 201 answers
    refused: int  # every other answer, and requests that got none
    refused_by: dict[str, int]  # of those: per status answered, and those without an answer
    p99_ms: float
    persisted: int  # PostgreSQL after the writers drained
    drain_s: float
    postgres: PostgresBytes
    costs: KeyCosts

    @property
    def steady(self) -> list[Sample]:
        start = STEADY_AFTER_WINDOWS * self.window_s
        return [s for s in self.samples if start <= s.t_s <= self.load_s]

    @property
    def memory(self) -> tuple[int, float, int]:
        used = [s.used_bytes for s in self.steady]
        return min(used), statistics.fmean(used), max(used)

    @property
    def flat(self) -> bool:
        low, mean, high = self.memory
        return high <= mean * (1 + FLAT_TOLERANCE) and low >= mean * (1 - FLAT_TOLERANCE)

    @property
    def slope_bytes_per_min(self) -> float:
        """Least-squares trend of used_memory over the steady part: a leak shows here first."""
        steady = self.steady
        if len(steady) < 2:
            return 0.0
        fit = statistics.linear_regression([s.t_s for s in steady], [s.used_bytes for s in steady])
        return fit.slope * 60

    @property
    def complete(self) -> bool:
        return self.persisted == self.confirmed

    def per_hot_order(self) -> float:
        """All the orders' state (records, keys, streams) over the hot order records."""
        steady = self.steady
        state = statistics.fmean(s.used_bytes - self.baseline_bytes for s in steady)
        return state / statistics.fmean(s.order_keys for s in steady)

    def stream_bytes_from_costs(self) -> float:
        """The streams' mean memory from the isolated costs: every entry, plus every pending one
        (MEMORY USAGE counts a pending entry several times over), each priced as an entry of one
        order (an upper bound: an entry holds every order of its script call)."""
        pending = self.mean("orders_pending") + self.mean("inventory_pending")
        pending += self.mean("notifier_pending")
        return (
            self.mean("stream_entries") * self.costs.stream_entry
            + pending * self.costs.pending_entry
        )

    def mean(self, field: str) -> float:
        return statistics.fmean(float(getattr(s, field)) for s in self.steady)

    def writer_lag_s(self) -> float:
        """The writers' mean backlog, in seconds of orders at the soak's rate."""
        return self.mean("backlog") / self.rate

    def per_notice_job(self) -> float:
        first, last = self.samples[0], self.samples[-1]
        jobs = last.queued_notices - first.queued_notices
        return (last.queue_bytes - first.queue_bytes) / jobs if jobs > 0 else float("nan")


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**10:,.0f} KiB"


def report_lines(soak: SoakResult, plot_name: str) -> list[str]:
    low, mean, high = soak.memory
    steady = soak.steady
    load_min = soak.load_s / 60
    start_s = STEADY_AFTER_WINDOWS * soak.window_s
    pg = soak.postgres
    return [
        f"{load_min:.0f} minutes at {soak.rate:,.0f} orders/s (fixed rate, open loop, "
        "`loadtest/ratedriver`, every order with its own `Idempotency-Key`) into one API worker, "
        f"with `python -m writers` (orders, inventory and notifier writers, sweeps) beside it, "
        f"`ORDER_HOT_WINDOW_S={soak.window_s}` and `IDEMPOTENCY_TTL_S={soak.window_s}`, on a "
        "Redis of its own (AOF everysec); the notice jobs go to another Redis "
        "(`QUEUE_REDIS_URL`), with no notice worker running. Sampled every "
        f"{SAMPLE_INTERVAL_S:.0f} s; judged from {start_s} s on ({len(steady)} samples). "
        "The rate is fixed, not half the API's peak: the soak is about the state a steady rate "
        "leaves, well below what one API worker takes beside the writers, the stores and the "
        "driver on these 2 cores (the writers row of the targets). The orders are "
        f"drawn from the whole catalogue of {soak.products:,} products by popularity, as in the "
        "API rows.",
        "",
        f"![Redis memory and hot orders over the soak]({plot_name})",
        "",
        "| what | measured |",
        "|---|---|",
        f"| orders confirmed (201) / refused or unanswered | {soak.confirmed:,} / {soak.refused:,} "
        f"{_refused_text(soak.refused_by)}(p99 {soak.p99_ms:.1f} ms) |",
        f"| PostgreSQL after the drain ({soak.drain_s:.1f} s) | {soak.persisted:,} orders: "
        f"{'every confirmed order' if soak.persisted == soak.confirmed else 'NOT every order'} |",
        f"| Redis used_memory, empty (stock of 10,001 products x 8 warehouses, scripts) | "
        f"{_mib(soak.baseline_bytes)} |",
        f"| Redis used_memory after {start_s} s: min / mean / max | {_mib(low)} / {_mib(mean)} / "
        f"{_mib(high)} ({(low / mean - 1):+.1%} / {(high / mean - 1):+.1%} of the mean) |",
        f"| trend over that part | {soak.slope_bytes_per_min / 2**20:+.2f} MiB per minute |",
        f"| hot order records / idempotency keys (mean) | {soak.mean('order_keys'):,.0f} / "
        f"{soak.mean('idempotency_keys'):,.0f} (rate x window: "
        f"{soak.rate * soak.window_s:,.0f}) |",
        f"| memory per hot order: (used - empty) / hot order records | "
        f"{soak.per_hot_order():,.0f} bytes (its record, its idempotency key, its share of "
        "the streams) |",
        f"| streams (mean): entries, memory | {soak.mean('stream_entries'):,.0f} entries "
        f"(trimmed every {TRIM_INTERVAL_S:.0f} s below what every group has acked); "
        f"{_mib(soak.stream_bytes_from_costs())} from the isolated costs below "
        f"({_mib(soak.mean('stream_bytes'))} by MEMORY USAGE, which counts pending entries "
        "several times over) |",
        "| writers' backlog, not delivered + pending (mean / max): orders, inventory, notifier | "
        + ", ".join(
            f"{soak.mean(g + '_lag') + soak.mean(g + '_pending'):,.0f} / "
            f"{max(getattr(s, g + '_lag') + getattr(s, g + '_pending') for s in steady):,}"
            for g in ("orders", "inventory", "notifier")
        )
        + " |",
        "| alone (loadtest/memory.py): an idempotency key, an order record, an order alone in a "
        f"stream entry, its pending entry | {soak.costs.idempotency_key:,.0f}, "
        f"{soak.costs.order_record:,.0f}, "
        f"{soak.costs.stream_entry:,.0f}, +{soak.costs.pending_entry:,.0f} bytes |",
        f"| PostgreSQL per order: orders row / history row, indexes included | "
        f"{pg.per_order_row:,.0f} / {pg.per_history_row:,.0f} bytes "
        f"({pg.orders:,} rows, {_size(pg.orders_bytes)}; {pg.history_rows:,} history rows, "
        f"{_size(pg.history_bytes)}) |",
        f"| notice queue's Redis (not drained here) | +{soak.per_notice_job():,.0f} bytes per "
        f"queued notice job, {soak.samples[-1].queued_notices:,} jobs at the end |",
        "",
        *day_lines(soak),
    ]


def day_lines(soak: SoakResult, rate: float = 100_000) -> list[str]:
    """Redis and PostgreSQL for a day at `rate` with the defaults, from the measured costs."""
    hot_window_s, idempotency_ttl_s = 15 * 60, DAY_S
    costs, pg = soak.costs, soak.postgres
    hot = rate * hot_window_s * costs.order_record
    idem = rate * idempotency_ttl_s * costs.idempotency_key
    idem_short = rate * hot_window_s * costs.idempotency_key
    stream_s = TRIM_INTERVAL_S + max(soak.writer_lag_s(), 1.0)
    streams = rate * stream_s * (costs.stream_entry + costs.pending_entry)
    orders_day = rate * DAY_S
    return [
        f"A day at {rate:,.0f} orders/s, from these figures, with the defaults "
        "(`ORDER_HOT_WINDOW_S` 15 min, `IDEMPOTENCY_TTL_S` 24 h, every order with a key):",
        "",
        "| state | formula | size |",
        "|---|---|---|",
        f"| hot order records | rate x 900 s x {costs.order_record:,.0f} B | {_size(hot)} |",
        f"| idempotency keys, 24 h | rate x 86,400 s x {costs.idempotency_key:,.0f} B | "
        f"{_size(idem)} |",
        f"| idempotency keys, 15 min instead | rate x 900 s x {costs.idempotency_key:,.0f} B | "
        f"{_size(idem_short)} |",
        f"| streams | rate x ({TRIM_INTERVAL_S:.0f} s trim interval + "
        f"{stream_s - TRIM_INTERVAL_S:.0f} s writer lag) x "
        f"{costs.stream_entry + costs.pending_entry:,.0f} B (an order alone in its entry) | "
        f"{_size(streams)} |",
        f"| PostgreSQL, orders as confirmed | {orders_day:,.0f} orders x "
        f"{pg.per_order_row + pg.per_history_row:,.0f} B | "
        f"{_size(orders_day * (pg.per_order_row + pg.per_history_row))} per day |",
        f"| PostgreSQL, orders delivered | {orders_day:,.0f} x ({pg.per_order_row:,.0f} B + "
        f"{HISTORY_ROWS_PER_DELIVERED_ORDER} x {pg.per_history_row:,.0f} B) | "
        f"{_size(orders_day * pg.per_delivered_order)} per day |",
    ]


def samples_csv(samples: Sequence[Sample]) -> str:
    fields = [*Sample.__dataclass_fields__, "backlog"]
    rows = [",".join(fields)]
    rows += [",".join(str(getattr(s, f)) for f in fields) for s in samples]
    return "\n".join(rows) + "\n"


def _refused_text(refused_by: dict[str, int]) -> str:
    """`(31 answered 503, 2 without an answer) `, or nothing when every order was confirmed."""
    parts = [f"{n:,} {why}" for why, n in sorted(refused_by.items()) if n]
    return f"({', '.join(parts)}) " if parts else ""
