"""What `python -m writers status` reports: per consumer group and partition stream, the backlog
(entries not yet delivered), the pending entries (delivered, not acked) and the age of the oldest,
the dead letters and the read rate, with a totals row per group. Works on one Redis and on Redis
Cluster: every command names one stream, and a cluster pipeline splits them per node.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from redis import exceptions as redis_errors

from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS
from stores.redis import RedisClient, connect_redis
from stores.settings import Settings
from stores.streams import CONSUMER_GROUPS, PARTITION_STREAMS, backlog
from writers.dead_letters import DL_GROUP, READ_PAGE_ENTRIES, dead_letter_stream

DEFAULT_INTERVAL_S: Final = 1.0
# A cluster whose nodes cannot be reached fails while reading the slot map, with this error.
UNREACHABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    *REDIS_TRANSIENT_ERRORS,
    redis_errors.RedisClusterException,
)
NAME_WIDTH: Final = 32
COLUMNS: Final = ("backlog", "pending", "oldest_s", "dead", "read/s")
COLUMN_WIDTH: Final = 10

EntryKey = tuple[str, str]  # (stream, group)


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    backlog: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acked
    # Seconds since the oldest pending entry was appended (its ID's time, against this machine's
    # clock); None when nothing is pending.
    oldest_pending_age_s: float | None
    dead_letters: int  # entries the group gave up on (a second copy of one counts too)
    # Entries delivered to the group per second (XINFO GROUPS `entries-read`, sampled twice);
    # None when Redis cannot tell (no group yet, or a counter it lost track of).
    read_per_s: float | None


class PartitionStatus(Figures, frozen=True, kw_only=True):
    stream: str


class GroupStatus(Figures, frozen=True, kw_only=True):
    """A group's totals over its partitions."""

    group: str
    partitions: list[PartitionStatus]


class Status(msgspec.Struct, frozen=True):
    interval_s: float  # how long the read rate was measured over
    groups: list[GroupStatus]


