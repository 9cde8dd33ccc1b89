"""Live stock in Redis: read levels, set or adjust them (operators), hold units at one warehouse
and give them back when the hold expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from engine import commands, keys, scripts
from engine.errors import HoldNotFound, UnknownProduct
from engine.ids import new_id, new_operation_id, partition_of_id

HOLD_TTL_S: Final = 15 * 60
RELEASE_BATCH: Final = 256  # expired holds released per partition per script call
# One sweep releases rounds of RELEASE_BATCH per partition until none is left or this is spent.
RELEASE_BUDGET_S: Final = 0.5
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
    def __init__(self, runner: scripts.ScriptRunner) -> None:
        self._runner = runner

    async def levels(self, product_id: str) -> list[StockLevel]:
        """Available units per warehouse, read live from the decision point."""
        raw = await self._runner.redis.hgetall(
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
        build = commands.set_stock if mode == "set" else commands.adjust_stock
        return await self._runner.run(
            build(new_operation_id(), product_id, warehouse_id, units, reason)
        )

    async def set_many(self, levels: list[tuple[str, str, int]], reason: str) -> None:
        """Set many (product, warehouse, units) levels in one pipeline (bulk restock, seeding)."""
        batch = [
            commands.set_stock(new_operation_id(), product_id, warehouse_id, units, reason)
            for product_id, warehouse_id, units in levels
        ]
        for result in await self._runner.run_all(batch):
            if isinstance(result, BaseException):
                raise result

    async def hold(
        self, product_id: str, warehouse_id: str, units: int, owner_tag: int | None = None
    ) -> Hold:
        """`owner_tag`: the holding storefront's, minted into the hold ID like an order's, so only
        it can use or release the hold."""
        hold_id = new_id(keys.partition_of_product(product_id), owner_tag=owner_tag)
        held = await self._runner.run(
            commands.hold_stock(
                hold_id, product_id, warehouse_id, units, _now_ms(), HOLD_TTL_S * 1000
            )
        )
        return Hold(hold_id, held.available, datetime.fromtimestamp(held.expires_ms / 1000, UTC))

    async def release(self, hold_id: str) -> int:
        """Give a hold's units back before it expires; returns the warehouse's new level."""
        partition = partition_of_id(hold_id)
        if partition is None:
            raise HoldNotFound(hold_id)
        product_id = await self._runner.redis.hget(keys.hold(partition, hold_id), "product")
        if product_id is None:
            raise HoldNotFound(hold_id)
        return await self._runner.run(
            commands.release_hold(new_operation_id(), hold_id, str(product_id))
        )


async def release_expired_holds(
    runner: scripts.ScriptRunner, now_ms: int | None = None, budget_s: float = RELEASE_BUDGET_S
) -> int:
    """Return the units of every expired hold to stock: rounds of up to RELEASE_BATCH holds per
    partition, all partitions in one pipeline per step, until none is left or `budget_s` is
    spent (the next sweep goes on from there). Returns how many holds were released."""
    now = _now_ms() if now_ms is None else now_ms
    give_up_at = time.monotonic() + budget_s
    released = 0
    while True:
        done, more = await _release_round(runner, now)
        released += done
        if not more or time.monotonic() >= give_up_at:
            return released


async def _release_round(runner: scripts.ScriptRunner, now: int) -> tuple[int, bool]:
    """One round; returns (holds released, whether a partition may have more)."""
    redis = runner.redis
    partitions = range(keys.PARTITIONS)
    pipe = redis.pipeline(transaction=False)
    for partition in partitions:
        pipe.zrangebyscore(keys.hold_expiries(partition), "-inf", now, 0, RELEASE_BATCH)
    expired: list[list[str]] = list(await pipe.execute())
    found = [(p, hold_id) for p, ids in zip(partitions, expired, strict=True) for hold_id in ids]
    if not found:
        return 0, False
    pipe = redis.pipeline(transaction=False)
    for partition, hold_id in found:
        pipe.hget(keys.hold(partition, hold_id), "product")
    products: list[str | None] = list(await pipe.execute())
    per_partition: dict[int, list[tuple[str, str | None]]] = {}
    for (partition, hold_id), product in zip(found, products, strict=True):
        per_partition.setdefault(partition, []).append((hold_id, product))
    batch = [
        commands.release_expired_holds(partition, now, holds)
        for partition, holds in per_partition.items()
    ]
    released = 0
    for result in await runner.run_all(batch):
        if isinstance(result, BaseException):
            raise result
        released += result
    return released, any(len(ids) == RELEASE_BATCH for ids in expired)


def _now_ms() -> int:
    return int(time.time() * 1000)
