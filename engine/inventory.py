"""Live stock in Redis: read levels, set or adjust them (operators), hold units at one warehouse
(the sweep that gives expired holds back is `engine.hold_sweep`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from engine import clock, commands, keys, scripts
from engine.errors import HoldNotFound, UnknownProduct
from engine.ids import new_id, new_operation_id, partition_of_id

HOLD_TTL_S: Final = 15 * 60
# Stock hashes written before the partition's stream ordered the stock kept a version counter in
# this field (lua/includes/stock.lua); it is no warehouse.
LEGACY_VERSION_FIELD: Final = "_v"

StockChange = Literal["set", "adjust"]


@dataclass(frozen=True, slots=True)
class StockLevel:
    warehouse_id: str
    level: int


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    level: int  # the warehouse's level after the hold
    expires_at: datetime


def levels_in(stock_hash: Mapping[Any, Any]) -> dict[str, int]:
    """A product's stock hash as levels per warehouse."""
    return {str(w): int(level) for w, level in stock_hash.items() if w != LEGACY_VERSION_FIELD}


class Inventory:
    def __init__(self, runner: scripts.ScriptRunner) -> None:
        self._runner = runner

    async def levels(self, product_id: str) -> list[StockLevel]:
        """The level at each warehouse, read live from the decision point."""
        raw = await self._runner.redis.hgetall(
            keys.stock(keys.partition_of_product(product_id), product_id)
        )
        if not raw:
            raise UnknownProduct(product_id)
        return [StockLevel(w, level) for w, level in sorted(levels_in(raw).items())]

    async def change(
        self, product_id: str, warehouse_id: str, mode: StockChange, amount: int, reason: str
    ) -> int:
        """Set a level to `amount` (>= 0) or adjust it by `amount` (+/-); returns the new level."""
        build = commands.set_stock if mode == "set" else commands.adjust_stock
        return await self._runner.run(
            build(new_operation_id(), product_id, warehouse_id, amount, reason)
        )

    async def set_many(self, levels: list[tuple[str, str, int]], reason: str) -> None:
        """Set many (product, warehouse, level) levels in one pipeline (bulk restock, seeding)."""
        batch = [
            commands.set_stock(new_operation_id(), product_id, warehouse_id, level, reason)
            for product_id, warehouse_id, level in levels
        ]
        for result in await self._runner.run_all(batch):
            if isinstance(result, BaseException):
                raise result

    async def hold(
        self, product_id: str, warehouse_id: str, quantity: int, owner_tag: int | None = None
    ) -> Hold:
        """`owner_tag`: the holding storefront's, minted into the hold ID like an order's, so only
        it can use or release the hold."""
        hold_id = new_id(keys.partition_of_product(product_id), owner_tag=owner_tag)
        held = await self._runner.run(
            commands.hold_stock(
                hold_id, product_id, warehouse_id, quantity, clock.now_ms(), HOLD_TTL_S * 1000
            )
        )
        return Hold(hold_id, held.level, datetime.fromtimestamp(held.expires_ms / 1000, UTC))

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
