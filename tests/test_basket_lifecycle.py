"""A basket's lifecycle on a real Redis: each shipment fulfilled by its own warehouse, the basket
shipped and delivered when every shipment is, cancelling gives every line's units back once, even
when the worker dies half way."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from engine import commands, keys
from engine.basket_reroute import ShipmentRerouter
from engine.baskets import BasketLine, PartHolder
from engine.errors import BasketOutOfStock, InvalidTransition, WrongWarehouse
from engine.ids import new_operation_id
from engine.live_baskets import (
    RETURNS_GRACE_MS,
    LiveBaskets,
    return_units_of_cancelled_baskets,
)
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from stores.redis import RedisClient
from tests.basket_shop import WAREHOUSES
from tests.conftest import runner_for
from tests.test_baskets import basket, holds_left, levels_now, placer_for, stock

START = {("sku-0", "paris"): 3, ("sku-1", "lyon"): 3, ("sku-2", "lille"): 3}


async def placed_over_three_warehouses(redis: RedisClient) -> str:
    await stock(redis, START)
    placed = await placer_for(redis).place(basket(("sku-0", 1), ("sku-1", 2), ("sku-2", 3)))
    assert sorted(s.warehouse_id for s in placed.basket.shipments) == ["lille", "lyon", "paris"]
    return placed.basket.order_id


async def test_each_shipment_ships_on_its_own(redis: RedisClient) -> None:
    order_id = await placed_over_three_warehouses(redis)
    baskets = LiveBaskets(runner_for(redis), None)
    after = await baskets.fulfill(order_id, "lyon")
    statuses = {s.warehouse_id: s.status for s in after.shipments}
    assert statuses == {"paris": "confirmed", "lyon": "shipped", "lille": "confirmed"}
    assert after.status == "confirmed"  # its least advanced shipment's
    with pytest.raises(InvalidTransition):
        await baskets.fulfill(order_id, "lyon")  # shipped already
    with pytest.raises(WrongWarehouse):
        await baskets.fulfill(order_id, "madrid")
    with pytest.raises(InvalidTransition):
        await baskets.cancel(order_id)  # a shipment left: too late to cancel
    await baskets.step(order_id, "picking", warehouse_id="paris")
    after = await baskets.fulfill(order_id, "paris")  # resumes after picking
    assert after.status == "confirmed"
    after = await baskets.fulfill(order_id, "lille")
    assert after.status == "shipped"
    after = await baskets.step(order_id, "delivered", warehouse_id="paris")
    assert after.status == "shipped"
    after = await baskets.step(order_id, "delivered")  # the carrier: every shipped shipment
    assert after.status == "delivered"
    assert {s.status for s in after.shipments} == {"delivered"}
    with pytest.raises(InvalidTransition):
        await baskets.step(order_id, "delivered")
    # Stock never moved after placing: the units left when the basket was placed.
    assert await levels_now(redis, ["sku-0", "sku-1", "sku-2"]) == Counter(
        {("sku-0", "paris"): 2, ("sku-1", "lyon"): 1, ("sku-2", "lille"): 0}
    )


async def test_cancelling_gives_every_line_back_once(redis: RedisClient) -> None:
    order_id = await placed_over_three_warehouses(redis)
    baskets = LiveBaskets(runner_for(redis), None)
    cancelled = await baskets.cancel(order_id)
    assert cancelled.status == "cancelled"
    assert {s.status for s in cancelled.shipments} == {"cancelled"}
    assert await levels_now(redis, ["sku-0", "sku-1", "sku-2"]) == Counter(START)
    with pytest.raises(InvalidTransition):
        await baskets.cancel(order_id)
    later = int(time.time() * 1000) + RETURNS_GRACE_MS + 1
    assert await return_units_of_cancelled_baskets(runner_for(redis), later) == 0
    assert await levels_now(redis, ["sku-0", "sku-1", "sku-2"]) == Counter(START)
    assert await holds_left(redis) == 0


async def test_a_cancel_whose_worker_died_is_finished_by_the_sweep(redis: RedisClient) -> None:
    """The worker cancelled the basket and died before giving any unit back: the sweep gives
    every part back, once, however often it runs or the worker's part arrives late."""
    order_id = await placed_over_three_warehouses(redis)
    runner = runner_for(redis)
    now_ms = int(time.time() * 1000)
    await runner.run(commands.cancel_basket(new_operation_id(), order_id, now_ms))
    taken = await levels_now(redis, ["sku-0", "sku-1", "sku-2"])
    assert taken != Counter(START)
    assert await return_units_of_cancelled_baskets(runner, now_ms) == 0  # within its grace
    sweep_at = now_ms + RETURNS_GRACE_MS + 1
    assert await return_units_of_cancelled_baskets(runner, sweep_at) == 1
    assert await return_units_of_cancelled_baskets(runner, sweep_at) == 0
    # The dead worker's own return, arriving late, gives nothing back a second time.
    # Its parts in order: Paris's sku-0, Lille's sku-2, Lyon's sku-1 (nearest shipment first).
    late = await runner.run(commands.return_basket_units(order_id, 2, "lyon", "sku-1", 2, 60))
    assert late is None
    assert await levels_now(redis, ["sku-0", "sku-1", "sku-2"]) == Counter(START)
    partition = keys.partition_of_product("sku-0")
    assert await redis.zcard(keys.basket_returns_pending(partition)) == 0


