"""Dead letters: stream entries a writer cannot persist, moved out of the consumer group's way and
kept, with their error, for a person to list and replay (`python -m writers dead-letters`).

An entry goes there when its error is permanent (the writer's `permanent_errors`, a malformed
event) or when Redis has delivered it `dead_letter_after_deliveries` times and it failed each
time. It is then acked, so the group's pending list empties and trimming passes it. Each partition
stream has its own dead-letter stream in the same hash slot (`engine.keys.dead_letters`). A dead
letter is the original entry's fields plus the `dl_*` fields below.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from engine import clock, keys
from engine.events import order_ids_of
from stores.redis import RedisClient
from stores.streams import DEAD_LETTER_STREAMS, entry_id_order

log = logging.getLogger(__name__)

# Per dead-letter stream, approximately (XADD MAXLEN ~), so the oldest go first past it. A flood
# that large is a systemic fault the DeadLettersPresent alert reported long before; unbounded,
# it would eat into the memory Redis keeps for placing orders.
DEAD_LETTERS_MAXLEN: Final = 100_000
ERROR_MAX_CHARS: Final = 2_000  # asyncpg's messages can carry a whole row
READ_PAGE_ENTRIES: Final = 1_000

DL_STREAM: Final = "dl_stream"  # the partition stream the entry came from
DL_ENTRY_ID: Final = "dl_entry_id"  # its ID there
DL_GROUP: Final = "dl_group"  # the consumer group that gave up on it
DL_ERROR: Final = "dl_error"
DL_DELIVERIES: Final = "dl_deliveries"  # times Redis had delivered it to the group
DL_AT_MS: Final = "dl_at_ms"
DL_FIELDS: Final = frozenset({DL_STREAM, DL_ENTRY_ID, DL_GROUP, DL_ERROR, DL_DELIVERIES, DL_AT_MS})

_PARTITION_OF_STREAM: Final = {keys.stream(p): p for p in range(keys.PARTITIONS)}

EntryKey = tuple[str, str]  # (stream, entry ID)


class NotAPartitionStream(ValueError):
    """Only the partition streams have dead-letter streams."""


class AmbiguousEntry(ValueError):
    """An entry ID dead-lettered from several partition streams: name the stream."""


def dead_letter_stream(stream: str) -> str:
    partition = _PARTITION_OF_STREAM.get(stream)
    if partition is None:
        raise NotAPartitionStream(stream)
    return keys.dead_letters(partition)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


@dataclass(frozen=True, slots=True)
class Failure:
    """An entry a writer could not persist, and why."""

    stream: str
    entry_id: str
    error: str
    permanent: bool  # retrying cannot help: dead-letter it at once

    @property
    def key(self) -> EntryKey:
        return self.stream, self.entry_id


@dataclass(frozen=True, slots=True)
class Settled:
    moved: set[EntryKey] = field(default_factory=set)
    # The failures still pending at this consumer and not moved: how often each was delivered.
    waiting: dict[EntryKey, int] = field(default_factory=dict)


class DeadLetter(msgspec.Struct, frozen=True):
    stream: str
    entry_id: str
    group: str
    error: str
    deliveries: int
    at_ms: int
    fields: dict[str, str]  # the original entry's
    dead_letter_stream: str
    dead_letter_id: str

    @property
    def key(self) -> EntryKey:
        return self.stream, self.entry_id

    @property
    def event_type(self) -> str:
        return self.fields.get("type", "")

    @property
    def order_id(self) -> str:
        """The order it is about; several, comma-separated, for an `orders.confirmed` entry."""
        return order_ids_of(self.fields)


# --- Moving entries: what the consumer calls. ---


async def settle(
    redis: RedisClient,
    group: str,
    consumer: str,
    failures: Sequence[Failure],
    after_deliveries: int,
) -> Settled:
    """Move the permanent failures, and the others Redis delivered `after_deliveries` times, to the
    dead letters. Only entries still pending at `consumer` are considered: one that another
    consumer claimed meanwhile is that consumer's to settle."""
    counts = await delivery_counts(redis, group, consumer, [f.key for f in failures])

    def is_due(failure: Failure) -> bool:
        return failure.permanent or counts[failure.key] >= after_deliveries

    due = [failure for failure in failures if failure.key in counts and is_due(failure)]
    if due:
        await move(redis, group, [(f, counts[f.key]) for f in due])
    moved = {f.key for f in due}
    return Settled(moved, {k: n for k, n in counts.items() if k not in moved})


