"""`python -m writers` runs the orders and inventory writers, the notifier and the sweeps (expired
holds, stuck orders) in one process until SIGTERM/SIGINT (each writer finishes the batch in hand,
then exits). `python -m writers status [--json] [--interval S]` prints, per group and partition,
the backlog, pending entries, the oldest one's age, dead letters and read rate. `python -m
writers replay --stream S --from ID` re-persists a stream from an entry ID, with a checkpoint per
page that `--resume` continues from. `python -m writers dead-letters list|replay` lists the
entries the writers gave up on, re-appends them to their stream. Stores are configured from the
environment (`stores.settings`), and so is after how many deliveries an entry that keeps failing
is dead-lettered (DEAD_LETTER_AFTER_DELIVERIES, default 5). The notifier enqueues notices; the
worker that sends them is `python -m notify`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import asyncpg
from pymongo import AsyncMongoClient

from engine.scripts import script_runner
from notify.jobs import Notices
from stores.mongo import connect_mongo
from stores.postgres import TRANSIENT_ERRORS as POSTGRES_TRANSIENT_ERRORS
from stores.postgres import apply_schema, connect_postgres
from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS
from stores.redis import RedisClient, connect_redis, connect_sync_redis
from stores.settings import Settings, settings_for_a_command
from stores.streams import CONSUMER_GROUPS, PARTITION_STREAMS, create_groups, dead_letter_count
from telemetry.logs import configure_json_logging
from telemetry.pipes import run_for_a_pipe
from writers import dead_letters
from writers.consumer import (
    CLAIM_IDLE_MS,
    READ_COUNT_PER_STREAM,
    ConsumerConfig,
    GroupConsumer,
    Writer,
)
from writers.dead_letters import (
    AmbiguousEntry,
    DeadLetter,
    NotAPartitionStream,
)
from writers.inventory import INVENTORY_BATCH_FACTOR, InventoryWriter
from writers.notifier import NotifierWriter
from writers.orders import OrdersWriter
from writers.replay import PAGE_ENTRIES, Checkpoint, load_checkpoint, replay
from writers.retry import Stopping, retry_transient
from writers.status import DEFAULT_INTERVAL_S, print_status
from writers.sweeper import STUCK_SWEEP_INTERVAL_S, run_sweeps

log = logging.getLogger("writers")
# What --only and --writer accept: the consumers this process can run.
CONSUMER_NAMES: Final = ("orders", "inventory", "notifier")
DEAD_LETTERS_LIST_LIMIT: Final = 100
T = TypeVar("T")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m writers", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "status", "replay", "dead-letters"),
        default="run",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("list", "replay"),
        help="for `dead-letters`: list|replay",
    )
    parser.add_argument(
        "--only",
        choices=CONSUMER_NAMES,
        help="run one consumer only (and no sweeps)",
    )
    parser.add_argument(
        "--stuck-sweep-s",
        type=float,
        default=STUCK_SWEEP_INTERVAL_S,
        help="how often to look for stuck orders (default %(default)s)",
    )
    parser.add_argument(
        "--stream",
        help="for `replay` and `dead-letters replay`: the stream, e.g. 'events:{p3.0}'",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="for `status`: seconds over which the read rate is measured (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="for `status`: JSON, for machines")
    parser.add_argument(
        "--from", dest="from_id", help="for `replay`: first entry ID (default: the beginning)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="for `replay`: continue each writer after its checkpoint (instead of --from)",
    )
    parser.add_argument(
        "--page-entries",
        type=int,
        default=PAGE_ENTRIES,
        help="for `replay`: entries read and persisted per page (default %(default)s)",
    )
    parser.add_argument(
        "--writer",
        action="append",
        choices=CONSUMER_NAMES,
        help="for `replay`: which writer re-persists (repeatable; default orders and inventory)",
    )
    parser.add_argument(
        "--entry",
        action="append",
        help="for `dead-letters replay`: an original entry ID as `list` shows it (repeatable)",
    )
    parser.add_argument(
        "--all", action="store_true", help="for `dead-letters replay`: every dead letter"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEAD_LETTERS_LIST_LIMIT,
        help="for `dead-letters list`: how many, oldest first (default %(default)s)",
    )
    parser.add_argument(
        "--claim-idle-ms",
        type=int,
        default=CLAIM_IDLE_MS,
        help="take over entries another consumer has held this long (default %(default)s)",
    )
    parser.add_argument(
        "--read-count",
        type=int,
        default=READ_COUNT_PER_STREAM,
        help="entries read per stream per round (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be above 0")
    if args.page_entries < 1:
        parser.error("--page-entries must be at least 1")
    return args


async def serve(
    settings: Settings, only: str | None, config: ConsumerConfig, stuck_sweep_s: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = connect_redis(settings)
    runner = script_runner(redis, settings)  # the writers' and the sweeps' script calls
    notice_redis = connect_sync_redis(settings)
    pool: asyncpg.Pool | None = None
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    name = consumer_name()
    try:
        # Both groups even with --only: trimming keeps what a group has not read only if the
        # group exists, so the writer not running here must not lose its entries meanwhile.
        await retry_transient(
            "create groups",
            lambda: create_groups(redis, PARTITION_STREAMS, CONSUMER_GROUPS),
            REDIS_TRANSIENT_ERRORS,
            stop,
        )
        consumers = []
        if only in (None, "orders"):
            pool = await retry_transient(
                "connect to PostgreSQL",
                lambda: _postgres_with_schema(settings),
                POSTGRES_TRANSIENT_ERRORS,
                stop,
            )
            writer = OrdersWriter(pool, runner, settings.order_hot_window_s)
            consumers.append(GroupConsumer(redis, writer, name, config=config))
        if only in (None, "inventory"):
            mongo, db = connect_mongo(settings)
            inventory_config = replace(
                config,
                read_count_per_stream=config.read_count_per_stream * INVENTORY_BATCH_FACTOR,
                max_batch_entries=config.max_batch_entries * INVENTORY_BATCH_FACTOR,
                batch_orders=config.batch_orders * INVENTORY_BATCH_FACTOR,
            )
            consumers.append(
                GroupConsumer(
                    redis,
                    InventoryWriter(runner, db),
                    name,
                    config=inventory_config,
                )
            )
        if only in (None, "notifier"):
            notifier = NotifierWriter(Notices(notice_redis))
            consumers.append(GroupConsumer(redis, notifier, name, config=config))
        log.info("%s: running %s", name, ", ".join(c.group for c in consumers))
        tasks = [consumer.run(stop) for consumer in consumers]
        if only is None:
            tasks.append(
                run_sweeps(
                    runner,
                    pool,
                    stop,
                    stuck_after_s=settings.stuck_after_s,
                    stuck_interval_s=stuck_sweep_s,
                )
            )
        await asyncio.gather(*tasks)
    except Stopping:
        log.info("%s: stopped before the stores answered", name)
    finally:
        if pool is not None:
            await pool.close()
        if mongo is not None:
            await mongo.close()
        await runner.aclose()
        await redis.aclose()
        notice_redis.close()


async def _postgres_with_schema(settings: Settings) -> asyncpg.Pool:
    pool = await connect_postgres(settings)
    await apply_schema(pool)
    return pool


async def run_replay(
    settings: Settings,
    stream: str,
    names: Sequence[str],
    *,
    from_id: str | None,
    page_entries: int,
) -> int:
    """Replay `stream` through each named writer in turn: from `from_id`, or, when it is None,
    after each writer's checkpoint. Progress goes to stderr, one line per writer to stdout."""
    redis = connect_redis(settings)
    notice_redis = connect_sync_redis(settings)
    pool = await _postgres_with_schema(settings) if "orders" in names else None
    mongo, db = connect_mongo(settings)
    runner = script_runner(redis, settings)
    try:
        writers: list[Writer] = []
        for name in names:
            if name == "orders":
                assert pool is not None
                writers.append(OrdersWriter(pool, runner, settings.order_hot_window_s))
            elif name == "inventory":
                writers.append(InventoryWriter(runner, db))
            else:
                writers.append(NotifierWriter(Notices(notice_redis)))
        starts = await _replay_starts(redis, stream, [w.group for w in writers], from_id)
        if starts is None:
            return 2
        for writer, start in zip(writers, starts, strict=True):
            if start.done:
                print(f"{writer.group}: the replay of {stream} is already complete")
                continue
            where = f"after {start.last_id}" if start.last_id else f"from {start.from_id}"
            count = await replay(
                redis, writer, stream, start, page_entries=page_entries, progress=sys.stderr
            )
            print(f"{writer.group}: {count} entries of {stream} re-persisted {where}; complete")
    finally:
        if pool is not None:
            await pool.close()
        await mongo.close()
        await runner.aclose()
        await redis.aclose()
        notice_redis.close()
    return 0


