"""Redis keeps an order only while it is hot: the orders writer lets a persisted record leave
(after the hot window, or the shorter linger in a final state), and an order that left is read,
cancelled, fulfilled, delivered, re-routed and swept from its PostgreSQL copy with the same answers
and guarantees. A retry that repeats an idempotency key after the key left Redis is caught in
PostgreSQL and cancelled."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from engine import commands, keys
from engine.commands import ArchivedCopy, StaleCopy
from engine.errors import InvalidTransition
from engine.fulfillment import fulfill
from engine.live_orders import LiveOrders
from engine.orders import ORDER_FINAL_LINGER_S, Confirmation, OrderRequest
from engine.placement import OrderPlacer
from engine.records import decode_record
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from geo.distance import Point
from stores.mongo import MongoDatabase
from stores.order_archive import OrderArchive
from stores.redis import RedisClient
from tests.conftest import runner_for
from tests.test_writers import FAST, WAREHOUSES, stock_products
from tests.test_writers import drain as drain_consumers
from writers.consumer import GroupConsumer
from writers.inventory import InventoryWriter
from writers.orders import OrdersWriter
from writers.sweeper import flag_stuck_orders

HOT_WINDOW_S = 120
P = keys.partition_of_product("sku")
PARIS = Point(48.8566, 2.3522)


def orders_of(redis: RedisClient, pg: asyncpg.Pool) -> LiveOrders:
    return LiveOrders(runner_for(redis), OrderArchive(pg))


def placer_of(redis: RedisClient, pg: asyncpg.Pool | None) -> OrderPlacer:
    directory = WarehouseDirectory(WAREHOUSES)

    orders = None if pg is None else orders_of(redis, pg)
    return OrderPlacer(runner_for(redis), FixedWarehouses(directory), orders=orders)


async def drain(redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase) -> None:
    """Both writers until nothing is left, the orders writer with a known hot window."""
    await drain_consumers(
        redis,
        [
            GroupConsumer(
                redis, OrdersWriter(pg, runner_for(redis), HOT_WINDOW_S), "t", config=FAST
            ),
            GroupConsumer(redis, InventoryWriter(runner_for(redis), mongo), "t", config=FAST),
        ],
    )


async def place(redis: RedisClient, quantity: int = 2, key: str | None = None) -> Confirmation:
    return await placer_of(redis, None).place(OrderRequest("sku", quantity, PARIS, key))


async def leave_redis(redis: RedisClient, order_id: str) -> None:
    """What the hot window's end does, without waiting for it."""
    assert await redis.delete(keys.order(P, order_id)) == 1


async def level(redis: RedisClient, warehouse_id: str) -> int:
    return int(await redis.hget(keys.stock(P, "sku"), warehouse_id) or 0)


