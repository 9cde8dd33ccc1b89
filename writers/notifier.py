"""The notifier: a consumer group that turns order events into notice jobs (rq, `notify.jobs`).

Confirmed, shipped, delivered and cancelled orders each get one job, whose ID is derived from
(order, status), so an event delivered twice (a claim, a replay) finds its job and adds nothing.
A basket gets its confirmation and cancellation the same way, and one notice per shipment that
ships, is delivered or is re-routed (derived from (order, status, warehouse):
`notify.jobs.shipment_event`).
The entry is acked once the job is in the queue; sending, retrying and giving up are the job's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from engine.events import (
    BasketChanged,
    BasketConfirmed,
    OrderCancelled,
    OrderRerouted,
    OrdersConfirmed,
    OrderStatusChanged,
)
from engine.records import BasketRecord
from notify.jobs import Notices, shipment_event
from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS
from stores.streams import NOTIFIER_GROUP
from writers.consumer import StreamEntry


class NotifierWriter:
    group: Final = NOTIFIER_GROUP
    # The queue lives in Redis too: its outages are the stream's, retried the same way.
    transient_errors: Final = REDIS_TRANSIENT_ERRORS
    # Enqueueing a job cannot fail for one entry's sake: an error left is a bug or an outage.
    permanent_errors: Final[tuple[type[BaseException], ...]] = ()

    def __init__(self, notices: Notices) -> None:
        self._notices = notices
        self.enqueued = 0

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        changes = [change for entry in entries for change in _notice_changes(entry.event)]
        if changes:
            # rq's client is blocking: keep it off the event loop the other writers share.
            self.enqueued += await asyncio.to_thread(self._notices.enqueue_automatic, changes)
        return []


def _notice_changes(event: object) -> list[tuple[str, str]]:
    """(order ID, what the customer is told) for each order the event moved; the notice queue
    drops what it has no notice for (picking, packed...)."""
    match event:
        case OrdersConfirmed(orders=orders):
            return [(placed.order_id, placed.record.status) for placed in orders]
        case OrderRerouted(order_id=order_id):
            # A re-route keeps the status (confirmed) but is news to the customer of its own.
            return [(order_id, "rerouted")]
        case (
            OrderCancelled(order_id=order_id, record=record)
            | OrderStatusChanged(order_id=order_id, record=record)
        ):
            return [(order_id, record.status)]
        case BasketConfirmed(order_id=order_id, record=record):
            return [(order_id, record.status)]
        case BasketChanged(order_id=order_id, record=record, warehouse=""):
            return _basket_moved(order_id, record)
        case BasketChanged(order_id=order_id, record=record, warehouse=warehouse_id):
            # A named shipment the record no longer holds was re-routed: its lines now ship
            # from others.
            status = record.status_at(warehouse_id) or "rerouted"
            return [(order_id, shipment_event(status, warehouse_id))]
    return []


def _basket_moved(order_id: str, record: BasketRecord) -> list[tuple[str, str]]:
    """A step of no one shipment: the whole basket cancelled (lua/cancel_basket.lua), one notice.
    Every shipment's own step names its warehouse (lua/basket_step.lua appends one event each)."""
    return [(order_id, "cancelled")] if record.status == "cancelled" else []
