"""`python -m writers` runs the orders and inventory writers, the notifier and the sweeps (expired
holds, stuck orders) in one process until SIGTERM/SIGINT (each writer finishes the batch in hand,
then exits). `python -m writers lag` prints every group's backlog. `python -m writers notices
worker|failed|replay` runs the notice worker, lists the notices that failed for good, re-enqueues
them. `python -m writers replay --stream S --from ID` re-persists a stream from an entry ID.
`python -m writers dead-letters list|replay` lists the entries the writers gave up on, re-appends
them to their stream. Stores are configured from the environment (`stores.settings`), and so is
after how many deliveries an entry that keeps failing is dead-lettered
(DEAD_LETTER_AFTER_DELIVERIES, default 5)."""

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
from typing import Any, Final

import asyncpg
from pymongo import AsyncMongoClient

from engine.scripts import script_runner
from notify.jobs import Notices
from stores.mongo import connect_mongo
from stores.postgres import TRANSIENT_ERRORS as POSTGRES_TRANSIENT_ERRORS
from stores.postgres import apply_schema, connect_postgres
from stores.redis import RedisClient, connect_redis, connect_sync_redis
from stores.settings import Settings, load_settings
from telemetry.logs import configure_json_logging
from writers import CONSUMER_GROUPS, dead_letters, writer_backlog
from writers.dead_letters import (
    DEAD_LETTER_AFTER_DELIVERIES,
    AmbiguousEntry,
    DeadLetter,
    NotAPartitionStream,
)
from writers.inventory import INVENTORY_BATCH_FACTOR, InventoryWriter
from writers.notifier import NotifierWriter
from writers.orders import OrdersWriter
from writers.replay import replay
from writers.streams import (
    ALL_STREAMS,
    CLAIM_IDLE_MS,
    READ_COUNT_PER_STREAM,
    REDIS_TRANSIENT_ERRORS,
    ConsumerConfig,
    GroupBacklog,
    GroupConsumer,
    Stopping,
    Writer,
    create_groups,
    retry_transient,
)
from writers.sweeper import STUCK_SWEEP_INTERVAL_S, run_sweeps

log = logging.getLogger("writers")
# What --only and --writer accept: the consumers this process can run.
CONSUMER_NAMES: Final = ("orders", "inventory", "notifier")
DEAD_LETTERS_LIST_LIMIT: Final = 100


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m writers", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "lag", "notices", "replay", "dead-letters"),
        default="run",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("worker", "failed", "replay", "list"),
        help="for `notices`: worker|failed|replay; for `dead-letters`: list|replay",
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
    parser.add_argument("--from", dest="from_id", default="-", help="for `replay`: first entry ID")
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
    return parser.parse_args(argv)


