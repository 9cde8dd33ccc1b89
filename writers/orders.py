"""The orders writer: persists `order.confirmed`, `order.cancelled`, `order.status`,
`order.rerouted`, `basket.confirmed` and `basket.changed` events to PostgreSQL.

One transaction per batch: the confirmations are COPYed into a session-local staging table and
inserted from there (ON CONFLICT DO NOTHING, so replaying a batch adds nothing), then the changes
(cancellations, lifecycle steps, re-routes) are applied. Every event carries the order's record
as it stood after it, with the record's sequence number: a change is applied only when its seq is
higher than the row's, so events that arrive twice, late or out of order (two writers, a
reclaimed batch) always leave the newest state. Every event still adds its history row. A change
whose order row does not exist yet (its confirmation is still pending at another consumer) is
handed back as not yet applicable and retried later.

A basket is one `orders` row (no product, no warehouse) with its lines, its shipments and what
each ships (`order_lines`, `shipments`, `shipment_items`). Its events follow the same rules in the
same transaction, after the one-product ones: a confirmation inserts it once; a change applies
when its seq is higher, and then the shipments are rewritten from its record (a re-routed
shipment comes back under its new warehouse); every event adds a history row, naming the
shipment that moved. Baskets are few beside one-product orders: they get plain batched
statements, and the one-product path pays nothing for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

import asyncpg

from engine import clock, commands
from engine.delivery import estimated_delivery
from engine.errors import InvalidTransition, OrderNotFound, OutcomeUnknown, StoreFull
from engine.events import (
    BasketChanged,
    BasketConfirmed,
    OrderCancelled,
    OrderConfirmed,
    OrderRerouted,
    OrdersConfirmed,
    OrderStatusChanged,
)
from engine.ids import partition_of_id
from engine.orders import ORDER_FINAL_LINGER_S
from engine.records import BasketRecord
from engine.scripts import ScriptRunner
from stores.postgres import PERMANENT_ERRORS, TRANSIENT_ERRORS
from stores.streams import ORDERS_GROUP
from writers.consumer import StreamEntry

DEFAULT_HOT_WINDOW_S: Final = 15 * 60  # the default of the ORDER_HOT_WINDOW_S setting
log = logging.getLogger(__name__)
# Orders per lua/expire_persisted.lua call (one round trip carries them all).
EXPIRIES_PER_CALL: Final = 1_000
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
ON CONFLICT DO NOTHING
"""
INSERT_CONFIRMED_HISTORY: Final = f"""
INSERT INTO order_status_history (order_id, status, at, event_id)
SELECT order_id, 'confirmed', s.created_at, event_id FROM {STAGING_TABLE} s
JOIN orders o USING (order_id)
ORDER BY order_id
ON CONFLICT (order_id, event_id) DO NOTHING
"""
# Staged confirmations that did not become a row: another order holds their idempotency key for
# the product (a retry that came after the key left Redis). Recorded, and returned to be cancelled.
RECORD_DUPLICATES: Final = f"""
INSERT INTO duplicate_orders (order_id, original_order_id, idempotency_key, product_id,
                              warehouse_id, quantity, status, created_at)
SELECT s.order_id, o.order_id, s.idempotency_key, s.product_id, s.warehouse_id, s.quantity,
       'confirmed', s.created_at
FROM {STAGING_TABLE} s
JOIN orders o ON o.idempotency_key = s.idempotency_key AND o.product_id = s.product_id
WHERE o.order_id <> s.order_id
  AND NOT EXISTS (SELECT 1 FROM orders mine WHERE mine.order_id = s.order_id)
ON CONFLICT (order_id) DO NOTHING
"""
CONFIRMED_DUPLICATES: Final = """
SELECT order_id::text, product_id, original_order_id::text FROM duplicate_orders
WHERE order_id = ANY($1::uuid[]) AND status = 'confirmed'
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
), duplicate AS (
    UPDATE duplicate_orders d SET status = latest.status
    FROM latest WHERE d.order_id = latest.order_id
)
SELECT change.event_id FROM change
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = change.order_id)
  AND NOT EXISTS (SELECT 1 FROM duplicate_orders d WHERE d.order_id = change.order_id)
"""

# --- baskets ---

