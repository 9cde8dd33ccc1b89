"""Events of one order applied to PostgreSQL in any order end with the row Redis holds (the
record's sequence number decides), and the stuck-order sweep leaves an order that moved since
PostgreSQL saw it, even to the same status (a re-route restarts it as confirmed)."""

from __future__ import annotations

import itertools

import asyncpg

from engine import keys
from engine.delivery import estimated_delivery
from engine.events import OrdersConfirmed
from engine.live_orders import LiveOrders
from engine.records import decode_record
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from tests.conftest import runner_for
from tests.test_writers import (
    all_entries,
    consumers_for,
    drain,
    make_placer,
    order_rows,
    place_orders,
    stock_products,
)
from writers.orders import OrdersWriter
from writers.sweeper import flag_stuck_orders


async def test_reroute_and_fulfil_events_in_every_order_end_as_redis_holds(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    orders = LiveOrders(runner_for(redis), None)
    await orders.transition(placed.order_id, "picking")
    moved = await make_placer(redis).reroute(placed.order_id, placed.warehouse_id, "damaged")
    for step in ("picking", "packed", "shipped"):
        await orders.transition(placed.order_id, step, warehouse_id=moved.warehouse_id)
    partition = keys.partition_of_product("sku")
    record = decode_record(await redis.get(keys.order(partition, placed.order_id)))
    assert record.seq == 6

    entries = await all_entries(redis)
    [confirm] = [e for e in entries if isinstance(e.event, OrdersConfirmed)]
    changes = [e for e in entries if e is not confirm and hasattr(e.event, "order_id")]
    assert len(changes) == 5
    writer = OrdersWriter(pg, runner_for(redis))
    for order in itertools.permutations(changes):
        await pg.execute("TRUNCATE orders, order_status_history")
        assert await writer.persist([confirm]) == []
        for entry in order:
            assert await writer.persist([entry]) == []
        row = (await order_rows(pg))[placed.order_id]
        expected_delivery = estimated_delivery(record.created_ms, record.eta_days)
        assert (row["status"], row["warehouse_id"], row["seq"]) == (
            "shipped",
            moved.warehouse_id,
            6,
        )
        assert row["estimated_delivery"] == expected_delivery
        history = await pg.fetchval(
            "SELECT count(*) FROM order_status_history WHERE order_id = $1::uuid",
            placed.order_id,
        )
        assert history == 6  # every event once, whatever the order


async def test_the_sweep_leaves_an_order_rerouted_since_postgres_saw_it(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    await drain(redis, consumers_for(redis, pg, mongo))
    await pg.execute("UPDATE orders SET updated_at = now() - interval '1 hour'")
    # Re-routed after PostgreSQL last saw it: confirmed again, but not the record it showed.
    await make_placer(redis).reroute(placed.order_id, placed.warehouse_id, "damaged")
    orders = LiveOrders(runner_for(redis), None)
    assert await flag_stuck_orders(pg, orders, {"confirmed": 60}) == 0
    assert (await orders.get(placed.order_id)).status == "confirmed"  # type: ignore[union-attr]
    partition = keys.partition_of_product("sku")
    assert await redis.exists(keys.order(partition, placed.order_id))
