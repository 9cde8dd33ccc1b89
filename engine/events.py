"""The engine's events as the Lua scripts append them to the partition streams `events:{tag}`,
decoded once at the edge (every field of a stream entry is a string). Every reader (the writers'
consumer groups, the API's live stock feed) decodes through `decode_event`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from engine.records import EpochMs, OrderRecord, decode_record


class OrderConfirmed(msgspec.Struct, frozen=True, tag_field="type", tag="order.confirmed"):
    order: str
    record: OrderRecord
    available: int

    @property
    def product(self) -> str:
        return self.record.product_id


class OrderCancelled(msgspec.Struct, frozen=True, tag_field="type", tag="order.cancelled"):
    order: str
    record: OrderRecord  # as it stands after the cancellation
    at_ms: EpochMs
    available: int

    @property
    def product(self) -> str:
        return self.record.product_id


class OrderStatusChanged(msgspec.Struct, frozen=True, tag_field="type", tag="order.status"):
    """A lifecycle step (lua/transition.lua): picking, packed, shipped, delivered or failed."""

    order: str
    record: OrderRecord  # as it stands after the change; record.status is the new status
    at_ms: EpochMs
    reason: str = ""

    @property
    def product(self) -> str:
        return self.record.product_id


class OrderRerouted(msgspec.Struct, frozen=True, tag_field="type", tag="order.rerouted"):
    """lua/reroute.lua: the order moved to another warehouse, reserved there."""

    order: str
    record: OrderRecord  # as it stands after: the new warehouse, status confirmed
    from_warehouse: str
    at_ms: EpochMs
    reason: str
    available: int  # at the new warehouse

    @property
    def product(self) -> str:
        return self.record.product_id


class StockChanged(msgspec.Struct, frozen=True, tag_field="type", tag="stock.changed"):
    product: str
    warehouse: str
    available: int
    reason: str


class StockHeld(msgspec.Struct, frozen=True, tag_field="type", tag="stock.held"):
    hold: str
    product: str
    warehouse: str
    quantity: int
    available: int


Event = (
    OrderConfirmed | OrderCancelled | OrderStatusChanged | OrderRerouted | StockChanged | StockHeld
)
EVENT_TYPES: Final[dict[str, type[Event]]] = {
    str(t.__struct_config__.tag): t
    for t in (
        OrderConfirmed,
        OrderCancelled,
        OrderStatusChanged,
        OrderRerouted,
        StockChanged,
        StockHeld,
    )
}


class UnknownEvent(msgspec.Struct, frozen=True):
    """A type no writer knows (a newer producer): acked and ignored."""

    type: str


class MalformedEvent(msgspec.Struct, frozen=True):
    """A known type whose fields do not decode: a producer bug. A writer moves it to the dead
    letters at once (`writers/dead_letters.py`), where a person looks."""

    error: str


def decode_event(fields: Mapping[str, str]) -> Event | UnknownEvent | MalformedEvent:
    kind = fields.get("type", "")
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        return UnknownEvent(kind) if kind else MalformedEvent("no 'type' field")
    try:
        # strict=False: the numeric fields arrive as strings and are parsed here, once. The
        # concrete type, not the tagged union: converting to the union is ~8x slower.
        # The order record is a JSON text inside the entry: decoded here too, in one place.
        decoded: Mapping[str, object] = fields
        if "record" in fields:
            decoded = {**fields, "record": decode_record(fields["record"])}
        event: Event = msgspec.convert(decoded, event_type, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return MalformedEvent(str(exc))
    return event