# ORDER BY order_id, as for one-product orders: overlapping batches lock rows in one order.
INSERT_BASKETS: Final = """
INSERT INTO orders (order_id, quantity, status, customer_lat, customer_lon, estimated_delivery,
                    idempotency_key, created_at, updated_at, seq, allocation_rule)
SELECT order_id, quantity, status, customer_lat, customer_lon, estimated_delivery,
       idempotency_key, created_at, created_at, seq, allocation_rule
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::float8[], $5::float8[], $6::date[],
            $7::text[], $8::timestamptz[], $9::integer[], $10::text[])
    AS b(order_id, quantity, status, customer_lat, customer_lon, estimated_delivery,
         idempotency_key, created_at, seq, allocation_rule)
ORDER BY order_id
ON CONFLICT DO NOTHING
RETURNING order_id::text
"""
INSERT_LINES: Final = """
INSERT INTO order_lines (order_id, product_id, quantity, line_no)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::integer[])
ON CONFLICT DO NOTHING
"""
# One row per order (the batch's newest change of it): an UPDATE given several rows for one
# target applies one of them, not necessarily the newest.
UPDATE_BASKETS: Final = """
UPDATE orders o SET status = b.status, estimated_delivery = b.estimated_delivery, seq = b.seq,
                    updated_at = b.at
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::date[], $5::timestamptz[])
    AS b(order_id, seq, status, estimated_delivery, at)
WHERE o.order_id = b.order_id AND o.seq < b.seq
RETURNING o.order_id::text
"""
DELETE_SHIPMENTS: Final = """
WITH items AS (DELETE FROM shipment_items WHERE order_id = ANY($1::uuid[]))
DELETE FROM shipments WHERE order_id = ANY($1::uuid[])
"""
INSERT_SHIPMENTS: Final = """
WITH shipment AS (
    INSERT INTO shipments (order_id, warehouse_id, status, estimated_delivery, position)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::integer[])
)
INSERT INTO shipment_items (order_id, warehouse_id, product_id, quantity, position)
SELECT * FROM unnest($6::uuid[], $7::text[], $8::text[], $9::integer[], $10::integer[])
"""
# Every step of an existing basket adds its history row; returns the event IDs of the changes
# whose basket does not exist yet (its confirmation is pending at another consumer).
INSERT_BASKET_HISTORY: Final = """
WITH step AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[])
        AS s(order_id, status, at, event_id, reason, warehouse_id)
), history AS (
    INSERT INTO order_status_history (order_id, status, at, event_id, reason, warehouse_id)
    SELECT step.order_id, step.status, step.at, step.event_id, step.reason, step.warehouse_id
    FROM step JOIN orders o USING (order_id)
    ORDER BY step.order_id
    ON CONFLICT (order_id, event_id) DO NOTHING
)
SELECT step.event_id FROM step
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = step.order_id)
"""

StagingRow = tuple[str, str, str, int, float, float, date, str | None, datetime, str, int]
OrderChange = OrderCancelled | OrderStatusChanged | OrderRerouted
BasketEvent = BasketConfirmed | BasketChanged
Persisted = OrderConfirmed | OrderChange | BasketEvent
# The rows of a basket's tables, as the statements above take them (one array per column).
BasketRow = tuple[str, int, str, float, float, date, str | None, datetime, int, str]
BasketStateRow = tuple[str, int, str, date, datetime]
LineRow = tuple[str, str, int, int]
ShipmentRow = tuple[str, str, str, date, int]
ItemRow = tuple[str, str, str, int, int]
StepRow = tuple[str, str, datetime, str, str | None, str | None]


