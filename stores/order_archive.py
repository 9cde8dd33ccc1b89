"""Orders in PostgreSQL, read back (the read model of orders): an order's record (its only home
once it left Redis) and its status history. The orders writer (`writers/orders.py`) writes them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from engine import lifecycle
from engine.ids import partition_of_id
from engine.records import OrderRecord
from stores.breaker import Breaker, CircuitOpen
from stores.postgres import TRANSIENT_ERRORS

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)

SELECT_ORDER: Final = """
SELECT product_id, warehouse_id, quantity, status, estimated_delivery, created_at, customer_lat,
       customer_lon, idempotency_key, seq
FROM orders WHERE order_id = $1::uuid
"""
SELECT_HISTORY: Final = """
SELECT status, at FROM order_status_history WHERE order_id = $1::uuid
"""


class OrderArchive:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, order_id: str) -> OrderRecord | None:
        """The order as its last persisted event left it, in the form Redis keeps it."""
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
        if partition_of_id(order_id) is None:  # not one of our IDs: no row can match
            return []
        try:
            # While the breaker is open the history is left out at once, instead of every read
            # waiting out a connect attempt on a PostgreSQL that is down.
            with breaker.guard(TRANSIENT_ERRORS):
                rows: Any = await self._pool.fetch(SELECT_HISTORY, order_id)
        except CircuitOpen:
            return None
        except TRANSIENT_ERRORS:
            log.warning("status history of %s unavailable: PostgreSQL unreachable", order_id)
            return None
        # Steps of one fulfilment can share a millisecond: the lifecycle order breaks the tie.
        changes = [(row["status"], row["at"]) for row in rows]
        return sorted(changes, key=lambda change: (change[1], lifecycle.progress(change[0])))