async def test_a_persisted_order_gets_the_hot_window_and_a_final_one_the_linger(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    placed = await place(redis)
    key = keys.order(P, placed.order_id)
    assert await redis.ttl(key) == -1  # not persisted yet: stays
    await drain(redis, pg, mongo)
    assert HOT_WINDOW_S - 5 < await redis.ttl(key) <= HOT_WINDOW_S
    orders = orders_of(redis, pg)
    await orders.transition(placed.order_id, "picking")
    assert await redis.ttl(key) == -1  # changed: stays until the change is persisted too
    await drain(redis, pg, mongo)
    assert HOT_WINDOW_S - 5 < await redis.ttl(key) <= HOT_WINDOW_S
    await orders.transition(placed.order_id, "failed", reason="test")
    await drain(redis, pg, mongo)
    assert ORDER_FINAL_LINGER_S - 5 < await redis.ttl(key) <= ORDER_FINAL_LINGER_S


async def test_a_batch_of_more_orders_than_one_expiry_call_takes_gets_every_expiry(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiries go in bounded script calls (writers.orders.EXPIRIES_PER_CALL): every order of a
    batch larger than one call still gets its hot window."""
    monkeypatch.setattr("writers.orders.EXPIRIES_PER_CALL", 3)
    await stock_products(redis, ["sku"], 100)
    placer = placer_of(redis, None)
    placed = await asyncio.gather(*(placer.place(OrderRequest("sku", 1, PARIS)) for _ in range(10)))
    await drain(redis, pg, mongo)
    ttls = [await redis.ttl(keys.order(P, c.order_id)) for c in placed]
    assert all(HOT_WINDOW_S - 5 < ttl <= HOT_WINDOW_S for ttl in ttls)


async def test_an_order_that_left_redis_is_read_and_cancelled_once(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    placed = await place(redis, quantity=3)
    await drain(redis, pg, mongo)
    await leave_redis(redis, placed.order_id)
    orders = orders_of(redis, pg)
    cold = await orders.get(placed.order_id)
    assert cold is not None and (cold.status, cold.warehouse_id) == ("confirmed", "1")
    assert cold.estimated_delivery == placed.estimated_delivery
    before = await level(redis, placed.warehouse_id)
    assert (await orders.cancel(placed.order_id)).status == "cancelled"
    assert await level(redis, placed.warehouse_id) == before + 3
    with pytest.raises(InvalidTransition):
        await orders.cancel(placed.order_id)  # now in Redis again, cancelled: units back once
    assert await level(redis, placed.warehouse_id) == before + 3
    await drain(redis, pg, mongo)
    row = await pg.fetchrow("SELECT status, seq FROM orders WHERE order_id = $1", placed.order_id)
    assert (row["status"], row["seq"]) == ("cancelled", 2)


async def test_an_order_that_left_redis_is_fulfilled_delivered_and_rerouted(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    shipped, moved = await place(redis), await place(redis)
    await drain(redis, pg, mongo)
    await leave_redis(redis, shipped.order_id)
    await leave_redis(redis, moved.order_id)
    orders = orders_of(redis, pg)
    assert (await fulfill(orders, shipped.order_id, "1")).status == "shipped"
    await drain(redis, pg, mongo)
    await leave_redis(redis, shipped.order_id)
    assert (await orders.transition(shipped.order_id, "delivered")).status == "delivered"

    levels = {w.warehouse_id: await level(redis, w.warehouse_id) for w in WAREHOUSES}
    rerouted = await placer_of(redis, pg).reroute(moved.order_id, "1", "damaged")
    assert rerouted.warehouse_id != "1" and rerouted.status == "confirmed"
    assert await level(redis, rerouted.warehouse_id) == levels[rerouted.warehouse_id] - 2
    assert await level(redis, "1") == levels["1"]  # the missing units are not given back
    await drain(redis, pg, mongo)
    rows = {
        str(r["order_id"]): r
        for r in await pg.fetch("SELECT order_id, status, warehouse_id FROM orders")
    }
    assert rows[shipped.order_id]["status"] == "delivered"
    assert rows[moved.order_id]["warehouse_id"] == rerouted.warehouse_id


async def test_a_stuck_order_that_left_redis_is_swept(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    placed = await place(redis)
    await drain(redis, pg, mongo)
    await leave_redis(redis, placed.order_id)
    await pg.execute("UPDATE orders SET updated_at = now() - interval '1 hour'")
    orders = orders_of(redis, pg)
    assert await flag_stuck_orders(pg, orders, {"confirmed": 60}) == 1
    assert (await orders.get(placed.order_id)).status == "failed"  # type: ignore[union-attr]


async def test_a_concurrent_cancel_and_fulfil_of_an_order_that_left_redis_one_wins(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 100)  # all at the nearest warehouse, "1"
    placed = [await place(redis) for _ in range(10)]
    await drain(redis, pg, mongo)
    for confirmation in placed:
        await leave_redis(redis, confirmation.order_id)
    before = await level(redis, "1")
    orders = orders_of(redis, pg)
    outcomes = await asyncio.gather(
        *(orders.cancel(c.order_id) for c in placed),
        *(fulfill(orders, c.order_id, "1") for c in placed),
        return_exceptions=True,
    )
    cancels, fulfils = outcomes[:10], outcomes[10:]
    for cancel, fulfilment in zip(cancels, fulfils, strict=True):
        won = [o for o in (cancel, fulfilment) if not isinstance(o, BaseException)]
        assert len(won) == 1, (cancel, fulfilment)
        assert isinstance(cancel if won[0] is fulfilment else fulfilment, InvalidTransition)
    cancelled = sum(1 for c in cancels if not isinstance(c, BaseException))
    assert await level(redis, "1") == before + 2 * cancelled


async def test_a_stale_copy_is_refused_and_changes_nothing(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    placed = await place(redis)
    await drain(redis, pg, mongo)
    record = decode_record(await redis.get(keys.order(P, placed.order_id)))
    await leave_redis(redis, placed.order_id)
    old = ArchivedCopy(record, int(time.time() * 1000) - 60_000)
    before = await level(redis, "1")
    with pytest.raises(StaleCopy):
        await runner_for(redis).run(
            commands.cancel_order("op-stale", placed.order_id, "sku", 0, copy=old)
        )
    assert await level(redis, "1") == before
    assert not await redis.exists(keys.order(P, placed.order_id))


async def test_a_key_repeated_after_it_left_redis_is_caught_and_cancelled(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    first = await place(redis, key="retry-me")
    await drain(redis, pg, mongo)
    await redis.delete(keys.idempotency(P, "sku", "retry-me"))  # its IDEMPOTENCY_TTL_S passed
    before = await level(redis, "1")
    again = await place(redis, key="retry-me")
    assert again.order_id != first.order_id  # Redis no longer knows the key
    await drain(redis, pg, mongo)
    assert await pg.fetchval("SELECT count(*) FROM orders") == 1
    duplicate = await pg.fetchrow("SELECT * FROM duplicate_orders")
    assert str(duplicate["order_id"]) == again.order_id
    assert str(duplicate["original_order_id"]) == first.order_id
    assert duplicate["status"] == "cancelled"
    assert await level(redis, "1") == before  # its units are back
    await drain(redis, pg, mongo)  # persisting it again cancels nothing twice
    assert await level(redis, "1") == before
    assert await OrderArchive(pg).duplicate_count() == 1  # what /metrics exports
