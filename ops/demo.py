"""Demo against a running API: warehouses and stock in, orders placed, then the three stores shown.

Run by `ops/run.sh` (the README's first command); safe to run again (it adds more orders).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from typing import Any, Final

import httpx

from engine import keys
from engine.inventory import levels_in
from loadtest.catalog import CITIES, WAREHOUSES
from stores.mongo import INVENTORY, connect_mongo
from stores.postgres import connect_postgres
from stores.redis import connect_redis
from stores.settings import load_settings

API: Final = os.environ.get("API_URL", "http://127.0.0.1:8000")
PRODUCTS: Final = [f"sku-{i:03d}" for i in range(20)]
ORDERS: Final = 500


async def main() -> int:
    rng = random.Random()
    async with httpx.AsyncClient(base_url=API, timeout=10) as api:
        for warehouse_id, (name, lat, lon) in WAREHOUSES.items():
            body = {"warehouseId": warehouse_id, "name": name, "location": {"lat": lat, "lon": lon}}
            response = await api.post("/warehouses", json=body)
            if response.status_code not in (201, 409):  # 409: already there from an earlier run
                response.raise_for_status()
        for product in PRODUCTS:
            for warehouse_id in WAREHOUSES:
                level = rng.choice([0, 5, 20, 100])
                await api.put(
                    f"/inventory/{product}/stock/{warehouse_id}", json={"quantity": level}
                )
        print(f"{len(WAREHOUSES)} warehouses, {len(PRODUCTS)} products stocked")

        async def place(i: int) -> httpx.Response:
            lat, lon, _ = rng.choice(CITIES)
            body = {
                "productId": rng.choice(PRODUCTS[:5]) if i % 3 else rng.choice(PRODUCTS),
                "quantity": rng.randint(1, 3),
                "customerLocation": {
                    "lat": lat + rng.uniform(-0.2, 0.2),
                    "lon": lon + rng.uniform(-0.2, 0.2),
                },
            }
            return await api.post(
                "/orders", json=body, headers={"Idempotency-Key": f"demo-{time.time_ns()}-{i}"}
            )

        started = time.perf_counter()
        responses = await asyncio.gather(*(place(i) for i in range(ORDERS)))
        elapsed = time.perf_counter() - started
        outcomes = Counter(r.status_code for r in responses)
        confirmed = [r.json() for r in responses if r.status_code == 201]
        print(
            f"{ORDERS} orders in {elapsed:.2f}s: "
            f"{outcomes[201]} confirmed, {outcomes[409]} out of stock"
        )
        print("one answer:", confirmed[0])
        order = (await api.get(f"/orders/{confirmed[0]['orderId']}")).json()
        print("read back :", order)
        by_warehouse = Counter()
        for c in confirmed[:100]:
            by_warehouse[(await api.get(f"/orders/{c['orderId']}")).json()["warehouseId"]] += 1
        print("first 100 confirmed orders by warehouse:", dict(by_warehouse))
        stock = (await api.get("/inventory", params={"productId": "sku-000"})).json()
        print("live stock:", stock)

    await show_stores([c["orderId"] for c in confirmed])
    return 0


async def show_stores(order_ids: list[str]) -> None:
    settings = load_settings()
    redis = connect_redis(settings)
    pg = await connect_postgres(settings)
    mongo_client, mongo = connect_mongo(settings)
    try:
        deadline = time.monotonic() + 30
        while True:
            persisted = await pg.fetchval(
                "SELECT count(*) FROM orders WHERE order_id = ANY($1::uuid[])", order_ids
            )
            if persisted == len(order_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        print(f"PostgreSQL: {persisted}/{len(order_ids)} of this run's confirmed orders persisted")
        doc: Any = await mongo[INVENTORY].find_one({"_id": "sku-000"})
        live = await redis.hgetall(keys.stock(keys.partition_of_product("sku-000"), "sku-000"))
        print(
            "MongoDB inventory sku-000:",
            doc and doc["stockLevels"],
            "version (stream entries added when read)",
            doc and doc["version"],
        )
        print("Redis   stock     sku-000:", dict(sorted(levels_in(live).items())))
    finally:
        await pg.close()
        await mongo_client.close()
        await redis.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
