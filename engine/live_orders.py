"""Orders as Redis holds them while they are in flight: read one, cancel one, move one along its
lifecycle (`engine.lifecycle`)."""

from __future__ import annotations

import time
from dataclasses import replace

from engine import keys, lifecycle, scripts
from engine.errors import InvalidTransition, OrderNotFound, WrongWarehouse
from engine.ids import partition_of_id
from engine.orders import Order, OrderStatus
from engine.records import OrderRecord, decode_record
from stores.redis import RedisClient


async def read_record(redis: RedisClient, order_id: str) -> tuple[int, OrderRecord] | None:
    """An order's partition and record, or None when it is not (or no longer) live in Redis."""
    partition = partition_of_id(order_id)
    if partition is None:
        return None
    raw = await redis.get(keys.order(partition, order_id))
    return None if raw is None else (partition, decode_record(raw))


class LiveOrders:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def get(self, order_id: str) -> Order | None:
        live = await read_record(self._redis, order_id)
        return None if live is None else live[1].to_order(order_id)

    async def cancel(self, order_id: str) -> Order:
        """Cancel a confirmed order and return its units to stock, atomically."""
        order = await self.get(order_id)
        partition = partition_of_id(order_id)
        if order is None or partition is None:
            raise OrderNotFound(order_id)
        reply = await scripts.call(
            self._redis,
            scripts.CANCEL,
            [
                keys.stream(partition),
                keys.order(partition, order_id),
                keys.stock(partition, order.product_id),
            ],
            [order_id, order.product_id, int(time.time() * 1000)],
        )
        match reply[0]:
            case "ok":
                return replace(order, status="cancelled")
            case "bad_state":
                raise InvalidTransition(order_id, reply[1], "cancelled")
            case _:
                raise OrderNotFound(order_id)

    async def transition(
        self,
        order_id: str,
        target: OrderStatus,
        *,
        allowed_from: tuple[OrderStatus, ...] | None = None,
        warehouse_id: str = "",
        reason: str = "",
    ) -> Order:
        """Move an order to `target` if the lifecycle allows it from its current status (checked
        inside Redis, so two callers cannot both move it). `allowed_from` narrows the statuses
        accepted (the sweeper fails an order only if it is still where it was seen stuck);
        `warehouse_id`, when given, must be the warehouse that holds the order."""
        partition = partition_of_id(order_id)
        if partition is None:
            raise OrderNotFound(order_id)
        sources = lifecycle.allowed_from(target) if allowed_from is None else allowed_from
        reply = await scripts.call(
            self._redis,
            scripts.TRANSITION,
            [keys.stream(partition), keys.order(partition, order_id)],
            [order_id, target, int(time.time() * 1000), reason, warehouse_id, *sources],
        )
        match reply[0]:
            case "ok":
                return decode_record(reply[1]).to_order(order_id)
            case "bad_state":
                raise InvalidTransition(order_id, reply[1], target)
            case "wrong_warehouse":
                raise WrongWarehouse(order_id, warehouse_id)
            case _:
                raise OrderNotFound(order_id)
