"""Re-driving: stuck orders are flagged `failed` through Redis (tiny deadlines here), and a stream
replayed from an entry ID re-persists nothing twice."""

from __future__ import annotations

import asyncio

import asyncpg

from engine.live_orders import LiveOrders
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.streams import PARTITION_STREAMS
from tests.conftest import runner_for
from tests.test_writers import consumers_for, drain, order_rows, place_orders, stock_products
from writers.orders import OrdersWriter
from writers.replay import replay
from writers.sweeper import flag_stuck_orders


async def test_stuck_orders_are_flagged_failed_once_and_moving_ones_are_left(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, stuck), (_, moved), (_, fresh)] = await place_orders(redis, ["sku"], 3)
    consumers = consumers_for(redis, pg, mongo)
    await drain(redis, consumers)
    orders = LiveOrders(runner_for(redis), None)
    await orders.transition(moved.order_id, "picking")  # PostgreSQL has not seen this yet
    await asyncio.sleep(0.3)
    await pg.execute(  # the third order was placed just now
        "UPDATE orders SET updated_at = now() WHERE order_id = $1::uuid", fresh.order_id
    )
    deadlines = {"confirmed": 0.2, "shipped": 0.2}
    assert await flag_stuck_orders(pg, orders, deadlines) == 1
    assert (await orders.get(stuck.order_id)).status == "failed"  # type: ignore[union-attr]
    assert (await orders.get(moved.order_id)).status == "picking"  # type: ignore[union-attr]
    assert (await orders.get(fresh.order_id)).status == "confirmed"  # type: ignore[union-attr]
    await drain(redis, consumers)
    assert await flag_stuck_orders(pg, orders, deadlines) == 0
    reason = await pg.fetchval(
        "SELECT reason FROM order_status_history WHERE order_id = $1::uuid AND status = 'failed'",
        stuck.order_id,
    )
    assert reason == "stuck in confirmed for more than 0.2 s"


async def test_replaying_a_stream_from_an_id_adds_nothing_and_restores_what_was_lost(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 100)
    placed = await place_orders(redis, ["sku"], 20)
    await drain(redis, consumers_for(redis, pg, mongo))
    before = await order_rows(pg)
    lost = placed[-1][1].order_id
    await pg.execute("DELETE FROM orders WHERE order_id = $1::uuid", lost)  # a restore lost it
    [stream] = [s for s in PARTITION_STREAMS if await redis.xlen(s)]
    count = await replay(redis, OrdersWriter(pg, runner_for(redis)), stream, "-")
    assert count == await redis.xlen(stream)
    after = await order_rows(pg)
    assert sorted(after) == sorted(before)
    assert after[lost]["status"] == "confirmed"
