"""The order lifecycle on the real stores: `lua/transition.lua` in a real Redis, the walk of a
fulfilment, and the orders writer persisting every step with its time. (The transition table:
tests/unit/test_lifecycle_rules.py.)"""

from __future__ import annotations

import asyncpg
import pytest

from engine import keys, lifecycle
from engine.errors import InvalidTransition, OrderNotFound, WrongWarehouse
from engine.fulfillment import fulfill
from engine.ids import new_id
from engine.live_orders import LiveOrders
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from tests.conftest import runner_for
from tests.test_writers import (
    all_entries,
    consumers_for,
    drain,
    history_rows,
    place_orders,
    stock_products,
)
from writers.orders import OrdersWriter

P = keys.partition_of_product("sku")
STREAM = keys.stream(P)


async def test_stock_is_untouched_by_shipping(redis: RedisClient) -> None:
    await stock_products(redis, ["sku"], 5)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    stock_key = keys.stock(P, "sku")
    before = await redis.hgetall(stock_key)
    shipped = await fulfill(
        LiveOrders(runner_for(redis), None), placed.order_id, placed.warehouse_id
    )
    assert shipped.status == "shipped"
    assert await redis.hgetall(stock_key) == before


async def test_fulfil_refuses_wrong_warehouse_state_and_unknown_orders(redis: RedisClient) -> None:
    await stock_products(redis, ["sku"], 5)
    [(_, placed)] = await place_orders(redis, ["sku"], 1)
    orders = LiveOrders(runner_for(redis), None)
    with pytest.raises(WrongWarehouse):
        await fulfill(orders, placed.order_id, "elsewhere")
    assert (await orders.get(placed.order_id)).status == "confirmed"  # type: ignore[union-attr]
    with pytest.raises(OrderNotFound):
        await fulfill(orders, new_id(P), "1")
    await orders.transition(placed.order_id, "picking")  # picked, then interrupted
    assert (await fulfill(orders, placed.order_id, placed.warehouse_id)).status == "shipped"
    with pytest.raises(InvalidTransition):
        await fulfill(orders, placed.order_id, placed.warehouse_id)
    with pytest.raises(InvalidTransition):
        await orders.cancel(placed.order_id)
    assert (await orders.transition(placed.order_id, "delivered")).status == "delivered"


async def test_every_step_reaches_postgres_once_with_its_time(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, a), (_, b)] = await place_orders(redis, ["sku"], 2)
    orders = LiveOrders(runner_for(redis), None)
    # Steps appended before the confirmation was persisted wait for it (same batch or later).
    await fulfill(orders, a.order_id, a.warehouse_id)
    consumers = consumers_for(redis, pg, mongo)
    await drain(redis, consumers)
    await orders.transition(a.order_id, "delivered")
    await orders.transition(b.order_id, "failed", reason="stuck")
    await drain(redis, consumers)

    rows = {str(r["order_id"]): r for r in await pg.fetch("SELECT * FROM orders")}
    assert rows[a.order_id]["status"] == "delivered"
    assert rows[b.order_id]["status"] == "failed"
    history = await history_rows(pg)
    steps = [r["status"] for r in history if str(r["order_id"]) == a.order_id]
    assert sorted(steps, key=lifecycle.progress) == [
        "confirmed",
        "picking",
        "packed",
        "shipped",
        "delivered",
    ]
    assert [r["reason"] for r in history if str(r["order_id"]) == b.order_id] == [None, "stuck"]
    assert rows[a.order_id]["updated_at"] == max(
        r["at"] for r in history if str(r["order_id"]) == a.order_id
    )

    # Every entry again, in one batch: nothing moves back, no history row is added.
    assert await OrdersWriter(pg, runner_for(redis)).persist(await all_entries(redis)) == []
    assert {str(r["order_id"]): r["status"] for r in await pg.fetch("SELECT * FROM orders")} == {
        a.order_id: "delivered",
        b.order_id: "failed",
    }
    assert len(await history_rows(pg)) == len(history)
