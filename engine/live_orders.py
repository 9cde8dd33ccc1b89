"""Orders as Redis holds them while they are in flight: read one, cancel one."""

from __future__ import annotations

import time
from dataclasses import replace

from engine import keys, scripts
from engine.errors import InvalidTransition, OrderNotFound
from engine.ids import partition_of_id
from engine.orders import Order
from engine.records import decode_record
from stores.redis import RedisClient


class LiveOrders:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def get(self, order_id: str) -> Order | None:
        partition = partition_of_id(order_id)
        if partition is None:
            return None
        raw = await self._redis.get(keys.order(partition, order_id))
        return None if raw is None else decode_record(raw).to_order(order_id)

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
