"""One consumer of one consumer group over the partition streams: read, persist, then ack.

Works unchanged on one Redis and on Redis Cluster: every command names a single stream (one hash
slot) and the per-stream commands of a round travel in one pipeline, which a cluster client splits
per node. An entry is acknowledged only after the writer's persist function returned, i.e. after
the write is durable; until then it stays in the group's pending list, where a dead consumer's
entries are taken over by XAUTOCLAIM. An entry the writer cannot persist is moved to the dead
letters (`writers.dead_letters`) and acked. Groups, trimming and the backlog are
`stores.streams`; the events themselves are `engine.events`; retrying is `writers.retry`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import msgspec
from redis import exceptions as redis_errors

from engine.events import (
    Event,
    MalformedEvent,
    OrderCancelled,
    OrderRerouted,
    OrdersConfirmed,
    OrderStatusChanged,
    UnknownEvent,
    decode_event,
    orders_in,
)
from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS
from stores.redis import RedisClient
from stores.settings import DEFAULT_DEAD_LETTER_AFTER_DELIVERIES
from stores.streams import (
    PARTITION_STREAMS,
    create_groups,
    forget_idle_consumers,
    is_nogroup,
    node_of,
    persisted_key,
    trim_streams,
)
from writers import dead_letters
from writers.dead_letters import Failure
from writers.retry import RETRY_BACKOFF_MAX_S, Stopping, retry_transient, sleep_unless

log = logging.getLogger(__name__)

READ_COUNT_PER_STREAM: Final = 2_000  # and at most MAX_BATCH_ENTRIES over all streams
MAX_BATCH_ENTRIES: Final = 32_000
# An `orders.confirmed` entry holds every order of a script call (1 to
# engine.placement.ORDERS_PER_SCRIPT_CALL): each read asks for as many entries as make about
# this many orders at the orders per entry the last read found, so that a batch, and the reply
# Redis builds for each stream while every other client waits, stays the same size whatever the
# entries hold.
BATCH_ORDERS: Final = 32_000
FIRST_ORDERS_PER_ENTRY: Final = 16.0
IDLE_BACKOFF_MIN_S: Final = 0.002
IDLE_BACKOFF_MAX_S: Final = 0.05
CLAIM_IDLE_MS: Final = 30_000
CLAIM_INTERVAL_S: Final = 5.0
CLAIM_COUNT_PER_STREAM: Final = 500
TRIM_INTERVAL_S: Final = 10.0
DEFERRED_RETRY_S: Final = 0.5
# A consumer name is hostname-pid, so every restart adds one; forget those long gone.
FORGET_CONSUMER_IDLE_MS: Final = 3_600_000
NO_CURSOR: Final = "0-0"


class StreamEntry(msgspec.Struct, frozen=True):
    stream: str
    entry_id: str
    event: Event | UnknownEvent | MalformedEvent

    @property
    def key(self) -> tuple[str, str]:
        return self.stream, self.entry_id


# --- What a writer provides. ---


class Writer(Protocol):
    """Persists a batch durably. Returns the entries that are *not yet applicable* (say, a cancel
    whose order has not been written yet): they stay pending and are offered again later.
    Entries of types the writer does not care about count as persisted (they get acked).

    `transient_errors` say the store is unavailable: retried until it is back. `permanent_errors`
    say an entry cannot be stored at all: once isolated, it goes to the dead letters at once. Any
    other error also isolates the entry, which goes there after `dead_letter_after_deliveries`."""

    @property
    def group(self) -> str: ...

    @property
    def transient_errors(self) -> tuple[type[BaseException], ...]: ...

    @property
    def permanent_errors(self) -> tuple[type[BaseException], ...]: ...

    async def persist(self, entries: Sequence[StreamEntry]) -> Sequence[StreamEntry]: ...


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    read_count_per_stream: int = READ_COUNT_PER_STREAM
    max_batch_entries: int = MAX_BATCH_ENTRIES
    batch_orders: int = BATCH_ORDERS
    claim_idle_ms: int = CLAIM_IDLE_MS
    trim_interval_s: float = TRIM_INTERVAL_S
    deferred_retry_s: float = DEFERRED_RETRY_S
    dead_letter_after_deliveries: int = DEFAULT_DEAD_LETTER_AFTER_DELIVERIES

    @property
    def claim_interval_s(self) -> float:
        # Look for stale entries at least twice per idle period, so a short idle (tests) acts fast.
        return min(CLAIM_INTERVAL_S, self.claim_idle_ms / 2000)


T = TypeVar("T")


@dataclass(slots=True)
class _Deferred:
    entries: dict[tuple[str, str], StreamEntry] = field(default_factory=dict)
    due_at: float = 0.0


@dataclass(slots=True)
class _Outcome:
    """What persisting a batch came to, entry by entry."""

    applied: list[StreamEntry] = field(default_factory=list)
    deferred: list[StreamEntry] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def joined(self, other: _Outcome) -> _Outcome:
        return _Outcome(
            self.applied + other.applied,
            self.deferred + other.deferred,
            self.failed + other.failed,
        )


class GroupConsumer:
    """One consumer of one group over all partition streams."""

    def __init__(
        self,
        redis: RedisClient,
        writer: Writer,
        consumer: str,
        *,
        streams: Sequence[str] = PARTITION_STREAMS,
        config: ConsumerConfig | None = None,
    ) -> None:
        self._redis = redis
        self._writer = writer
        self.group = writer.group
        self.consumer = consumer
        self._streams = tuple(streams)
        self._config = config or ConsumerConfig()
        self._transient = (*REDIS_TRANSIENT_ERRORS, *writer.transient_errors)
        self._permanent: tuple[type[BaseException], ...] = writer.permanent_errors
        self._stop = asyncio.Event()
        self._deferred = _Deferred()
        self._claim_cursors = dict.fromkeys(self._streams, NO_CURSOR)
        self._next_claim_at = 0.0
        self._next_trim_at = 0.0
        self._orders_per_entry = FIRST_ORDERS_PER_ENTRY
        self.persisted = 0  # entries acked by this consumer: for logs and benchmarks

    @property
    def deferred_count(self) -> int:
        return len(self._deferred.entries)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; the batch in hand is finished (persisted and acked) first."""
        self._stop = stop
        try:
            await self._retrying(
                "create groups", lambda: create_groups(self._redis, self._streams, [self.group])
            )
        except Stopping:
            return
        idle_s = IDLE_BACKOFF_MIN_S
        while not stop.is_set():
            try:
                handled = await self.step()
            except Stopping:
                break
            except Exception:  # a bug or an unexpected store answer: keep the loop alive
                log.exception("%s/%s: round failed; nothing was acked", self.group, self.consumer)
                await sleep_unless(stop, RETRY_BACKOFF_MAX_S)
                continue
            if handled:
                idle_s = IDLE_BACKOFF_MIN_S
            else:
                await sleep_unless(stop, idle_s)
                idle_s = min(idle_s * 2, IDLE_BACKOFF_MAX_S)
        log.info("%s/%s: stopped (%d persisted)", self.group, self.consumer, self.persisted)

    async def step(self) -> int:
        """One round: take over stale entries (when due), trim (when due), then read new entries
        plus due retries, persist and ack. Returns how many entries were read or claimed."""
        now = time.monotonic()
        handled = 0
        if now >= self._next_claim_at:
            handled += await self.claim_stale()
        if now >= self._next_trim_at:
            await self._retrying("trim", lambda: trim_streams(self._redis, self._streams))
            await self._retrying(
                "forget consumers",
                lambda: forget_idle_consumers(
                    self._redis, self._streams, self.group, FORGET_CONSUMER_IDLE_MS
                ),
            )
            self._next_trim_at = now + self._config.trim_interval_s
        batch = self._take_due_deferred(now)
        budget = self._config.max_batch_entries - len(batch)
        fresh = await self._retrying("read", lambda: self._read_new(budget)) if budget > 0 else []
        await self._persist_and_ack(batch + fresh)
        return handled + len(fresh)

    async def claim_stale(self) -> int:
        """XAUTOCLAIM entries pending longer than claim_idle_ms (their consumer died or is stuck)
        and persist them like fresh ones. Scans every stream; resumes the scan next round when the
        batch budget ran out."""
        entries = await self._retrying("claim", self._claim_round)
        if all(cursor == NO_CURSOR for cursor in self._claim_cursors.values()):
            self._next_claim_at = time.monotonic() + self._config.claim_interval_s
        await self._persist_and_ack(entries, claimed=True)
        return len(entries)

    # --- reading ---

    async def _read_new(self, budget: int) -> list[StreamEntry]:
        streams = len(self._streams)
        by_orders = int(self._config.batch_orders / (streams * self._orders_per_entry))
        count = max(1, min(self._config.read_count_per_stream, budget // streams, by_orders))
        entries: list[StreamEntry] = []
        lost_groups: list[str] = []
        # One round trip per stream, not one pipeline: Redis serves a client's pipelined commands
        # back to back, so the replies of a whole batch would hold every other client (the
        # orders too) for as long as it takes to build them; one stream's at a time, it serves
        # them in between.
        for stream in self._streams:
            try:
                reply = await self._redis.execute_command(
                    "XREADGROUP",
                    "GROUP",
                    self.group,
                    self.consumer,
                    "COUNT",
                    count,
                    "STREAMS",
                    stream,
                    ">",
                    **node_of(self._redis, stream),
                )
            except redis_errors.ResponseError as refused:
                if not is_nogroup(refused):
                    raise
                lost_groups.append(stream)
                continue
            entries += _entries(stream, _read_items(reply))
        if lost_groups:
            # The stream was deleted (and with it the group): recreate, read it next round.
            await create_groups(self._redis, lost_groups, [self.group])
        if entries:
            self._orders_per_entry = sum(orders_in(e.event) for e in entries) / len(entries)
        return entries

    async def _claim_round(self) -> list[StreamEntry]:
        count = max(
            1, min(CLAIM_COUNT_PER_STREAM, self._config.max_batch_entries // len(self._streams))
        )
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xautoclaim(
                stream,
                self.group,
                self.consumer,
                self._config.claim_idle_ms,
                start_id=self._claim_cursors[stream],
                count=count,
            )
        replies = await pipe.execute(raise_on_error=False)
        entries: list[StreamEntry] = []
        for stream, reply in zip(self._streams, replies, strict=True):
            if is_nogroup(reply):
                self._claim_cursors[stream] = NO_CURSOR
                continue
            if isinstance(reply, Exception):
                raise reply
            self._claim_cursors[stream] = str(reply[0])
            entries += _entries(stream, reply[1])
        return entries

    # --- persisting and acking ---

    async def _persist_and_ack(
        self, batch: Sequence[StreamEntry], *, claimed: bool = False
    ) -> None:
        if not batch:
            return
        unique = list({entry.key: entry for entry in batch}.values())
        malformed = [
            Failure(e.stream, e.entry_id, f"MalformedEvent: {e.event.error}", permanent=True)
            for e in unique
            if isinstance(e.event, MalformedEvent)
        ]
        workable = [e for e in unique if not isinstance(e.event, MalformedEvent)]
        outcome = await self._persist_isolating(workable)
        if outcome.applied:
            await self._retrying("ack", lambda: self._ack(outcome.applied))
            self.persisted += len(outcome.applied)
        deferred = outcome.deferred
        if claimed and deferred:
            deferred = await self._dead_letter_stale(deferred)
        if malformed or outcome.failed:
            settled = await self._dead_letter(malformed + outcome.failed)
            for key, deliveries in settled.waiting.items():
                log.warning(
                    "%s: entry %s of %s left pending (deliveries: %d; the dead letters at %d)",
                    self.group,
                    key[1],
                    key[0],
                    deliveries,
                    self._config.dead_letter_after_deliveries,
                    extra={"group": self.group, "stream": key[0], "entry_id": key[1]},
                )
        for entry in deferred:
            self._deferred.entries[entry.key] = entry
        if deferred and not self._deferred.due_at:
            self._deferred.due_at = time.monotonic() + self._config.deferred_retry_s

    async def _persist_isolating(self, entries: list[StreamEntry]) -> _Outcome:
        """Persist, retrying transient errors. Any other error is assumed to come from one bad
        entry: halve the batch until it is isolated. An entry that fails alone is handed back as
        failed (for the dead letters, or another try); the rest of its batch is persisted."""
        if not entries:
            return _Outcome()
        try:
            deferred = await self._retrying("persist", lambda: self._writer.persist(entries))
        except Stopping:
            raise
        except Exception as exc:
            error = exc
        else:
            waiting = {entry.key for entry in deferred}
            return _Outcome([e for e in entries if e.key not in waiting], list(deferred))
        # Outside the handler, so the halves' own errors are not chained to this one.
        if len(entries) == 1:
            return _Outcome(failed=[self._failure(entries[0], error)])
        half = len(entries) // 2
        first = await self._persist_isolating(entries[:half])
        return first.joined(await self._persist_isolating(entries[half:]))

    def _failure(self, entry: StreamEntry, exc: Exception) -> Failure:
        permanent = isinstance(exc, self._permanent)
        log.error(
            "%s: entry %s of %s cannot be persisted (%s error)",
            self.group,
            entry.entry_id,
            entry.stream,
            "permanent" if permanent else "unexpected",
            exc_info=exc,
            extra=_log_fields(self.group, entry),
        )
        return Failure(entry.stream, entry.entry_id, dead_letters.error_text(exc), permanent)

    async def _dead_letter(self, failures: list[Failure]) -> dead_letters.Settled:
        """Move the failures that are due to the dead letters; the others stay pending, and
        XAUTOCLAIM offers them again (one more delivery) after claim_idle_ms."""
        settled = await self._retrying(
            "dead letters",
            lambda: dead_letters.settle(
                self._redis,
                self.group,
                self.consumer,
                failures,
                self._config.dead_letter_after_deliveries,
            ),
        )
        for key in settled.moved:
            self._deferred.entries.pop(key, None)
        return settled

    async def _dead_letter_stale(self, deferred: list[StreamEntry]) -> list[StreamEntry]:
        """A not-yet-applicable entry that XAUTOCLAIM took over enough times is waiting for
        something that is not coming (say, a cancel whose order's confirmation is itself in the
        dead letters): it goes there too, rather than stay pending and hold trimming back.
        Checked on claimed batches only, as only a claim counts another delivery."""
        waiting = [
            Failure(e.stream, e.entry_id, "still not applicable (its order is missing)", False)
            for e in deferred
        ]
        moved = (await self._dead_letter(waiting)).moved
        return [entry for entry in deferred if entry.key not in moved]

    def _take_due_deferred(self, now: float) -> list[StreamEntry]:
        if not self._deferred.entries or now < self._deferred.due_at:
            return []
        due = list(self._deferred.entries.values())
        self._deferred = _Deferred()
        return due

    async def _ack(self, entries: Iterable[StreamEntry]) -> None:
        by_stream: defaultdict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_stream[entry.stream].append(entry.entry_id)
        pipe = self._redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        # In the ack's round trip, so counting costs nothing extra. A retried ack counts its
        # batch twice: a slight over-count is fine for a progress rate, a second trip per batch
        # is not.
        pipe.incrby(persisted_key(self.group), sum(len(ids) for ids in by_stream.values()))
        *acks, counted = await pipe.execute(raise_on_error=False)
        for reply in acks:
            if isinstance(reply, Exception):
                raise reply
        if isinstance(counted, redis_errors.OutOfMemoryError):
            # At maxmemory Redis refuses the counter, not the acks: the batch is done, and
            # draining the backlog is what frees memory. Only the progress count misses it.
            log.warning("%s: Redis is full; persisted count not updated", self.group)
        elif isinstance(counted, Exception):
            raise counted

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(
            f"{self.group}/{self.consumer}: {what}",
            operation,
            self._transient,
            self._stop,
            permanent=self._permanent,
        )


def _read_items(reply: Any) -> list[Any]:
    """XREADGROUP's entries for one stream; `stores.redis` speaks RESP2: [[stream, entries]]."""
    return [item for _, items in reply or () for item in items]


def _entries(stream: str, items: Iterable[Any]) -> list[StreamEntry]:
    return [
        StreamEntry(stream, str(entry_id), decode_event(fields))
        for entry_id, fields in items
        if entry_id is not None and fields is not None  # an ID deleted while pending
    ]


def _log_fields(group: str, entry: StreamEntry) -> dict[str, str]:
    """The structured fields of a log line about one entry: the order ID when it has one."""
    fields = {"group": group, "stream": entry.stream, "entry_id": entry.entry_id}
    if isinstance(entry.event, OrderCancelled | OrderStatusChanged | OrderRerouted):
        fields["order_id"] = entry.event.order_id
    elif isinstance(entry.event, OrdersConfirmed):
        fields["order_id"] = ",".join(placed.order_id for placed in entry.event.orders)
    return fields
