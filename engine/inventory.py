"""Live stock in Redis: read levels, set or adjust them (operators), hold units at one warehouse
and give them back when the hold expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from engine import keys, scripts
from engine.errors import NegativeStock, OutOfStock, UnknownProduct
from engine.ids import new_id
from stores.redis import RedisClient

HOLD_TTL_S: Final = 15 * 60
RELEASE_BATCH: Final = 256  # expired holds released per partition per call
VERSION_FIELD: Final = "_v"  # the stock hash's version counter, bumped by every change

StockChange = Literal["set", "adjust"]


@dataclass(frozen=True, slots=True)
class StockLevel:
    warehouse_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    available: int
    expires_at: datetime


class Inventory:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def levels(self, product_id: str) -> list[StockLevel]:
        """Available units per warehouse, read live from the decision point."""
        raw = await self._redis.hgetall(
            keys.stock(keys.partition_of_product(product_id), product_id)
        )
        if not raw:
            raise UnknownProduct(product_id)
        return sorted(
            (StockLevel(str(w), int(q)) for w, q in raw.items() if w != VERSION_FIELD),
            key=lambda level: level.warehouse_id,
        )

    async def change(
        self, product_id: str, warehouse_id: str, mode: StockChange, units: int, reason: str
    ) -> int:
        """Set (`units` >= 0) or adjust (by +/- `units`) one level; returns the new level."""
        partition = keys.partition_of_product(product_id)
        reply = await scripts.call(
            self._redis,
            scripts.SET_STOCK,
            [keys.stream(partition), keys.stock(partition, product_id)],
            [product_id, warehouse_id, mode, units, reason],
        )
        if reply[0] == "negative":
            raise NegativeStock(product_id, warehouse_id, int(reply[1]))
        return int(reply[1])

    async def set_many(self, levels: list[tuple[str, str, int]], reason: str) -> None:
        """Set many (product, warehouse, units) levels in one pipeline (bulk restock, seeding)."""
        calls: list[scripts.Call] = []
        for product_id, warehouse_id, units in levels:
            partition = keys.partition_of_product(product_id)
            calls.append(
                (
                    scripts.SET_STOCK,
                    [keys.stream(partition), keys.stock(partition, product_id)],
                    [product_id, warehouse_id, "set", units, reason],
                )
            )
        for reply in await scripts.call_pipelined(self._redis, calls):
            if isinstance(reply, BaseException):
                raise reply

    async def hold(self, product_id: str, warehouse_id: str, units: int) -> Hold:
        partition = keys.partition_of_product(product_id)
        hold_id = new_id(partition)
        reply = await scripts.call(
            self._redis,
            scripts.HOLD,
            [
                keys.stream(partition),
                keys.stock(partition, product_id),
                keys.hold(partition, hold_id),
                keys.hold_expiries(partition),
            ],
            [hold_id, product_id, warehouse_id, units, int(time.time() * 1000), HOLD_TTL_S * 1000],
        )
        match reply[0]:
            case "ok":
                expires = datetime.fromtimestamp(int(reply[2]) / 1000, UTC)
                return Hold(hold_id, int(reply[1]), expires)
            case "unknown_product":
                raise UnknownProduct(product_id)
            case _:
                raise OutOfStock(product_id, units, warehouse_id)


async def release_expired_holds(redis: RedisClient, now_ms: int | None = None) -> int:
    """Return the units of every expired hold to stock, all partitions in one pipeline per step.
    Returns how many holds were released."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    partitions = range(keys.PARTITIONS)
    pipe = redis.pipeline(transaction=False)
    for partition in partitions:
        pipe.zrangebyscore(keys.hold_expiries(partition), "-inf", now, 0, RELEASE_BATCH)
    expired: list[list[str]] = list(await pipe.execute())
    found = [(p, hold_id) for p, ids in zip(partitions, expired, strict=True) for hold_id in ids]
    if not found:
        return 0
    pipe = redis.pipeline(transaction=False)
    for partition, hold_id in found:
        pipe.hget(keys.hold(partition, hold_id), "product")
    products: list[str | None] = list(await pipe.execute())
    per_partition: dict[int, tuple[list[str], list[scripts.Arg]]] = {}
    for (partition, hold_id), product in zip(found, products, strict=True):
        script_keys, args = per_partition.setdefault(
            partition, ([keys.stream(partition), keys.hold_expiries(partition)], [now])
        )
        # A hold with no hash left is only removed from the set: any key of the slot will do.
        stock_key = keys.stock(partition, product) if product else keys.hold(partition, hold_id)
        script_keys += [keys.hold(partition, hold_id), stock_key]
        args.append(hold_id)
    calls = [(scripts.RELEASE_HOLDS, k, a) for k, a in per_partition.values()]
    released = 0
    for reply in await scripts.call_pipelined(redis, calls):
        if isinstance(reply, BaseException):
            raise reply
        released += int(reply)
    return released
