"""Expired holds (POST /inventory/reserve) give their units back: `lua/release_holds.lua` through
`engine.hold_sweep.release_expired_holds`, on a real Redis."""

from __future__ import annotations

from engine import commands, keys
from engine.events import StockChanged, decode_event
from engine.hold_sweep import RELEASE_BATCH, release_expired_holds
from engine.inventory import HOLD_TTL_S, Inventory
from stores.redis import RedisClient
from tests.conftest import runner_for


async def test_expired_holds_return_their_units_once(redis: RedisClient) -> None:
    inventory = Inventory(runner_for(redis))
    for product in ("sku-a", "sku-b"):  # two products, most likely two partitions
        await inventory.change(product, "w1", "set", 10, "test")
    early = await inventory.hold("sku-a", "w1", 3)
    await inventory.hold("sku-b", "w1", 4)
    assert [lv.level for lv in await inventory.levels("sku-a")] == [7]

    now_ms = int(early.expires_at.timestamp() * 1000)
    assert await release_expired_holds(runner_for(redis), now_ms - 1) == 0  # not yet
    assert await release_expired_holds(runner_for(redis), now_ms + HOLD_TTL_S * 1000) == 2
    assert [lv.level for lv in await inventory.levels("sku-a")] == [10]
    assert [lv.level for lv in await inventory.levels("sku-b")] == [10]
    assert await release_expired_holds(runner_for(redis), now_ms + HOLD_TTL_S * 1000) == 0  # once

    partition = keys.partition_of_product("sku-a")
    assert not await redis.exists(keys.hold(partition, early.hold_id))
    assert await redis.zcard(keys.hold_expiries(partition)) == 0
    [(_, fields)] = (await redis.xrange(keys.stream(partition)))[-1:]
    event = decode_event(fields)
    assert isinstance(event, StockChanged)
    assert (event.product, event.level, event.reason) == ("sku-a", 10, "hold expired")


async def test_a_live_hold_is_kept(redis: RedisClient) -> None:
    inventory = Inventory(runner_for(redis))
    await inventory.change("sku", "w1", "set", 5, "test")
    await inventory.hold("sku", "w1", 5)
    assert await release_expired_holds(runner_for(redis)) == 0
    assert [lv.level for lv in await inventory.levels("sku")] == [0]


async def test_holds_expire_at_any_rate_not_a_fixed_number_per_sweep(redis: RedisClient) -> None:
    """More expired holds in one partition than one script call takes (RELEASE_BATCH): one sweep
    releases them all."""
    inventory = Inventory(runner_for(redis))
    await inventory.change("sku", "w1", "set", 2 * RELEASE_BATCH + 10, "test")
    runner = runner_for(redis)
    holds = [
        commands.hold_stock(f"h{i}", "sku", "w1", 1, 0, 1_000)
        for i in range(2 * RELEASE_BATCH + 10)
    ]
    for start in range(0, len(holds), 100):
        assert not [
            r
            for r in await runner.run_all(holds[start : start + 100])
            if isinstance(r, BaseException)
        ]
    assert [lv.level for lv in await inventory.levels("sku")] == [0]
    assert await release_expired_holds(runner, 10_000) == 2 * RELEASE_BATCH + 10
    assert [lv.level for lv in await inventory.levels("sku")] == [2 * RELEASE_BATCH + 10]
