"""The orders writer: persists `order.confirmed`, `order.cancelled` and `order.status` events to
PostgreSQL.

One transaction per batch: the confirmations are COPYed into a session-local staging table and
inserted from there (ON CONFLICT DO NOTHING, so replaying a batch adds nothing), then the status
changes (cancellations and lifecycle steps) are applied. A status change whose order row does not
exist yet (its confirmation is still pending at another consumer) is handed back as not yet
applicable and retried later. A change only ever moves an order forward in the lifecycle
(`engine.lifecycle.PROGRESS`), so a late or replayed event cannot move it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

import asyncpg

from engine.delivery import estimated_delivery
from engine.lifecycle import PROGRESS
from stores.postgres import TRANSIENT_ERRORS
from writers.streams import (
    OrderCancelled,
    OrderConfirmed,
    OrderRerouted,
    OrderStatusChanged,
    StreamEntry,
)

ORDERS_GROUP: Final = "orders-writer"
STAGING_TABLE: Final = "orders_staging"

# Temporary, so it is private to the connection and never WAL-logged; ON COMMIT DELETE ROWS
# empties it at the end of every batch's transaction, including a rolled-back one.
CREATE_STAGING: Final = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (
    order_id            uuid NOT NULL,
    product_id          text NOT NULL,
    warehouse_id        text NOT NULL,
    quantity            integer NOT NULL,
    customer_lat        double precision NOT NULL,
    customer_lon        double precision NOT NULL,
    estimated_delivery  date NOT NULL,
    idempotency_key     text,
    created_at          timestamptz NOT NULL,
    event_id            text NOT NULL
) ON COMMIT DELETE ROWS
"""
STAGING_COLUMNS: Final = (
    "order_id",
    "product_id",
    "warehouse_id",
    "quantity",
    "customer_lat",
    "customer_lon",
    "estimated_delivery",
    "idempotency_key",
    "created_at",
    "event_id",
)

# ORDER BY order_id: two writers inserting overlapping batches (one replaying what it claimed)
# then take row locks in the same order and cannot deadlock.
INSERT_ORDERS: Final = f"""
INSERT INTO orders (order_id, product_id, warehouse_id, quantity, status, customer_lat,
                    customer_lon, estimated_delivery, idempotency_key, created_at, updated_at)
SELECT order_id, product_id, warehouse_id, quantity, 'confirmed', customer_lat, customer_lon,
       estimated_delivery, idempotency_key, created_at, created_at
FROM {STAGING_TABLE}
ORDER BY order_id
ON CONFLICT (order_id) DO NOTHING
"""
INSERT_CONFIRMED_HISTORY: Final = f"""
INSERT INTO order_status_history (order_id, status, at, event_id)
SELECT order_id, 'confirmed', created_at, event_id FROM {STAGING_TABLE}
ORDER BY order_id
ON CONFLICT (order_id, event_id) DO NOTHING
"""
# Applies the status changes whose order exists and returns the event IDs of those whose order
# does not exist yet. All parts see the orders inserted earlier in this transaction. Of several
# changes to one order in a batch, the furthest along wins; `$6` is the lifecycle order.
APPLY_STATUS: Final = """
WITH change AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
        AS c(order_id, status, at, event_id, reason)
), latest AS (
    SELECT DISTINCT ON (order_id) * FROM change
    ORDER BY order_id, array_position($6::text[], status) DESC
), updated AS (
    UPDATE orders o SET status = latest.status, updated_at = latest.at
    FROM latest
    WHERE o.order_id = latest.order_id
      AND array_position($6::text[], o.status) < array_position($6::text[], latest.status)
), history AS (
    INSERT INTO order_status_history (order_id, status, at, event_id, reason)
    SELECT change.order_id, change.status, change.at, change.event_id, change.reason
    FROM change JOIN orders o USING (order_id)
    ORDER BY change.order_id
    ON CONFLICT (order_id, event_id) DO NOTHING
)
SELECT change.event_id FROM change
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = change.order_id)
"""

