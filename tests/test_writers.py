"""The writers on the real stores: every confirmed order reaches PostgreSQL exactly once, MongoDB's
inventory mirrors Redis's stock, replays add nothing, cancellations land after their order, and a
writer killed mid-batch loses nothing.

Events are appended by the real engine (the Lua scripts), never written by hand, except for the
entries that test how unknown or malformed events are treated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine import commands, keys
from engine.events import (
    OrdersConfirmed,
    OrderStatusChanged,
    StockChanged,
    UnknownEvent,
    decode_event,
    orders_in,
)
from engine.inventory import Inventory
from engine.live_orders import LiveOrders
from engine.orders import Confirmation, OrderRequest
from engine.placement import OrderPlacer
from engine.warehouses import FixedWarehouses, Warehouse, WarehouseDirectory
from geo.distance import Point
from stores.mongo import INVENTORY, MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from stores.streams import (
    INVENTORY_GROUP,
    ORDERS_GROUP,
    PARTITION_STREAMS,
    WRITER_GROUPS,
    backlog,
    create_groups,
    trim_streams,
    writer_backlog,
)
from tests.conftest import product_in_partition_of, runner_for, store_env
from writers.consumer import ConsumerConfig, GroupConsumer, StreamEntry
from writers.inventory import InventoryWriter
from writers.orders import OrdersWriter

ROOT = Path(__file__).resolve().parent.parent
WAREHOUSES = [
    Warehouse("1", "Paris", Point(48.8566, 2.3522)),
    Warehouse("2", "Lille", Point(50.6292, 3.0573)),
    Warehouse("3", "Lyon", Point(45.7640, 4.8357)),
]
FAST = ConsumerConfig(claim_idle_ms=300, deferred_retry_s=0.05)
DRAIN_TIMEOUT_S = 30.0
KILL_TEST_TIMEOUT_S = 60.0


# --- helpers ---


def make_placer(redis: RedisClient) -> OrderPlacer:
    directory = WarehouseDirectory(WAREHOUSES)

    return OrderPlacer(runner_for(redis), FixedWarehouses(directory))


async def stock_products(redis: RedisClient, products: Sequence[str], level: int) -> None:
    inventory = Inventory(runner_for(redis))
    for product in products:
        for warehouse in WAREHOUSES:
            await inventory.change(product, warehouse.warehouse_id, "set", level, "test")


def customer_near_paris(rng: random.Random) -> Point:
    return Point(48.8566 + rng.uniform(-1.5, 1.5), 2.3522 + rng.uniform(-1.5, 1.5))


async def place_orders(
    redis: RedisClient, products: Sequence[str], count: int, seed: int = 7
) -> list[tuple[OrderRequest, Confirmation]]:
    rng = random.Random(seed)
    placer = make_placer(redis)
    requests = [
        OrderRequest(
            rng.choice(products),
            rng.randint(1, 3),
            customer_near_paris(rng),
            f"idem-{seed}-{i}" if i % 3 == 0 else None,
        )
        for i in range(count)
    ]
    confirmations = await asyncio.gather(*(placer.place(request) for request in requests))
    return list(zip(requests, confirmations, strict=True))


async def place_orders_one_by_one(
    redis: RedisClient, products: Sequence[str], count: int, seed: int = 7
) -> list[tuple[OrderRequest, Confirmation]]:
    """As place_orders, each order in a script call of its own: one stream entry per order."""
    placed: list[tuple[OrderRequest, Confirmation]] = []
    for i in range(count):
        placed += await place_orders(redis, products, 1, seed=seed * 1_000 + i)
    return placed


def consumers_for(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase, name: str = "test"
) -> list[GroupConsumer]:
    return [
        GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), name, config=FAST),
        GroupConsumer(redis, InventoryWriter(runner_for(redis), mongo), name, config=FAST),
    ]


async def drain(redis: RedisClient, consumers: Sequence[GroupConsumer]) -> None:
    """Step the consumers until their groups have nothing undelivered and nothing pending."""
    await create_groups(redis, PARTITION_STREAMS, [c.group for c in consumers])
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        for consumer in consumers:
            await consumer.step()
        report = await backlog(redis, [c.group for c in consumers])
        if all(group.lag == 0 and group.pending == 0 for group in report):
            return
        assert time.monotonic() < deadline, f"backlog did not drain: {report}"
        await asyncio.sleep(0.01)


async def all_entries(redis: RedisClient) -> list[StreamEntry]:
    entries = []
    for stream in PARTITION_STREAMS:
        page: list[Any] = await redis.xrange(stream) or []
        entries += [StreamEntry(stream, i, decode_event(fields)) for i, fields in page]
    return entries


async def order_rows(pg: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    return {str(row["order_id"]): row for row in await pg.fetch("SELECT * FROM orders")}


async def history_rows(pg: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pg.fetch("SELECT * FROM order_status_history ORDER BY order_id, at"))


async def assert_mongo_mirrors_redis(
    redis: RedisClient, mongo: MongoDatabase, products: Sequence[str]
) -> None:
    runner = runner_for(redis)
    inventory = Inventory(runner)
    docs = {doc["_id"]: doc async for doc in mongo[INVENTORY].find({})}
    assert sorted(docs) == sorted(products)
    for product in products:
        levels = await inventory.levels(product)
        now = await runner.run(commands.read_stock(keys.partition_of_product(product), [product]))
        doc = docs[product]
        assert doc["productId"] == product
        assert doc["stockLevels"] == [
            {"warehouseId": lv.warehouse_id, "quantity": lv.level} for lv in levels
        ]
        # Where the partition's stream stood when the writer read the stock: not past where it
        # stands now (other products of the partition may have moved it since).
        assert 0 < doc["version"] <= now.position


async def pending_total(redis: RedisClient, group: str) -> int:
    return sum(g.pending for g in await backlog(redis, [group]))


# --- (a) persisting what the engine decided ---


async def test_orders_reach_postgres_once_and_mongo_mirrors_redis(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    products = [f"sku-{i}" for i in range(6)]
    await stock_products(redis, products, 200)
    placed = await place_orders(redis, products, 400)
    inventory = Inventory(runner_for(redis))
    await inventory.hold(products[0], "2", 5)  # a stock.held event
    await inventory.change(products[1], "3", "adjust", -7, "damaged")  # a stock.changed event

    await drain(redis, consumers_for(redis, pg, mongo))

    rows = await order_rows(pg)
    assert len(rows) == len(placed)
    confirmed_entries = {
        placed.order_id: e.entry_id
        for e in await all_entries(redis)
        if isinstance(e.event, OrdersConfirmed)
        for placed in e.event.orders
    }
    for request, confirmation in placed:
        row = rows[confirmation.order_id]
        assert row["product_id"] == request.product_id
        assert row["warehouse_id"] == confirmation.warehouse_id
        assert row["quantity"] == request.quantity
        assert row["status"] == "confirmed"
        assert (row["customer_lat"], row["customer_lon"]) == tuple(request.customer)
        assert row["estimated_delivery"] == confirmation.estimated_delivery
        assert row["idempotency_key"] == request.idempotency_key
        assert row["created_at"] == row["updated_at"] == confirmation.created_at
    history = await history_rows(pg)
    assert len(history) == len(placed)
    for entry in history:
        order_id = str(entry["order_id"])
        assert entry["status"] == "confirmed"
        assert entry["at"] == rows[order_id]["created_at"]
        assert entry["event_id"] == confirmed_entries[order_id]
    await assert_mongo_mirrors_redis(redis, mongo, products)


# --- (b) replays add nothing ---


async def test_replaying_every_entry_adds_nothing(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    products = [f"sku-{i}" for i in range(4)]
    await stock_products(redis, products, 200)
    await place_orders(redis, products, 200)
    await drain(redis, consumers_for(redis, pg, mongo))
    orders_before, history_before = await order_rows(pg), await history_rows(pg)
    docs_before = [doc async for doc in mongo[INVENTORY].find({}).sort("_id")]

    # An operator rewinds both groups: a new consumer gets every entry delivered again.
    for stream in PARTITION_STREAMS:
        for group in WRITER_GROUPS:
            await redis.xgroup_setid(stream, group, "0")
    assert all(g.lag > 0 for g in await writer_backlog(redis))
    await drain(redis, consumers_for(redis, pg, mongo, name="replayer"))
    # And the same entries persisted directly, twice in one batch.
    entries = await all_entries(redis)
    assert await OrdersWriter(pg, runner_for(redis)).persist(entries + entries) == []
    await InventoryWriter(runner_for(redis), mongo).persist(entries + entries)

    assert await order_rows(pg) == orders_before
    assert await history_rows(pg) == history_before
    assert [doc async for doc in mongo[INVENTORY].find({}).sort("_id")] == docs_before


# --- (c) cancellations ---


async def test_a_cancel_lands_after_its_confirm(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, kept), (_, cancelled)] = await place_orders(redis, ["sku"], 2)
    consumers = consumers_for(redis, pg, mongo)
    await drain(redis, consumers)
    await LiveOrders(runner_for(redis), None).cancel(cancelled.order_id)
    await drain(redis, consumers)

    rows = await order_rows(pg)
    assert rows[kept.order_id]["status"] == "confirmed"
    assert rows[cancelled.order_id]["status"] == "cancelled"
    assert rows[cancelled.order_id]["updated_at"] > rows[cancelled.order_id]["created_at"]
    statuses = [
        r["status"] for r in await history_rows(pg) if str(r["order_id"]) == cancelled.order_id
    ]
    assert statuses == ["confirmed", "cancelled"]
    await assert_mongo_mirrors_redis(redis, mongo, ["sku"])


async def test_a_cancel_whose_confirm_is_pending_elsewhere_waits_for_it(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    stream = keys.stream(keys.partition_of_product("sku"))
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])
    # A consumer reads the confirmation (and the stock events before it), then dies.
    await redis.xreadgroup(ORDERS_GROUP, "doomed", {stream: ">"})
    held_by_doomed = await pending_total(redis, ORDERS_GROUP)
    await LiveOrders(runner_for(redis), None).cancel(placed.order_id)

    survivor = GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), "survivor", config=FAST)
    await survivor.step()
    assert await order_rows(pg) == {}  # the cancel was not applied to a missing order...
    assert survivor.deferred_count == 1  # ...but kept for later,
    assert await pending_total(redis, ORDERS_GROUP) == held_by_doomed + 1  # and not acked.

    await drain(redis, [survivor])  # claims the dead consumer's confirmation after 300 ms
    rows = await order_rows(pg)
    assert rows[placed.order_id]["status"] == "cancelled"
    statuses = [r["status"] for r in await history_rows(pg)]
    assert statuses == ["confirmed", "cancelled"]


# --- (d) a writer killed mid-batch loses nothing ---


@pytest.fixture
def writer_processes(settings: Settings) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **store_env(settings),
    }

    def start(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "writers", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_writer_killed_mid_batch_loses_nothing(
    redis: RedisClient,
    pg: asyncpg.Pool,
    mongo: MongoDatabase,
    writer_processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    products = [f"sku-{i}" for i in range(20)]
    await stock_products(redis, products, 1_000)
    placed = await place_orders(redis, products, 3_000)

    # Small reads (64 streams x 10 entries) so the backlog takes several batches.
    first = writer_processes("--read-count", "10", "--claim-idle-ms", "60000")

    async def some_persisted() -> bool:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        return bool(await pg.fetchval("SELECT count(*) FROM orders"))

    await wait_for(some_persisted, KILL_TEST_TIMEOUT_S, "the first writer to persist")
    first.send_signal(signal.SIGKILL)
    first.wait()
    persisted_before_kill = await pg.fetchval("SELECT count(*) FROM orders")
    # Entries it had read but not acked: only a claim by the next writer can finish them.
    held_by_dead = sum(g.pending for g in await writer_backlog(redis))
    assert held_by_dead > 0, "the writer was killed between batches; nothing was tested"
    placed += await place_orders(redis, products, 500, seed=8)  # orders keep coming meanwhile

    second = writer_processes("--claim-idle-ms", "500")

    async def caught_up() -> bool:
        assert second.poll() is None, second.stderr.read() if second.stderr else ""
        report = await writer_backlog(redis)
        count = await pg.fetchval("SELECT count(*) FROM orders")
        return count == len(placed) and all(g.lag == g.pending == 0 for g in report)

    await wait_for(caught_up, KILL_TEST_TIMEOUT_S, "the second writer to catch up")
    rows = await order_rows(pg)
    assert sorted(rows) == sorted(c.order_id for _, c in placed)
    assert persisted_before_kill < len(placed)
    assert await pg.fetchval("SELECT count(*) FROM order_status_history") == len(placed)
    await assert_mongo_mirrors_redis(redis, mongo, products)

    second.send_signal(signal.SIGTERM)  # graceful: finishes its batch, exits 0
    assert second.wait(timeout=15) == 0


# --- (e) the backlog report ---


async def test_status_reports_the_backlog_then_zero(
    redis: RedisClient,
    pg: asyncpg.Pool,
    mongo: MongoDatabase,
    settings: Settings,
) -> None:
    await stock_products(redis, ["sku-a", "sku-b"], 100)
    await place_orders(redis, ["sku-a", "sku-b"], 50)
    events = len(await all_entries(redis))
    await create_groups(redis, PARTITION_STREAMS, WRITER_GROUPS)

    report = await writer_backlog(redis)
    assert [(g.group, g.lag, g.pending) for g in report] == [
        (ORDERS_GROUP, events, 0),
        (INVENTORY_GROUP, events, 0),
    ]
    assert sum(s.lag for s in report[0].top_streams) == events  # two products: <= 2 streams
    printed = status_command(settings)
    assert f"{ORDERS_GROUP:<32} {events:>10} {0:>10}" in printed

    await drain(redis, consumers_for(redis, pg, mongo))
    assert [(g.lag, g.pending, g.top_streams) for g in await writer_backlog(redis)] == [
        (0, 0, []),
        (0, 0, []),
    ]
    assert f"{INVENTORY_GROUP:<32} {0:>10} {0:>10}" in status_command(settings)


def status_command(settings: Settings) -> str:
    env = {
        **store_env(settings),
    }
    done = subprocess.run(
        [sys.executable, "-m", "writers", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


# --- the MongoDB mirror's order ---


async def test_the_mirror_never_takes_an_older_read_and_replaces_a_legacy_version(
    redis: RedisClient, mongo: MongoDatabase
) -> None:
    """MongoDB keeps the state read at the larger position: a document from a later read (here a
    version past any position) is never overwritten by an earlier one; one written by a writer
    that ordered by the stock hash's old `_v` counter (small numbers) is replaced."""
    await stock_products(redis, ["sku-ahead", "sku-legacy"], 10)
    at = datetime.now(UTC)
    ahead = {"_id": "sku-ahead", "productId": "sku-ahead", "stockLevels": [], "version": 10**15}
    legacy = {"_id": "sku-legacy", "productId": "sku-legacy", "stockLevels": [], "version": 1}
    await mongo[INVENTORY].insert_many([{**ahead, "updatedAt": at}, {**legacy, "updatedAt": at}])
    await InventoryWriter(runner_for(redis), mongo).mirror(["sku-ahead", "sku-legacy"])
    docs = {doc["_id"]: doc async for doc in mongo[INVENTORY].find({})}
    assert (docs["sku-ahead"]["version"], docs["sku-ahead"]["stockLevels"]) == (10**15, [])
    assert docs["sku-legacy"]["version"] > 1
    assert len(docs["sku-legacy"]["stockLevels"]) == len(WAREHOUSES)