class OrdersWriter:
    group: Final = ORDERS_GROUP
    # A lost Redis reply (letting records leave, cancelling a duplicate) is retried with the
    # batch: both are idempotent, and so is the PostgreSQL part.
    transient_errors: Final = (*TRANSIENT_ERRORS, OutcomeUnknown, StoreFull)
    permanent_errors: Final = PERMANENT_ERRORS

    def __init__(
        self,
        pool: asyncpg.Pool,
        runner: ScriptRunner,
        hot_window_s: int = DEFAULT_HOT_WINDOW_S,
    ) -> None:
        if hot_window_s < ORDER_FINAL_LINGER_S:
            raise ValueError(f"the hot window must be at least {ORDER_FINAL_LINGER_S} s")
        self._pool = pool
        self._runner = runner
        self._hot_window_ms = hot_window_s * 1000

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        confirmed = [
            (entry.entry_id, placed)
            for entry in entries
            if isinstance(entry.event, OrdersConfirmed)
            for placed in entry.event.orders
        ]
        staged = [_staging_row(entry_id, placed) for entry_id, placed in confirmed]
        changes = [entry for entry in entries if isinstance(entry.event, OrderChange)]
        baskets = [entry for entry in entries if isinstance(entry.event, BasketEvent)]
        if not staged and not changes and not baskets:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            if staged:
                await conn.execute(CREATE_STAGING)
                await conn.copy_records_to_table(
                    STAGING_TABLE, records=staged, columns=STAGING_COLUMNS
                )
                await conn.execute(INSERT_ORDERS)
                await conn.execute(INSERT_CONFIRMED_HISTORY)
                await conn.execute(RECORD_DUPLICATES)
            waiting = await _apply_changes(conn, changes) if changes else set()
            if baskets:
                waiting |= await _persist_baskets(conn, baskets)
        if staged:
            await self._cancel_duplicates([row[0] for row in staged])
        persisted: list[Persisted] = [placed for _, placed in confirmed]
        for entry in (*changes, *baskets):
            if entry.entry_id not in waiting:
                assert isinstance(entry.event, OrderChange | BasketEvent)
                persisted.append(entry.event)
        await self._let_leave_redis(persisted)
        return [entry for entry in (*changes, *baskets) if entry.entry_id in waiting]

    async def _cancel_duplicates(self, order_ids: list[str]) -> None:
        """Cancel, units back, the orders that repeated an idempotency key after it left Redis.
        The operation ID is derived from the order, so a batch persisted again cancels once."""
        rows = await self._pool.fetch(CONFIRMED_DUPLICATES, order_ids)
        for row in rows:
            order_id = row["order_id"]
            command = commands.cancel_order(
                f"duplicate-{order_id}", order_id, row["product_id"], clock.now_ms()
            )
            try:
                await self._runner.run(command)
            except (InvalidTransition, OrderNotFound) as refused:
                log.error(
                    "duplicate order %s (of %s) could not be cancelled: %s",
                    order_id,
                    row["original_order_id"],
                    refused,
                    extra={"order_id": order_id},
                )
                continue
            log.error(
                "duplicate order %s cancelled: it repeated the idempotency key of %s after the "
                "key left Redis",
                order_id,
                row["original_order_id"],
                extra={"order_id": order_id},
            )

    async def _let_leave_redis(self, persisted: Sequence[Persisted]) -> None:
        """PostgreSQL now holds these orders' states: their records may leave Redis after the
        hot window (lua/expire_persisted.lua), each only if Redis has nothing newer. A basket's
        too (its record has a key of its own, `commands.expire_persisted` names it)."""
        latest: dict[str, int] = {}
        for event in persisted:
            latest[event.order_id] = max(latest.get(event.order_id, 0), event.record.seq)
        per_partition: dict[int, list[tuple[str, int]]] = {}
        for order_id, seq in latest.items():
            partition = partition_of_id(order_id)
            if partition is not None:
                per_partition.setdefault(partition, []).append((order_id, seq))
        # Bounded calls: an entry holds every order of a script call, so a batch can hold
        # hundreds of thousands of orders, and one script over all of a partition's would hold
        # Redis (every client of it) for as long as it runs.
        expiries = [
            commands.expire_persisted(
                partition,
                orders[start : start + EXPIRIES_PER_CALL],
                self._hot_window_ms,
                ORDER_FINAL_LINGER_S * 1000,
            )
            for partition, orders in per_partition.items()
            for start in range(0, len(orders), EXPIRIES_PER_CALL)
        ]
        for result in await self._runner.run_all(expiries):
            if isinstance(result, BaseException):
                raise result


