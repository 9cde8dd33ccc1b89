"""`python -m writers` runs the orders and inventory writers in one process until SIGTERM/SIGINT
(each finishes the batch in hand, then exits). `python -m writers lag` prints every writer
group's backlog. Stores are configured from the environment (`stores.settings`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from stores.mongo import connect_mongo
from stores.postgres import apply_schema, connect_postgres
from stores.redis import RedisClient, connect_redis
from stores.settings import Settings, load_settings
from writers import WRITER_GROUPS, writer_backlog
from writers import orders as orders_writer
from writers.inventory import InventoryWriter
from writers.orders import OrdersWriter
from writers.streams import (
    ALL_STREAMS,
    CLAIM_IDLE_MS,
    READ_COUNT_PER_STREAM,
    REDIS_TRANSIENT_ERRORS,
    ConsumerConfig,
    GroupBacklog,
    GroupConsumer,
    Stopping,
    create_groups,
    retry_transient,
)

log = logging.getLogger("writers")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m writers", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("run", "lag"), default="run")
    parser.add_argument("--only", choices=("orders", "inventory"), help="run one writer only")
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


async def serve(settings: Settings, only: str | None, config: ConsumerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = connect_redis(settings)
    pool: asyncpg.Pool | None = None
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    name = consumer_name()
    try:
        # Both groups even with --only: trimming keeps what a group has not read only if the
        # group exists, so the writer not running here must not lose its entries meanwhile.
        await retry_transient(
            "create groups",
            lambda: create_groups(redis, ALL_STREAMS, WRITER_GROUPS),
            REDIS_TRANSIENT_ERRORS,
            stop,
        )
        consumers = []
        if only != "inventory":
            pool = await retry_transient(
                "connect to PostgreSQL",
                lambda: _postgres_with_schema(settings),
                orders_writer.TRANSIENT_ERRORS,
                stop,
            )
            consumers.append(GroupConsumer(redis, OrdersWriter(pool), name, config=config))
        if only != "orders":
            mongo, db = connect_mongo(settings)
            consumers.append(GroupConsumer(redis, InventoryWriter(redis, db), name, config=config))
        log.info("%s: running %s", name, ", ".join(c.group for c in consumers))
        await asyncio.gather(*(consumer.run(stop) for consumer in consumers))
    except Stopping:
        log.info("%s: stopped before the stores answered", name)
    finally:
        if pool is not None:
            await pool.close()
        if mongo is not None:
            await mongo.close()
        await redis.aclose()


async def _postgres_with_schema(settings: Settings) -> asyncpg.Pool:
    pool = await connect_postgres(settings)
    await apply_schema(pool)
    return pool


async def print_lag(settings: Settings) -> None:
    redis: RedisClient = connect_redis(settings)
    try:
        report = await writer_backlog(redis)
    finally:
        await redis.aclose()
    print(format_backlog(report))


def format_backlog(report: Sequence[GroupBacklog]) -> str:
    lines = [f"{'group / top streams':<32} {'backlog':>10} {'pending':>10}"]
    for group in report:
        lines.append(f"{group.group:<32} {group.lag:>10} {group.pending:>10}")
        lines += [f"  {s.stream:<30} {s.lag:>10} {s.pending:>10}" for s in group.top_streams]
    return "\n".join(lines)


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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = ConsumerConfig(read_count_per_stream=args.read_count, claim_idle_ms=args.claim_idle_ms)
    run_loop(serve(settings, args.only, config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
