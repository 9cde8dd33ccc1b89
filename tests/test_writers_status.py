"""`python -m writers status` and a resumable `python -m writers replay`, on the real stores: the
status figures of groups that were read, acked and dead-lettered by hand, its read rate, and a
replay that fails mid-way and resumes after its checkpoint.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.crc import key_slot

from engine import keys
from engine.events import OrdersConfirmed, decode_event, order_ids_of
from stores.redis import RedisClient
from stores.settings import Settings
from stores.streams import (
    CONSUMER_GROUPS,
    INVENTORY_GROUP,
    NOTIFIER_GROUP,
    ORDERS_GROUP,
    PARTITION_STREAMS,
    create_groups,
)
from tests.conftest import runner_for, store_env
from tests.test_dead_letters import ROOT, FailingOrdersWriter, writers_cli
from tests.test_writers import order_rows, place_orders_one_by_one, stock_products
from writers import dead_letters
from writers.consumer import StreamEntry
from writers.dead_letters import Failure
from writers.orders import OrdersWriter
from writers.replay import Checkpoint, checkpoint_key, load_checkpoint, replay
from writers.status import PartitionStatus, Status, collect_status

PRODUCT = "sku-status"
STREAM = keys.stream(keys.partition_of_product(PRODUCT))
PAGE = 10
REPLAY_ORDERS = ("replay", "--stream", STREAM, "--writer", "orders", "--page-entries", str(PAGE))


# --- helpers ---


async def entry_ids(redis: RedisClient) -> list[str]:
    page: list[Any] = await redis.xrange(STREAM) or []
    return [str(entry_id) for entry_id, _ in page]


async def deliver(redis: RedisClient, group: str, count: int) -> list[str]:
    """Read `count` new entries of STREAM as consumer `manual`; returns their IDs."""
    reply: Any = await redis.xreadgroup(group, "manual", {STREAM: ">"}, count=count) or []
    return [str(entry_id) for _, entries in reply for entry_id, _ in entries]


def partition(status: Status, group: str, stream: str = STREAM) -> PartitionStatus:
    [found] = [
        p for g in status.groups if g.group == group for p in g.partitions if p.stream == stream
    ]
    return found


# --- status ---


async def test_status_reports_backlog_pending_age_and_dead_letters_per_partition(
    redis: RedisClient, settings: Settings
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    await place_orders_one_by_one(redis, [PRODUCT], 10)
    total = len(await entry_ids(redis))
    await create_groups(redis, PARTITION_STREAMS, CONSUMER_GROUPS)
    delivered = await deliver(redis, ORDERS_GROUP, 6)
    await redis.xack(STREAM, ORDERS_GROUP, *delivered[:3])
    # Deliveries: 1. The oldest pending entry goes, so the age comes from the next one.
    failure = Failure(STREAM, delivered[3], "moved by hand", permanent=True)
    assert await dead_letters.move(redis, ORDERS_GROUP, [(failure, 1)]) == 1
    oldest_pending_ms = int(delivered[4].split("-")[0])

    printed = writers_cli(settings, "status", "--json", "--interval", "0.1")
    status = msgspec.json.decode(printed.stdout, type=Status)  # the JSON's shape, as declared
    age_bound_s = time.time() - oldest_pending_ms / 1000

    assert status.interval_s == 0.1
    assert [g.group for g in status.groups] == list(CONSUMER_GROUPS)
    assert all([p.stream for p in g.partitions] == list(PARTITION_STREAMS) for g in status.groups)
    orders = partition(status, ORDERS_GROUP)
    assert (orders.backlog, orders.pending, orders.dead_letters) == (total - 6, 2, 1)
    assert orders.oldest_pending_age_s is not None
    assert 0 < orders.oldest_pending_age_s <= age_bound_s
    inventory = partition(status, INVENTORY_GROUP)
    assert (inventory.backlog, inventory.pending, inventory.dead_letters) == (total, 0, 0)
    assert inventory.oldest_pending_age_s is None
    [orders_total] = [g for g in status.groups if g.group == ORDERS_GROUP]
    assert (orders_total.backlog, orders_total.pending, orders_total.dead_letters) == (
        total - 6,
        2,
        1,
    )
    assert orders_total.oldest_pending_age_s == orders.oldest_pending_age_s
    others = [p for g in status.groups for p in g.partitions if p.stream != STREAM]
    assert all((p.backlog, p.pending, p.dead_letters) == (0, 0, 0) for p in others)

    table = writers_cli(settings, "status", "--interval", "0.1").stdout.splitlines()
    columns = ["group", "/", "stream", "backlog", "pending", "oldest_s", "dead", "read/s"]
    assert table[1].split() == columns
    [row] = [line for line in table if line.startswith(ORDERS_GROUP)]
    assert row.split()[:3] == [ORDERS_GROUP, str(total - 6), "2"]
    assert row.split()[4] == "1"  # dead letters
    assert len({len(line) for line in table[1:]}) == 1  # aligned


async def test_status_measures_the_read_rate_over_the_interval(redis: RedisClient) -> None:
    await stock_products(redis, [PRODUCT], 100)
    await place_orders_one_by_one(redis, [PRODUCT], 10)
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP, INVENTORY_GROUP])
    await deliver(redis, ORDERS_GROUP, 1)  # before: Redis counts reads once a group has read
    await deliver(redis, INVENTORY_GROUP, 1)

    async def read_meanwhile() -> None:
        await asyncio.sleep(0.1)
        assert len(await deliver(redis, ORDERS_GROUP, 4)) == 4

    status, _ = await asyncio.gather(
        collect_status(redis, [ORDERS_GROUP, INVENTORY_GROUP, NOTIFIER_GROUP], interval_s=0.5),
        read_meanwhile(),
    )

    rate = partition(status, ORDERS_GROUP).read_per_s
    assert rate is not None and 4 / 1.5 < rate <= 4 / 0.5
    assert partition(status, INVENTORY_GROUP).read_per_s == 0.0
    assert partition(status, NOTIFIER_GROUP).read_per_s is None  # no such group: Redis cannot say


def test_status_into_a_reader_that_stops_early_ends_quietly(settings: Settings) -> None:
    """`python -m writers status | head -1`: the reader goes away before the table is written."""
    command = [sys.executable, "-m", "writers", "status", "--interval", "0.1"]
    with subprocess.Popen(
        command, cwd=ROOT, env=store_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as status:
        assert status.stdout is not None and status.stderr is not None
        status.stdout.close()  # as `head` does once it has what it wants
        errors = status.stderr.read().decode()
        assert status.wait(timeout=30) == 0
    assert "Traceback" not in errors


def test_status_says_when_redis_cannot_be_reached(settings: Settings) -> None:
    nowhere = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    done = writers_cli(nowhere, "status", check=False)
    assert done.returncode == 1
    assert "cannot reach Redis at 127.0.0.1:1" in done.stderr
    assert done.stdout == ""


# --- replay: interrupted, then resumed ---


async def test_an_interrupted_replay_resumes_after_its_checkpoint_and_persists_each_order_once(
    redis: RedisClient, pg: asyncpg.Pool, settings: Settings
) -> None:
    await stock_products(redis, [PRODUCT], 1_000)
    placed = await place_orders_one_by_one(redis, [PRODUCT], 60)
    page: list[Any] = await redis.xrange(STREAM) or []
    ids = [str(entry_id) for entry_id, _ in page]
    key = checkpoint_key(STREAM, ORDERS_GROUP)
    assert key_slot(key.encode()) == key_slot(STREAM.encode())  # beside its stream, on a cluster

    # Pages 1 to 3 are persisted and checkpointed; the 4th fails, as if the process died there.
    failing_order = next(
        order_ids_of(fields)
        for _, fields in page[3 * PAGE :]
        if fields["type"] == "orders.confirmed"
    )
    writer = FailingOrdersWriter(pg, runner_for(redis), failing_order)
    progress = io.StringIO()
    with pytest.raises(RuntimeError):
        await replay(redis, writer, STREAM, "-", page_entries=PAGE, progress=progress)

    checkpointed = ids[3 * PAGE - 1]
    assert await load_checkpoint(redis, STREAM, ORDERS_GROUP) == Checkpoint("-", checkpointed)
    assert await pg.fetchval("SELECT count(*) FROM orders") == await confirmations_up_to(
        redis, checkpointed
    )
    first = progress.getvalue().splitlines()[0]  # at once; the next pages within a second: not
    assert re.fullmatch(rf"{ORDERS_GROUP} \S+: {PAGE} entries, \d+/s, last {ids[PAGE - 1]}", first)
    # As if the 4th page had reached PostgreSQL before the process died, its checkpoint not.
    fourth = [StreamEntry(STREAM, str(i), decode_event(f)) for i, f in page[3 * PAGE : 4 * PAGE]]
    assert await OrdersWriter(pg, runner_for(redis)).persist(fourth) == []

    resumed = writers_cli(settings, *REPLAY_ORDERS, "--resume")

    remaining = len(ids) - 3 * PAGE
    assert resumed.stdout == (
        f"{ORDERS_GROUP}: {remaining} entries of {STREAM} re-persisted after {checkpointed};"
        " complete\n"
    )
    assert f"{ORDERS_GROUP} {STREAM}: {PAGE} entries, " in resumed.stderr
    assert await load_checkpoint(redis, STREAM, ORDERS_GROUP) == Checkpoint("-", ids[-1], True)
    rows = await order_rows(pg)
    assert sorted(rows) == sorted(c.order_id for _, c in placed)
    assert await pg.fetchval("SELECT count(*) FROM order_status_history") == len(placed)

    again = writers_cli(settings, *REPLAY_ORDERS, "--resume")
    assert again.stdout == f"{ORDERS_GROUP}: the replay of {STREAM} is already complete\n"
    nothing = writers_cli(
        settings, "replay", "--stream", STREAM, "--writer", "inventory", "--resume", check=False
    )
    assert nothing.returncode == 2
    assert f"no replay checkpoint of {STREAM} for {INVENTORY_GROUP}" in nothing.stderr


async def confirmations_up_to(redis: RedisClient, last_id: str) -> int:
    page: list[Any] = await redis.xrange(STREAM, max=last_id) or []
    return sum(
        len(event.orders)
        for _, fields in page
        if isinstance(event := decode_event(fields), OrdersConfirmed)
    )
