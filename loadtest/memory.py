"""Redis memory: bytes per product-warehouse stock level, and per order in flight, measured on a
Redis of its own loaded with N products x 50 warehouses; and what one idempotency key and one
order record cost alone, each written as the scripts write it into an empty Redis."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from engine import keys, scripts
from engine.ids import new_id
from engine.orders import IDEMPOTENCY_TTL_S, OrderRequest
from engine.placement import OrderPlacer
from engine.records import OrderRecord, encode_record
from engine.warehouses import FixedWarehouses, Warehouse, WarehouseDirectory
from geo.distance import Point
from loadtest import processes
from loadtest.catalog import WAREHOUSES, Traffic, product_id
from stores.redis import RedisClient, connect_redis
from stores.settings import Settings, load_settings
from stores.streams import CONSUMER_GROUPS
from writers.orders import DEFAULT_HOT_WINDOW_S

MEMORY_PORT: Final = 6401
WAREHOUSE_COUNT: Final = 50
PRODUCTS_PER_CALL: Final = 1_000
ORDERS_IN_FLIGHT: Final = 100_000
UNITS: Final = 1_000
KEY_COST_COUNT: Final = 200_000
KEY_COST_PIPELINE: Final = 1_000
# Orders per `orders.confirmed` entry as the API's micro-batches make them (8 per call).
ORDERS_PER_SHARED_ENTRY: Final = 8

# Bench-only loader: one call writes a thousand stock hashes (the engine's own set_stock.lua
# would take one call per level, 50 million calls for the full load).
LOAD_STOCK: Final = """
local fields = {}
for i = 1, #ARGV do fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = '1000' end
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
        placer = OrderPlacer(runner, FixedWarehouses(directory))
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
                await placer.place(request)

        await asyncio.gather(*(client() for _ in range(64)))
        per_order = (await _used(redis) - before) / ORDERS_IN_FLIGHT
        await runner.aclose()
        await redis.aclose()
    total_gib = per_level * 1_000_000 * WAREHOUSE_COUNT / 2**30
    costs = await measure_key_costs()
    return [
        f"- Stock: {per_level:.1f} bytes per (product, warehouse) level, {per_product:,.0f} bytes "
        f"per product of {WAREHOUSE_COUNT} warehouses, measured on {products:,} products "
        f"({(loaded - empty) / 2**20:,.0f} MiB); 1M products x 50 warehouses = "
        f"{total_gib:.1f} GiB.",
        f"- Orders in flight: {per_order:,.0f} bytes per order (its record, its stream entry and "
        f"its idempotency key), measured over {ORDERS_IN_FLIGHT:,} orders; a million orders "
        f"awaiting fulfilment = {per_order * 1e6 / 2**30:.2f} GiB. Stream entries are trimmed once "
        "every group has acked them; an order record leaves ORDER_HOT_WINDOW_S after PostgreSQL "
        "holds its latest change, an idempotency key after IDEMPOTENCY_TTL_S (see Soak).",
        *key_cost_lines(costs),
    ]


def key_cost_lines(costs: KeyCosts) -> list[str]:
    return [
        f"- One idempotency key alone: {costs.idempotency_key:,.0f} bytes (its stored confirmation "
        f"and TTL); one order record alone: {costs.order_record:,.0f} bytes (with a storefront's "
        f"key in it and its expiry); an order in an `orders.confirmed` stream entry: "
        f"{costs.stream_entry:,.0f} bytes alone in its entry (plus {costs.pending_entry:,.0f} "
        f"while a group has it pending), {costs.stream_entry_shared:,.0f} bytes in an entry of "
        f"{ORDERS_PER_SHARED_ENTRY} orders (plus {costs.pending_entry_shared:,.0f}), as a script "
        f"call of {ORDERS_PER_SHARED_ENTRY} orders of one partition appends them. Each the "
        f"used_memory delta of {costs.count:,} of them written as the scripts write them into an "
        "empty Redis, hash tables included.",
    ]


@dataclass(frozen=True, slots=True)
class KeyCosts:
    """Bytes of Redis memory (used_memory) per key, the main and the expiry tables included."""

    idempotency_key: float  # `idem:{tag}:<key>` -> the stored confirmation, with its TTL
    order_record: float  # `order:{tag}:<orderId>` -> the record, expiring (persisted, hot)
    # Per order in an `orders.confirmed` entry that every group has read and acked, alone in its
    # entry and sharing one with others of its script call; and per order, what a group's pending
    # list adds while the entry is not acked yet.
    stream_entry: float
    pending_entry: float
    stream_entry_shared: float
    pending_entry_shared: float
    count: int


