"""Redis Cluster failover: a master is killed under load; every order answered confirmed survives.

Runs on the cluster only (`make test-cluster`). It SIGKILLs the master of one partition while orders
flow, lets its replica take over (cluster-node-timeout 2 s), checks every confirmed order is on the
new master, then restarts the dead node with `ops/stack.sh cluster-up` (it rejoins as a replica).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Final

import pytest
from redis.asyncio import RedisCluster

from engine import keys, scripts
from engine.ids import partition_of_id
from engine.inventory import Inventory
from engine.orders import OrderRequest
from engine.placement import OrderPlacer
from engine.warehouses import FixedWarehouses, Warehouse, WarehouseDirectory
from geo.distance import Point
from stores.redis import RedisClient
from tests.conftest import TEST_SETTINGS, runner_for

pytestmark = pytest.mark.skipif(
    not TEST_SETTINGS.redis_cluster, reason="needs Redis Cluster: make test-cluster"
)

ROOT: Final = Path(__file__).resolve().parent.parent
PARIS: Final = Point(48.8566, 2.3522)
PRODUCTS: Final = [f"sku-{i}" for i in range(48)]  # every partition gets some
ORDERS: Final = 600
CLIENTS: Final = 24
KILL_AFTER_CONFIRMED: Final = 150
FAILOVER_TIMEOUT_S: Final = 30.0
# Long enough for a replica on loopback; a shard whose replica is gone waits this per batch.
WAIT_TIMEOUT_MS: Final = 500


def make_placer(redis: RedisClient, acks: scripts.ReplicaAcks | None) -> OrderPlacer:
    directory = WarehouseDirectory([Warehouse("paris", "Paris", PARIS)])

    runner = scripts.ScriptRunner(redis, deadline_s=TEST_SETTINGS.command_deadline_s, acks=acks)
    return OrderPlacer(runner, FixedWarehouses(directory))


async def master_pid(redis: RedisCluster, partition: int) -> int:
    node = redis.get_node_from_key(keys.stream(partition))
    info = await redis.info("server", target_nodes=node)
    return int(info["process_id"])


async def place_under_load(placer: OrderPlacer, kill: asyncio.Event) -> tuple[list[str], int]:
    """CLIENTS concurrent clients place ORDERS orders; `kill` is set once KILL_AFTER_CONFIRMED
    are confirmed. Errors (the dead master, the failover in progress) are the clients' to retry;
    they count as not confirmed."""
    confirmed: list[str] = []
    failed = 0
    todo = iter(range(ORDERS))

    async def client() -> None:
        nonlocal failed
        for i in todo:
            request = OrderRequest(PRODUCTS[i % len(PRODUCTS)], 1, PARIS)
            try:
                confirmed.append((await placer.place(request)).order_id)
            except Exception:  # any failure: the order is not confirmed, which is allowed
                failed += 1
                await asyncio.sleep(0.05)
            if len(confirmed) >= KILL_AFTER_CONFIRMED:
                kill.set()
            await asyncio.sleep(0.005)  # a small, steady load spread over the failover

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return confirmed, failed


async def missing_orders(redis: RedisClient, order_ids: list[str]) -> list[str]:
    """Confirmed orders absent from Redis, read once the failed shard serves again."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT_S
    while True:
        try:
            pipe = redis.pipeline(transaction=False)
            for order_id in order_ids:
                partition = partition_of_id(order_id)
                assert partition is not None
                pipe.exists(keys.order(partition, order_id))
            found = await pipe.execute()
            return [o for o, n in zip(order_ids, found, strict=True) if not n]
        except Exception:  # the shard is still failing over
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_confirmed_orders_survive_a_master_failover(redis: RedisClient) -> None:
    assert isinstance(redis, RedisCluster)
    inventory = Inventory(runner_for(redis))
    for product in PRODUCTS:
        await inventory.change(product, "paris", "set", 10_000, "test")
    acks = scripts.ReplicaAcks(1, WAIT_TIMEOUT_MS)
    placer = make_placer(redis, acks)
    victim = await master_pid(redis, 0)
    kill = asyncio.Event()

    async def killer() -> None:
        await kill.wait()
        os.kill(victim, signal.SIGKILL)

    try:
        (confirmed, failed), _ = await asyncio.gather(place_under_load(placer, kill), killer())
        missing = await missing_orders(redis, confirmed)
    finally:
        subprocess.run(["bash", str(ROOT / "ops" / "stack.sh"), "cluster-up"], check=True)
    print(f"failover: {len(confirmed)} confirmed, {failed} failed, {acks.short} short WAITs")
    assert len(confirmed) + failed == ORDERS
    assert len(confirmed) > KILL_AFTER_CONFIRMED
    assert missing == []