async def _replay_starts(
    redis: RedisClient, stream: str, groups: Sequence[str], from_id: str | None
) -> list[Checkpoint] | None:
    """Where each group's replay starts; None (after saying why) when one has nothing to resume."""
    if from_id is not None:
        return [Checkpoint(from_id) for _ in groups]
    found = [await load_checkpoint(redis, stream, group) for group in groups]
    starts = [checkpoint for checkpoint in found if checkpoint is not None]
    if len(starts) < len(groups):
        missing = [g for g, checkpoint in zip(groups, found, strict=True) if checkpoint is None]
        print(
            f"no replay checkpoint of {stream} for {', '.join(missing)}: "
            "start with --from (default: the beginning) instead of --resume",
            file=sys.stderr,
        )
        return None
    return starts


async def list_dead_letters(settings: Settings, limit: int) -> None:
    redis = connect_redis(settings)
    try:
        letters = await dead_letters.list_dead_letters(redis, limit)
        total = await dead_letter_count(redis)
    finally:
        await redis.aclose()
    print(format_dead_letters(letters))
    print(f"{len(letters)} of {total} dead letter(s) shown", file=sys.stderr)


def format_dead_letters(letters: Sequence[DeadLetter]) -> str:
    """One tab-separated line per dead letter; a second copy of an entry shares its entry ID."""
    lines = ["stream\tentry_id\tgroup\tdeliveries\tdead_lettered_at\ttype\torder_id\terror"]
    for letter in letters:
        at = datetime.fromtimestamp(letter.at_ms / 1000, UTC).isoformat(timespec="seconds")
        error = " ".join(letter.error.split())  # asyncpg's messages span lines
        lines.append(
            f"{letter.stream}\t{letter.entry_id}\t{letter.group}\t{letter.deliveries}\t{at}"
            f"\t{letter.event_type}\t{letter.order_id or '-'}\t{error}"
        )
    return "\n".join(lines)


