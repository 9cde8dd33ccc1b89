"""Inventory service: live stock levels (read, or streamed as they change), holds at a named
warehouse, operator restock/adjust."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import caller_of, may_touch
from api.state import Services
from api.stock_feed import Dropped, StockFeed, Subscription
from api.types import (
    AnyIdPath,
    Injected,
    ProductId,
    ProductIdPath,
    ProductIdQuery,
    Reason,
    WarehouseId,
    WarehouseIdPath,
)
from engine.errors import HoldNotFound, UnknownWarehouse
from engine.inventory import StockChange

MAX_STOCK_UNITS: Final = 1_000_000_000
HoldQuantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_STOCK_UNITS)]
Level = Annotated[int, msgspec.Meta(ge=0, le=MAX_STOCK_UNITS)]
Delta = Annotated[int, msgspec.Meta(ge=-MAX_STOCK_UNITS, le=MAX_STOCK_UNITS)]
# A comment line this often keeps a quiet stream open through proxies (nginx cuts at 60 s idle).
STREAM_PING_S: Final = 15.0


class StockLevelOut(msgspec.Struct, rename="camel"):
    warehouse_id: str
    quantity: int


class ProductStock(msgspec.Struct, rename="camel"):
    product_id: str
    stock_levels: list[StockLevelOut]


# POST /inventory/reserve: what the API calls a reservation is a hold (engine.inventory). These
# structs keep the path's name, which is also their OpenAPI schema's.
class ReserveStock(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    product_id: ProductId
    warehouse_id: WarehouseId
    quantity: HoldQuantity


class HoldReleased(msgspec.Struct, rename="camel"):
    status: str
    reservation_id: str


class StockReserved(msgspec.Struct, rename="camel"):
    status: str
    message: str
    reservation_id: str
    expires_at: datetime


class SetStock(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Level  # the API calls a level `quantity`
    reason: Reason = "restock"


class AdjustStock(msgspec.Struct, forbid_unknown_fields=True):
    delta: Delta
    reason: Reason = "adjustment"


class StockLevelChanged(msgspec.Struct, rename="camel"):
    product_id: str
    warehouse_id: str
    quantity: int


class StockChangeOut(msgspec.Struct, rename="camel"):
    product_id: str
    warehouse_id: str
    quantity: int
    reason: str


class LowStockOut(msgspec.Struct, rename="camel"):
    product_id: str
    warehouse_id: str
    quantity: int
    threshold: int


class StreamDropped(msgspec.Struct):
    reason: str


class InventoryController(Controller):
    path = "/inventory"
    tags = ("inventory",)

    @get("/")
    async def levels(
        self, services: Injected[Services], product_id: ProductIdQuery
    ) -> ProductStock:
        levels = await services.inventory.levels(product_id)
        return ProductStock(product_id, [StockLevelOut(lv.warehouse_id, lv.level) for lv in levels])

    @get("/stream")
    async def stream(
        self, services: Injected[Services], product_id: ProductIdQuery
    ) -> ServerSentEvent:
        """Server-Sent Events: `levels` (as GET /inventory) first, then a `stock` event per change
        of a level, `low_stock` after a change to or below the product's threshold, and `dropped`
        (the stream then ends) when this client fell too far behind."""
        # Read once here so an unknown product is a 404, not a stream that ends at once.
        await services.inventory.levels(product_id)
        return ServerSentEvent(_stock_events(services, product_id))

    @post("/reserve", status_code=200)
    async def reserve(
        self,
        services: Injected[Services],
        request: Request[Any, Any, Any],
        data: JSONBody[ReserveStock],
    ) -> StockReserved:
        """Hold units at one named warehouse; the hold expires unless an order takes it."""
        await _require_warehouse(services, data.warehouse_id)
        caller = caller_of(request)
        held = await services.inventory.hold(
            data.product_id,
            data.warehouse_id,
            data.quantity,
            owner_tag=None if caller is None else caller.owner_tag,
        )
        return StockReserved(
            "success", "Stock reserved successfully", held.hold_id, held.expires_at
        )

    @delete("/reservations/{reservation_id:str}", status_code=200)
    async def release(
        self,
        services: Injected[Services],
        request: Request[Any, Any, Any],
        reservation_id: AnyIdPath,
    ) -> HoldReleased:
        """Release a hold before it expires: its units go back to its warehouse. A hold an order
        took, or that was released or expired, is 404: its units never come back twice."""
        if not may_touch(request, reservation_id):
            raise HoldNotFound(reservation_id)  # another's hold: as if unknown
        await services.inventory.release(reservation_id)
        return HoldReleased("released", reservation_id)

    @put("/{product_id:str}/stock/{warehouse_id:str}", tags=["operators"])
    async def set_level(
        self,
        services: Injected[Services],
        product_id: ProductIdPath,
        warehouse_id: WarehouseIdPath,
        data: JSONBody[SetStock],
    ) -> StockLevelChanged:
        """Set a level outright (restock or count); creates the product on first use."""
        return await _change_level(
            services, product_id, warehouse_id, "set", data.quantity, data.reason
        )

    @post("/{product_id:str}/stock/{warehouse_id:str}/adjust", status_code=200, tags=["operators"])
    async def adjust_level(
        self,
        services: Injected[Services],
        product_id: ProductIdPath,
        warehouse_id: WarehouseIdPath,
        data: JSONBody[AdjustStock],
    ) -> StockLevelChanged:
        """Add (delta > 0) or remove (delta < 0) units; never takes a level below zero."""
        return await _change_level(
            services, product_id, warehouse_id, "adjust", data.delta, data.reason
        )


async def _stock_events(
    services: Injected[Services], product_id: str
) -> AsyncIterator[ServerSentEventMessage]:
    feed: StockFeed = services.stock_feed
    # Subscribed inside the generator: its `finally` runs only once it has started, and it is
    # subscribed before the levels are read, so no change falls between the two (one may come
    # twice, harmless: every event carries the level, not a difference).
    subscription = await feed.subscribe(product_id)
    try:
        levels = await services.inventory.levels(product_id)
        current = ProductStock(
            product_id, [StockLevelOut(lv.warehouse_id, lv.level) for lv in levels]
        )
        yield ServerSentEventMessage(msgspec.json.encode(current), event="levels")
        async for message in _changes(subscription):
            yield message
    finally:
        feed.unsubscribe(subscription)


async def _changes(subscription: Subscription) -> AsyncIterator[ServerSentEventMessage]:
    while True:
        item = await subscription.next(STREAM_PING_S)
        if item is None:
            yield ServerSentEventMessage(None, comment="ping")
        elif isinstance(item, Dropped):
            yield ServerSentEventMessage(
                msgspec.json.encode(StreamDropped(item.reason)), event="dropped"
            )
            return
        else:
            c = item.change
            out = StockChangeOut(c.product_id, c.warehouse_id, c.level, c.reason)
            yield ServerSentEventMessage(msgspec.json.encode(out), event="stock", id=item.entry_id)
            threshold = item.low_threshold_units
            if threshold is not None:
                low = LowStockOut(c.product_id, c.warehouse_id, c.level, threshold)
                yield ServerSentEventMessage(msgspec.json.encode(low), event="low_stock")


async def _change_level(
    services: Injected[Services],
    product_id: str,
    warehouse_id: str,
    mode: StockChange,
    amount: int,
    reason: str,
) -> StockLevelChanged:
    await _require_warehouse(services, warehouse_id)
    level = await services.inventory.change(product_id, warehouse_id, mode, amount, reason)
    return StockLevelChanged(product_id, warehouse_id, level)


async def _require_warehouse(services: Injected[Services], warehouse_id: str) -> None:
    if await services.warehouses.find(warehouse_id) is None:
        raise UnknownWarehouse(warehouse_id)
