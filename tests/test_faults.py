"""Faults caused for real, each small: PostgreSQL stopped while orders are placed and written,
Redis restarted, the SMTP server stopped while notices go out. Each test restores what it stopped
(try/finally), and they are marked `disruptive`, so the tests that share these servers run
before them (tests/conftest.py orders marked tests last).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from engine import keys
from engine.orders import OrderRequest
from engine.records import decode_record
from notify.jobs import Notices, notice_id
from stores.postgres import connect_postgres
from stores.redis import RedisClient, connect_redis, connect_sync_redis
from stores.settings import Settings
from stores.streams import PARTITION_STREAMS, create_groups
from tests.conftest import runner_for, store_env
from tests.notice_servers import SmtpServer, smtp_server
from tests.test_writers import (
    FAST,
    customer_near_paris,
    make_placer,
    place_orders,
    stock_products,
    wait_for,
)
from writers.consumer import GroupConsumer
from writers.orders import OrdersWriter

__all__ = ["smtp_server"]  # fixture

ROOT = Path(__file__).resolve().parent.parent
PG_DOWN_S = 5.0
RECOVERY_TIMEOUT_S = 90.0

pytestmark = pytest.mark.disruptive  # stops and restarts the shared servers


def stack_up() -> None:
    subprocess.run(["bash", str(ROOT / "ops" / "stack.sh"), "up"], check=True, timeout=180)


def stop_postgres() -> None:
    """The stack's own cluster, stopped fast (connections cut), as ops/stack.sh down does it."""
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = (ROOT / ".stack" / "pg").resolve() / "data"
    command = [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, cwd="/", timeout=60, capture_output=True)


async def test_postgres_down_for_a_while_loses_and_duplicates_nothing(
    redis: RedisClient, pg: asyncpg.Pool, settings: Settings
) -> None:
    await stock_products(redis, ["sku-a", "sku-b"], 1_000)
    await create_groups(redis, PARTITION_STREAMS, ["orders-writer"])
    writer_pool = await connect_postgres(settings)
    consumer = GroupConsumer(
        redis, OrdersWriter(writer_pool, runner_for(redis)), "faulty", config=FAST
    )
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    placed = await place_orders(redis, ["sku-a", "sku-b"], 100, seed=1)
    try:
        stop_postgres()
        # Orders keep being accepted: nothing on the order path needs PostgreSQL.
        for round_ in range(5):
            placed += await place_orders(redis, ["sku-a", "sku-b"], 40, seed=10 + round_)
            await asyncio.sleep(PG_DOWN_S / 5)
    finally:
        stack_up()
    try:
        fresh = await connect_postgres(settings)  # the fixture's pool lost its connections

        async def all_written() -> bool:
            return bool(await fresh.fetchval("SELECT count(*) FROM orders") == len(placed))

        await wait_for(all_written, RECOVERY_TIMEOUT_S, "the writer to catch up")
        ids = {str(r["order_id"]) for r in await fresh.fetch("SELECT order_id FROM orders")}
        assert ids == {c.order_id for _, c in placed}
        history = await fresh.fetchval("SELECT count(*) FROM order_status_history")
        assert history == len(placed)  # one 'confirmed' row each: nothing twice
        await fresh.close()
    finally:
        stop.set()
        await running
        await writer_pool.close()


async def test_confirmed_orders_survive_a_redis_restart(
    redis: RedisClient, settings: Settings
) -> None:
    await stock_products(redis, ["sku"], 1_000)
    placed = await place_orders(redis, ["sku"], 200, seed=3)
    stream = keys.stream(keys.partition_of_product("sku"))
    entries_before = await redis.xlen(stream)
    try:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown"], timeout=60, check=False)
    finally:
        stack_up()
    after = connect_redis(settings)
    try:
        partition = keys.partition_of_product("sku")
        for _, confirmation in placed:
            raw = await after.get(keys.order(partition, confirmation.order_id))
            assert raw is not None, f"order {confirmation.order_id} lost"
            assert decode_record(raw).status == "confirmed"
        assert await after.xlen(stream) == entries_before  # the events too, for the writers
    finally:
        await after.aclose()


async def test_orders_answered_before_redis_is_killed_survive_it(
    redis: RedisClient, settings: Settings
) -> None:
    """SIGKILL, not SHUTDOWN: Redis gets no chance to save. With appendonly and `everysec`, each
    write reaches the kernel before its reply goes out, so a dead *process* loses no answered
    order (only a dead machine can lose up to the last second: README, Guarantees)."""
    if settings.redis_cluster:
        pytest.skip("kills the single Redis of the stack")
    await stock_products(redis, ["sku"], 100_000)
    placer = make_placer(redis)
    answered: list[str] = []
    stop = asyncio.Event()

    async def storefront(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                confirmation = await placer.place(OrderRequest("sku", 1, customer_near_paris(rng)))
            except Exception:  # Redis is gone: requests fail until the test stops them
                await asyncio.sleep(0.01)
                continue
            answered.append(confirmation.order_id)

    clients = [asyncio.create_task(storefront(seed)) for seed in range(16)]
    try:
        await wait_for(lambda: _at_least(answered, 300), 30, "orders before the kill")
        pid = int((await redis.info("server"))["process_id"])
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        stack_up()
    after = connect_redis(settings)
    try:
        partition = keys.partition_of_product("sku")
        lost = [oid for oid in answered if await after.get(keys.order(partition, oid)) is None]
        print(f"{len(answered)} orders answered before SIGKILL, {len(lost)} lost")
        assert lost == []
    finally:
        await after.aclose()


async def _at_least(items: list[str], count: int) -> bool:
    return len(items) >= count


@pytest.fixture
def notice_worker(settings: Settings, smtp_server: SmtpServer) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **store_env(settings),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server.port),
        "SMS_URL": "",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "notify", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield worker
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


async def test_notices_wait_out_an_smtp_outage_and_land_once(
    redis: RedisClient,
    settings: Settings,
    smtp_server: SmtpServer,
    notice_worker: subprocess.Popen[bytes],
) -> None:
    orders = [f"order-{i}" for i in range(50)]
    connection = connect_sync_redis(settings)
    notices = Notices(connection)
    smtp_server.stop()
    try:
        notices.enqueue_automatic([(order, "shipped") for order in orders])
        await asyncio.sleep(3)  # every job fails at least once meanwhile
    finally:
        smtp_server.start()
    expected = sorted(notice_id(order, "shipped") for order in orders)

    async def all_sent() -> bool:
        assert notice_worker.poll() is None, "the notice worker exited"
        return sorted(set(smtp_server.mailbox.notice_ids())) == expected

    started = time.monotonic()
    await wait_for(all_sent, RECOVERY_TIMEOUT_S, "every notice to be sent")
    await asyncio.sleep(min(5.0, time.monotonic() - started))  # any straggler would show up
    assert sorted(smtp_server.mailbox.notice_ids()) == expected  # each exactly once
    assert notices.failed() == []
    connection.close()