async def replay_dead_letters(
    settings: Settings, entry_ids: Sequence[str] | None, stream: str | None
) -> int:
    redis = connect_redis(settings)
    try:
        replayed = await dead_letters.replay(redis, entry_ids, stream)
    except AmbiguousEntry as exc:
        print(f"entry IDs found in several streams, name one with --stream: {exc}", file=sys.stderr)
        return 2
    except NotAPartitionStream as exc:
        print(f"{exc}: not a partition stream", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    for letter in replayed:
        print(f"{letter.stream}\t{letter.entry_id}\treplayed")
    missing = sorted(set(entry_ids or ()) - {letter.entry_id for letter in replayed})
    for entry_id in missing:
        print(f"{entry_id}: no such dead letter", file=sys.stderr)
    print(f"{len(replayed)} dead letter(s) re-appended to their stream", file=sys.stderr)
    return 1 if missing else 0


def run_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "list":
        asyncio.run(list_dead_letters(settings, args.limit))
        return 0
    if args.action == "replay" and (args.all or args.entry) and not (args.all and args.entry):
        entry_ids = None if args.all else args.entry
        return asyncio.run(replay_dead_letters(settings, entry_ids, args.stream))
    print(
        "usage: python -m writers dead-letters list [--limit N] | "
        "replay (--entry ID [--entry ID ...] | --all) [--stream S]",
        file=sys.stderr,
    )
    return 2


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = settings_for_a_command()
    if args.command == "status":
        return run_loop(print_status(settings, args.interval, args.json))
    if args.command == "dead-letters":
        return run_dead_letters(settings, args)
    if args.command == "replay":
        if not args.stream or (args.resume and args.from_id is not None):
            print(
                "replay needs --stream, and either --from (default: the beginning) or --resume",
                file=sys.stderr,
            )
            return 2
        from_id = None if args.resume else (args.from_id or "-")
        writers = args.writer or ["orders", "inventory"]
        return run_loop(
            run_replay(
                settings, args.stream, writers, from_id=from_id, page_entries=args.page_entries
            )
        )
    configure_json_logging()
    config = ConsumerConfig(
        read_count_per_stream=args.read_count,
        claim_idle_ms=args.claim_idle_ms,
        dead_letter_after_deliveries=settings.dead_letter_after_deliveries,
    )
    run_loop(serve(settings, args.only, config, args.stuck_sweep_s))
    return 0


if __name__ == "__main__":
    sys.exit(run_for_a_pipe(main, sys.argv[1:]))
