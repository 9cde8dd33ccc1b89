"""What an order is: the request to place one, the confirmation, and an order as it stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal

import msgspec

from geo.distance import Point

MAX_ORDER_QUANTITY: Final = 1_000
IDEMPOTENCY_TTL_S: Final = 24 * 3600  # the default of the IDEMPOTENCY_TTL_S setting
# An order in a final state (delivered, cancelled, failed) leaves Redis this long after its last
# change reached PostgreSQL, not after the whole hot window: resends of its commands (seconds) and
# copies read from PostgreSQL (lua/includes/order_record.lua) need it there that long. The hot
# window is never shorter.
ORDER_FINAL_LINGER_S: Final = 60

OrderStatus = Literal[
    "confirmed", "picking", "packed", "shipped", "delivered", "cancelled", "failed"
]


# The value objects made for every order placed are msgspec structs: built several times faster
# than frozen dataclasses, and holding no reference cycles, so the collector need not track them.
class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    product_id: str
    quantity: int
    customer: Point
    idempotency_key: str | None = None
    owner_tag: int | None = None  # the placing storefront's, minted into the order ID (engine.ids)
    hold_id: str | None = None  # take the units from this hold (POST /inventory/reserve)

    def fingerprint(self) -> str:
        """What must match for a retry under the same idempotency key to be the same request."""
        return f"{self.product_id}|{self.quantity}|{self.customer.lat:.6f}|{self.customer.lon:.6f}"


class Confirmation(msgspec.Struct, frozen=True, gc=False):
    order_id: str
    warehouse_id: str
    estimated_delivery: date
    created_at: datetime
    replayed: bool  # True when an idempotent retry got the stored answer


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    product_id: str
    warehouse_id: str
    quantity: int
    status: str
    customer: Point
    estimated_delivery: date
    created_at: datetime
