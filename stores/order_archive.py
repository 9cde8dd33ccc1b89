"""Orders in PostgreSQL, read back (the read model of orders): an order's record (its only home
once it left Redis), a basket's, and their status history. The orders writer (`writers/orders.py`)
writes them."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from engine import lifecycle
from engine.ids import partition_of_id
from engine.records import BasketRecord, OrderRecord, ShipmentRecord
from stores.breaker import Breaker, CircuitOpen
from stores.postgres import TRANSIENT_ERRORS

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)

SELECT_ORDER: Final = """
SELECT product_id, warehouse_id, quantity, status, estimated_delivery, created_at, customer_lat,
       customer_lon, idempotency_key, seq
FROM orders WHERE order_id = $1::uuid AND product_id IS NOT NULL
"""
# A basket's row with its lines and shipments, in one statement so that all come from one
# snapshot (the orders writer rewrites a basket's shipments with each newer event). Lines and
# shipments as JSON arrays, in the record's order: [productId, quantity] and [warehouseId,
# status, estimatedDelivery, [[productId, quantity]...]].
SELECT_BASKET: Final = """
SELECT o.quantity, o.status, o.estimated_delivery, o.created_at, o.customer_lat, o.customer_lon,
       o.idempotency_key, o.seq, o.allocation_rule,
       (SELECT coalesce(json_agg(json_build_array(l.product_id, l.quantity) ORDER BY l.line_no),
                        '[]')
        FROM order_lines l WHERE l.order_id = o.order_id) AS lines,
       (SELECT coalesce(json_agg(json_build_array(
                   s.warehouse_id, s.status, s.estimated_delivery,
                   (SELECT coalesce(json_agg(json_build_array(i.product_id, i.quantity)
                                             ORDER BY i.position), '[]')
                    FROM shipment_items i
                    WHERE i.order_id = s.order_id AND i.warehouse_id = s.warehouse_id))
                   ORDER BY s.position), '[]')
        FROM shipments s WHERE s.order_id = o.order_id) AS shipments
FROM orders o WHERE o.order_id = $1::uuid AND o.product_id IS NULL
"""
# warehouse_id: the shipment a basket's step was about (NULL for any other step).
SELECT_HISTORY: Final = """
SELECT status, at, warehouse_id FROM order_status_history WHERE order_id = $1::uuid
"""

_Lines = tuple[tuple[str, int], ...]
_LINES: Final = msgspec.json.Decoder(_Lines)
_SHIPMENTS: Final = msgspec.json.Decoder(tuple[tuple[str, str, date, _Lines], ...])


class OrderArchive:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, order_id: str) -> OrderRecord | None:
        """The order as its last persisted event left it, in the form Redis keeps it; None for
        a basket (`basket_record`)."""
        row: Any = await self._pool.fetchrow(SELECT_ORDER, order_id)
        if row is None:
            return None
        created: datetime = row["created_at"]
        return OrderRecord(
            product_id=row["product_id"],
            warehouse_id=row["warehouse_id"],
            quantity=row["quantity"],
            status=row["status"],
            # The delivery date was confirmation day + eta_days (engine.delivery): exact.
            eta_days=(row["estimated_delivery"] - created.astimezone(UTC).date()).days,
            created_ms=(created - EPOCH) // timedelta(milliseconds=1),
            lat=row["customer_lat"],
            lon=row["customer_lon"],
            idempotency_key=row["idempotency_key"] or "",
            seq=row["seq"],
        )

    async def basket_record(self, order_id: str) -> BasketRecord | None:
        """The basket as its last persisted event left it, in the form Redis keeps it
        (`engine.live_baskets.BasketArchive`); None when no basket has this ID."""
        row: Any = await self._pool.fetchrow(SELECT_BASKET, order_id)
        if row is None:
            return None
        created: datetime = row["created_at"]
        day = created.astimezone(UTC).date()  # delivery dates count from it (engine.delivery)
        return BasketRecord(
            lines=_LINES.decode(row["lines"]),
            shipments=tuple(
                ShipmentRecord(warehouse_id, (delivery - day).days, status, items)
                for warehouse_id, status, delivery, items in _SHIPMENTS.decode(row["shipments"])
            ),
            quantity=row["quantity"],
            status=row["status"],
            eta_days=(row["estimated_delivery"] - day).days,
            created_ms=(created - EPOCH) // timedelta(milliseconds=1),
            lat=row["customer_lat"],
            lon=row["customer_lon"],
            idempotency_key=row["idempotency_key"] or "",
            seq=row["seq"],
            rule=row["allocation_rule"],
        )

    async def duplicate_count(self) -> int | None:
        """Orders caught repeating an idempotency key (writers/orders.py); None when PostgreSQL
        cannot be reached, so a scrape still reports Redis's side."""
        try:
            count: int = await self._pool.fetchval("SELECT count(*) FROM duplicate_orders")
        except TRANSIENT_ERRORS:
            return None
        return count

    async def history(self, order_id: str, breaker: Breaker) -> list[tuple[str, datetime]] | None:
        """Every status the order went through and when, oldest first; None when PostgreSQL
        cannot be reached (or `breaker` is open on it): reading an order must not depend on it."""
        steps = await self.basket_history(order_id, breaker)
        return None if steps is None else [(status, at) for status, at, _ in steps]

    async def basket_history(
        self, order_id: str, breaker: Breaker
    ) -> list[tuple[str, datetime, str | None]] | None:
        """As `history`, with the warehouse of the shipment each step was about (a basket's;
        None for a step of the whole basket, and for every step of a one-product order)."""
        rows = await self._history_rows(SELECT_HISTORY, order_id, breaker)
        if rows is None:
            return None
        steps = [(row["status"], row["at"], row["warehouse_id"]) for row in rows]
        # Steps of one fulfilment can share a millisecond: the lifecycle order breaks the tie.
        return sorted(steps, key=lambda step: (step[1], lifecycle.progress(step[0])))

    async def _history_rows(self, query: str, order_id: str, breaker: Breaker) -> list[Any] | None:
        """The history query's rows; None when PostgreSQL cannot be reached."""
        if partition_of_id(order_id) is None:  # not one of our IDs: no row can match
            return []
        try:
            # While the breaker is open the history is left out at once, instead of every read
            # waiting out a connect attempt on a PostgreSQL that is down.
            with breaker.guard(TRANSIENT_ERRORS):
                rows: list[Any] = await self._pool.fetch(query, order_id)
                return rows
        except CircuitOpen:
            return None
        except TRANSIENT_ERRORS:
            log.warning("status history of %s unavailable: PostgreSQL unreachable", order_id)
            return None
