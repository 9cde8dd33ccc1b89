"""Baskets wherever they are, and their lifecycle: in Redis while hot, in PostgreSQL once their hot
window passed, read and changed the same way on both (as `engine.live_orders` does for
one-product orders: a command on a basket that left Redis carries the copy read from there).

Each shipment walks the lifecycle on its own (`engine.lifecycle`): its warehouse picks, packs and
ships it (`fulfill`), the carrier delivers it; the basket's status is its least advanced
shipment's, so it is shipped when every shipment is and delivered when every one is.

Cancelling gives every line's units back, and those live in other partitions than the basket:
lua/cancel_basket.lua cancels the basket and writes its parts down in one step, then each part
goes back in its own partition (lua/return_basket_units.lua, once per part whoever sends it). A
worker that dies in between leaves the basket among the partition's pending returns, which the
sweep (`return_units_of_cancelled_baskets`) finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import msgspec

from engine import clock, commands, keys, lifecycle, scripts
from engine.baskets import Basket, basket_of
from engine.commands import ArchivedCopy
from engine.errors import OrderNotFound
from engine.ids import is_basket_id, new_operation_id, partition_of_id
from engine.live_orders import change_located, locate_record
from engine.orders import OrderStatus
from engine.records import BasketRecord, decode_basket_record

# A cancelled basket still pending this long after its cancellation lost its worker: the sweep
# gives its units back.
RETURNS_GRACE_MS: Final = 10_000
RETURNS_PER_SWEEP: Final = 256
# A part is marked given back this long: far past any send of it by the worker (seconds) or by
# a sweep that read the basket's parts before the worker cleared them. Only a sweep stopped for
# longer, with a worker that died between giving the parts back and clearing them, would give
# them back again.
RETURNED_MARK_TTL_S: Final = 7 * 24 * 3600

BuildBasketChange = Callable[[ArchivedCopy | None], scripts.Command[BasketRecord]]
_PARTS: Final = msgspec.json.Decoder(list[tuple[str, str, int]])


class BasketArchive(Protocol):
    """Where a basket lives once it left Redis (PostgreSQL, `stores.order_archive`)."""

    async def basket_record(self, order_id: str) -> BasketRecord | None: ...


class LiveBaskets:
    def __init__(self, runner: scripts.ScriptRunner, archive: BasketArchive | None) -> None:
        """`archive=None`: baskets are looked for in Redis only (tools and tests without
        PostgreSQL); a basket that left Redis is then not found."""
        self._runner = runner
        self._archive = archive

    async def locate(self, order_id: str) -> tuple[BasketRecord, ArchivedCopy | None] | None:
        partition = partition_of_id(order_id)
        if partition is None or not is_basket_id(order_id):
            return None
        archive = self._archive
        return await locate_record(
            self._runner.redis,
            keys.basket(partition, order_id),
            decode_basket_record,
            None if archive is None else lambda: archive.basket_record(order_id),
        )

    async def get(self, order_id: str) -> Basket | None:
        located = await self.locate(order_id)
        return None if located is None else basket_of(order_id, located[0])

    async def step(
        self, order_id: str, target: OrderStatus, *, warehouse_id: str = "", reason: str = ""
    ) -> Basket:
        """Move the shipment at `warehouse_id` to `target` (every shipment that may move, when
        no warehouse is named), if the lifecycle allows it from where it stands."""
        operation_id = new_operation_id()
        return await self.change(
            order_id,
            lambda copy: commands.basket_step(
                operation_id,
                order_id,
                target,
                lifecycle.allowed_from(target),
                clock.now_ms(),
                warehouse_id=warehouse_id,
                reason=reason,
                copy=copy,
            ),
        )

    async def fulfill(self, order_id: str, warehouse_id: str) -> Basket:
        """Pick, pack and ship the shipment at `warehouse_id`, each step recorded; the walk
        resumes where the shipment stands, as for one-product orders (engine.fulfillment)."""
        basket = await self.get(order_id)
        if basket is None:
            raise OrderNotFound(order_id)
        shipment = next((s for s in basket.shipments if s.warehouse_id == warehouse_id), None)
        remaining = None if shipment is None else lifecycle.fulfilment_steps_from(shipment.status)
        if remaining is None:
            # Let the script refuse it, in its words: not this warehouse's, or past shipping.
            return await self.step(
                order_id, lifecycle.FULFILMENT_STEPS[-1], warehouse_id=warehouse_id
            )
        for step in remaining:
            basket = await self.step(order_id, step, warehouse_id=warehouse_id)
        return basket

    async def cancel(self, order_id: str) -> Basket:
        """Cancel a basket none of whose shipments started; every line's units go back."""
        operation_id = new_operation_id()
        cancelled = await self.change(
            order_id,
            lambda copy: commands.cancel_basket(operation_id, order_id, clock.now_ms(), copy),
        )
        parts = [
            (shipment.warehouse_id, line.product_id, line.quantity)
            for shipment in cancelled.shipments
            for line in shipment.items
        ]
        # Left pending when a part could not be given back now: the sweep finishes it.
        await _return_parts(self._runner, order_id, parts)
        return cancelled

    async def change(self, order_id: str, build: BuildBasketChange) -> Basket:
        """Run the command `build` makes (given the archived copy when the basket left Redis),
        wherever the basket is."""
        updated = await change_located(
            order_id,
            self.locate,
            self._runner.run,
            lambda _, copy: build(copy),
            self._archive is not None,
        )
        return basket_of(order_id, updated)


async def return_units_of_cancelled_baskets(
    runner: scripts.ScriptRunner, now_ms: int | None = None
) -> int:
    """The sweep's part: give back the units of baskets cancelled more than RETURNS_GRACE_MS ago
    whose worker did not finish (each part once, whoever sent it first). Returns how many
    baskets it finished."""
    now = clock.now_ms() if now_ms is None else now_ms
    redis = runner.redis
    finished = 0
    for partition in range(keys.PARTITIONS):
        pending: list[Any] = await redis.zrangebyscore(
            keys.basket_returns_pending(partition),
            "-inf",
            now - RETURNS_GRACE_MS,
            0,
            RETURNS_PER_SWEEP,
        )
        for order_id in pending:
            order_id = str(order_id)
            raw = await redis.get(keys.basket_returns(partition, order_id))
            parts = [] if raw is None else _PARTS.decode(raw)
            if await _return_parts(runner, order_id, parts):
                finished += 1
    return finished


async def _return_parts(
    runner: scripts.ScriptRunner, order_id: str, parts: Sequence[tuple[str, str, int]]
) -> bool:
    """Give the parts back and, once all are, forget the basket's pending returns; False when
    some part could not be given back now."""
    results = await runner.run_all(
        [
            commands.return_basket_units(order_id, i, w, p, q, RETURNED_MARK_TTL_S)
            for i, (w, p, q) in enumerate(parts)
        ]
    )
    if any(isinstance(result, BaseException) for result in results):
        return False
    partition = partition_of_id(order_id)
    assert partition is not None  # a basket's ID, minted here
    pipe = runner.redis.pipeline(transaction=True)
    pipe.zrem(keys.basket_returns_pending(partition), order_id)
    pipe.delete(keys.basket_returns(partition, order_id))
    await pipe.execute()
    return True
