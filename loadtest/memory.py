"""Redis memory: bytes per product-warehouse stock level, and per order in flight, measured on a
Redis of its own loaded with N products x 50 warehouses."""

from __future__ import annotations

import asyncio
import random
from typing import Final

from engine import keys, scripts
from engine.orders import OrderRequest
from engine.reservations import ReservationEngine
from engine.warehouses import Warehouse, WarehouseDirectory
from geo.rings import Point
from loadtest import processes
from loadtest.catalog import Traffic, product_id
from stores.redis import RedisClient, connect_redis
from stores.settings import Settings, load_settings

MEMORY_PORT: Final = 6401
WAREHOUSE_COUNT: Final = 50
PRODUCTS_PER_CALL: Final = 1_000
ORDERS_IN_FLIGHT: Final = 100_000
UNITS: Final = 1_000

# Bench-only loader: one call writes a thousand stock hashes (the engine's own set_stock.lua
# would take one call per level, 50 million calls for the full load).
LOAD_STOCK: Final = """
local fields = {}
for i = 1, #ARGV do fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = '1000' end
fields[#fields + 1] = '_v'; fields[#fields + 1] = '1'
for _, key in ipairs(KEYS) do redis.call('HSET', key, unpack(fields)) end
return #KEYS
"""


async def _used(redis: RedisClient) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def measure_memory(products: int) -> list[str]:
    print(f"memory: {products:,} products x {WAREHOUSE_COUNT} warehouses", flush=True)
    rng = random.Random(3)
    warehouses = [
        Warehouse(f"w{i:02d}", f"W{i}", Point(rng.uniform(43.5, 50.5), rng.uniform(-1.0, 7.5)))
        for i in range(WAREHOUSE_COUNT)
    ]
    ids = [w.warehouse_id for w in warehouses]
    with processes.redis_server(MEMORY_PORT, persistent=False) as url:
        redis = connect_redis(Settings(url, False, "", "", ""))
        await scripts.load_all(redis)
        empty = await _used(redis)
        for start in range(0, products, PRODUCTS_PER_CALL):
            stock_keys = [
                keys.stock(keys.partition_of_product(product_id(r)), product_id(r))
                for r in range(start, min(start + PRODUCTS_PER_CALL, products))
            ]
            await redis.eval(LOAD_STOCK, len(stock_keys), *stock_keys, *ids)
        loaded = await _used(redis)
        per_level = (loaded - empty) / (products * WAREHOUSE_COUNT)
        per_product = (loaded - empty) / products

        directory = WarehouseDirectory(warehouses)
        runner = scripts.ScriptRunner(redis, deadline_s=load_settings().command_deadline_s)
        engine = ReservationEngine(runner, directory, _fixed(directory))
        traffic = Traffic(products, seed=4)
        requests = []
        for i in range(ORDERS_IN_FLIGHT):
            body = traffic.order_body()
            location = body["customerLocation"]
            requests.append(
                OrderRequest(
                    str(body["productId"]),
                    1,
                    Point(location["lat"], location["lon"]),  # type: ignore[index]
                    idempotency_key=f"{i:032x}",
                )
            )
        before = await _used(redis)
        queue = iter(requests)

        async def client() -> None:
            for request in queue:
                await engine.place(request)

        await asyncio.gather(*(client() for _ in range(64)))
        per_order = (await _used(redis) - before) / ORDERS_IN_FLIGHT
        await redis.aclose()
    total_gib = per_level * 1_000_000 * WAREHOUSE_COUNT / 2**30
    return [
        f"- Stock: {per_level:.1f} bytes per (product, warehouse) level, {per_product:,.0f} bytes "
        f"per product of {WAREHOUSE_COUNT} warehouses, measured on {products:,} products "
        f"({(loaded - empty) / 2**20:,.0f} MiB); 1M products x 50 warehouses = "
        f"{total_gib:.1f} GiB.",
        f"- Orders in flight: {per_order:,.0f} bytes per order (its record, its stream entry and "
        f"its idempotency key), measured over {ORDERS_IN_FLIGHT:,} orders; a million orders "
        f"awaiting fulfilment = {per_order * 1e6 / 2**30:.2f} GiB. Stream entries are trimmed once "
        "both writers have acked them; order records do not expire yet.",
    ]


def _fixed(directory: WarehouseDirectory):  # type: ignore[no-untyped-def]
    async def reload() -> WarehouseDirectory:
        return directory

    return reload
