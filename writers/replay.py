"""Re-persisting a stream from an entry ID (`python -m writers replay --stream ... --from ...`).

The writers are idempotent (orders inserted ON CONFLICT DO NOTHING, status changes only forward,
inventory versioned, notices by job ID), so handing them entries they already persisted is safe;
this is how an operator repairs a store restored from an older backup. It reads with XRANGE and
does not touch the consumer groups.

After each page it records a checkpoint, per stream and writer group, in a Redis key named after
the stream (so it carries the stream's hash tag and lives in its slot on a cluster): `--resume`
continues after it, and a completed replay marks it done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import msgspec

from engine.events import decode_event
from stores.redis import RedisClient
from writers.consumer import StreamEntry, Writer

PAGE_ENTRIES: Final = 1_000
DEFERRED_ROUNDS: Final = 10  # a status change whose order came later in the replay waits for it
PROGRESS_EVERY_S: Final = 1.0
CHECKPOINT_KEY_PREFIX: Final = "replay:checkpoint:"
log = logging.getLogger(__name__)


class Checkpoint(msgspec.Struct, frozen=True):
    from_id: str  # where the replay began (inclusive)
    last_id: str = ""  # every entry from from_id up to this one is persisted ("": none yet)
    done: bool = False

    @property
    def start(self) -> str:
        """The XRANGE start that continues the replay."""
        return f"({self.last_id}" if self.last_id else self.from_id


def checkpoint_key(stream: str, group: str) -> str:
    return f"{CHECKPOINT_KEY_PREFIX}{stream}:{group}"


async def load_checkpoint(redis: RedisClient, stream: str, group: str) -> Checkpoint | None:
    raw = await redis.get(checkpoint_key(stream, group))
    return None if raw is None else msgspec.json.decode(raw, type=Checkpoint)


async def _save(redis: RedisClient, stream: str, group: str, checkpoint: Checkpoint) -> None:
    await redis.set(checkpoint_key(stream, group), msgspec.json.encode(checkpoint))


@dataclass(slots=True)
class _Progress:
    """Entries done, their rate and the last entry ID, written at most once per PROGRESS_EVERY_S."""

    label: str
    out: TextIO | None
    entries: int = 0
    started: float = field(default_factory=time.monotonic)
    written_at: float = float("-inf")  # the first page is reported at once

    def advance(self, entries: int, last_id: str) -> None:
        self.entries += entries
        now = time.monotonic()
        if self.out is None or now - self.written_at < PROGRESS_EVERY_S:
            return
        self.written_at = now
        rate = self.entries / max(now - self.started, 1e-6)
        print(
            f"{self.label}: {self.entries} entries, {rate:.0f}/s, last {last_id}",
            file=self.out,
            flush=True,
        )


async def replay(
    redis: RedisClient,
    writer: Writer,
    stream: str,
    start: str | Checkpoint,
    *,
    page_entries: int = PAGE_ENTRIES,
    progress: TextIO | None = None,
) -> int:
    """Persist the entries of `stream` from `start`: an entry ID (inclusive; a checkpoint an
    earlier replay left is replaced) or the checkpoint of an interrupted replay (continued after
    it). Records the checkpoint after each page and marks it done at the end. Returns how many
    entries were read (0 when the checkpoint says the replay is done)."""
    checkpoint = start if isinstance(start, Checkpoint) else Checkpoint(start)
    if checkpoint.done:
        return 0
    await _save(redis, stream, writer.group, checkpoint)
    meter = _Progress(f"{writer.group} {stream}", progress)
    position, last_id = checkpoint.start, checkpoint.last_id
    waiting: list[StreamEntry] = []
    while True:
        page: list[Any] = (
            await redis.xrange(stream, min=position, max="+", count=page_entries) or []
        )
        entries = [StreamEntry(stream, str(i), decode_event(f)) for i, f in page]
        if entries:
            waiting = list(await writer.persist(waiting + entries))
            last_id = entries[-1].entry_id
            # Past an entry still waiting for its order, a resume would skip it: hold back.
            if not waiting:
                checkpoint = msgspec.structs.replace(checkpoint, last_id=last_id)
                await _save(redis, stream, writer.group, checkpoint)
            meter.advance(len(entries), last_id)
        if len(page) < page_entries:
            break
        position = f"({last_id}"
    await _persist_waiting(writer, waiting)
    done = msgspec.structs.replace(checkpoint, last_id=last_id, done=True)
    await _save(redis, stream, writer.group, done)
    return meter.entries


async def _persist_waiting(writer: Writer, waiting: list[StreamEntry]) -> None:
    for _ in range(DEFERRED_ROUNDS):
        if not waiting:
            return
        await asyncio.sleep(0.5)
        waiting = list(await writer.persist(waiting))
    if waiting:
        log.warning(
            "%s: %d entries still not applicable (order missing)", writer.group, len(waiting)
        )