async def measure_key_costs(count: int = KEY_COST_COUNT) -> KeyCosts:
    """Each kind of key alone, `count` of them, into an empty Redis: used_memory delta / count."""
    print(
        f"memory: one idempotency key, order record, stream entry ({count:,} of each)", flush=True
    )
    rng = random.Random(5)
    traffic = Traffic(10_000, seed=5)
    warehouses = list(WAREHOUSES)
    now_ms = int(time.time() * 1000)

    def idempotency_key(i: int) -> tuple[str, str]:
        # As lua/place_orders.lua stores it: orderId|warehouseId|deliveryDays|createdMs|fingerprint,
        # under a storefront's UUID key (api/auth.py prefixes an authenticated client's name).
        request = _request(traffic, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        partition = keys.partition_of_product(request.product_id)
        stored = (
            f"{new_id(partition, now_ms)}|{rng.choice(warehouses)}|{rng.randint(1, 3)}|{now_ms}"
            f"|{request.fingerprint()}"
        )
        assert request.idempotency_key is not None
        return keys.idempotency(partition, request.product_id, request.idempotency_key), stored

    def order_record(i: int) -> tuple[str, str]:
        # As lua/place_orders.lua writes it (a storefront's key in it), then
        # lua/expire_persisted.lua gives it the hot window once PostgreSQL holds it.
        request = _request(traffic, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        partition = keys.partition_of_product(request.product_id)
        record = OrderRecord(
            request.product_id,
            rng.choice(warehouses),
            request.quantity,
            "confirmed",
            rng.randint(1, 3),
            now_ms,
            request.customer.lat,
            request.customer.lon,
            request.idempotency_key or "",
            1,
        )
        return keys.order(partition, new_id(partition, now_ms)), encode_record(record).decode()

    with processes.redis_server(MEMORY_PORT, persistent=False) as url:
        redis = connect_redis(Settings(url, False, "", "", ""))
        try:
            per_key = await _bytes_per_key(redis, count, idempotency_key, IDEMPOTENCY_TTL_S * 1000)
            await redis.flushall()
            per_record = await _bytes_per_key(
                redis, count, order_record, DEFAULT_HOT_WINDOW_S * 1000
            )
            await redis.flushall()
            alone = await _bytes_per_stream_entry(redis, count, order_record, 1)
            await redis.flushall()
            shared = await _bytes_per_stream_entry(
                redis, count, order_record, ORDERS_PER_SHARED_ENTRY
            )
        finally:
            await redis.aclose()
    return KeyCosts(per_key, per_record, *alone, *shared, count)


def _request(traffic: Traffic, idempotency_key: str) -> OrderRequest:
    body = traffic.order_body()
    location = body["customerLocation"]
    return OrderRequest(
        str(body["productId"]),
        int(body["quantity"]),  # type: ignore[call-overload]
        Point(location["lat"], location["lon"]),  # type: ignore[index]
        idempotency_key=idempotency_key,
    )


async def _bytes_per_key(
    redis: RedisClient, count: int, make: Callable[[int], tuple[str, str]], ttl_ms: int
) -> float:
    before = await _used(redis)
    for start in range(0, count, KEY_COST_PIPELINE):
        pipe = redis.pipeline(transaction=False)
        for i in range(start, min(start + KEY_COST_PIPELINE, count)):
            key, value = make(i)
            pipe.set(key, value, px=ttl_ms)
        await pipe.execute()
    return (await _used(redis) - before) / count


async def _bytes_per_stream_entry(
    redis: RedisClient, count: int, make: Callable[[int], tuple[str, str]], per_entry: int
) -> tuple[float, float]:
    """`count` orders in `orders.confirmed` entries of `per_entry` orders as lua/place_orders.lua
    appends them, spread over the partition streams, each with the writers' groups: bytes per
    order, then per order left pending in one group. (MEMORY USAGE of a stream counts several
    times more per pending entry than used_memory grows by.)"""
    streams = [keys.stream(p) for p in range(keys.PARTITIONS)]
    for stream in streams:
        for group in CONSUMER_GROUPS:
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
    before = await _used(redis)
    for start in range(0, count, KEY_COST_PIPELINE):
        pipe = redis.pipeline(transaction=False)
        for i in range(start, min(start + KEY_COST_PIPELINE, count), per_entry):
            parts = []
            for j in range(i, min(i + per_entry, count)):
                key, record = make(j)
                parts.append(f'["{key.rsplit(":", 1)[1]}",{record},{999_999_000 + j % 997}]')
            fields: dict[Any, Any] = {"type": "orders.confirmed", "orders": f"[{','.join(parts)}]"}
            pipe.xadd(streams[i % len(streams)], fields)
        await pipe.execute()
    appended = await _used(redis)
    for stream in streams:
        await redis.xreadgroup(CONSUMER_GROUPS[0], "soak", {stream: ">"}, count=count)
    pending = await _used(redis)
    return (appended - before) / count, (pending - appended) / count