async def delivery_counts(
    redis: RedisClient, group: str, consumer: str, entries: Sequence[EntryKey]
) -> dict[EntryKey, int]:
    """How many times Redis delivered each entry to the group (XREADGROUP counts one, every
    XAUTOCLAIM one more), from XPENDING's extended form; entries not pending at `consumer` are
    left out."""
    pipe = redis.pipeline(transaction=False)
    for stream, entry_id in entries:
        pipe.xpending_range(
            stream, group, min=entry_id, max=entry_id, count=1, consumername=consumer
        )
    replies = await pipe.execute()
    return {
        key: int(reply[0]["times_delivered"])
        for key, reply in zip(entries, replies, strict=True)
        if reply
    }


async def move(redis: RedisClient, group: str, failures: Sequence[tuple[Failure, int]]) -> int:
    """XADD each entry (its original fields plus the `dl_*` ones) to its partition's dead-letter
    stream, then XACK it. Returns how many were moved.

    Not atomic: a crash, or a lost reply that is retried, after the XADD and before the XACK
    leaves the entry pending, so it is moved again and the dead letters hold a second copy, which
    `list` shows under the same original entry ID and `replay` re-appends once. The XACKs wait for
    every XADD to succeed (a second round trip): in one pipeline, an XADD refused (say, Redis at its
    memory limit) would not stop its XACK, and the entry would be gone."""
    originals = await _originals(redis, [f.key for f, _ in failures])
    now_ms = clock.now_ms()
    present = [(f, n) for f, n in failures if f.key in originals]
    pipe = redis.pipeline(transaction=False)
    for failure, deliveries in present:
        fields = {
            **originals[failure.key],
            DL_STREAM: failure.stream,
            DL_ENTRY_ID: failure.entry_id,
            DL_GROUP: group,
            DL_ERROR: failure.error,
            DL_DELIVERIES: str(deliveries),
            DL_AT_MS: str(now_ms),
        }
        pipe.xadd(
            dead_letter_stream(failure.stream),
            fields,
            maxlen=DEAD_LETTERS_MAXLEN,
            approximate=True,
        )
    _raise_first(await pipe.execute(raise_on_error=False))
    # An entry deleted from its stream meanwhile has nothing left to keep: acked all the same.
    await _ack(redis, group, [f.key for f, _ in failures])
    for failure, deliveries in present:
        log.error(
            "%s: entry %s of %s moved to the dead letters (deliveries: %d): %s",
            group,
            failure.entry_id,
            failure.stream,
            deliveries,
            failure.error,
            extra={
                "group": group,
                "stream": failure.stream,
                "entry_id": failure.entry_id,
                "order_id": order_ids_of(originals[failure.key]),
                "deliveries": deliveries,
            },
        )
    return len(present)


# --- Reading, replaying, counting: for the CLI and /metrics. ---


