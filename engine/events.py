"""The engine's events as the Lua scripts append them to the partition streams `events:{tag}`,
decoded once at the edge (every field of a stream entry is a string). Every reader (the writers'
consumer groups, the API's live stock feed) decodes through `decode_event`.

Names on the wire are the code's: `order_id` is an order's ID, `level` a warehouse's level after
the change. Entries written before those names (`order`, `available`) are still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from engine.records import (
    BasketRecord,
    EpochMs,
    OrderRecord,
    decode_basket_record,
    decode_record,
)


class OrderConfirmed(msgspec.Struct, array_like=True, frozen=True):
    """One order of an `orders.confirmed` event: [orderId, record, level]."""

    order_id: str
    record: OrderRecord
    level: int  # its warehouse's level after it

    @property
    def product(self) -> str:
        return self.record.product_id


class OrdersConfirmed(msgspec.Struct, frozen=True, tag_field="type", tag="orders.confirmed"):
    """Every order one script call confirmed, in the order it decided them: one stream entry per
    call rather than per order (lua/includes/confirm_order.lua, append_confirmed)."""

    orders: tuple[OrderConfirmed, ...]

    @property
    def products(self) -> set[str]:
        return {placed.product for placed in self.orders}


class OrderCancelled(msgspec.Struct, frozen=True, tag_field="type", tag="order.cancelled"):
    order_id: str
    record: OrderRecord  # as it stands after the cancellation
    at_ms: EpochMs
    level: int  # its warehouse's level after the units came back

    @property
    def product(self) -> str:
        return self.record.product_id


class OrderStatusChanged(msgspec.Struct, frozen=True, tag_field="type", tag="order.status"):
    """A lifecycle step (lua/transition.lua): picking, packed, shipped, delivered or failed."""

    order_id: str
    record: OrderRecord  # as it stands after the change; record.status is the new status
    at_ms: EpochMs
    reason: str = ""

    @property
    def product(self) -> str:
        return self.record.product_id


class OrderRerouted(msgspec.Struct, frozen=True, tag_field="type", tag="order.rerouted"):
    """lua/reroute.lua: the order moved to another warehouse, its units taken there."""

    order_id: str
    record: OrderRecord  # as it stands after: the new warehouse, status confirmed
    from_warehouse: str
    at_ms: EpochMs
    reason: str
    level: int  # at the new warehouse, after the order took its units

    @property
    def product(self) -> str:
        return self.record.product_id


class StockChanged(msgspec.Struct, frozen=True, tag_field="type", tag="stock.changed"):
    product: str
    warehouse: str
    level: int  # after the change
    reason: str


class StockHeld(msgspec.Struct, frozen=True, tag_field="type", tag="stock.held"):
    hold: str
    product: str
    warehouse: str
    quantity: int  # held
    level: int  # the warehouse's level after the hold


class BasketConfirmed(msgspec.Struct, frozen=True, tag_field="type", tag="basket.confirmed"):
    """lua/commit_basket.lua: a basket placed, every line held at its shipment's warehouse."""

    order_id: str
    record: BasketRecord


class BasketChanged(msgspec.Struct, frozen=True, tag_field="type", tag="basket.changed"):
    """A basket's lifecycle step, of one shipment or of the whole basket: the record as it
    stands after it, with each shipment's status and the basket's own."""

    order_id: str
    record: BasketRecord
    at_ms: EpochMs
    warehouse: str = ""  # the shipment that moved; '' when the whole basket did (cancelled)
    reason: str = ""


Event = (
    OrdersConfirmed
    | OrderCancelled
    | OrderStatusChanged
    | OrderRerouted
    | StockChanged
    | StockHeld
    | BasketConfirmed
    | BasketChanged
)
# The events whose fields convert as they stand (OrdersConfirmed carries its orders as one JSON
# text, decoded by _orders_confirmed).
EVENT_TYPES: Final[dict[str, type[Event]]] = {
    str(t.__struct_config__.tag): t
    for t in (
        OrderCancelled,
        OrderStatusChanged,
        OrderRerouted,
        StockChanged,
        StockHeld,
        BasketConfirmed,
        BasketChanged,
    )
}
# Events whose `record` is a basket's (engine/records.py, BasketRecord), not an order's.
_BASKET_EVENTS: Final = frozenset({BasketConfirmed, BasketChanged})


