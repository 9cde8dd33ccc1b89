"""Warehouse service, fulfilment: pick, pack and ship an order at the warehouse that holds it."""

from __future__ import annotations

import logging
from datetime import date
from typing import Literal, cast

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from api.orders import ShipmentView
from api.state import Services
from api.types import Injected, OrderId, Reason, WarehouseId
from engine.fulfillment import fulfill
from engine.ids import is_basket_id
from engine.orders import OrderStatus

log = logging.getLogger(__name__)


class FulfillOrder(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    warehouse_id: WarehouseId


class OrderFulfilled(msgspec.Struct, rename="camel", omit_defaults=True):
    """The brief's shape first (`status`, `message`: the call succeeded), then the order: its
    ID, where it shipped from and the status it reached. A basket's order is shipped only once
    every shipment is: `shipmentStatus` says this shipment's."""

    status: Literal["success"]
    message: Literal["Order fulfilled successfully"]
    order_id: str
    warehouse_id: str
    order_status: OrderStatus
    shipment_status: OrderStatus | None = None


class ReportUnfulfillable(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    warehouse_id: WarehouseId
    reason: Reason = "units damaged or missing"


class OrderRerouted(msgspec.Struct, rename="camel", omit_defaults=True):
    order_id: str
    status: str
    # Where it ships from now; a basket's re-routed lines may go to several: see `shipments`.
    warehouse_id: str | None
    estimated_delivery: date
    shipments: list[ShipmentView] | None = None  # a basket's, all of them, after the move


class FulfillmentController(Controller):
    path = "/warehouse"
    tags = ("warehouses",)

    @post("/fulfill", status_code=200)
    async def fulfill_order(
        self, services: Injected[Services], data: JSONBody[FulfillOrder]
    ) -> OrderFulfilled:
        """Walk the order confirmed -> picking -> packed -> shipped, each step recorded; the
        shipping notice follows from the `shipped` event (writers/notifier.py)."""
        if is_basket_id(data.order_id):
            basket = await services.live_baskets.fulfill(data.order_id, data.warehouse_id)
            log.info(
                "basket shipment shipped",
                extra={"order_id": basket.order_id, "warehouse_id": data.warehouse_id},
            )
            return OrderFulfilled(
                "success",
                "Order fulfilled successfully",
                basket.order_id,
                data.warehouse_id,
                cast(OrderStatus, basket.status),
                "shipped",
            )
        order = await fulfill(services.live_orders, data.order_id, data.warehouse_id)
        log.info(
            "order shipped",
            extra={"order_id": order.order_id, "warehouse_id": order.warehouse_id},
        )
        # fulfill() returns only once the order is shipped: any other end is an error raised.
        return OrderFulfilled(
            "success", "Order fulfilled successfully", order.order_id, order.warehouse_id, "shipped"
        )

    @post("/unfulfillable", status_code=200)
    async def report_unfulfillable(
        self, services: Injected[Services], data: JSONBody[ReportUnfulfillable]
    ) -> OrderRerouted:
        """The warehouse holding the order cannot fulfil it (units damaged or missing): the order
        moves to the nearest other warehouse with the stock, atomically; the customer is told by
        a `rerouted` notice. 409 `out_of_stock` when no other warehouse has it (order unchanged).
        A basket's shipment: its lines go to the warehouses that hold them (the allocation rule),
        merged into shipments of the basket not yet started there; `shipments` lists them all."""
        if is_basket_id(data.order_id):
            basket = await services.shipment_rerouter.reroute(
                data.order_id, data.warehouse_id, data.reason
            )
            log.info(
                "basket shipment re-routed",
                extra={"order_id": basket.order_id, "from": data.warehouse_id},
            )
            return OrderRerouted(
                basket.order_id,
                basket.status,
                None,
                basket.estimated_delivery,
                [ShipmentView.of(s) for s in basket.shipments],
            )
        order = await services.order_placer.reroute(data.order_id, data.warehouse_id, data.reason)
        log.info(
            "order re-routed",
            extra={"order_id": order.order_id, "from": data.warehouse_id, "to": order.warehouse_id},
        )
        return OrderRerouted(
            order.order_id, order.status, order.warehouse_id, order.estimated_delivery
        )
