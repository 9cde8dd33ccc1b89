"""Stream consumers that persist what the reservation engine decided: orders to PostgreSQL
(`writers.orders`) and inventory to MongoDB (`writers.inventory`), over the consumer-group
mechanics of `writers.streams`; the notifier (`writers.notifier`) turns order events into notice
jobs; entries none of them can persist go to `writers.dead_letters`. Run them with
`python -m writers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from stores.redis import RedisClient
from writers.inventory import INVENTORY_GROUP
from writers.notifier import NOTIFIER_GROUP
from writers.orders import ORDERS_GROUP
from writers.streams import GroupBacklog, backlog

WRITER_GROUPS: Final = (ORDERS_GROUP, INVENTORY_GROUP)
# Every group reading the partition streams; trimming keeps what any of them has not acked.
CONSUMER_GROUPS: Final = (*WRITER_GROUPS, NOTIFIER_GROUP)


async def writer_backlog(
    redis: RedisClient, groups: Sequence[str] = WRITER_GROUPS
) -> list[GroupBacklog]:
    """Per writer group: entries not yet delivered (lag) and delivered but not acked (pending),
    summed over the partition streams, with the busiest streams. For metrics and the CLI."""
    return await backlog(redis, groups)