async def test_events_mongodb_already_holds_and_lifecycle_steps_write_nothing(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    """Other products of the partition move its stream on, so every read of a product finds a
    larger position: what keeps a product from being written again is that MongoDB already holds
    a state read after its last event (a batch repeated, or events spanning batches), and that a
    lifecycle step moves no stock."""
    neighbour = product_in_partition_of("sku")
    await stock_products(redis, ["sku", neighbour], 10)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    writer = InventoryWriter(runner_for(redis), mongo)
    entries = await all_entries(redis)
    await writer.persist(entries)
    mirrored = await mongo[INVENTORY].find_one({"_id": "sku"})
    await place_orders(redis, [neighbour], 1)
    await LiveOrders(runner_for(redis), None).transition(placed.order_id, "picking")
    newer = [e for e in await all_entries(redis) if e.key not in {old.key for old in entries}]
    assert {type(e.event) for e in newer} == {OrdersConfirmed, OrderStatusChanged}
    await writer.persist(entries + newer)
    assert await mongo[INVENTORY].find_one({"_id": "sku"}) == mirrored
    neighbour_doc = await mongo[INVENTORY].find_one({"_id": neighbour})
    assert neighbour_doc is not None and neighbour_doc["version"] > mirrored["version"]


# --- trimming ---


async def test_trimming_keeps_whatever_a_group_has_not_acked(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 100)
    await place_orders(redis, ["sku"], 20)
    stream = keys.stream(keys.partition_of_product("sku"))
    length = await redis.xlen(stream)
    orders, stock = consumers_for(redis, pg, mongo)
    await create_groups(redis, PARTITION_STREAMS, WRITER_GROUPS)

    await drain(redis, [orders])
    assert await trim_streams(redis, PARTITION_STREAMS) == 0  # the inventory group read nothing yet
    # The inventory group's consumer reads 5 entries and dies: they stay pending.
    await redis.xreadgroup(INVENTORY_GROUP, "doomed", {stream: ">"}, count=5)
    assert await trim_streams(redis, PARTITION_STREAMS) == 0
    assert await redis.xlen(stream) == length

    await drain(redis, [stock])  # claims the 5, reads the rest
    assert await trim_streams(redis, PARTITION_STREAMS) == length
    assert await redis.xlen(stream) == 0
    await assert_mongo_mirrors_redis(redis, mongo, ["sku"])


# --- consumer mechanics with stand-in writers ---


class RecordingWriter:
    """Persists nothing; fails on demand."""

    group = "test-writer"
    transient_errors: tuple[type[BaseException], ...] = (ConnectionRefusedError,)
    permanent_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, fail: Callable[[Sequence[StreamEntry]], Exception | None]) -> None:
        self._fail = fail
        self.calls = 0
        self.persisted: list[StreamEntry] = []

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        self.calls += 1
        error = self._fail(entries)
        if error is not None:
            raise error
        self.persisted += entries
        return []