async def serve(
    settings: Settings, only: str | None, config: ConsumerConfig, stuck_sweep_s: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = connect_redis(settings)
    notice_redis = connect_sync_redis(settings)
    pool: asyncpg.Pool | None = None
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    name = consumer_name()
    try:
        # Both groups even with --only: trimming keeps what a group has not read only if the
        # group exists, so the writer not running here must not lose its entries meanwhile.
        await retry_transient(
            "create groups",
            lambda: create_groups(redis, ALL_STREAMS, CONSUMER_GROUPS),
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
            writer = OrdersWriter(pool, script_runner(redis, settings), settings.order_hot_window_s)
            consumers.append(GroupConsumer(redis, writer, name, config=config))
        if only in (None, "inventory"):
            mongo, db = connect_mongo(settings)
            inventory_config = replace(
                config,
                read_count_per_stream=config.read_count_per_stream * INVENTORY_BATCH_FACTOR,
                max_batch_entries=config.max_batch_entries * INVENTORY_BATCH_FACTOR,
            )
            consumers.append(
                GroupConsumer(redis, InventoryWriter(redis, db), name, config=inventory_config)
            )
        if only in (None, "notifier"):
            notifier = NotifierWriter(Notices(notice_redis))
            consumers.append(GroupConsumer(redis, notifier, name, config=config))
        log.info("%s: running %s", name, ", ".join(c.group for c in consumers))
        tasks = [consumer.run(stop) for consumer in consumers]
        if only is None:
            runner = script_runner(redis, settings)
            tasks.append(run_sweeps(runner, pool, stop, stuck_interval_s=stuck_sweep_s))
        await asyncio.gather(*tasks)
    except Stopping:
        log.info("%s: stopped before the stores answered", name)
    finally:
        if pool is not None:
            await pool.close()
        if mongo is not None:
            await mongo.close()
        await redis.aclose()
        notice_redis.close()


async def _postgres_with_schema(settings: Settings) -> asyncpg.Pool:
    pool = await connect_postgres(settings)
    await apply_schema(pool)
    return pool


async def print_lag(settings: Settings) -> None:
    redis: RedisClient = connect_redis(settings)
    try:
        report = await writer_backlog(redis, CONSUMER_GROUPS)
    finally:
        await redis.aclose()
    print(format_backlog(report))


def format_backlog(report: Sequence[GroupBacklog]) -> str:
    lines = [f"{'group / top streams':<32} {'backlog':>10} {'pending':>10}"]
    for group in report:
        lines.append(f"{group.group:<32} {group.lag:>10} {group.pending:>10}")
        lines += [f"  {s.stream:<30} {s.lag:>10} {s.pending:>10}" for s in group.top_streams]
    return "\n".join(lines)


def run_notices(settings: Settings, action: str | None) -> int:
    connection = connect_sync_redis(settings)
    notices = Notices(connection)
    try:
        match action:
            case "worker":
                notices.work()
            case "failed":
                failed = notices.failed()
                for notice in failed:
                    print(f"{notice.job_id}\t{notice.error}")
                print(f"{len(failed)} failed notice(s)", file=sys.stderr)
            case "replay":
                print(f"{notices.replay_failed()} failed notice(s) re-enqueued", file=sys.stderr)
            case _:
                print("usage: python -m writers notices worker|failed|replay", file=sys.stderr)
                return 2
    finally:
        connection.close()
    return 0


async def run_replay(settings: Settings, stream: str, from_id: str, names: Sequence[str]) -> None:
    redis = connect_redis(settings)
    notice_redis = connect_sync_redis(settings)
    pool = await _postgres_with_schema(settings) if "orders" in names else None
    mongo, db = connect_mongo(settings)
    try:
        for name in names:
            writer: Writer
            if name == "orders":
                assert pool is not None
                writer = OrdersWriter(
                    pool, script_runner(redis, settings), settings.order_hot_window_s
                )
            elif name == "inventory":
                writer = InventoryWriter(redis, db)
            else:
                writer = NotifierWriter(Notices(notice_redis))
            count = await replay(redis, writer, stream, from_id)
            print(f"{writer.group}: {count} entries of {stream} re-persisted from {from_id}")
    finally:
        if pool is not None:
            await pool.close()
        await mongo.close()
        await redis.aclose()
        notice_redis.close()


async def list_dead_letters(settings: Settings, limit: int) -> None:
    redis = connect_redis(settings)
    try:
        letters = await dead_letters.list_dead_letters(redis, limit)
        total = await dead_letters.dead_letter_count(redis)
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


def dead_letter_after_deliveries() -> int:
    """From the environment, read where the consumers' config is built."""
    raw = os.environ.get("DEAD_LETTER_AFTER_DELIVERIES", "")
    if not raw:
        return DEAD_LETTER_AFTER_DELIVERIES
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"DEAD_LETTER_AFTER_DELIVERIES must be a whole number >= 1, not {raw!r}")
    return int(raw)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = load_settings()
    if args.command == "lag":
        run_loop(print_lag(settings))
        return 0
    if args.command == "notices":
        return run_notices(settings, args.action)
    if args.command == "dead-letters":
        return run_dead_letters(settings, args)
    if args.command == "replay":
        if not args.stream:
            print("replay needs --stream (and --from, default: the beginning)", file=sys.stderr)
            return 2
        writers = args.writer or ["orders", "inventory"]
        run_loop(run_replay(settings, args.stream, args.from_id, writers))
        return 0
    configure_json_logging()
    config = ConsumerConfig(
        read_count_per_stream=args.read_count,
        claim_idle_ms=args.claim_idle_ms,
        dead_letter_after_deliveries=dead_letter_after_deliveries(),
    )
    run_loop(serve(settings, args.only, config, args.stuck_sweep_s))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
