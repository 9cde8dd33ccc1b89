"""A stock change as the live stock stream tells it: which level moved, to what, and why; read
from the engine's events, and judged against the product's low-stock threshold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.events import (
    Event,
    MalformedEvent,
    OrderCancelled,
    OrderRerouted,
    OrdersConfirmed,
    StockChanged,
    StockHeld,
    UnknownEvent,
)


@dataclass(frozen=True, slots=True)
class StockChange:
    product_id: str
    warehouse_id: str
    level: int  # the warehouse's level after the change
    reason: str  # order, cancel, hold, hold expired, or the operator's restock/adjust reason


def stock_changes_of(event: Event | UnknownEvent | MalformedEvent) -> list[StockChange]:
    """The levels an event left behind, in the order it moved them; none for events that move
    no stock (lifecycle steps)."""
    match event:
        case OrdersConfirmed(orders=orders):
            return [
                StockChange(o.record.product_id, o.record.warehouse_id, o.level, "order")
                for o in orders
            ]
        case OrderCancelled(record=record, level=level):
            return [StockChange(record.product_id, record.warehouse_id, level, "cancel")]
        case OrderRerouted(record=record, level=level):
            return [StockChange(record.product_id, record.warehouse_id, level, "reroute")]
        case StockChanged(product=product, warehouse=warehouse, level=level, reason=why):
            return [StockChange(product, warehouse, level, why)]
        case StockHeld(product=product, warehouse=warehouse, level=level):
            return [StockChange(product, warehouse, level, "hold")]
        case _:
            return []


@dataclass(frozen=True, slots=True)
class LowStockThresholds:
    """Units per warehouse at or below which a product's level counts as low."""

    default_units: int
    per_product: Mapping[str, int] = field(default_factory=dict)

    def of(self, product_id: str) -> int:
        return self.per_product.get(product_id, self.default_units)

    def is_low(self, change: StockChange) -> bool:
        return change.level <= self.of(change.product_id)


def parse_overrides(text: str) -> dict[str, int]:
    overrides: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        product_id, sep, units = item.rpartition("=")
        if not sep or not product_id:
            raise ValueError(f"LOW_STOCK_THRESHOLDS: {item!r} is not productId=units")
        overrides[product_id] = int(units)
    return overrides
