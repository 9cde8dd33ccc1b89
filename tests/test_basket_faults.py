"""Baskets placed while connections to Redis are cut after the request went out (the reply is
lost, the script ran): every basket a client was told of exists, every basket that exists was
told to its client (confirmed, or 503 naming it), and once the sweep ran past the holds' expiry
every unit is in stock or in a basket, with no hold left. On one Redis and on the cluster."""

from __future__ import annotations

import asyncio
import random

from engine.baskets import BasketPlacer
from engine.errors import BasketOutOfStock, OutcomeUnknown, Overloaded, StoreUnavailable
from engine.hold_sweep import release_expired_holds
from engine.live_baskets import LiveBaskets
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from stores.redis import TRANSIENT_ERRORS, RedisClient, connect_redis
from stores.settings import Settings
from tests.basket_shop import PRODUCTS, WAREHOUSES
from tests.conftest import runner_for, scan_keys
from tests.test_baskets import assert_ledger, basket, stock
from tests.test_exactly_once import proxied

HOLD_TTL_S = 1


async def test_cut_replies_leave_every_basket_told_and_the_ledger_whole(
    redis: RedisClient, settings: Settings
) -> None:
    rng = random.Random(5)
    start = {(p, w.warehouse_id): rng.randint(2, 10) for p in PRODUCTS for w in WAREHOUSES}
    await stock(redis, start)
    confirmed: set[str] = set()
    unknown: set[str] = set()
    refused = 0
    async with proxied(redis, settings) as (fronted, proxies):
        client = connect_redis(fronted)
        runner = runner_for(client, fronted)
        placer = BasketPlacer(
            runner,
            FixedWarehouses(WarehouseDirectory(WAREHOUSES)),
            LiveBaskets(runner, None).get,
            hold_ttl_s=HOLD_TTL_S,
        )
        proxies.cut_randomly(0.08, seed=3, limit=40)

        async def one(i: int) -> None:
            nonlocal refused
            lines = rng.sample(PRODUCTS, rng.randint(1, 4))
            request = basket(*((p, rng.randint(1, 3)) for p in lines))
            try:
                confirmed.add((await placer.place(request)).basket.order_id)
            except OutcomeUnknown as lost:
                assert lost.subject_id is not None  # the client is told which basket to look up
                unknown.add(lost.subject_id)
            except (BasketOutOfStock, Overloaded, StoreUnavailable, *TRANSIENT_ERRORS):
                refused += 1  # nothing placed (a lost read answers 503 store_unavailable)

        await asyncio.gather(*(one(i) for i in range(120)))
        proxies.stop_cutting()
        assert proxies.cuts_after_reply > 0  # replies really were lost after the script ran
        await client.aclose()
    await asyncio.sleep(HOLD_TTL_S + 0.1)
    await release_expired_holds(runner_for(redis))
    existing = {key.rsplit(":", 1)[1] for key in await scan_keys(redis, "basket:*")}
    assert confirmed <= existing
    assert existing <= confirmed | unknown
    assert confirmed and refused
    await assert_ledger(redis, start)
