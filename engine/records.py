"""How an order is kept in Redis and carried in its events: a JSON array the Lua scripts write.

`order:{tag}:<orderId>` holds the record; every order event carries it as its `record` field, as
it stands after the event. One compact value rather than a hash of nine fields: it halves what
placing an order costs Redis (one SET instead of an HSET, one stream field instead of nine) and
what an order in flight costs in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeAlias

import msgspec

from engine.allocation import AllocationRule
from engine.delivery import estimated_delivery
from engine.orders import Order
from geo.distance import Point

# A time in ms that a datetime can hold (years 1970-9999): anything else is a malformed event, not
# something a writer could store by trying again.
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_999)]


class OrderRecord(msgspec.Struct, array_like=True, frozen=True):
    """Field order is the wire format: `lua/includes/order_record.lua` names the same fields, and
    `new_record_pieces` writes a new one."""

    product_id: str
    warehouse_id: str
    quantity: int
    status: str
    eta_days: int
    created_ms: EpochMs
    lat: float  # written as a JSON string (exact digits), read back as a float
    lon: float
    idempotency_key: str  # '' when the request had none
    # Moved by every script that rewrites the record, and carried by every event with it: of two
    # events about one order, the one with the higher seq is newer. 0 in records written before
    # it existed.
    seq: int = 0

    def to_order(self, order_id: str) -> Order:
        return Order(
            order_id=order_id,
            product_id=self.product_id,
            warehouse_id=self.warehouse_id,
            quantity=self.quantity,
            status=self.status,
            customer=Point(self.lat, self.lon),
            estimated_delivery=estimated_delivery(self.created_ms, self.eta_days),
            created_at=datetime.fromtimestamp(self.created_ms / 1000, UTC),
        )


_decoder = msgspec.json.Decoder(OrderRecord, strict=False)


def encode_record(record: OrderRecord) -> bytes:
    """The record as the scripts write it: the location as text, so its digits survive Lua."""
    return msgspec.json.encode(
        [
            record.product_id,
            record.warehouse_id,
            record.quantity,
            record.status,
            record.eta_days,
            record.created_ms,
            repr(record.lat),
            repr(record.lon),
            record.idempotency_key,
            record.seq,
        ]
    )


def decode_record(raw: str | bytes) -> OrderRecord:
    return _decoder.decode(raw)


# A new order's record as `encode_record` writes it, but for the two fields only the script
# decides: head + warehouse ID + middle + delivery days (digits) + tail. The caller encodes the
# rest, so the script joins five strings instead of encoding ten fields for every order.
NewRecordPieces: TypeAlias = tuple[str, str, str]


def new_record_pieces(
    product_id: str, quantity: int, created_ms: int, lat: float, lon: float, idempotency_key: str
) -> NewRecordPieces:
    """The record a confirmation writes (status confirmed, seq 1), around its warehouse and days.
    Built as text, as this runs for every order: IDs follow the API's ID pattern and go between
    quotes as they are; only the idempotency key, free text, needs JSON's escaping."""
    idempotency_json = msgspec.json.encode(idempotency_key).decode() if idempotency_key else '""'
    return (
        f'["{product_id}","',
        f'",{quantity},"confirmed",',
        f',{created_ms},"{lat!r}","{lon!r}",{idempotency_json},1]',
    )


class ShipmentRecord(msgspec.Struct, array_like=True, frozen=True):
    """One shipment of a basket: the units one warehouse sends. [warehouseId, etaDays, status,
    [[productId, quantity]...]]"""

    warehouse_id: str
    eta_days: int
    status: str
    items: tuple[tuple[str, int], ...]


class BasketRecord(msgspec.Struct, array_like=True, frozen=True):
    """A basket as kept in Redis (`basket:{tag}:<orderId>`) and carried by its events. Status and
    seq sit where an OrderRecord has them, so lua/expire_persisted.lua lets either kind leave
    Redis by the same rule."""

    lines: tuple[tuple[str, int], ...]  # [productId, quantity], as the client sent them
    shipments: tuple[ShipmentRecord, ...]
    quantity: int  # units over all lines
    status: str
    eta_days: int  # the latest shipment's
    created_ms: EpochMs
    lat: float  # written as a JSON string (exact digits), read back as a float
    lon: float
    idempotency_key: str  # '' when the request had none
    seq: int
    rule: AllocationRule  # which rule chose the warehouses

    def status_at(self, warehouse_id: str) -> str | None:
        """The status of the shipment from `warehouse_id`; None when the basket has none there
        (its shipment was re-routed away: lua/reroute_shipment.lua names the warehouse it left)."""
        return next((s.status for s in self.shipments if s.warehouse_id == warehouse_id), None)


_basket_decoder = msgspec.json.Decoder(BasketRecord, strict=False)


def encode_basket_record(record: BasketRecord) -> bytes:
    """As lua/commit_basket.lua stores it: the location as text, so its digits survive Lua."""
    return msgspec.json.encode(
        [
            record.lines,
            record.shipments,
            record.quantity,
            record.status,
            record.eta_days,
            record.created_ms,
            repr(record.lat),
            repr(record.lon),
            record.idempotency_key,
            record.seq,
            record.rule,
        ]
    )


def decode_basket_record(raw: str | bytes) -> BasketRecord:
    return _basket_decoder.decode(raw)
