"""Seed the load-test world: the warehouses of `loadtest.catalog` and stock for N products.

    python -m loadtest.seed --products 10000 --level 1000000

Warehouses go through the API (as an operator would); stock goes straight through the engine in
pipelines, since a catalogue of 100k products x 8 warehouses would take minutes one request at
a time. Every level still flows through `lua/set_stock.lua`, so the writers mirror it to MongoDB.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import httpx

from engine.inventory import Inventory
from engine.scripts import script_runner
from loadtest.catalog import FLASH_PRODUCT, WAREHOUSES, product_id
from stores.redis import connect_redis
from stores.settings import load_settings

LEVELS_PER_PIPELINE = 5_000


async def seed_warehouses(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        for warehouse_id, (name, lat, lon) in WAREHOUSES.items():
            body = {"warehouseId": warehouse_id, "name": name, "location": {"lat": lat, "lon": lon}}
            response = await api.post("/warehouses", json=body)
            if response.status_code not in (201, 409):  # 409: seeded before
                response.raise_for_status()


async def seed_stock(products: int, level: int) -> None:
    settings = load_settings()
    redis = connect_redis(settings)
    runner = script_runner(redis, settings)
    inventory = Inventory(runner)
    try:
        levels = [
            (product, warehouse_id, level)
            for product in [FLASH_PRODUCT, *(product_id(r) for r in range(products))]
            for warehouse_id in WAREHOUSES
        ]
        for start in range(0, len(levels), LEVELS_PER_PIPELINE):
            await inventory.set_many(levels[start : start + LEVELS_PER_PIPELINE], "seed")
    finally:
        await runner.aclose()
        await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument(
        "--level", type=int, default=1_000_000, help="stock of each product at each warehouse"
    )
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    args = parser.parse_args()
    await seed_warehouses(args.api)
    await seed_stock(args.products, args.level)
    print(f"seeded {len(WAREHOUSES)} warehouses, {args.products + 1} products")


if __name__ == "__main__":
    asyncio.run(main())
