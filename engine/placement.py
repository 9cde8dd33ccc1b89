"""Placing an order: rank the warehouses, then `lua/place_orders.lua` decides atomically in Redis.

Concurrent orders are micro-batched: one EVALSHA per partition carries every order of that
partition, and one pipeline carries every partition, so a batch costs one round trip. The order ID
is minted before the first send and kept for every resend and every later attempt of the same
order, which is what makes a resend after a lost reply harmless: the script answers what it
decided for that ID instead of placing it again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from engine import clock, commands, keys, scripts
from engine.batching import Deliver, MicroBatcher, Release
from engine.commands import ArchivedCopy, Attempt, PlaceOutcome, StockBeyondRings
from engine.delivery import delivery_days
from engine.errors import DomainError, HoldUnavailable, OutcomeUnknown, OutOfStock, Overloaded
from engine.ids import new_id, new_operation_id, partition_of_id
from engine.keys import partition_of_product
from engine.live_orders import LiveOrders
from engine.orders import IDEMPOTENCY_TTL_S, Confirmation, Order, OrderRequest
from engine.records import OrderRecord
from engine.warehouses import Warehouses
from geo.distance import Point
from geo.rings import RankedSite

ORDERS_PER_SCRIPT_CALL: Final = 64
ORDERS_PER_BATCH: Final = 1024
BATCHES_IN_FLIGHT: Final = 4
# Orders waiting for a free batch slot, per worker: past this, or past the wait below, an order is
# refused at once (503 overloaded) rather than queued behind a Redis that does not keep up.
MAX_QUEUED_ORDERS: Final = 4096
MAX_QUEUE_WAIT_S: Final = 0.5
# A 'far' answer lists warehouses past the rings that had stock; by the next call another order
# may have taken it, so ask again a bounded number of times before calling it out of stock.
FAR_ATTEMPTS: Final = 3


class OrderPlacer:
    """Places orders. `batched=False` sends one EVALSHA per order (the baseline it is measured
    against); the decision, every reply and the fault handling are the same either way."""

    def __init__(
        self,
        runner: scripts.ScriptRunner,
        warehouses: Warehouses,
        *,
        orders: LiveOrders | None = None,
        batched: bool = True,
        idempotency_ttl_s: int = IDEMPOTENCY_TTL_S,
    ) -> None:
        """`orders` is where re-routing finds an order (None: in Redis only)."""
        self.runner = runner
        self._orders = orders or LiveOrders(runner, None)
        self._idempotency_ttl_s = idempotency_ttl_s
        self._warehouses = warehouses
        self._batcher: MicroBatcher[Attempt, PlaceOutcome] | None = None
        # Un-batched, the same bound on work in flight: one call per order.
        self._unbatched_slots = asyncio.Semaphore(MAX_QUEUED_ORDERS)
        if batched:
            self._batcher = MicroBatcher(
                self._send,
                max_items=ORDERS_PER_BATCH,
                max_in_flight=BATCHES_IN_FLIGHT,
                max_queued=MAX_QUEUED_ORDERS,
                max_wait_s=MAX_QUEUE_WAIT_S,
            )

    @property
    def queued(self) -> int:
        """Orders waiting to be sent (the bounded queue): for the metrics."""
        return 0 if self._batcher is None else self._batcher.queued

    def first_attempt(self, request: OrderRequest) -> Attempt:
        """A new order ID and the warehouses within the ring walk, nearest first."""
        partition = partition_of_product(request.product_id)
        candidates = self._warehouses.directory.candidates(request.customer)
        order_id = new_id(partition, owner_tag=request.owner_tag)
        return Attempt(order_id, partition, request, candidates)

    async def place(self, request: OrderRequest) -> Confirmation:
        if request.hold_id is not None:
            return await self._place_from_hold(request, request.hold_id)
        attempt = self.first_attempt(request)
        try:
            outcome = await self._attempt(attempt)
            for _ in range(FAR_ATTEMPTS):
                if not isinstance(outcome, StockBeyondRings):
                    break
                far = await self._rank_beyond_rings(request, outcome.warehouse_ids)
                outcome = await self._attempt(
                    Attempt(attempt.order_id, attempt.partition, request, _with_days(far))
                )
        except OutcomeUnknown as unknown:
            raise unknown.about(attempt.order_id) from unknown
        if isinstance(outcome, StockBeyondRings):
            raise OutOfStock(request.product_id, request.quantity)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def _place_from_hold(self, request: OrderRequest, hold_id: str) -> Confirmation:
        """The order takes its units from the hold, at the hold's warehouse (no ring walk: the
        storefront chose the warehouse when it held the units)."""
        partition = partition_of_product(request.product_id)
        if partition_of_id(hold_id) != partition:  # another product's hold, or no hold ID at all
            raise HoldUnavailable(hold_id, "other_product")
        held_at = await self.runner.redis.hget(keys.hold(partition, hold_id), "warehouse")
        if held_at is None:
            raise HoldUnavailable(hold_id, "gone")
        warehouse_id = str(held_at)
        if not warehouse_id:
            raise HoldUnavailable(hold_id, "gone")
        directory = self._warehouses.directory
        if warehouse_id not in directory:
            directory = await self._warehouses.reload()
        km = directory.distance_km(request.customer, warehouse_id)
        order_id = new_id(partition, owner_tag=request.owner_tag)
        attempt = Attempt(order_id, partition, request, ((warehouse_id, delivery_days(km)),))
        command = commands.place_from_hold(
            clock.now_ms(), attempt, hold_id, self._idempotency_ttl_s
        )
        try:
            outcome = await self.runner.run(command)
        except OutcomeUnknown as unknown:
            raise unknown.about(order_id) from unknown
        if isinstance(outcome, DomainError):
            raise outcome
        if not isinstance(outcome, Confirmation):
            raise commands.UnexpectedReply("place_from_hold", outcome)
        return outcome

    async def reroute(self, order_id: str, from_warehouse_id: str, reason: str) -> Order:
        """Move an order its warehouse cannot fulfil to the nearest other warehouse with the
        stock (every known warehouse is a candidate, ring walk first), atomically in Redis."""
        operation_id = new_operation_id()
        now_ms = clock.now_ms()

        def move(record: OrderRecord, copy: ArchivedCopy | None) -> scripts.Command[OrderRecord]:
            candidates = self._reroute_candidates(record, from_warehouse_id)
            return commands.reroute_order(
                operation_id, order_id, record, from_warehouse_id, candidates, reason, now_ms, copy
            )

        return await self._orders.change(order_id, move)

    def _reroute_candidates(
        self, record: OrderRecord, from_warehouse_id: str
    ) -> list[tuple[str, int]]:
        customer, directory = Point(record.lat, record.lon), self._warehouses.directory
        ranked = directory.nearest_first(customer)
        in_rings = {site_id for site_id, _ in ranked}
        rest = [w.warehouse_id for w in directory.all() if w.warehouse_id not in in_rings]
        return [
            (warehouse_id, days)
            for warehouse_id, days in _with_days([*ranked, *directory.by_distance(customer, rest)])
            if warehouse_id != from_warehouse_id
        ]

    async def _rank_beyond_rings(
        self, request: OrderRequest, warehouse_ids: list[str]
    ) -> list[RankedSite]:
        directory = self._warehouses.directory
        if any(w not in directory for w in warehouse_ids):
            # Stock at a warehouse this worker has not heard of yet: it was just created.
            directory = await self._warehouses.reload()
        return directory.by_distance(request.customer, warehouse_ids)

    async def _attempt(self, attempt: Attempt) -> PlaceOutcome:
        if self._batcher is not None:
            return await self._batcher.submit(attempt)
        try:
            async with asyncio.timeout(MAX_QUEUE_WAIT_S):
                await self._unbatched_slots.acquire()
        except TimeoutError:
            raise Overloaded(MAX_QUEUE_WAIT_S) from None
        try:
            command = commands.place_orders(clock.now_ms(), [attempt], self._idempotency_ttl_s)
            (outcome,) = await self.runner.run(command)
        finally:
            self._unbatched_slots.release()
        return outcome

    async def _send(
        self, attempts: list[Attempt], deliver: Deliver[PlaceOutcome], release: Release
    ) -> list[PlaceOutcome | BaseException]:
        by_partition: defaultdict[int, list[int]] = defaultdict(list)
        for i, attempt in enumerate(attempts):
            by_partition[attempt.partition].append(i)
        groups = [
            idx[start : start + ORDERS_PER_SCRIPT_CALL]
            for idx in by_partition.values()
            for start in range(0, len(idx), ORDERS_PER_SCRIPT_CALL)
        ]
        now_ms = clock.now_ms()
        calls = [
            commands.place_orders(now_ms, [attempts[i] for i in group], self._idempotency_ttl_s)
            for group in groups
        ]
        results: list[PlaceOutcome | BaseException] = [RuntimeError("no reply")] * len(attempts)

        def settle(call: int, result: Any) -> None:
            for position, i in enumerate(groups[call]):
                if isinstance(result, OutcomeUnknown):
                    results[i] = result.about(attempts[i].order_id)
                elif isinstance(result, BaseException):
                    results[i] = result
                else:
                    results[i] = result[position]
                deliver(i, results[i])

        await self.runner.run_all(calls, settle, on_resending=release)
        return results


def _with_days(ranked: Sequence[RankedSite]) -> tuple[tuple[str, int], ...]:
    return tuple((site_id, delivery_days(km)) for site_id, km in ranked)