async def stock_events(redis: RedisClient, count: int) -> None:
    inventory = Inventory(runner_for(redis))
    for i in range(count):
        await inventory.change(f"sku-{i}", "1", "set", i, "test")


async def test_transient_errors_are_retried_and_nothing_is_acked_before(
    redis: RedisClient,
) -> None:
    await stock_events(redis, 10)
    failures = iter([ConnectionRefusedError("down"), ConnectionRefusedError("still down")])

    def fail_twice(_: Sequence[Any]) -> Exception | None:
        return next(failures, None)

    writer = RecordingWriter(fail_twice)
    consumer = GroupConsumer(redis, writer, "c", config=FAST)
    await create_groups(redis, PARTITION_STREAMS, [writer.group])
    assert await consumer.step() == 10
    assert writer.calls == 3
    assert len(writer.persisted) == 10
    assert await pending_total(redis, writer.group) == 0


async def test_a_poison_entry_is_isolated_and_left_pending_until_its_last_delivery(
    redis: RedisClient,
) -> None:
    await stock_events(redis, 16)

    def poison(entries: Sequence[StreamEntry]) -> Exception | None:
        bad = any(isinstance(e.event, StockChanged) and e.event.product == "sku-5" for e in entries)
        return ValueError("cannot store sku-5") if bad else None

    writer = RecordingWriter(poison)
    consumer = GroupConsumer(redis, writer, "c", config=FAST)
    await create_groups(redis, PARTITION_STREAMS, [writer.group])
    await consumer.step()
    assert len(writer.persisted) == 15
    assert await pending_total(redis, writer.group) == 1


