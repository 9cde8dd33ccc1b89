"""The partition streams' administration, below both the API and the writers: their names, the
consumer groups that read them, creating those groups, trimming what every group is done with,
and reading the backlog, the persisted counters and the dead-letter count (metrics, the CLI).

Works unchanged on one Redis and on Redis Cluster: every command names a single stream (one hash
slot) and the per-stream commands travel in one pipeline, which a cluster client splits per node.
A stream is trimmed only below what every group has acked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from engine import keys
from stores.redis import RedisClient

# Every partition stream, in partition order: where the engine's scripts append their events.
PARTITION_STREAMS: Final[tuple[str, ...]] = tuple(keys.stream(p) for p in range(keys.PARTITIONS))
# One dead-letter stream per partition stream, in its hash slot (`writers.dead_letters`).
DEAD_LETTER_STREAMS: Final[tuple[str, ...]] = tuple(
    keys.dead_letters(p) for p in range(keys.PARTITIONS)
)

ORDERS_GROUP: Final = "orders-writer"  # writers.orders: orders to PostgreSQL
INVENTORY_GROUP: Final = "inventory-writer"  # writers.inventory: stock to MongoDB
NOTIFIER_GROUP: Final = "notifier"  # writers.notifier: notice jobs
WRITER_GROUPS: Final = (ORDERS_GROUP, INVENTORY_GROUP)
# Every group reading the partition streams; trimming keeps what any of them has not acked.
CONSUMER_GROUPS: Final = (*WRITER_GROUPS, NOTIFIER_GROUP)

# Start new groups at the stream's beginning, so nothing appended before a writer first ran is lost.
GROUP_START_ID: Final = "0"
# Entries acked per group, over every consumer and restart: what `writer_persisted_total` exports.
PERSISTED_KEY_PREFIX: Final = "writers:persisted:"
COUNT_PAGE_ENTRIES: Final = 10_000


# --- Groups and trimming ---


async def create_groups(redis: RedisClient, streams: Iterable[str], groups: Iterable[str]) -> None:
    """Idempotent. MKSTREAM: a partition that never had an event still gets its group."""
    pairs = [(stream, group) for stream in streams for group in groups]
    pipe = redis.pipeline(transaction=False)
    for stream, group in pairs:
        pipe.xgroup_create(stream, group, id=GROUP_START_ID, mkstream=True)
    replies = await pipe.execute(raise_on_error=False)
    refused = []
    for pair, reply in zip(pairs, replies, strict=True):
        if isinstance(reply, redis_errors.OutOfMemoryError):
            refused.append(pair)  # Redis is full: refused before it looked whether the group exists
        elif isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
            raise reply
    if refused:
        await _require_existing_groups(redis, refused)


async def _require_existing_groups(redis: RedisClient, pairs: Sequence[tuple[str, str]]) -> None:
    """At maxmemory XGROUP CREATE is refused even for a group that exists; a writer can still
    start (and drain, which frees memory) if it does. XINFO GROUPS is a read: allowed."""
    infos = await pipelined(redis, [s for s, _ in pairs], lambda pipe, s: pipe.xinfo_groups(s))
    for (stream, group), info in zip(pairs, infos, strict=True):
        names = set() if isinstance(info, Exception) else {str(g["name"]) for g in info}
        if group not in names:
            raise redis_errors.OutOfMemoryError(
                f"Redis is full: cannot create group {group!r} on {stream!r}"
            )


async def trim_streams(redis: RedisClient, streams: Sequence[str]) -> int:
    """Drop every entry that all groups of a stream are done with: XTRIM MINID to the oldest ID
    any group still needs (its oldest pending entry, else the one after its last-delivered ID).
    A stream without groups is left alone: nobody said what they still need. Returns the count
    of entries removed."""
    infos = await pipelined(redis, streams, lambda pipe, stream: pipe.xinfo_groups(stream))
    pending_of = [
        (stream, str(group["name"]))
        for stream, groups in zip(streams, infos, strict=True)
        if not isinstance(groups, Exception)
        for group in groups
        if int(group["pending"]) > 0
    ]
    pipe = redis.pipeline(transaction=False)
    for stream, group_name in pending_of:
        pipe.xpending(stream, group_name)
    summaries = await pipe.execute(raise_on_error=False)
    oldest_pending: dict[tuple[str, str], str] = {}
    for pair, summary in zip(pending_of, summaries, strict=True):
        if isinstance(summary, Exception):
            raise summary
        if summary["min"]:
            oldest_pending[pair] = str(summary["min"])
    trims: list[tuple[str, str]] = []
    for stream, groups in zip(streams, infos, strict=True):
        if isinstance(groups, Exception) or not groups:
            continue  # no such stream yet, or no group
        needed = [
            oldest_needed(
                str(group["last-delivered-id"]), oldest_pending.get((stream, str(group["name"])))
            )
            for group in groups
        ]
        trims.append((stream, min(needed, key=entry_id_order)))
    pipe = redis.pipeline(transaction=False)
    for stream, min_id in trims:
        pipe.xtrim(stream, minid=min_id, approximate=False)
    removed = 0
    for reply in await pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception):
            raise reply
        removed += int(reply)
    return removed


async def forget_idle_consumers(
    redis: RedisClient, streams: Sequence[str], group: str, idle_ms: int
) -> int:
    """Delete consumers that own no pending entry and were not seen for idle_ms. Safe even if one
    is still alive: its next read re-creates it."""
    infos = await pipelined(redis, streams, lambda pipe, s: pipe.xinfo_consumers(s, group))
    gone = [
        (stream, str(consumer["name"]))
        for stream, consumers in zip(streams, infos, strict=True)
        if not isinstance(consumers, Exception)
        for consumer in consumers
        if int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms
    ]
    if gone:
        pipe = redis.pipeline(transaction=False)
        for stream, name in gone:
            pipe.xgroup_delconsumer(stream, group, name)
        await pipe.execute(raise_on_error=False)
    return len(gone)


# --- Progress: persisted counters, backlog, dead letters ---


def persisted_key(group: str) -> str:
    return f"{PERSISTED_KEY_PREFIX}{group}"


async def persisted_counts(redis: RedisClient, groups: Sequence[str]) -> dict[str, int]:
    """Entries acked so far per group (0 for a group that never acked)."""
    pipe = redis.pipeline(transaction=False)
    for group in groups:
        pipe.get(persisted_key(group))
    replies = await pipe.execute()
    return {group: int(reply or 0) for group, reply in zip(groups, replies, strict=True)}


class StreamBacklog(msgspec.Struct, frozen=True):
    stream: str
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acked

    @property
    def total(self) -> int:
        return self.lag + self.pending


class GroupBacklog(msgspec.Struct, frozen=True):
    group: str
    lag: int
    pending: int
    top_streams: list[StreamBacklog]  # the streams with the most work left, largest first


async def backlog(
    redis: RedisClient,
    groups: Sequence[str],
    streams: Sequence[str] = PARTITION_STREAMS,
    top: int = 5,
) -> list[GroupBacklog]:
    """Per group: entries not yet delivered (XINFO GROUPS `lag`, counted when Redis cannot tell)
    and entries delivered but not acked, summed over the streams."""
    infos = await pipelined(redis, streams, lambda pipe, stream: pipe.xinfo_groups(stream))
    lengths = await pipelined(redis, streams, lambda pipe, stream: pipe.xlen(stream))
    per_group: dict[str, list[StreamBacklog]] = {group: [] for group in groups}
    for stream, info, length in zip(streams, infos, lengths, strict=True):
        by_name = {} if isinstance(info, Exception) else {str(g["name"]): g for g in info}
        for group in groups:
            found = by_name.get(group)
            if found is None:  # no group yet: it will start at the stream's beginning
                undelivered = 0 if isinstance(length, Exception) else int(length)
                entry = StreamBacklog(stream, undelivered, 0)
            else:
                lag = found.get("lag")
                if lag is None:
                    lag = await _count_after(redis, stream, str(found["last-delivered-id"]))
                entry = StreamBacklog(stream, int(lag), int(found["pending"]))
            per_group[group].append(entry)
    report = []
    for group, rows in per_group.items():
        busiest = sorted((r for r in rows if r.total), key=lambda r: r.total, reverse=True)
        report.append(
            GroupBacklog(
                group, sum(r.lag for r in rows), sum(r.pending for r in rows), busiest[:top]
            )
        )
    return report


async def writer_backlog(
    redis: RedisClient, groups: Sequence[str] = WRITER_GROUPS
) -> list[GroupBacklog]:
    """Per writer group: entries not yet delivered (lag) and delivered but not acked (pending),
    summed over the partition streams, with the busiest streams. For metrics and the CLI."""
    return await backlog(redis, groups)


async def dead_letter_count(redis: RedisClient) -> int:
    """Entries in every dead-letter stream (a second copy of one entry counts too)."""
    pipe = redis.pipeline(transaction=False)
    for stream in DEAD_LETTER_STREAMS:
        pipe.xlen(stream)
    return sum(int(length) for length in await pipe.execute())


# --- Cluster routing and stream IDs ---


def node_of(redis: RedisClient, stream: str) -> dict[str, Any]:
    """The `target_nodes` keyword naming the node that owns `stream` on a cluster ({} on one
    Redis). XREAD and XREADGROUP have "movable" keys, which a cluster client resolves with an
    extra COMMAND GETKEYS round trip per call; naming the node skips it."""
    if isinstance(redis, RedisCluster):
        return {"target_nodes": redis.get_node_from_key(stream)}
    return {}


async def pipelined(
    redis: RedisClient, streams: Sequence[str], add: Callable[[Any, str], object]
) -> list[Any]:
    """One command per stream in one pipeline (split per node on a cluster); each reply or its
    error, in the streams' order."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        add(pipe, stream)
    return list(await pipe.execute(raise_on_error=False))


def is_nogroup(reply: object) -> bool:
    """The reply says the stream has no such group (the stream was deleted, and its groups)."""
    return isinstance(reply, redis_errors.ResponseError) and "NOGROUP" in str(reply)


def entry_id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry ID as (ms, seq), which sorts as Redis orders IDs (text does not)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def oldest_needed(last_delivered: str, oldest_pending: str | None) -> str:
    """The oldest entry ID a group still needs: its oldest pending entry, else the one after its
    last-delivered ID."""
    ms, seq = entry_id_order(last_delivered)
    after_delivered = f"{ms}-{seq + 1}"
    if oldest_pending is None:
        return after_delivered
    return min(oldest_pending, after_delivered, key=entry_id_order)


async def _count_after(redis: RedisClient, stream: str, last_id: str) -> int:
    """Entries after last_id, counted by paging (only when XINFO cannot say: after an XDEL)."""
    total, start = 0, f"({last_id}"
    while True:
        page: list[Any] = (
            await redis.xrange(stream, min=start, max="+", count=COUNT_PAGE_ENTRIES) or []
        )
        total += len(page)
        if len(page) < COUNT_PAGE_ENTRIES:
            return total
        start = f"({page[-1][0]}"
