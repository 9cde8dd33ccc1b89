"""A worker process that places random baskets until it is killed: tests/test_baskets.py kills it
mid-basket (SIGKILL) and checks the ledger after the sweep. Prints `placing` once it started.

Stores from the environment as any process reads them (stores.settings); BASKET_HOLD_TTL_S sets
the holds' lifetime, short so that the test need not wait long for them to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random

from engine import scripts
from engine.baskets import BasketLine, BasketPlacer, BasketRequest
from engine.errors import BasketOutOfStock, Overloaded
from engine.live_baskets import LiveBaskets
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from stores.redis import connect_redis
from stores.settings import load_settings
from tests.basket_shop import PARIS, PRODUCTS, WAREHOUSES

CONCURRENT_BASKETS = 16


async def main() -> None:
    settings = load_settings()
    redis = connect_redis(settings)
    await scripts.load_all(redis)
    runner = scripts.script_runner(redis, settings)
    placer = BasketPlacer(
        runner,
        FixedWarehouses(WarehouseDirectory(WAREHOUSES)),
        LiveBaskets(runner, None).get,
        hold_ttl_s=int(os.environ["BASKET_HOLD_TTL_S"]),
    )
    print("placing", flush=True)

    async def place_forever(rng: random.Random) -> None:
        while True:
            lines = rng.sample(PRODUCTS, rng.randint(1, 5))
            request = BasketRequest(tuple(BasketLine(p, rng.randint(1, 4)) for p in lines), PARIS)
            with contextlib.suppress(BasketOutOfStock, Overloaded):  # nothing placed: try the next
                await placer.place(request)

    await asyncio.gather(*(place_forever(random.Random(i)) for i in range(CONCURRENT_BASKETS)))


if __name__ == "__main__":
    asyncio.run(main())
