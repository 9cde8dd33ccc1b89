"""Re-routing one shipment of a basket its warehouse cannot fulfil (units damaged or missing): its
lines go to the warehouses that hold them, by the allocation rule (`engine.allocation`), among
those that are not the reporting one and have no shipment of the basket under way.

The lines live in other partitions than the basket, so this is placed like a basket
(`engine.baskets`): the lines are held under a re-route ID of the basket's partition, then
lua/reroute_shipment.lua moves the shipment and writes the re-route's decision in the basket's
slot, then the holds are kept. A worker that dies half way leaves holds the sweeper settles by
that decision. The reporting warehouse's units are not given back: they are the ones missing.
"""

from __future__ import annotations

from engine import clock, commands
from engine.allocation import Shortfall
from engine.baskets import PLAN_ATTEMPTS, Basket, PartHolder, basket_of, shipments_of, short_of
from engine.commands import StaleCopy
from engine.errors import (
    InvalidTransition,
    OrderMovedOn,
    OrderNotFound,
    OutcomeUnknown,
    WrongWarehouse,
)
from engine.ids import new_id, partition_of_id
from engine.live_baskets import LiveBaskets
from engine.records import BasketRecord
from geo.distance import Point

# A shipment may be re-routed until it is packed: once packed, its units were found.
REROUTABLE = ("confirmed", "picking")


class ShipmentRerouter:
    def __init__(self, parts: PartHolder, baskets: LiveBaskets) -> None:
        self._parts = parts
        self._baskets = baskets

    async def reroute(self, order_id: str, from_warehouse_id: str, reason: str) -> Basket:
        for _ in range(PLAN_ATTEMPTS):
            located = await self._baskets.locate(order_id)
            if located is None:
                raise OrderNotFound(order_id)
            record, copy = located
            lines = _lines_at(order_id, record, from_warehouse_id)
            customer = Point(record.lat, record.lon)
            allocation = await self._parts.plan(
                lines, customer, _not_taking(record, from_warehouse_id)
            )
            if isinstance(allocation, Shortfall):
                raise short_of(lines, allocation)
            partition = partition_of_id(order_id)
            assert partition is not None  # located: one of our IDs
            # A new ID per attempt: the holds of an attempt given up on can never be committed.
            reroute_id = new_id(partition, basket=True)
            holds = await self._parts.hold(reroute_id, allocation)
            if holds is None:
                continue  # another order took a part meanwhile: plan again
            moved_to = shipments_of(allocation, self._parts.warehouses.directory, customer)
            command = commands.reroute_shipment(
                order_id,
                reroute_id,
                from_warehouse_id,
                moved_to,
                record.seq,
                reason,
                clock.now_ms(),
                copy,
            )
            try:
                updated = await self._parts.commit(reroute_id, holds, command)
            except OutcomeUnknown as unknown:
                raise unknown.about(order_id) from unknown
            except (OrderMovedOn, StaleCopy):
                continue  # the basket moved meanwhile: plan again from where it stands now
            if updated is not None:
                return basket_of(order_id, updated)
        raise await self._parts.contended(lines, customer)


def _not_taking(record: BasketRecord, from_warehouse_id: str) -> frozenset[str]:
    """Warehouses that take none of the lines: the reporting one, and those whose shipment of
    the basket is under way (a started shipment takes no more lines)."""
    started = {s.warehouse_id for s in record.shipments if s.status != "confirmed"}
    return frozenset({from_warehouse_id, *started})


def _lines_at(order_id: str, record: BasketRecord, warehouse_id: str) -> list[tuple[str, int]]:
    """The lines of the shipment at `warehouse_id`, if it may still be re-routed."""
    for shipment in record.shipments:
        if shipment.warehouse_id == warehouse_id:
            if shipment.status not in REROUTABLE:
                raise InvalidTransition(order_id, shipment.status, "re-routed")
            return list(shipment.items)
    raise WrongWarehouse(order_id, warehouse_id)