def _staging_row(event_id: str, event: OrderConfirmed) -> StagingRow:
    record = event.record
    return (
        event.order_id,
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
    changed = []
    for entry in changes:
        event = entry.event
        assert isinstance(event, OrderChange)
        record = event.record
        changed.append(
            (
                event.order_id,
                record.seq,
                record.status,
                record.warehouse_id,
                estimated_delivery(record.created_ms, record.eta_days),
                _utc(event.at_ms),
                entry.entry_id,
                _reason(event),
            )
        )
    rows = await conn.fetch(APPLY_CHANGES, *_columns(changed, 8))
    return {row["event_id"] for row in rows}


async def _persist_baskets(conn: asyncpg.Connection, entries: Sequence[StreamEntry]) -> set[str]:
    """Persist a batch's basket events; returns the event IDs of the changes whose basket does
    not exist yet. Shipments are rewritten only for baskets this batch inserted or moved on (its
    newest record is then the row's), so a late or replayed event never brings back a shipment
    a newer one re-routed."""
    events = [
        (entry.entry_id, entry.event) for entry in entries if isinstance(entry.event, BasketEvent)
    ]
    latest = latest_baskets(event for _, event in events)
    confirmed = {e.order_id: e for _, e in events if isinstance(e, BasketConfirmed)}
    inserted: set[str] = set()
    if confirmed:
        rows = [basket_row(confirmed[order_id]) for order_id in sorted(confirmed)]
        inserted = {row[0] for row in await conn.fetch(INSERT_BASKETS, *_columns(rows, 10))}
        lines = [
            line
            for order_id in sorted(inserted)
            for line in line_rows(order_id, confirmed[order_id].record)
        ]
        if lines:
            await conn.execute(INSERT_LINES, *_columns(lines, 4))
    moved = [basket_state_row(e) for _, e in sorted(latest.items()) if isinstance(e, BasketChanged)]
    updated: set[str] = set()
    if moved:
        updated = {row[0] for row in await conn.fetch(UPDATE_BASKETS, *_columns(moved, 5))}
    current = sorted(inserted | updated)
    if current:
        await conn.execute(DELETE_SHIPMENTS, current)
        shipments: list[ShipmentRow] = []
        items: list[ItemRow] = []
        for order_id in current:
            shipped, sent = shipment_rows(order_id, latest[order_id].record)
            shipments += shipped
            items += sent
        await conn.execute(INSERT_SHIPMENTS, *_columns(shipments, 5), *_columns(items, 5))
    steps = [step_row(entry_id, event) for entry_id, event in events]
    return {row[0] for row in await conn.fetch(INSERT_BASKET_HISTORY, *_columns(steps, 6))}


def latest_baskets(events: Iterable[BasketEvent]) -> dict[str, BasketEvent]:
    """Each basket's newest event (highest seq) among `events`."""
    latest: dict[str, BasketEvent] = {}
    for event in events:
        known = latest.get(event.order_id)
        if known is None or known.record.seq < event.record.seq:
            latest[event.order_id] = event
    return latest


def basket_row(event: BasketConfirmed) -> BasketRow:
    record = event.record
    return (
        event.order_id,
        record.quantity,
        record.status,
        record.lat,
        record.lon,
        estimated_delivery(record.created_ms, record.eta_days),
        record.idempotency_key or None,
        _utc(record.created_ms),
        record.seq,
        record.rule,
    )


def basket_state_row(event: BasketChanged) -> BasketStateRow:
    """What a newer change sets in the basket's `orders` row."""
    record = event.record
    return (
        event.order_id,
        record.seq,
        record.status,
        estimated_delivery(record.created_ms, record.eta_days),
        _utc(event.at_ms),
    )


def line_rows(order_id: str, record: BasketRecord) -> list[LineRow]:
    return [
        (order_id, product_id, quantity, line_no)
        for line_no, (product_id, quantity) in enumerate(record.lines)
    ]


def shipment_rows(order_id: str, record: BasketRecord) -> tuple[list[ShipmentRow], list[ItemRow]]:
    """The basket's shipments (nearest first, as the record has them) and what each sends."""
    shipments: list[ShipmentRow] = []
    items: list[ItemRow] = []
    for position, shipment in enumerate(record.shipments):
        eta = estimated_delivery(record.created_ms, shipment.eta_days)
        shipments.append((order_id, shipment.warehouse_id, shipment.status, eta, position))
        items += [
            (order_id, shipment.warehouse_id, product_id, quantity, item_position)
            for item_position, (product_id, quantity) in enumerate(shipment.items)
        ]
    return shipments, items


def step_row(event_id: str, event: BasketEvent) -> StepRow:
    """The history row of a basket's event: the status the step reached (the moved shipment's,
    when one moved), the shipment's warehouse, and why, when the event says. A named shipment the
    record no longer holds was re-routed (lua/reroute_shipment.lua names the warehouse it left):
    the basket's status, and the reason says so, as for a one-product order."""
    record = event.record
    if isinstance(event, BasketConfirmed):
        return (event.order_id, "confirmed", _utc(record.created_ms), event_id, None, None)
    status, reason = record.status, event.reason or None
    if event.warehouse:
        moved = record.status_at(event.warehouse)
        if moved is None:
            reason = _rerouted_from(event.warehouse, reason)
        else:
            status = moved
    return (event.order_id, status, _utc(event.at_ms), event_id, reason, event.warehouse or None)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, as `unnest($1::...[], ...)` takes them."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _reason(event: OrderChange) -> str | None:
    """Why the order moved, when a person should know (a failure, a re-route); else None."""
    match event:
        case OrderRerouted(from_warehouse=origin, reason=why):
            return _rerouted_from(origin, why)
        case OrderStatusChanged(reason=why):
            return why or None
    return None


def _rerouted_from(origin: str, why: str | None) -> str:
    """A re-route's history reason, for an order and a basket's shipment alike."""
    return f"re-routed from {origin}" + (f": {why}" if why else "")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
