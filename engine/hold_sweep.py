"""The hold sweep: expired holds give their units back. A hold made by POST /inventory/reserve
goes back at once (lua/release_holds.lua); a basket's line hold goes back or stays sold by its
basket's decision (`engine.baskets.settle_expired_basket_holds`)."""

from __future__ import annotations

import time
from typing import Final

from engine import clock, commands, keys, scripts
from engine.baskets import settle_expired_basket_holds

RELEASE_BATCH: Final = 256  # expired holds released per partition per script call
# One sweep releases rounds of RELEASE_BATCH per partition until none is left or this is spent.
RELEASE_BUDGET_S: Final = 0.5


async def release_expired_holds(
    runner: scripts.ScriptRunner, now_ms: int | None = None, budget_s: float = RELEASE_BUDGET_S
) -> int:
    """Return the units of every expired hold to stock: rounds of up to RELEASE_BATCH holds per
    partition, all partitions in one pipeline per step, until none is left or `budget_s` is
    spent (the next sweep goes on from there). Returns how many holds were released."""
    now = clock.now_ms() if now_ms is None else now_ms
    give_up_at = time.monotonic() + budget_s
    released = 0
    while True:
        done, more = await _release_round(runner, now)
        released += done
        if not more or time.monotonic() >= give_up_at:
            return released


async def _release_round(runner: scripts.ScriptRunner, now: int) -> tuple[int, bool]:
    """One round; returns (holds released, whether a partition may have more)."""
    redis = runner.redis
    partitions = range(keys.PARTITIONS)
    pipe = redis.pipeline(transaction=False)
    for partition in partitions:
        pipe.zrangebyscore(keys.hold_expiries(partition), "-inf", now, 0, RELEASE_BATCH)
    expired: list[list[str]] = list(await pipe.execute())
    found = [(p, hold_id) for p, ids in zip(partitions, expired, strict=True) for hold_id in ids]
    if not found:
        return 0, False
    pipe = redis.pipeline(transaction=False)
    for partition, hold_id in found:
        pipe.hmget(keys.hold(partition, hold_id), "product", "owner")
    fields: list[list[str | None]] = list(await pipe.execute())
    per_partition: dict[int, list[tuple[str, str | None]]] = {}
    of_baskets: list[tuple[str, str, str]] = []
    for (partition, hold_id), (product, owner) in zip(found, fields, strict=True):
        if owner and product:
            of_baskets.append((hold_id, product, owner))
        else:
            per_partition.setdefault(partition, []).append((hold_id, product))
    batch = [
        commands.release_expired_holds(partition, now, holds)
        for partition, holds in per_partition.items()
    ]
    released = 0
    for result in await runner.run_all(batch):
        if isinstance(result, BaseException):
            raise result
        released += result
    if of_baskets:
        released += await settle_expired_basket_holds(runner, of_baskets)
    return released, any(len(ids) == RELEASE_BATCH for ids in expired)
