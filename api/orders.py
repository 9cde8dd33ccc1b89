"""Order service: place an order (one product at the nearest warehouse with stock, or a basket of
several at the fewest warehouses), read it with its status history, cancel it, and take the
carrier's delivery callback."""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, QueryParameter, SkipValidationMarker

from api.auth import Caller, caller_may_touch, caller_of, require_owner
from api.metrics import Metrics
from api.state import Services
from api.types import ID_PATTERN, AnyIdPath, Injected, Location, OrderId, ProductId
from engine.allocation import AllocationRule
from engine.baskets import (
    MAX_BASKET_LINES,
    Basket,
    BasketLine,
    BasketPlacer,
    BasketRequest,
    Shipment,
)
from engine.errors import HoldUnavailable, OrderNotFound
from engine.ids import is_basket_id
from engine.orders import MAX_ORDER_QUANTITY, Order, OrderRequest
from engine.placement import OrderPlacer
from geo.distance import Point

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX_LENGTH: Final = 128
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_ORDER_QUANTITY)]


class PlaceOrder(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity
    customer_location: Location
    # A hold of POST /inventory/reserve: the order takes its units from it, at its warehouse.
    reservation_id: OrderId | None = None


class BasketItem(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity


class PlaceBasket(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    items: Annotated[list[BasketItem], msgspec.Meta(min_length=1, max_length=MAX_BASKET_LINES)]
    customer_location: Location


# One product, or a basket (told apart by `items`, api.bodies.ChoiceDecoder); the schema
# declares the two as a oneOf.
OrderBody = PlaceOrder | PlaceBasket


class ShipmentPlaced(msgspec.Struct, rename="camel"):
    warehouse_id: str
    items: list[BasketItem]
    estimated_delivery: date


class OrderPlaced(msgspec.Struct, rename="camel", omit_defaults=True):
    order_id: str
    status: str
    estimated_delivery: date  # a basket's: its latest shipment's
    # A basket's only: where each line ships from, and which rule chose the warehouses.
    shipments: list[ShipmentPlaced] | None = None
    allocation: AllocationRule | None = None


class StatusChange(msgspec.Struct):
    status: str
    at: datetime


class ShipmentStatusChange(msgspec.Struct, rename="camel", omit_defaults=True):
    status: str
    at: datetime
    warehouse_id: str | None = None  # the shipment the step was about; none: the whole basket


class OrderView(msgspec.Struct, rename="camel", omit_defaults=True):
    order_id: str
    status: str
    product_id: str
    quantity: int
    warehouse_id: str
    customer_location: Location
    estimated_delivery: date
    created_at: datetime
    # Read from PostgreSQL, so it lags `status` (live from Redis) by the writers' backlog; left
    # out when PostgreSQL cannot be reached: reading an order must not depend on it.
    history: list[StatusChange] | None = None

    @classmethod
    def of(cls, order: Order, history: list[StatusChange] | None = None) -> OrderView:
        return cls(
            order_id=order.order_id,
            status=order.status,
            product_id=order.product_id,
            quantity=order.quantity,
            warehouse_id=order.warehouse_id,
            customer_location=Location(order.customer.lat, order.customer.lon),
            estimated_delivery=order.estimated_delivery,
            created_at=order.created_at,
            history=history,
        )


class ShipmentView(msgspec.Struct, rename="camel"):
    warehouse_id: str
    status: str
    items: list[BasketItem]
    estimated_delivery: date

    @classmethod
    def of(cls, shipment: Shipment) -> ShipmentView:
        return cls(
            shipment.warehouse_id,
            shipment.status,
            _items(shipment.items),
            shipment.estimated_delivery,
        )


class BasketView(msgspec.Struct, rename="camel", omit_defaults=True):
    """A basket as GET /orders/{orderId} shows it: its lines and where each ships from."""

    order_id: str
    status: str  # its least advanced shipment's; shipped when every shipment is
    items: list[BasketItem]
    shipments: list[ShipmentView]
    allocation: AllocationRule
    customer_location: Location
    estimated_delivery: date
    created_at: datetime
    history: list[ShipmentStatusChange] | None = None  # as for OrderView

    @classmethod
    def of(cls, basket: Basket, history: list[ShipmentStatusChange] | None = None) -> BasketView:
        return cls(
            order_id=basket.order_id,
            status=basket.status,
            items=_items(basket.lines),
            shipments=[ShipmentView.of(s) for s in basket.shipments],
            allocation=basket.rule,
            customer_location=Location(basket.customer.lat, basket.customer.lon),
            estimated_delivery=basket.estimated_delivery,
            created_at=basket.created_at,
            history=history,
        )


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        description="Retries with the same key get the same answer and create one order.",
    ),
]


ShipmentWarehouse = Annotated[
    str | None,
    QueryParameter(
        name="warehouseId",
        required=False,
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="A basket's shipment: the warehouse it ships from (default: every shipment "
        "shipped). For a one-product order, its warehouse (default: any).",
    ),
]


REPLAYED_HEADERS: Final = {"Idempotent-Replayed": "true"}


class Placed(msgspec.Struct, frozen=True):
    body: OrderPlaced
    replayed: bool  # the confirmation an earlier request with the same Idempotency-Key got


async def place_order(
    services: Services,
    metrics: Metrics,
    caller: Caller | None,
    data: OrderBody,
    idempotency_key: str | None,
) -> Placed:
    """POST /orders once its caller is admitted and its body and headers are decoded: both ways
    in (the Litestar route and api.order_intake) place through here."""
    if caller is not None:
        idempotency_key = caller.idempotency_key(idempotency_key)
    if isinstance(data, PlaceBasket):
        return await _place_basket(services.baskets, metrics, caller, data, idempotency_key)
    return await _place_one(services.order_placer, metrics, caller, data, idempotency_key)


async def _place_one(
    order_placer: OrderPlacer,
    metrics: Metrics,
    caller: Caller | None,
    data: PlaceOrder,
    idempotency_key: str | None,
) -> Placed:
    order = OrderRequest(
        product_id=data.product_id,
        quantity=data.quantity,
        customer=Point(data.customer_location.lat, data.customer_location.lon),
        idempotency_key=idempotency_key,
        # Ownership rides in the order ID: no write per order records it (engine.ids).
        owner_tag=None if caller is None else caller.owner_tag,
        hold_id=data.reservation_id,
    )
    if data.reservation_id is not None and not caller_may_touch(caller, data.reservation_id):
        raise HoldUnavailable(data.reservation_id, "gone")  # another's hold: as if gone
    started = time.perf_counter()
    try:
        confirmation = await order_placer.place(order)
    except Exception as exc:
        outcome = metrics.order_failed(exc, time.perf_counter() - started)
        # No order ID exists for a refused order (the engine's is never stored): the request
        # identifies it. Successes are not logged: one line per order is too hot.
        log.info(
            "order not placed: %s",
            outcome,
            extra={
                "outcome": outcome,
                "product_id": data.product_id,
                "quantity": data.quantity,
                "idempotency_key": idempotency_key,
            },
        )
        raise
    metrics.order_placed(confirmation.replayed, time.perf_counter() - started)
    body = OrderPlaced(confirmation.order_id, "confirmed", confirmation.estimated_delivery)
    return Placed(body, confirmation.replayed)


async def _place_basket(
    baskets: BasketPlacer,
    metrics: Metrics,
    caller: Caller | None,
    data: PlaceBasket,
    idempotency_key: str | None,
) -> Placed:
    request = BasketRequest(
        lines=_distinct_lines(data.items),
        customer=Point(data.customer_location.lat, data.customer_location.lon),
        idempotency_key=idempotency_key,
        owner_tag=None if caller is None else caller.owner_tag,
    )
    started = time.perf_counter()
    try:
        confirmation = await baskets.place(request)
    except Exception as exc:
        outcome = metrics.order_failed(exc, time.perf_counter() - started)
        log.info(
            "basket not placed: %s",
            outcome,
            extra={
                "outcome": outcome,
                "lines": len(request.lines),
                "idempotency_key": idempotency_key,
            },
        )
        raise
    basket = confirmation.basket
    body = OrderPlaced(
        basket.order_id,
        "confirmed",
        basket.estimated_delivery,
        shipments=[
            ShipmentPlaced(s.warehouse_id, _items(s.items), s.estimated_delivery)
            for s in basket.shipments
        ],
        allocation=basket.rule,
    )
    metrics.order_placed(confirmation.replayed, time.perf_counter() - started)
    return Placed(body, confirmation.replayed)


def _distinct_lines(items: list[BasketItem]) -> tuple[BasketLine, ...]:
    seen: set[str] = set()
    for item in items:
        if item.product_id in seen:
            raise ValidationException(
                f"product {item.product_id!r} is in more than one line",
                extra=[
                    {
                        "message": f"product {item.product_id!r} is in more than one line: "
                        "give each product once, with its whole quantity",
                        "key": "items",
                        "source": "body",
                    }
                ],
            )
        seen.add(item.product_id)
    return tuple(BasketLine(item.product_id, item.quantity) for item in items)


def _items(lines: tuple[BasketLine, ...]) -> list[BasketItem]:
    return [BasketItem(line.product_id, line.quantity) for line in lines]


class OrderController(Controller):
    path = "/orders"
    tags = ("orders",)

    # Always an OrderPlaced (a replay adds a header): declared as such, where the return type's
    # union with Response would give the schema a `oneOf` that no answer can match.
    @post(
        "/",
        status_code=201,
        responses={201: ResponseSpec(OrderPlaced, description="confirmed (or replayed)")},
    )
    async def place(
        self,
        services: Injected[Services],
        metrics: Injected[Metrics],
        request: Request[Any, Any, Any],
        # Not validated again by Litestar: api.bodies decoded it strictly, whichever kind it is.
        data: Annotated[OrderBody, SkipValidationMarker(), JSONBody],
        idempotency_key: IdempotencyKey = None,
    ) -> OrderPlaced | Response[OrderPlaced]:
        placed = await place_order(services, metrics, caller_of(request), data, idempotency_key)
        if placed.replayed:
            return Response(placed.body, status_code=201, headers=REPLAYED_HEADERS)
        # A plain struct skips building a Response object, a cost paid per order.
        return placed.body

    @get("/{order_id:str}")
    async def read(
        self, services: Injected[Services], request: Request[Any, Any, Any], order_id: AnyIdPath
    ) -> OrderView | BasketView:
        require_owner(request, order_id)
        # Redis while the order is hot, PostgreSQL after (engine.live_orders, engine.live_baskets).
        archive, breaker = services.archive, services.postgres_breaker
        if is_basket_id(order_id):
            basket = await services.live_baskets.get(order_id)
            if basket is None:
                raise OrderNotFound(order_id)
            steps = await archive.basket_history(order_id, breaker)
            return BasketView.of(
                basket,
                None if steps is None else [ShipmentStatusChange(*step) for step in steps],
            )
        order = await services.live_orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return OrderView.of(order, _changes(await archive.history(order_id, breaker)))

    @post("/{order_id:str}/cancel", status_code=200)
    async def cancel(
        self, services: Injected[Services], request: Request[Any, Any, Any], order_id: AnyIdPath
    ) -> OrderView | BasketView:
        """Cancel an order none of whose units left; every line's units go back to stock."""
        require_owner(request, order_id)
        if is_basket_id(order_id):
            basket = await services.live_baskets.cancel(order_id)
            log.info("basket cancelled", extra={"order_id": order_id, "status": basket.status})
            return BasketView.of(basket)
        order = await services.live_orders.cancel(order_id)
        log.info("order cancelled", extra={"order_id": order_id, "status": order.status})
        return OrderView.of(order)

    @post("/{order_id:str}/delivered", status_code=200)
    async def delivered(
        self,
        services: Injected[Services],
        order_id: AnyIdPath,
        warehouse_id: ShipmentWarehouse = None,
    ) -> OrderView | BasketView:
        """The carrier's callback: a shipped order was handed to the customer. For a basket,
        the shipment from `warehouseId`, or every shipped shipment when none is named; the
        basket is delivered when every shipment is."""
        if is_basket_id(order_id):
            basket = await services.live_baskets.step(
                order_id, "delivered", warehouse_id=warehouse_id or ""
            )
            log.info(
                "basket delivered",
                extra={"order_id": order_id, "status": basket.status, "warehouse_id": warehouse_id},
            )
            return BasketView.of(basket)
        order = await services.live_orders.transition(
            order_id, "delivered", warehouse_id=warehouse_id or ""
        )
        log.info("order delivered", extra={"order_id": order_id, "status": order.status})
        return OrderView.of(order)


def _changes(history: list[tuple[str, datetime]] | None) -> list[StatusChange] | None:
    return None if history is None else [StatusChange(status, at) for status, at in history]