class UnknownEvent(msgspec.Struct, frozen=True):
    """A type no writer knows (a newer producer): acked and ignored."""

    type: str


class MalformedEvent(msgspec.Struct, frozen=True):
    """A known type whose fields do not decode: a producer bug. A writer moves it to the dead
    letters at once (`writers/dead_letters.py`), where a person looks."""

    error: str


# Its `orders` field is one JSON text: decoded in one pass, records included (strict=False: a
# record's location is written as text).
_CONFIRMED_ORDERS: Final = msgspec.json.Decoder(tuple[OrderConfirmed, ...], strict=False)
# The entry a script appended per confirmed order before OrdersConfirmed: still read, so that
# entries written by an older engine are persisted after an upgrade, not ignored.
ONE_ORDER_CONFIRMED: Final = "order.confirmed"
# Field names an older engine wrote, and the names they go by now: an entry it left in a stream
# is read after an upgrade as if written under the new names (`with_current_names`).
RENAMED_FIELDS: Final = {"order": "order_id", "available": "level"}


def with_current_names(fields: Mapping[str, str]) -> Mapping[str, str]:
    """`fields` under today's names: itself when it has no old name (every entry written since)."""
    if "order" not in fields and "available" not in fields:
        return fields
    return {RENAMED_FIELDS.get(name, name): value for name, value in fields.items()}


def decode_event(fields: Mapping[str, str]) -> Event | UnknownEvent | MalformedEvent:
    fields = with_current_names(fields)
    kind = fields.get("type", "")
    if kind == OrdersConfirmed.__struct_config__.tag or kind == ONE_ORDER_CONFIRMED:
        return _orders_confirmed(fields)
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        return UnknownEvent(kind) if kind else MalformedEvent("no 'type' field")
    try:
        # strict=False: the numeric fields arrive as strings and are parsed here, once. The
        # concrete type, not the tagged union: converting to the union is several times slower.
        # The order record is a JSON text inside the entry: decoded here too, in one place.
        decoded: Mapping[str, object] = fields
        if "record" in fields:
            read = decode_basket_record if event_type in _BASKET_EVENTS else decode_record
            decoded = {**fields, "record": read(fields["record"])}
        event: Event = msgspec.convert(decoded, event_type, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return MalformedEvent(str(exc))
    return event


def _orders_confirmed(fields: Mapping[str, str]) -> OrdersConfirmed | MalformedEvent:
    try:
        if fields["type"] == ONE_ORDER_CONFIRMED:
            one = [fields["order_id"], decode_record(fields["record"]), fields["level"]]
            return OrdersConfirmed((msgspec.convert(one, OrderConfirmed, strict=False),))
        return OrdersConfirmed(_CONFIRMED_ORDERS.decode(fields["orders"]))
    except KeyError as missing:
        return MalformedEvent(f"no {missing} field")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return MalformedEvent(str(exc))


def order_ids_of(fields: Mapping[str, str]) -> str:
    """The orders a stream entry is about, comma-separated, for logs and the dead-letter list;
    '' for stock events and for an entry that does not decode."""
    fields = with_current_names(fields)
    if "order_id" in fields:
        return fields["order_id"]
    event = decode_event(fields) if "orders" in fields else None
    if isinstance(event, OrdersConfirmed):
        return ",".join(placed.order_id for placed in event.orders)
    return ""


def orders_in(event: Event | UnknownEvent | MalformedEvent) -> int:
    """How many orders an entry carries, for sizing reads: an `orders.confirmed` entry every
    order of its script call, any other one."""
    return len(event.orders) if isinstance(event, OrdersConfirmed) else 1