# A re-route moves the order to another warehouse and restarts it there as confirmed; it is applied
# only while the order row is still before packing, as lua/reroute.lua allowed it. Returns the
# event IDs whose order row does not exist yet.
APPLY_REROUTES: Final = """
WITH reroute AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[], $4::timestamptz[], $5::text[],
                         $6::text[]) AS r(order_id, warehouse_id, estimated_delivery, at, event_id,
                                          reason)
), updated AS (
    UPDATE orders o SET warehouse_id = reroute.warehouse_id,
                        estimated_delivery = reroute.estimated_delivery,
                        status = 'confirmed', updated_at = reroute.at
    FROM reroute
    WHERE o.order_id = reroute.order_id AND o.status IN ('confirmed', 'picking')
), history AS (
    INSERT INTO order_status_history (order_id, status, at, event_id, reason)
    SELECT reroute.order_id, 'confirmed', reroute.at, reroute.event_id, reroute.reason
    FROM reroute JOIN orders o USING (order_id)
    ON CONFLICT (order_id, event_id) DO NOTHING
)
SELECT reroute.event_id FROM reroute
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = reroute.order_id)
"""

StagingRow = tuple[str, str, str, int, float, float, date, str | None, datetime, str]


class OrdersWriter:
    group: Final = ORDERS_GROUP
    transient_errors: Final = TRANSIENT_ERRORS

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        staged = [
            _staging_row(entry.entry_id, entry.event)
            for entry in entries
            if isinstance(entry.event, OrderConfirmed)
        ]
        changes = [
            entry
            for entry in entries
            if isinstance(entry.event, OrderCancelled | OrderStatusChanged)
        ]
        reroutes = [entry for entry in entries if isinstance(entry.event, OrderRerouted)]
        if not staged and not changes and not reroutes:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            if staged:
                await conn.execute(CREATE_STAGING)
                await conn.copy_records_to_table(
                    STAGING_TABLE, records=staged, columns=STAGING_COLUMNS
                )
                await conn.execute(INSERT_ORDERS)
                await conn.execute(INSERT_CONFIRMED_HISTORY)
            # Re-routes first: a step taken at the new warehouse in the same batch follows them.
            waiting = await _apply_reroutes(conn, reroutes) if reroutes else set()
            waiting |= await _apply_status(conn, changes) if changes else set()
        return [entry for entry in [*reroutes, *changes] if entry.entry_id in waiting]


def _staging_row(event_id: str, event: OrderConfirmed) -> StagingRow:
    record = event.record
    return (
        event.order,
        record.product_id,
        record.warehouse_id,
        record.quantity,
        record.lat,
        record.lon,
        estimated_delivery(record.created_ms, record.eta_days),
        record.idempotency_key or None,
        _utc(record.created_ms),
        event_id,
    )


async def _apply_status(conn: asyncpg.Connection, changes: Sequence[StreamEntry]) -> set[str]:
    order_ids, statuses, times, event_ids, reasons = [], [], [], [], []
    for entry in changes:
        event = entry.event
        assert isinstance(event, OrderCancelled | OrderStatusChanged)
        order_ids.append(event.order)
        statuses.append(event.record.status)
        times.append(_utc(event.at_ms))
        event_ids.append(entry.entry_id)
        reasons.append(event.reason or None if isinstance(event, OrderStatusChanged) else None)
    rows = await conn.fetch(
        APPLY_STATUS, order_ids, statuses, times, event_ids, reasons, list(PROGRESS)
    )
    return {row["event_id"] for row in rows}


async def _apply_reroutes(conn: asyncpg.Connection, reroutes: Sequence[StreamEntry]) -> set[str]:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for entry in reroutes:
        event = entry.event
        assert isinstance(event, OrderRerouted)
        record = event.record
        reason = f"re-routed from {event.from_warehouse}: {event.reason}"
        row = (
            event.order,
            record.warehouse_id,
            estimated_delivery(record.created_ms, record.eta_days),
            _utc(event.at_ms),
            entry.entry_id,
            reason,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    rows = await conn.fetch(APPLY_REROUTES, *columns)
    return {row["event_id"] for row in rows}


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