async def collect_status(
    redis: RedisClient,
    groups: Sequence[str] = CONSUMER_GROUPS,
    streams: Sequence[str] = PARTITION_STREAMS,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> Status:
    before = await _entries_read(redis, streams)
    started = time.monotonic()
    await asyncio.sleep(interval_s)
    after = await _entries_read(redis, streams)
    elapsed_s = time.monotonic() - started
    # Every stream with work left; the backlog's own rule for a group Redis cannot give a lag for.
    report = await backlog(redis, groups, streams, top=len(streams))
    counts = {
        (row.stream, group.group): (row.lag, row.pending)
        for group in report
        for row in group.top_streams
    }
    oldest = await _oldest_pending_ids(redis, [key for key, (_, p) in counts.items() if p])
    dead = await _dead_letters_per_group(redis, streams)
    now_ms = time.time() * 1000

    def partition(stream: str, group: str) -> PartitionStatus:
        lag, pending = counts.get((stream, group), (0, 0))
        oldest_id = oldest.get((stream, group))
        first, last = before.get((stream, group)), after.get((stream, group))
        return PartitionStatus(
            stream=stream,
            backlog=lag,
            pending=pending,
            oldest_pending_age_s=None
            if oldest_id is None
            else max(0.0, (now_ms - _id_ms(oldest_id)) / 1000),
            dead_letters=dead[stream][group],
            read_per_s=None if first is None or last is None else (last - first) / elapsed_s,
        )

    return Status(
        interval_s,
        [_totals(group, [partition(stream, group) for stream in streams]) for group in groups],
    )


def _totals(group: str, partitions: list[PartitionStatus]) -> GroupStatus:
    ages = [p.oldest_pending_age_s for p in partitions if p.oldest_pending_age_s is not None]
    rates = [p.read_per_s for p in partitions if p.read_per_s is not None]
    return GroupStatus(
        group=group,
        partitions=partitions,
        backlog=sum(p.backlog for p in partitions),
        pending=sum(p.pending for p in partitions),
        oldest_pending_age_s=max(ages, default=None),
        dead_letters=sum(p.dead_letters for p in partitions),
        read_per_s=sum(rates) if rates else None,
    )


async def _entries_read(redis: RedisClient, streams: Sequence[str]) -> dict[EntryKey, int | None]:
    """Each group's `entries-read` counter per stream (Redis 7); a stream without groups (or
    not there yet) has none."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    replies = await pipe.execute(raise_on_error=False)
    counters: dict[EntryKey, int | None] = {}
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, redis_errors.ResponseError) and "no such key" in str(reply):
            continue  # no stream yet: nothing has been read from it
        if isinstance(reply, Exception):
            raise reply
        for group in reply:
            read = group.get("entries-read")
            counters[stream, str(group["name"])] = None if read is None else int(read)
    return counters


async def _oldest_pending_ids(redis: RedisClient, keys: Sequence[EntryKey]) -> dict[EntryKey, str]:
    pipe = redis.pipeline(transaction=False)
    for stream, group in keys:
        pipe.xpending(stream, group)
    summaries = await pipe.execute()
    return {key: str(s["min"]) for key, s in zip(keys, summaries, strict=True) if s["min"]}


async def _dead_letters_per_group(
    redis: RedisClient, streams: Sequence[str]
) -> dict[str, Counter[str]]:
    """Per partition stream, its dead letters by the group that gave up on them. A dead letter
    names its group only in its fields, so a non-empty dead-letter stream is read through, in
    pages; the DeadLettersPresent alert keeps them few."""
    dead_streams = [dead_letter_stream(stream) for stream in streams]
    pipe = redis.pipeline(transaction=False)
    for dead in dead_streams:
        pipe.xlen(dead)
    lengths = await pipe.execute()
    return {
        stream: await _groups_of(redis, dead) if length else Counter()
        for stream, dead, length in zip(streams, dead_streams, lengths, strict=True)
    }


async def _groups_of(redis: RedisClient, dead_letters: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    start = "-"
    while True:
        page: list[Any] = (
            await redis.xrange(dead_letters, min=start, max="+", count=READ_PAGE_ENTRIES) or []
        )
        counts.update(str(fields.get(DL_GROUP, "")) for _, fields in page if fields is not None)
        if len(page) < READ_PAGE_ENTRIES:
            return counts
        start = f"({page[-1][0]}"


def _id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


# --- Output ---


def format_status(status: Status) -> str:
    """An aligned table: each group's totals row, then its partitions, indented."""
    lines = [
        "oldest_s: seconds since the oldest pending entry was appended (its ID's time); "
        f"read/s: entries delivered to the group per second, over {status.interval_s:g} s",
        f"{'group / stream':<{NAME_WIDTH}} "
        + " ".join(f"{column:>{COLUMN_WIDTH}}" for column in COLUMNS),
    ]
    for group in status.groups:
        lines.append(_row(group.group, group))
        lines += [_row(f"  {p.stream}", p) for p in group.partitions]
    return "\n".join(lines)


def _row(name: str, figures: Figures) -> str:
    cells = (
        str(figures.backlog),
        str(figures.pending),
        _optional(figures.oldest_pending_age_s),
        str(figures.dead_letters),
        _optional(figures.read_per_s),
    )
    return f"{name:<{NAME_WIDTH}} " + " ".join(f"{cell:>{COLUMN_WIDTH}}" for cell in cells)


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


async def print_status(settings: Settings, interval_s: float, as_json: bool) -> int:
    """The CLI command: prints the table (or JSON); 1 when Redis cannot be reached."""
    redis = connect_redis(settings)
    try:
        status = await collect_status(redis, interval_s=interval_s)
    except UNREACHABLE_ERRORS as exc:
        print(f"cannot reach Redis at {_where(settings)}: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    print(msgspec.json.encode(status).decode() if as_json else format_status(status))
    return 0


def _where(settings: Settings) -> str:
    """The Redis address without the password a URL may carry."""
    url = urlsplit(settings.redis_url)
    return f"{url.hostname}:{url.port or 6379}"
