"""Warehouse service, fulfilment: pick, pack and ship an order at the warehouse that holds it."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Literal

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


Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ReportUnfulfillable(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    warehouse_id: WarehouseId
    reason: Reason = "units damaged or missing"


class OrderRerouted(msgspec.Struct, rename="camel"):
    order_id: str
    status: str
    warehouse_id: str  # where it ships from now
    estimated_delivery: date


class FulfillmentController(Controller):
    path = "/warehouse"
    tags = ("warehouses",)

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

    @post("/unfulfillable", status_code=200)
    async def report_unfulfillable(
        self, state: State, data: JSONBody[ReportUnfulfillable]
    ) -> OrderRerouted:
        """The warehouse holding the order cannot fulfil it (units damaged or missing): the order
        moves to the nearest other warehouse with the stock, atomically; the customer is told by
        a `rerouted` notice. 409 `out_of_stock` when no other warehouse has it (order unchanged)."""
        order = await state.services.engine.reroute(data.order_id, data.warehouse_id, data.reason)
        log.info(
            "order re-routed",
            extra={"order_id": order.order_id, "from": data.warehouse_id, "to": order.warehouse_id},
        )
        return OrderRerouted(
            order.order_id, order.status, order.warehouse_id, order.estimated_delivery
        )