async def test_unknown_events_are_acked_and_malformed_ones_dead_lettered(
    redis: RedisClient,
) -> None:
    stream = keys.stream(0)
    await redis.xadd(stream, {"type": "order.shipped", "order_id": "o-1"})
    await redis.xadd(stream, {"type": "stock.changed", "product": "p"})  # fields missing
    writer = RecordingWriter(lambda _: None)
    consumer = GroupConsumer(redis, writer, "c", config=FAST)
    await create_groups(redis, PARTITION_STREAMS, [writer.group])
    await consumer.step()
    assert [e.event for e in writer.persisted] == [UnknownEvent("order.shipped")]
    assert await pending_total(redis, writer.group) == 0
    assert await redis.xlen(keys.dead_letters(0)) == 1


async def test_a_read_asks_for_as_many_entries_as_make_a_batch_of_orders(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    """Entries hold every order of a script call: the consumer sizes each read in orders, from
    the orders per entry of the read before (the first guesses FIRST_ORDERS_PER_ENTRY, 16)."""
    await stock_products(redis, ["sku-a"], 1_000)
    stream = keys.stream(keys.partition_of_product("sku-a"))
    await redis.xgroup_create(stream, ORDERS_GROUP, id="$")  # past the stock's entry
    for seed in range(6):  # six script calls of ten orders: six entries
        await place_orders(redis, ["sku-a"], 10, seed=seed)
    entries = [decode_event(fields) for _, fields in await redis.xrange(stream)]
    assert [orders_in(event) for event in entries[-6:]] == [10] * 6
    config = dataclasses.replace(FAST, batch_orders=20)
    consumer = GroupConsumer(
        redis, OrdersWriter(pg, runner_for(redis)), "t", streams=[stream], config=config
    )
    assert [await consumer.step() for _ in range(4)] == [1, 2, 2, 1]  # 20 / 16, then 20 / 10
    assert len(await order_rows(pg)) == 60
