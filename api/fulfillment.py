"""Warehouse service, fulfilment: pick, pack and ship an order at the warehouse that holds it."""

from __future__ import annotations

import logging
from typing import Final, Literal

import msgspec
from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.types import OrderId, WarehouseId
from engine.fulfillment import fulfill

log = logging.getLogger(__name__)


class FulfillOrder(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    warehouse_id: WarehouseId


class OrderFulfilled(msgspec.Struct, rename="camel"):
    order_id: str
    status: Literal["shipped"]
    warehouse_id: str


class FulfillmentController(Controller):
    path = "/warehouse"
    tags: Final = ["warehouses"]

    @post("/fulfill", status_code=200)
    async def fulfill_order(self, state: State, data: JSONBody[FulfillOrder]) -> OrderFulfilled:
        """Walk the order confirmed -> picking -> packed -> shipped, each step recorded; the
        shipping notice follows from the `shipped` event (writers/notifier.py)."""
        await fulfill(state.services.live_orders, data.order_id, data.warehouse_id)
        log.info(
            "order shipped",
            extra={"order_id": data.order_id, "warehouse_id": data.warehouse_id},
        )
        return OrderFulfilled(data.order_id, "shipped", data.warehouse_id)
