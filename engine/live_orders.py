"""Orders as Redis holds them while they are in flight: read one, cancel one, move one along its
lifecycle (`engine.lifecycle`). Each change is one command (`engine.commands`) with its own
operation ID, so the runner may send it twice without applying it twice."""

from __future__ import annotations

import time

from engine import commands, lifecycle, scripts
from engine.errors import OrderNotFound, OutcomeUnknown
from engine.ids import new_operation_id, partition_of_id
from engine.keys import order as order_key
from engine.orders import Order, OrderStatus
from engine.records import OrderRecord, decode_record
from stores.redis import RedisClient


async def read_record(redis: RedisClient, order_id: str) -> OrderRecord | None:
    """An order's record, or None when it is not (or no longer) live in Redis."""
    partition = partition_of_id(order_id)
    if partition is None:
        return None
    raw = await redis.get(order_key(partition, order_id))
    return None if raw is None else decode_record(raw)


class LiveOrders:
    def __init__(self, runner: scripts.ScriptRunner) -> None:
        self._runner = runner

    async def record(self, order_id: str) -> OrderRecord | None:
        return await read_record(self._runner.redis, order_id)

    async def get(self, order_id: str) -> Order | None:
        record = await self.record(order_id)
        return None if record is None else record.to_order(order_id)

    async def cancel(self, order_id: str) -> Order:
        """Cancel a confirmed order and return its units to stock, atomically."""
        record = await self.record(order_id)
        if record is None:
            raise OrderNotFound(order_id)
        command = commands.cancel_order(new_operation_id(), order_id, record.product_id, _now_ms())
        return await self._run(order_id, command)

    async def transition(
        self,
        order_id: str,
        target: OrderStatus,
        *,
        allowed_from: tuple[OrderStatus, ...] | None = None,
        warehouse_id: str = "",
        reason: str = "",
        expected_seq: int = 0,
    ) -> Order:
        """Move an order to `target` if the lifecycle allows it from its current status (checked
        inside Redis, so two callers cannot both move it). `allowed_from` narrows the statuses
        accepted; `warehouse_id`, when given, must be the warehouse that holds the order;
        `expected_seq`, when given, must still be the record's (the sweeper fails an order only
        if nothing happened to it since it was seen stuck: OrderMovedOn otherwise)."""
        sources = lifecycle.allowed_from(target) if allowed_from is None else allowed_from
        command = commands.transition_order(
            new_operation_id(),
            order_id,
            target,
            sources,
            _now_ms(),
            reason=reason,
            warehouse_id=warehouse_id,
            expected_seq=expected_seq,
        )
        return await self._run(order_id, command)

    async def _run(self, order_id: str, command: scripts.Command[OrderRecord]) -> Order:
        try:
            record = await self._runner.run(command)
        except OutcomeUnknown as unknown:
            raise unknown.about(order_id) from unknown
        return record.to_order(order_id)


def _now_ms() -> int:
    return int(time.time() * 1000)
