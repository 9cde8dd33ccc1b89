"""The notifier: a consumer group that turns order events into notice jobs (rq, `notify.jobs`).

Confirmed, shipped, delivered and cancelled orders each get one job, whose ID is derived from
(order, status), so an event delivered twice (a claim, a replay) finds its job and adds nothing.
The entry is acked once the job is in the queue; sending, retrying and giving up are the job's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from notify.jobs import Notices
from writers.streams import (
    REDIS_TRANSIENT_ERRORS,
    OrderCancelled,
    OrderConfirmed,
    OrderRerouted,
    OrderStatusChanged,
    StreamEntry,
)

NOTIFIER_GROUP: Final = "notifier"


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
        changes = [
            # A re-route keeps the status (confirmed) but is news to the customer of its own.
            (entry.event.order, "rerouted")
            if isinstance(entry.event, OrderRerouted)
            else (entry.event.order, entry.event.record.status)
            for entry in entries
            if isinstance(
                entry.event, OrderConfirmed | OrderCancelled | OrderStatusChanged | OrderRerouted
            )
        ]
        if changes:
            # rq's client is blocking: keep it off the event loop the other writers share.
            self.enqueued += await asyncio.to_thread(self._notices.enqueue_automatic, changes)
        return []
