"""The orders writer: persists `order.confirmed`, `order.cancelled`, `order.status` and
`order.rerouted` events to PostgreSQL.

One transaction per batch: the confirmations are COPYed into a session-local staging table and
inserted from there (ON CONFLICT DO NOTHING, so replaying a batch adds nothing), then the changes
(cancellations, lifecycle steps, re-routes) are applied. Every event carries the order's record
as it stood after it, with the record's sequence number: a change is applied only when its seq is
higher than the row's, so events that arrive twice, late or out of order (two writers, a
reclaimed batch) always leave the newest state. Every event still adds its history row. A change
whose order row does not exist yet (its confirmation is still pending at another consumer) is
handed back as not yet applicable and retried later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

import asyncpg

from engine.delivery import estimated_delivery
from stores.postgres import PERMANENT_ERRORS, TRANSIENT_ERRORS
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
    event_id            text NOT NULL,
    seq                 integer NOT NULL
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
    "seq",
)

# ORDER BY order_id: two writers inserting overlapping batches (one replaying what it claimed)
# then take row locks in the same order and cannot deadlock.
INSERT_ORDERS: Final = f"""
INSERT INTO orders (order_id, product_id, warehouse_id, quantity, status, customer_lat,
                    customer_lon, estimated_delivery, idempotency_key, created_at, updated_at, seq)
SELECT order_id, product_id, warehouse_id, quantity, 'confirmed', customer_lat, customer_lon,
       estimated_delivery, idempotency_key, created_at, created_at, seq
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
# Applies every change whose order exists and is older than the change, and returns the event IDs
# of those whose order does not exist yet. All parts see the orders inserted earlier in this
# transaction. Of several changes to one order in a batch, the highest seq wins.
APPLY_CHANGES: Final = """
WITH change AS (
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::date[],
                         $6::timestamptz[], $7::text[], $8::text[])
        AS c(order_id, seq, status, warehouse_id, estimated_delivery, at, event_id, reason)
), latest AS (
    SELECT DISTINCT ON (order_id) * FROM change ORDER BY order_id, seq DESC
), updated AS (
    UPDATE orders o SET status = latest.status, warehouse_id = latest.warehouse_id,
                        estimated_delivery = latest.estimated_delivery, seq = latest.seq,
                        updated_at = latest.at
    FROM latest
    WHERE o.order_id = latest.order_id AND o.seq < latest.seq
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

StagingRow = tuple[str, str, str, int, float, float, date, str | None, datetime, str, int]
OrderChange = OrderCancelled | OrderStatusChanged | OrderRerouted


class OrdersWriter:
    group: Final = ORDERS_GROUP
    transient_errors: Final = TRANSIENT_ERRORS
    permanent_errors: Final = PERMANENT_ERRORS

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        staged = [
            _staging_row(entry.entry_id, entry.event)
            for entry in entries
            if isinstance(entry.event, OrderConfirmed)
        ]
        changes = [entry for entry in entries if isinstance(entry.event, OrderChange)]
        if not staged and not changes:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            if staged:
                await conn.execute(CREATE_STAGING)
                await conn.copy_records_to_table(
                    STAGING_TABLE, records=staged, columns=STAGING_COLUMNS
                )
                await conn.execute(INSERT_ORDERS)
                await conn.execute(INSERT_CONFIRMED_HISTORY)
            waiting = await _apply_changes(conn, changes) if changes else set()
        return [entry for entry in changes if entry.entry_id in waiting]


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
        record.seq,
    )


async def _apply_changes(conn: asyncpg.Connection, changes: Sequence[StreamEntry]) -> set[str]:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for entry in changes:
        event = entry.event
        assert isinstance(event, OrderChange)
        record = event.record
        row = (
            event.order,
            record.seq,
            record.status,
            record.warehouse_id,
            estimated_delivery(record.created_ms, record.eta_days),
            _utc(event.at_ms),
            entry.entry_id,
            _reason(event),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    rows = await conn.fetch(APPLY_CHANGES, *columns)
    return {row["event_id"] for row in rows}


def _reason(event: OrderChange) -> str | None:
    """Why the order moved, when a person should know (a failure, a re-route); else None."""
    match event:
        case OrderRerouted(from_warehouse=origin, reason=why):
            return f"re-routed from {origin}: {why}"
        case OrderStatusChanged(reason=why):
            return why or None
    return None


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