def rerouter_for(redis: RedisClient) -> ShipmentRerouter:
    runner = runner_for(redis)
    directory = FixedWarehouses(WarehouseDirectory(WAREHOUSES))
    return ShipmentRerouter(PartHolder(runner, directory, 30), LiveBaskets(runner, None))


async def test_a_shipment_is_rerouted_on_its_own(redis: RedisClient) -> None:
    order_id = await placed_over_three_warehouses(redis)
    # Lyon's line can go to Madrid (new) or Paris (a shipment not started: merged there).
    await stock(redis, {("sku-1", "madrid"): 5, ("sku-1", "paris"): 2})
    baskets = LiveBaskets(runner_for(redis), None)
    await baskets.step(order_id, "picking", warehouse_id="lille")
    moved = await rerouter_for(redis).reroute(order_id, "lyon", "units damaged")
    shipments = {s.warehouse_id: (s.status, s.items) for s in moved.shipments}
    assert shipments == {
        "paris": ("confirmed", (BasketLine("sku-0", 1), BasketLine("sku-1", 2))),
        "lille": ("picking", (BasketLine("sku-2", 3),)),
    }
    assert moved.status == "confirmed"
    # Lyon's units are the ones missing: not given back. Paris gave its two.
    left = await levels_now(redis, ["sku-1"])
    assert (left[("sku-1", "lyon")], left[("sku-1", "paris")], left[("sku-1", "madrid")]) == (
        1,
        0,
        5,
    )
    assert await holds_left(redis) == 0
    # Lille started picking: it takes no more lines, and cannot be re-routed past packing.
    await stock(redis, {("sku-0", "lille"): 9, ("sku-1", "lille"): 9, ("sku-0", "madrid"): 9})
    moved = await rerouter_for(redis).reroute(order_id, "paris", "units damaged")
    assert {s.warehouse_id for s in moved.shipments} == {"lille", "madrid"}
    await baskets.step(order_id, "packed", warehouse_id="lille")
    with pytest.raises(InvalidTransition):
        await rerouter_for(redis).reroute(order_id, "lille", "units damaged")
    with pytest.raises(WrongWarehouse):
        await rerouter_for(redis).reroute(order_id, "lyon", "units damaged")


async def test_a_shipment_nowhere_else_in_stock_stays(redis: RedisClient) -> None:
    order_id = await placed_over_three_warehouses(redis)
    before = await LiveBaskets(runner_for(redis), None).get(order_id)
    with pytest.raises(BasketOutOfStock) as short:
        await rerouter_for(redis).reroute(order_id, "lyon", "units damaged")
    assert short.value.lines == (("sku-1", 2),)
    assert await LiveBaskets(runner_for(redis), None).get(order_id) == before
    assert await holds_left(redis) == 0
