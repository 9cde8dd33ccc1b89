"""Fixtures on the real stores started by `ops/stack.sh up`; each test starts from empty stores.
The fixtures connect only when a test asks for them, so the unit tier (`tests/unit`, marked `unit`
here) runs with every store stopped. Tests marked `disruptive` (they stop or restart a shared
server) run after all others. A test that leaves a task running fails (`no_task_outlives_its_test`).

Tests use their own Redis database (15), PostgreSQL database (`fulfillment_test`) and MongoDB
database (`fulfillment_test`), so a running demo is left alone. With TEST_REDIS_CLUSTER=1 and
TEST_REDIS_URL pointing at a cluster node (`make test-cluster`) the same tests run on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import asyncpg
import pytest
from redis.asyncio import RedisCluster

from engine import keys, scripts
from stores.mongo import MongoDatabase, connect_mongo
from stores.postgres import apply_schema, connect_postgres
from stores.redis import RedisClient, connect_redis, connect_sync_redis
from stores.settings import Settings
from stores.tasks import cancel_and_wait

TEST_SETTINGS = Settings(
    redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    redis_cluster=os.environ.get("TEST_REDIS_CLUSTER", "0") == "1",
    postgres_dsn=os.environ.get(
        "POSTGRES_TEST_DSN",
        "postgresql://fulfillment:fulfillment@127.0.0.1:5432/fulfillment_test",
    ),
    mongo_url=os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27017/"),
    mongo_db=os.environ.get("TEST_MONGO_DB", "fulfillment_test"),
    # On the cluster, rq's queue lives on the plain Redis (rq cannot use a cluster).
    queue_redis_url=os.environ.get(
        "TEST_QUEUE_REDIS_URL",
        "redis://127.0.0.1:6379/11" if os.environ.get("TEST_REDIS_CLUSTER", "0") == "1" else "",
    ),
)


def store_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process (API, writers, notice worker) aimed at the test stores."""
    return {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
        "QUEUE_REDIS_URL": settings.queue_redis_url,
        "POSTGRES_DSN": settings.postgres_dsn,
        "MONGO_URL": settings.mongo_url,
        "MONGO_DB": settings.mongo_db,
    }


UNIT_TESTS: Final = Path(__file__).resolve().parent / "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: it must see the `unit` marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the unit tier `unit`, and move `disruptive` tests to the end (a stable sort: the
    others keep their order)."""
    for item in items:
        if UNIT_TESTS in item.path.parents:
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


# A task cancelled in a test's teardown may need a few turns of the loop (a disconnect) to end.
LEFTOVER_TASK_GRACE_S: Final = 2.0
LEFTOVER_TASK_END_S: Final = 5.0  # then the test fails anyway, rather than hang the run here


@pytest.fixture(autouse=True)
async def no_task_outlives_its_test() -> AsyncIterator[None]:
    """Every test shares one event loop, and its close at the end of the run waits for every task
    still on it: one whose cancellation is lost (stores/tasks.py) hangs the run there, far from
    the test that left it. This fails that test instead, and ends the task so the run goes on."""
    before = asyncio.all_tasks()
    yield
    this = asyncio.current_task()
    deadline = time.monotonic() + LEFTOVER_TASK_GRACE_S
    while left := [t for t in asyncio.all_tasks() - before if t is not this and not t.done()]:
        if time.monotonic() >= deadline:
            break
        await asyncio.wait(left, timeout=deadline - time.monotonic())
    if not left:
        return
    running = ", ".join(map(repr, left))  # where each one was, before it is ended
    ending = asyncio.gather(*map(cancel_and_wait, left), return_exceptions=True)
    _, unended = await asyncio.wait({ending}, timeout=LEFTOVER_TASK_END_S)
    refused = " (and they ignore cancellation)" if unended else ""
    pytest.fail(f"tasks the test left running{refused}: {running}")


@pytest.fixture
def settings() -> Settings:
    return TEST_SETTINGS


async def flush(client: RedisClient) -> None:
    """Empty the test database; a cluster has only db 0, spread over its masters."""
    if isinstance(client, RedisCluster):
        await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.flushdb()


async def scan_keys(client: RedisClient, pattern: str) -> list[str]:
    """Every key matching `pattern`; on a cluster, over every master."""
    if isinstance(client, RedisCluster):
        found = client.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = client.scan_iter(match=pattern, count=1000)
    return [key async for key in found]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[RedisClient]:
    client = connect_redis(settings)
    await flush(client)
    if settings.queue_url != settings.redis_url:
        queue = connect_sync_redis(settings)
        queue.flushdb()
        queue.close()
    await scripts.load_all(client)
    yield client
    await client.aclose()


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_postgres(settings)
    await apply_schema(pool)
    await pool.execute(
        "TRUNCATE orders, order_status_history, duplicate_orders, order_lines, shipments,"
        " shipment_items"
    )
    yield pool
    await pool.close()


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[MongoDatabase]:
    client, db = connect_mongo(settings)
    for name in await db.list_collection_names():
        await db[name].delete_many({})
    yield db
    await client.close()


def runner_for(client: RedisClient, settings: Settings = TEST_SETTINGS) -> scripts.ScriptRunner:
    """How the engine sends its scripts, as a process built from `settings` does; closed after
    the test (`runners_closed`)."""
    runner = scripts.script_runner(client, settings)
    _runners_to_close.append(runner)
    return runner


_runners_to_close: list[scripts.ScriptRunner] = []


@pytest.fixture(autouse=True)
async def runners_closed() -> AsyncIterator[None]:
    """A runner's connections are its own (stores/redis_link.py), not its client's: they are
    closed with it, or each test would leave them open on the loop every test shares."""
    yield
    while _runners_to_close:
        await _runners_to_close.pop().aclose()


def product_in_partition_of(product: str) -> str:
    """Another product ID whose stock lives in `product`'s partition (the same stream and slot)."""
    partition = keys.partition_of_product(product)
    return next(
        other
        for i in range(1_000)
        if keys.partition_of_product(other := f"{product}-{i}") == partition
    )
