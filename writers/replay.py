"""Re-persisting a stream from an entry ID (`python -m writers replay --stream ... --from ...`).

The writers are idempotent (orders inserted ON CONFLICT DO NOTHING, status changes only forward,
inventory versioned, notices by job ID), so handing them entries they already persisted is safe;
this is how an operator repairs a store restored from an older backup. It reads with XRANGE and
does not touch the consumer groups.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from stores.redis import RedisClient
from writers.streams import StreamEntry, Writer, decode_event

PAGE_ENTRIES: Final = 1_000
DEFERRED_ROUNDS: Final = 10  # a status change whose order came later in the replay waits for it
log = logging.getLogger(__name__)


async def replay(redis: RedisClient, writer: Writer, stream: str, from_id: str) -> int:
    """Persist every entry of `stream` from `from_id` (inclusive) on; returns how many."""
    total, start = 0, from_id
    waiting: list[StreamEntry] = []
    while True:
        page: list[Any] = await redis.xrange(stream, min=start, max="+", count=PAGE_ENTRIES) or []
        entries = [StreamEntry(stream, str(i), decode_event(f)) for i, f in page]
        if entries:
            waiting = list(await writer.persist(waiting + entries))
            total += len(entries)
        if len(page) < PAGE_ENTRIES:
            break
        start = f"({page[-1][0]}"
    for _ in range(DEFERRED_ROUNDS):
        if not waiting:
            break
        await asyncio.sleep(0.5)
        waiting = list(await writer.persist(waiting))
    if waiting:
        log.warning(
            "%s: %d entries still not applicable (order missing)", writer.group, len(waiting)
        )
    return total
