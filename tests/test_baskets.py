"""Baskets on a real Redis (one, or the cluster with TEST_REDIS_CLUSTER=1): allocation to the
fewest warehouses, all or nothing, and the ledger after concurrency, a dead worker and a sweep.

The ledger: for every (product, warehouse), the units at the start equal the units left plus the
units of the baskets that exist; no hold is left once the sweep ran past the holds' expiry.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from engine import commands, keys, scripts
from engine.baskets import (
    BasketLine,
    BasketPlacer,
    BasketRequest,
)
from engine.commands import BasketAborted
from engine.errors import BasketOutOfStock, IdempotencyKeyReused, Overloaded, UnknownProduct
from engine.events import BasketConfirmed, decode_event
from engine.hold_sweep import release_expired_holds
from engine.ids import is_basket_id, new_id
from engine.inventory import Inventory
from engine.live_baskets import LiveBaskets
from engine.records import decode_basket_record
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from stores.redis import RedisClient
from stores.settings import Settings
from tests.basket_shop import PARIS, PRODUCTS, WAREHOUSES
from tests.conftest import runner_for, scan_keys, store_env

ROOT = Path(__file__).resolve().parent.parent


def placer_for(redis: RedisClient, hold_ttl_s: int = 30) -> BasketPlacer:
    directory = FixedWarehouses(WarehouseDirectory(WAREHOUSES))
    runner = runner_for(redis)
    return BasketPlacer(runner, directory, LiveBaskets(runner, None).get, hold_ttl_s=hold_ttl_s)


def basket(*lines: tuple[str, int], key: str | None = None) -> BasketRequest:
    return BasketRequest(tuple(BasketLine(p, q) for p, q in lines), PARIS, idempotency_key=key)


async def stock(redis: RedisClient, levels: dict[tuple[str, str], int]) -> None:
    inventory = Inventory(runner_for(redis))
    await inventory.set_many([(p, w, q) for (p, w), q in levels.items()], "test")


async def levels_now(redis: RedisClient, products: list[str]) -> Counter[tuple[str, str]]:
    inventory = Inventory(runner_for(redis))
    now: Counter[tuple[str, str]] = Counter()
    for product in products:
        for lv in await inventory.levels(product):
            now[(product, lv.warehouse_id)] = lv.level
    return now


async def sold_by_baskets(redis: RedisClient) -> Counter[tuple[str, str]]:
    sold: Counter[tuple[str, str]] = Counter()
    for key in await scan_keys(redis, "basket:*"):
        record = decode_basket_record(await redis.get(key))
        for shipment in record.shipments:
            for product, quantity in shipment.items:
                sold[(product, shipment.warehouse_id)] += quantity
    return sold


async def holds_left(redis: RedisClient) -> int:
    held = await scan_keys(redis, "hold:*")
    queued = 0
    for partition in range(keys.PARTITIONS):
        queued += await redis.zcard(keys.hold_expiries(partition))
    return len(held) + queued


async def assert_ledger(redis: RedisClient, start: dict[tuple[str, str], int]) -> None:
    left = await levels_now(redis, sorted({p for p, _ in start}))
    sold = await sold_by_baskets(redis)
    for where, level in start.items():
        assert left[where] + sold[where] == level, where
    assert await holds_left(redis) == 0


def test_the_products_span_at_least_three_partitions() -> None:
    assert len({keys.partition_of_product(p) for p in PRODUCTS}) >= 3


async def test_one_warehouse_with_every_line_ships_it_all(redis: RedisClient) -> None:
    start = {("sku-0", "lyon"): 5, ("sku-1", "lyon"): 5, ("sku-0", "paris"): 5}
    await stock(redis, start)
    confirmation = await placer_for(redis).place(basket(("sku-0", 2), ("sku-1", 3)))
    placed = confirmation.basket
    assert is_basket_id(placed.order_id) and not confirmation.replayed
    # Paris is nearer but has one line only: one shipment beats two.
    assert [s.warehouse_id for s in placed.shipments] == ["lyon"]
    assert placed.shipments[0].items == (BasketLine("sku-0", 2), BasketLine("sku-1", 3))
    assert placed.rule == "exact" and placed.status == "confirmed"
    assert placed.estimated_delivery == placed.shipments[0].estimated_delivery
    await assert_ledger(redis, start)
    partition = keys.partition_of_product("sku-0")
    assert await redis.exists(keys.basket_decision(partition, placed.order_id)) == 0
    entries = await redis.xrange(keys.stream(partition))
    events = [decode_event(fields) for _, fields in entries]
    confirmed = [e for e in events if isinstance(e, BasketConfirmed)]
    assert [e.order_id for e in confirmed] == [placed.order_id]
    assert confirmed[0].record.quantity == 5


async def test_a_mixed_basket_ships_from_the_fewest_then_nearest(redis: RedisClient) -> None:
    start = {
        ("sku-0", "paris"): 1,
        ("sku-1", "lille"): 2,
        ("sku-0", "madrid"): 9,
        ("sku-1", "madrid"): 9,
        ("sku-2", "lyon"): 4,
        ("sku-2", "paris"): 4,
    }
    await stock(redis, start)
    placed = (await placer_for(redis).place(basket(("sku-0", 1), ("sku-1", 2)))).basket
    # {paris, lille} and {madrid} can both serve it: one warehouse wins, however far.
    assert [s.warehouse_id for s in placed.shipments] == ["madrid"]
    placed = (await placer_for(redis).place(basket(("sku-0", 1), ("sku-2", 1)))).basket
    assert [s.warehouse_id for s in placed.shipments] == ["paris"]
    await assert_ledger(redis, start)


async def test_a_line_split_over_two_warehouses_when_none_has_it_whole(
    redis: RedisClient,
) -> None:
    start = {("sku-0", "paris"): 6, ("sku-0", "lyon"): 6}
    await stock(redis, start)
    placed = (await placer_for(redis).place(basket(("sku-0", 10)))).basket
    assert {s.warehouse_id: s.items for s in placed.shipments} == {
        "paris": (BasketLine("sku-0", 6),),
        "lyon": (BasketLine("sku-0", 4),),
    }
    await assert_ledger(redis, start)


async def test_a_basket_short_of_a_line_takes_nothing_and_names_the_line(
    redis: RedisClient,
) -> None:
    start = {("sku-0", "paris"): 5, ("sku-1", "lyon"): 1}
    await stock(redis, start)
    with pytest.raises(BasketOutOfStock) as refused:
        await placer_for(redis).place(basket(("sku-0", 2), ("sku-1", 3)))
    assert refused.value.lines == (("sku-1", 3),)
    assert await levels_now(redis, ["sku-0", "sku-1"]) == Counter(start)
    assert await holds_left(redis) == 0
    with pytest.raises(UnknownProduct):
        await placer_for(redis).place(basket(("sku-0", 1), ("nothing", 1)))


async def test_a_retry_under_the_same_key_gets_the_same_basket(redis: RedisClient) -> None:
    start = {("sku-0", "paris"): 5, ("sku-1", "paris"): 5}
    await stock(redis, start)
    placer = placer_for(redis)
    first = await placer.place(basket(("sku-0", 1), ("sku-1", 1), key="cart-1"))
    again = await placer.place(basket(("sku-0", 1), ("sku-1", 1), key="cart-1"))
    assert again.replayed and again.basket == first.basket
    with pytest.raises(IdempotencyKeyReused):
        await placer.place(basket(("sku-0", 2), ("sku-1", 1), key="cart-1"))
    await assert_ledger(redis, start)


async def test_concurrent_same_key_baskets_make_one(redis: RedisClient) -> None:
    start = {("sku-0", "paris"): 50, ("sku-3", "lyon"): 50}
    await stock(redis, start)
    placer = placer_for(redis)
    results = await asyncio.gather(
        *(placer.place(basket(("sku-0", 1), ("sku-3", 1), key="same")) for _ in range(20))
    )
    assert len({r.basket.order_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    await assert_ledger(redis, start)


async def test_two_hundred_concurrent_baskets_oversell_nothing(redis: RedisClient) -> None:
    rng = random.Random(7)
    start = {(p, w.warehouse_id): rng.randint(0, 12) for p in PRODUCTS for w in WAREHOUSES}
    await stock(redis, start)
    placers = [placer_for(redis) for _ in range(4)]  # several workers, one Redis

    async def one(i: int) -> object:
        lines = rng.sample(PRODUCTS, rng.randint(1, 4))
        request = basket(*((p, rng.randint(1, 6)) for p in lines))
        try:
            return await placers[i % len(placers)].place(request)
        except (BasketOutOfStock, Overloaded) as refused:  # nothing placed
            return refused

    results = await asyncio.gather(*(one(i) for i in range(200)))
    placed = [r for r in results if not isinstance(r, BasketOutOfStock | Overloaded)]
    assert placed and len(placed) < 200  # the stock ran out for some: the race was real
    for confirmation in placed:
        whole: Counter[str] = Counter()
        for shipment in confirmation.basket.shipments:  # type: ignore[attr-defined]
            for line in shipment.items:
                whole[line.product_id] += line.quantity
        lines = confirmation.basket.lines  # type: ignore[attr-defined]
        assert whole == {line.product_id: line.quantity for line in lines}
    await assert_ledger(redis, start)
    assert len(await scan_keys(redis, "basket:*")) == len(placed)


async def test_holds_of_a_worker_that_died_before_its_commit_go_back(
    redis: RedisClient,
) -> None:
    """What a worker killed between holding and committing leaves: the sweep aborts the basket
    and gives every hold back; a commit arriving after that is refused."""
    start = {("sku-0", "paris"): 5, ("sku-1", "lyon"): 5}
    await stock(redis, start)
    runner = runner_for(redis)
    order_id = new_id(keys.partition_of_product("sku-0"), basket=True)
    now_ms = int(time.time() * 1000)
    for product, warehouse in (("sku-0", "paris"), ("sku-1", "lyon")):
        hold_id = new_id(keys.partition_of_product(product))
        await runner.run(
            commands.hold_stock(hold_id, product, warehouse, 2, now_ms, 1_000, order_id)
        )
    assert await levels_now(redis, ["sku-0", "sku-1"]) != Counter(start)
    assert await release_expired_holds(runner, now_ms + 500) == 0  # not expired yet
    assert await release_expired_holds(runner, now_ms + 1_001) == 2
    assert await levels_now(redis, ["sku-0", "sku-1"]) == Counter(start)
    assert await holds_left(redis) == 0
    placed = await placer_for(redis).place(basket(("sku-0", 1)))  # the stock is sellable again
    record = decode_basket_record(
        await redis.get(keys.basket(keys.partition_of_product("sku-0"), placed.basket.order_id))
    )
    with pytest.raises(BasketAborted):
        await runner.run(commands.commit_basket(order_id, record, "", 60))


async def test_holds_of_a_worker_that_died_after_its_commit_stay_sold(
    redis: RedisClient,
) -> None:
    """A worker killed between committing and settling its holds: the sweep finds the basket
    committed and keeps the units sold."""
    start = {("sku-0", "paris"): 5, ("sku-1", "lyon"): 5}
    await stock(redis, start)
    runner = runner_for(redis)
    placed = await placer_for(redis, hold_ttl_s=1).place(basket(("sku-0", 2), ("sku-1", 2)))
    record = decode_basket_record(
        await redis.get(keys.basket(keys.partition_of_product("sku-0"), placed.basket.order_id))
    )
    # The same basket again, committed under a new ID, its holds left as a dead worker's.
    order_id = new_id(keys.partition_of_product("sku-0"), basket=True)
    now_ms = int(time.time() * 1000)
    for shipment in record.shipments:
        for product, quantity in shipment.items:
            await runner.run(
                commands.hold_stock(
                    new_id(keys.partition_of_product(product)),
                    product,
                    shipment.warehouse_id,
                    quantity,
                    now_ms,
                    1_000,
                    order_id,
                )
            )
    await runner.run(commands.commit_basket(order_id, record, "", 60))
    assert await release_expired_holds(runner, now_ms + 1_001) == 0  # kept, none given back
    assert await holds_left(redis) == 0
    await assert_ledger(redis, start)


@pytest.mark.parametrize("kills", [3])
async def test_a_worker_killed_mid_basket_leaves_the_stock_whole_after_the_sweep(
    redis: RedisClient, settings: Settings, kills: int
) -> None:
    """A real process placing baskets is killed at random points (SIGKILL); once its holds
    expire, one sweep leaves the ledger whole: every unit is in stock or in a basket."""
    rng = random.Random(11)
    start = {(p, w.warehouse_id): 400 for p in PRODUCTS for w in WAREHOUSES}
    await stock(redis, start)
    for _ in range(kills):
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.basket_worker"],
            cwd=ROOT,
            env={**store_env(settings), "BASKET_HOLD_TTL_S": "1"},
            stdout=subprocess.PIPE,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == b"placing"
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    await asyncio.sleep(1.1)  # past every hold's expiry
    await release_expired_holds(runner_for(redis))
    assert await sold_by_baskets(redis)  # it placed some before it died
    await assert_ledger(redis, start)


class CancelledAfterCommitting:
    """A runner whose basket commit runs in Redis, after which its task is cancelled before the
    reply is read (a worker shut down mid-request): the outcome is unknown to the worker."""

    def __init__(self, runner: scripts.ScriptRunner) -> None:
        self._runner = runner
        self.redis = runner.redis

    async def run(self, command: scripts.Command[Any]) -> Any:
        result = await self._runner.run(command)
        if command.script is scripts.COMMIT_BASKET:
            raise asyncio.CancelledError
        return result

    async def run_all(self, commands: Sequence[scripts.Command[Any]]) -> list[Any]:
        return await self._runner.run_all(commands)


async def test_a_commit_whose_reply_never_came_keeps_its_units_sold(redis: RedisClient) -> None:
    """The worker cannot tell whether its commit ran: it gives nothing back, and the sweep,
    finding the basket committed, keeps every hold sold."""
    start = {("sku-0", "paris"): 5, ("sku-1", "lyon"): 5}
    await stock(redis, start)
    runner = CancelledAfterCommitting(runner_for(redis))
    directory = FixedWarehouses(WarehouseDirectory(WAREHOUSES))
    placer = BasketPlacer(runner, directory, LiveBaskets(runner_for(redis), None).get, hold_ttl_s=1)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await placer.place(basket(("sku-0", 2), ("sku-1", 3)))
    assert len(await scan_keys(redis, "basket:*")) == 1
    assert await holds_left(redis) > 0  # left to the sweeper, not given back
    await asyncio.sleep(1.1)
    assert await release_expired_holds(runner_for(redis)) == 0  # kept, none given back
    await assert_ledger(redis, start)
