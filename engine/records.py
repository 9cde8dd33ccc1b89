"""How an order is kept in Redis and carried in its events: a JSON array the Lua scripts write.

`order:{tag}:<orderId>` holds the record; every order event carries it as its `record` field, as
it stands after the event. One compact value rather than a hash of nine fields: it halves what a
reservation costs Redis (one SET instead of an HSET, one stream field instead of nine) and what an
order in flight costs in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from engine.delivery import estimated_delivery
from engine.orders import Order
from geo.rings import Point


class OrderRecord(msgspec.Struct, array_like=True, frozen=True):
    """Field order is the wire format: lua/*.lua build the same array."""

    product_id: str
    warehouse_id: str
    quantity: int
    status: str
    eta_days: int
    created_ms: int
    lat: float  # written as a JSON string (exact digits), read back as a float
    lon: float
    idempotency_key: str  # '' when the request had none

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


def decode_record(raw: str | bytes) -> OrderRecord:
    return _decoder.decode(raw)
