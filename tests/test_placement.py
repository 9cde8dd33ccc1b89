"""Placing orders on a real Redis: nearest warehouse with stock, no oversell, idempotency.

Every test runs with micro-batching on and off: the decision must not depend on it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import h3
import pytest

from engine import keys
from engine.errors import IdempotencyKeyReused, OutOfStock, UnknownProduct
from engine.events import OrdersConfirmed, decode_event
from engine.inventory import Inventory
from engine.orders import Confirmation, OrderRequest
from engine.placement import OrderPlacer
from engine.records import OrderRecord, decode_record
from engine.warehouses import FixedWarehouses, Warehouse, WarehouseDirectory
from geo.distance import Point, great_circle_km
from geo.rings import RESOLUTION, RING_MAX_K
from stores.redis import RedisClient
from tests.conftest import runner_for

PARIS = Point(48.8566, 2.3522)


def make_placer(redis: RedisClient, warehouses: list[Warehouse], batched: bool) -> OrderPlacer:
    directory = WarehouseDirectory(warehouses)

    return OrderPlacer(runner_for(redis), FixedWarehouses(directory), batched=batched)


@pytest.fixture(params=[True, False], ids=["batched", "per-request"])
def batched(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_far_warehouse_serves_when_nothing_is_stocked_within_the_rings(
    redis: RedisClient, batched: bool
) -> None:
    warehouses = [
        Warehouse("paris", "Paris", PARIS),
        Warehouse("madrid", "Madrid", Point(40.4168, -3.7038)),
        Warehouse("moscow", "Moscow", Point(55.7558, 37.6173)),
    ]
    inventory = Inventory(runner_for(redis))
    await inventory.change("sku", "paris", "set", 0, "t")
    await inventory.change("sku", "madrid", "set", 1, "t")
    await inventory.change("sku", "moscow", "set", 1, "t")
    placer = make_placer(redis, warehouses, batched)
    first = await placer.place(OrderRequest("sku", 1, PARIS))
    second = await placer.place(OrderRequest("sku", 1, PARIS))
    assert (first.warehouse_id, second.warehouse_id) == ("madrid", "moscow")
    with pytest.raises(OutOfStock):
        await placer.place(OrderRequest("sku", 1, PARIS))


async def test_unknown_product(redis: RedisClient, batched: bool) -> None:
    placer = make_placer(redis, [Warehouse("paris", "Paris", PARIS)], batched)
    with pytest.raises(UnknownProduct):
        await placer.place(OrderRequest("ghost", 1, PARIS))


def brute_force_choice(
    warehouses: list[Warehouse], stock: dict[str, int], customer: Point, quantity: int
) -> str | None:
    """Nearest ring first, exact distance inside a ring; past the rings, exact distance alone."""
    origin = h3.latlng_to_cell(customer.lat, customer.lon, RESOLUTION)
    ranked = []
    for w in warehouses:
        if stock[w.warehouse_id] < quantity:
            continue
        try:
            ring = h3.grid_distance(origin, h3.latlng_to_cell(*w.location, RESOLUTION))
        except h3.H3BaseException:
            ring = RING_MAX_K + 1
        ring = min(ring, RING_MAX_K + 1)
        ranked.append((ring, great_circle_km(*customer, *w.location), w.warehouse_id))
    return min(ranked)[2] if ranked else None


async def test_choice_matches_brute_force_on_random_data(redis: RedisClient, batched: bool) -> None:
    rng = random.Random(7)
    warehouses = [
        Warehouse(f"w{i}", f"W{i}", Point(rng.uniform(35, 60), rng.uniform(-10, 30)))
        for i in range(40)
    ]
    stock = {w.warehouse_id: rng.choice([0, 0, 1, 2, 5]) for w in warehouses}
    inventory = Inventory(runner_for(redis))
    for warehouse_id, level in stock.items():
        await inventory.change("sku", warehouse_id, "set", level, "t")
    placer = make_placer(redis, warehouses, batched)
    # Sequential on purpose: the expected answer depends on the stock left by earlier orders.
    for _ in range(150):
        customer = Point(rng.uniform(35, 60), rng.uniform(-10, 30))
        quantity = rng.choice([1, 1, 2, 3])
        expected = brute_force_choice(warehouses, stock, customer, quantity)
        if expected is None:
            with pytest.raises(OutOfStock):
                await placer.place(OrderRequest("sku", quantity, customer))
            continue
        confirmation = await placer.place(OrderRequest("sku", quantity, customer))
        assert confirmation.warehouse_id == expected
        stock[expected] -= quantity
    levels = {lv.warehouse_id: lv.level for lv in await inventory.levels("sku")}
    assert levels == stock


async def test_no_oversell_with_200_concurrent_clients_on_one_product(
    redis: RedisClient, batched: bool
) -> None:
    """1,000 units over 4 warehouses, 5,000 attempts from 200 clients: exactly 1,000 sold."""
    warehouses = [Warehouse(f"w{i}", f"W{i}", Point(48 + i * 0.5, 2 + i * 0.5)) for i in range(4)]
    inventory = Inventory(runner_for(redis))
    for w in warehouses:
        await inventory.change("flash", w.warehouse_id, "set", 250, "t")
    placer = make_placer(redis, warehouses, batched)
    rng = random.Random(1)
    attempts = asyncio.Queue[int]()
    for i in range(5_000):
        attempts.put_nowait(i)
    confirmed: list[Confirmation] = []
    refused = Counter[str]()

    async def client() -> None:
        while not attempts.empty():
            attempts.get_nowait()
            customer = Point(rng.uniform(45, 52), rng.uniform(0, 6))
            try:
                confirmed.append(await placer.place(OrderRequest("flash", 1, customer)))
            except OutOfStock:
                refused["out_of_stock"] += 1

    await asyncio.gather(*(client() for _ in range(200)))
    assert len(confirmed) == 1_000
    assert refused["out_of_stock"] == 4_000
    assert len({c.order_id for c in confirmed}) == 1_000
    assert Counter(c.warehouse_id for c in confirmed) == {w.warehouse_id: 250 for w in warehouses}
    assert all(lv.level == 0 for lv in await inventory.levels("flash"))
    partition = keys.partition_of_product("flash")
    events = await redis.xrange(keys.stream(partition))
    confirmations = [
        placed.order_id
        for _, fields in events
        if isinstance(event := decode_event(fields), OrdersConfirmed)
        for placed in event.orders
    ]
    assert sorted(confirmations) == sorted(c.order_id for c in confirmed)


async def test_concurrent_retries_with_one_key_make_one_order(
    redis: RedisClient, batched: bool
) -> None:
    await Inventory(runner_for(redis)).change("sku", "paris", "set", 100, "t")
    placer = make_placer(redis, [Warehouse("paris", "Paris", PARIS)], batched)
    request = OrderRequest("sku", 3, Point(48.9, 2.3), idempotency_key="retry-me")
    answers = await asyncio.gather(*(placer.place(request) for _ in range(50)))
    assert len({a.order_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    assert [lv.level for lv in await Inventory(runner_for(redis)).levels("sku")] == [97]
    with pytest.raises(IdempotencyKeyReused):
        await placer.place(OrderRequest("sku", 4, Point(48.9, 2.3), idempotency_key="retry-me"))


async def test_a_warehouse_created_after_start_is_found_by_reloading(redis: RedisClient) -> None:
    """Stock at a warehouse this worker has not loaded yet: the placer reloads the directory."""
    fresh = WarehouseDirectory(
        [Warehouse("paris", "Paris", PARIS), Warehouse("nice", "Nice", Point(43.7, 7.26))]
    )

    class CreatedSinceStart(FixedWarehouses):
        async def reload(self) -> WarehouseDirectory:
            self.directory = fresh
            return fresh

    warehouses = CreatedSinceStart(WarehouseDirectory([Warehouse("paris", "Paris", PARIS)]))
    placer = OrderPlacer(runner_for(redis), warehouses)
    await Inventory(runner_for(redis)).change("sku", "nice", "set", 1, "t")
    assert (await placer.place(OrderRequest("sku", 1, PARIS))).warehouse_id == "nice"
    assert warehouses.directory is fresh


async def test_the_record_written_is_the_order_exactly(redis: RedisClient, batched: bool) -> None:
    """lua/includes/confirm_order.lua spells the record out: it must read back as the order,
    free-text idempotency key (quotes, backslashes, non-ASCII) and location digits included."""
    await Inventory(runner_for(redis)).change("sku.1:a", "paris", "set", 5, "t")
    placer = make_placer(redis, [Warehouse("paris", "Paris", PARIS)], batched)
    where = Point(48.856613, 2.352222)
    key = 'shop "7" \\ käse'
    for idempotency_key in (None, key):
        placed = await placer.place(OrderRequest("sku.1:a", 2, where, idempotency_key))
        partition = keys.partition_of_product("sku.1:a")
        raw = await redis.get(keys.order(partition, placed.order_id))
        assert decode_record(raw) == OrderRecord(
            "sku.1:a",
            "paris",
            2,
            "confirmed",
            placed_days(placed),
            int(placed.created_at.timestamp() * 1000),
            where.lat,
            where.lon,
            idempotency_key or "",
            1,
        )


def placed_days(placed: Confirmation) -> int:
    return (placed.estimated_delivery - placed.created_at.date()).days