async def list_dead_letters(
    redis: RedisClient, limit: int, streams: Sequence[str] = DEAD_LETTER_STREAMS
) -> list[DeadLetter]:
    """The oldest `limit` dead letters over the dead-letter streams, oldest first."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xrange(stream, count=limit)
    pages = await pipe.execute()
    letters = [
        _dead_letter(stream, str(entry_id), fields)
        for stream, page in zip(streams, pages, strict=True)
        for entry_id, fields in page or ()
        if fields is not None
    ]
    return sorted(letters, key=lambda letter: entry_id_order(letter.dead_letter_id))[:limit]


async def replay(
    redis: RedisClient, entry_ids: Collection[str] | None, stream: str | None = None
) -> list[DeadLetter]:
    """Re-append dead-lettered entries to their partition stream, then delete their dead letters.
    `entry_ids` are original entry IDs (None: every dead letter); `stream` limits the search to
    one partition stream. Every copy of an entry (another group's, a second one) is deleted and
    the entry re-appended once. Returns the entries replayed, in the order re-appended.

    The re-appended entry gets a new ID, and every group reads it again; the writers are
    idempotent. Not atomic either: a crash between the XADDs and the XDELs leaves the dead
    letters in place, and replaying them again appends them a second time, which is as safe."""
    streams = DEAD_LETTER_STREAMS if stream is None else (dead_letter_stream(stream),)
    copies: defaultdict[EntryKey, list[DeadLetter]] = defaultdict(list)
    for letter in await _read_all(redis, streams):
        if entry_ids is None or letter.entry_id in entry_ids:
            copies[letter.key].append(letter)
    if entry_ids is not None:
        _check_unambiguous(copies)
    chosen = sorted(copies, key=lambda key: (key[0], entry_id_order(key[1])))  # original order
    for start in range(0, len(chosen), READ_PAGE_ENTRIES):
        await _reappend(redis, [copies[key] for key in chosen[start : start + READ_PAGE_ENTRIES]])
    return [copies[key][0] for key in chosen]


# --- small pieces ---


async def _originals(redis: RedisClient, entries: Sequence[EntryKey]) -> dict[EntryKey, Any]:
    """The stored fields of each entry (re-read: the consumer keeps only the decoded event)."""
    pipe = redis.pipeline(transaction=False)
    for stream, entry_id in entries:
        pipe.xrange(stream, min=entry_id, max=entry_id, count=1)
    replies = await pipe.execute()
    return {
        key: dict(reply[0][1])
        for key, reply in zip(entries, replies, strict=True)
        if reply and reply[0][1] is not None
    }


async def _ack(redis: RedisClient, group: str, entries: Iterable[EntryKey]) -> None:
    by_stream: defaultdict[str, list[str]] = defaultdict(list)
    for stream, entry_id in entries:
        by_stream[stream].append(entry_id)
    pipe = redis.pipeline(transaction=False)
    for stream, ids in by_stream.items():
        pipe.xack(stream, group, *ids)
    _raise_first(await pipe.execute(raise_on_error=False))


async def _reappend(redis: RedisClient, entries: Sequence[list[DeadLetter]]) -> None:
    """XADD each entry once to its partition stream, then XDEL every copy of it."""
    pipe = redis.pipeline(transaction=False)
    for copies in entries:
        pipe.xadd(copies[0].stream, copies[0].fields)  # type: ignore[arg-type]
    _raise_first(await pipe.execute(raise_on_error=False))
    by_stream: defaultdict[str, list[str]] = defaultdict(list)
    for copies in entries:
        for letter in copies:
            by_stream[letter.dead_letter_stream].append(letter.dead_letter_id)
    pipe = redis.pipeline(transaction=False)
    for dead_letters, ids in by_stream.items():
        pipe.xdel(dead_letters, *ids)
    _raise_first(await pipe.execute(raise_on_error=False))


async def _read_all(redis: RedisClient, streams: Sequence[str]) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for stream in streams:
        start = "-"
        while True:
            page: list[Any] = (
                await redis.xrange(stream, min=start, max="+", count=READ_PAGE_ENTRIES) or []
            )
            letters += [_dead_letter(stream, str(i), f) for i, f in page if f is not None]
            if len(page) < READ_PAGE_ENTRIES:
                break
            start = f"({page[-1][0]}"
    return letters


def _check_unambiguous(copies: dict[EntryKey, list[DeadLetter]]) -> None:
    # Entry IDs are per stream: two partitions can each have had an entry 1700000000000-0.
    streams_of: defaultdict[str, set[str]] = defaultdict(set)
    for stream, entry_id in copies:
        streams_of[entry_id].add(stream)
    shared = {entry_id: sorted(s) for entry_id, s in streams_of.items() if len(s) > 1}
    if shared:
        raise AmbiguousEntry(shared)


def _dead_letter(dead_letters: str, dead_letter_id: str, fields: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        stream=fields.get(DL_STREAM, ""),
        entry_id=fields.get(DL_ENTRY_ID, ""),
        group=fields.get(DL_GROUP, ""),
        error=fields.get(DL_ERROR, ""),
        deliveries=int(fields.get(DL_DELIVERIES) or 0),
        at_ms=int(fields.get(DL_AT_MS) or 0),
        fields={k: v for k, v in fields.items() if k not in DL_FIELDS},
        dead_letter_stream=dead_letters,
        dead_letter_id=dead_letter_id,
    )


def _raise_first(replies: Iterable[object]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
