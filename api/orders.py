"""Order service: place an order (nearest warehouse with stock), read it with its status history,
cancel it, and take the carrier's delivery callback."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody

from api.auth import Caller, caller_may_touch, caller_of, require_owner
from api.metrics import Metrics
from api.state import Services
from api.types import AnyIdPath, Injected, Location, OrderId, ProductId
from engine.errors import HoldUnavailable, OrderNotFound
from engine.orders import MAX_ORDER_QUANTITY, Order, OrderRequest
from engine.reservations import ReservationEngine
from geo.rings import Point

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX_LENGTH: Final = 128
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_ORDER_QUANTITY)]


class PlaceOrder(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity
    customer_location: Location
    # A hold of POST /inventory/reserve: the order takes its units from it, at its warehouse.
    reservation_id: OrderId | None = None


class OrderPlaced(msgspec.Struct, rename="camel"):
    order_id: str
    status: str
    estimated_delivery: date


class StatusChange(msgspec.Struct):
    status: str
    at: datetime


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


REPLAYED_HEADERS: Final = {"Idempotent-Replayed": "true"}


class Placed(msgspec.Struct, frozen=True):
    body: OrderPlaced
    replayed: bool  # the confirmation an earlier request with the same Idempotency-Key got


async def place_order(
    engine: ReservationEngine,
    metrics: Metrics,
    caller: Caller | None,
    data: PlaceOrder,
    idempotency_key: str | None,
) -> Placed:
    """POST /orders once its caller is admitted and its body and headers are decoded: both ways
    in (the Litestar route and api.order_intake) place through here."""
    if caller is not None:
        idempotency_key = caller.idempotency_key(idempotency_key)
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
    try:
        with metrics.reservation_seconds.time():
            confirmation = await engine.place(order)
    except Exception as exc:
        outcome = metrics.order_failed(exc)
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
    body = OrderPlaced(confirmation.order_id, "confirmed", confirmation.estimated_delivery)
    metrics.orders["replayed" if confirmation.replayed else "confirmed"].inc()
    return Placed(body, confirmation.replayed)


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
        data: JSONBody[PlaceOrder],
        idempotency_key: IdempotencyKey = None,
    ) -> OrderPlaced | Response[OrderPlaced]:
        placed = await place_order(
            services.engine, metrics, caller_of(request), data, idempotency_key
        )
        if placed.replayed:
            return Response(placed.body, status_code=201, headers=REPLAYED_HEADERS)
        # A plain struct skips building a Response object: ~30 us less per order.
        return placed.body

    @get("/{order_id:str}")
    async def read(
        self, services: Injected[Services], request: Request[Any, Any, Any], order_id: AnyIdPath
    ) -> OrderView:
        require_owner(request, order_id)
        # Redis while the order is hot, PostgreSQL after (engine.live_orders).
        order = await services.live_orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return OrderView.of(
            order, _changes(await services.archive.history(order_id, services.postgres_breaker))
        )

    @post("/{order_id:str}/cancel", status_code=200)
    async def cancel(
        self, services: Injected[Services], request: Request[Any, Any, Any], order_id: AnyIdPath
    ) -> OrderView:
        require_owner(request, order_id)
        order = await services.live_orders.cancel(order_id)
        log.info("order cancelled", extra={"order_id": order_id, "status": order.status})
        return OrderView.of(order)

    @post("/{order_id:str}/delivered", status_code=200)
    async def delivered(self, services: Injected[Services], order_id: AnyIdPath) -> OrderView:
        """The carrier's callback: a shipped order was handed to the customer."""
        order = await services.live_orders.transition(order_id, "delivered")
        log.info("order delivered", extra={"order_id": order_id, "status": order.status})
        return OrderView.of(order)


def _changes(history: list[tuple[str, datetime]] | None) -> list[StatusChange] | None:
    return None if history is None else [StatusChange(status, at) for status, at in history]
