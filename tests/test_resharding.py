"""Resharding under load: one partition's hash slot moves to another master while orders flow.

Runs on the cluster only (`make test-cluster`). 16 clients place orders through the engine for
the whole test, half of them on one partition, half on the 15 others. That partition's slot, with
~30,000 order keys and its stream in it, is moved to another master as `redis-cli --cluster
reshard` moves a slot (`tests.slot_migration`), with redis-cli's default of 10 keys per MIGRATE
and with 100; it is moved back once the load has stopped.

Every order's answer time, partition, outcome and latency is recorded. The test measures how long
the moved partition's orders were refused (first to last refusal, and the longest stretch without
a confirmation) and bounds it; checks that no confirmed order is lost and that the moved
partition's stock ledger holds (units taken = units of the orders that exist = those confirmed,
plus any answered OutcomeUnknown); and that the other partitions kept confirming.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import msgspec
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

from engine import keys
from engine.errors import OutcomeUnknown
from engine.inventory import Inventory
from engine.orders import OrderRequest
from engine.placement import OrderPlacer
from engine.records import decode_record
from engine.warehouses import FixedWarehouses, Warehouse, WarehouseDirectory
from geo.distance import Point
from stores.redis import RedisClient
from tests import slot_migration
from tests.conftest import TEST_SETTINGS, runner_for

pytestmark = pytest.mark.skipif(
    not TEST_SETTINGS.redis_cluster, reason="needs Redis Cluster: make test-cluster"
)

MOVED_PARTITION: Final = 6
WAREHOUSES: Final = [
    Warehouse("paris", "Paris", Point(48.8566, 2.3522)),
    Warehouse("lyon", "Lyon", Point(45.764, 4.8357)),
    Warehouse("lille", "Lille", Point(50.6292, 3.0573)),
]
UNITS_PER_WAREHOUSE: Final = 1_000_000  # ample: no order is refused for want of stock
MOVED_PRODUCTS: Final = 4
# Orders placed in the moved partition before the load starts, so that its slot holds enough keys
# (an order key each, plus the stream) for the move to take a measurable time.
PREFILL_ORDERS: Final = 30_000
PREFILL_CONCURRENCY: Final = 256
CLIENTS: Final = 16  # half on the moved partition, half on the others
PAUSE_BETWEEN_ORDERS_S: Final = 0.002
PAUSE_AFTER_REFUSAL_S: Final = 0.05
MAX_ORDERS_PER_CLIENT: Final = 50_000
LOAD_BEFORE_MOVE_S: Final = 2.0
LOAD_AFTER_MOVE_S: Final = 2.0
# The moved partition's refusals, and its longest stretch without a confirmation, stay under
# this (README, "Moving a slot under load", has the measured figures).
REFUSED_WINDOW_BOUND_S: Final = 10.0
# Refusals only while the slot moves (plus the runner's resend backoff, at most 0.5 s, after it).
REFUSALS_AFTER_MOVE_S: Final = 1.0
# The other partitions are never refused; their orders that share a round trip with a call to the
# moving slot wait for its redirections, so their longest stretch is bounded too.
OTHERS_GAP_BOUND_S: Final = REFUSED_WINDOW_BOUND_S


@dataclass(frozen=True, slots=True)
class Placed:
    answered: float  # time.monotonic()
    partition: int
    product_id: str
    quantity: int
    outcome: str  # "confirmed", or the type of the error the engine raised
    detail: str  # the error's message
    latency_s: float
    order_id: str | None  # the confirmed order, or the one OutcomeUnknown names


def products_of(partition: int, count: int, run: str) -> list[str]:
    """Product IDs of this run (none another test uses) that fall in `partition`."""
    found: list[str] = []
    for i in range(100_000):
        product_id = f"reshard-{run}-{i}"
        if keys.partition_of_product(product_id) == partition:
            found.append(product_id)
            if len(found) == count:
                return found
    raise AssertionError(f"no {count} product IDs in partition {partition}")


def make_placer(redis: RedisClient) -> OrderPlacer:
    directory = WarehouseDirectory(WAREHOUSES)

    # As a process on the cluster runs it: every pipeline WAITs for one replica (the default).
    settings = msgspec.structs.replace(TEST_SETTINGS, redis_wait_replicas=1)
    return OrderPlacer(runner_for(redis, settings), FixedWarehouses(directory))


async def place(placer: OrderPlacer, product_id: str, quantity: int, i: int) -> Placed:
    customer = WAREHOUSES[i % len(WAREHOUSES)].location
    sent = time.monotonic()
    order_id: str | None
    try:
        confirmation = await placer.place(OrderRequest(product_id, quantity, customer))
        outcome, detail, order_id = "confirmed", "", confirmation.order_id
    except OutcomeUnknown as unknown:
        outcome, detail, order_id = "OutcomeUnknown", str(unknown), unknown.subject_id
    except Exception as exc:  # a refusal of any kind: recorded, and the client goes on
        outcome, detail, order_id = type(exc).__name__, str(exc), None
    answered = time.monotonic()
    partition = keys.partition_of_product(product_id)
    return Placed(
        answered, partition, product_id, quantity, outcome, detail, answered - sent, order_id
    )


async def background_orders(
    placer: OrderPlacer, moved: list[str], others: list[str], stop: asyncio.Event
) -> list[Placed]:
    """CLIENTS clients placing orders one after another until `stop`: half on the moved partition,
    half on the others, so that a client held up by the move does not thin the others' load."""
    placed: list[Placed] = []

    async def client(c: int) -> None:
        products = moved if c % 2 == 0 else others
        for n in range(MAX_ORDERS_PER_CLIENT):
            if stop.is_set():
                return
            i = c // 2 + n * (CLIENTS // 2)
            got = await place(placer, products[i % len(products)], 1 + i % 3, i)
            placed.append(got)
            refused = got.outcome != "confirmed"
            await asyncio.sleep(PAUSE_AFTER_REFUSAL_S if refused else PAUSE_BETWEEN_ORDERS_S)

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    return placed


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without any of `times`."""
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


async def orders_in_slot(
    node: slot_migration.Master, partition: int, products: set[str]
) -> dict[str, tuple[str, str, int]]:
    """Every order of `products` in the partition, read from the master that owns its slot:
    order ID -> (product, warehouse, quantity)."""
    slot = key_slot(keys.stream(partition).encode())
    prefix = keys.order(partition, "")
    client = Redis(host=node.host, port=node.port, decode_responses=True)
    found: dict[str, tuple[str, str, int]] = {}
    try:
        count = await client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
        names = await client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, int(count) + 1)
        order_keys = [k for k in names if k.startswith(prefix)]
        for start in range(0, len(order_keys), 500):
            chunk = order_keys[start : start + 500]
            for key, value in zip(chunk, await client.mget(chunk), strict=True):
                if value is None:
                    continue
                record = decode_record(value)
                if record.product_id in products:
                    order_id = key.removeprefix(prefix)
                    found[order_id] = (record.product_id, record.warehouse_id, record.quantity)
    finally:
        await client.aclose()
    return found


@pytest.mark.parametrize(
    "keys_per_migrate",
    [slot_migration.REDIS_CLI_KEYS_PER_MIGRATE, 100],
    ids=["pipeline-10", "pipeline-100"],
)
async def test_moving_a_partitions_slot_under_load_refuses_its_orders_for_seconds_only(
    redis: RedisClient, keys_per_migrate: int
) -> None:
    assert isinstance(redis, RedisCluster)
    run = os.urandom(4).hex()
    moved = products_of(MOVED_PARTITION, MOVED_PRODUCTS, run)
    others = [
        product_id
        for partition in range(keys.PARTITIONS)
        if partition != MOVED_PARTITION
        for product_id in products_of(partition, 1, run)
    ]
    inventory = Inventory(runner_for(redis))
    await inventory.set_many(
        [(p, w.warehouse_id, UNITS_PER_WAREHOUSE) for p in moved + others for w in WAREHOUSES],
        "resharding test",
    )
    placer = make_placer(redis)
    gate = asyncio.Semaphore(PREFILL_CONCURRENCY)

    async def prefill(i: int) -> Placed:
        async with gate:
            return await place(placer, moved[i % len(moved)], 1, i)

    prefilled = await asyncio.gather(*(prefill(i) for i in range(PREFILL_ORDERS)))
    assert {p.outcome for p in prefilled} == {"confirmed"}, Counter(p.detail for p in prefilled)

    slot = key_slot(keys.stream(MOVED_PARTITION).encode())
    url = urlsplit(TEST_SETTINGS.redis_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    nodes = await slot_migration.masters(host, port)
    home = slot_migration.owner(nodes, slot)
    away = next(m for m in nodes if m != home)
    rest = [m for m in nodes if m not in (home, away)]

    stop = asyncio.Event()
    load = asyncio.create_task(background_orders(placer, moved, others, stop))
    load_start = time.monotonic()
    try:
        await asyncio.sleep(LOAD_BEFORE_MOVE_S)
        move = await slot_migration.move_slot(slot, home, away, rest, keys_per_migrate)
        await asyncio.sleep(LOAD_AFTER_MOVE_S)
    finally:
        stop.set()
        try:
            placed = [*prefilled, *await load]
        finally:
            back = await slot_migration.put_back(slot, home, away, rest)
    check = subprocess.run(
        ["redis-cli", "--cluster", "check", f"{host}:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    ours = [p for p in placed if p.partition == MOVED_PARTITION]
    theirs = [p for p in placed if p.partition != MOVED_PARTITION]
    assert not [p for p in placed if p.outcome == "UnknownProduct"], (
        "stock vanished mid-run: another test run flushed the cluster; run again"
    )
    refused = [p.answered for p in ours if p.outcome != "confirmed"]
    load_end = max(p.answered for p in placed)
    window = max(refused) - min(refused) if refused else 0.0
    gap = longest_gap([p.answered for p in ours if p.outcome == "confirmed"], load_start, load_end)
    others_gap = longest_gap(
        [p.answered for p in theirs if p.outcome == "confirmed"], load_start, load_end
    )
    refusals = Counter(f"{p.outcome}: {p.detail}" for p in ours if p.outcome != "confirmed")
    span = (min(refused), max(refused)) if refused else ()
    since_move = "/".join(f"{t - move.started:+.2f}" for t in span) or "-"
    print(
        f"\nresharding slot {slot} (partition {MOVED_PARTITION}) {move.source} -> {move.target},"
        f" {keys_per_migrate} keys per MIGRATE: {move.keys_moved} keys in {move.migrates}"
        f" MIGRATEs, {move.seconds:.2f} s (back, no load: {back.seconds:.2f} s)\n"
        f"  moved partition: {len(ours) - len(prefilled)} orders under load, {len(refused)}"
        f" refused {dict(refusals)}, from/to {since_move} s after the move began: window"
        f" {window:.2f} s; longest stretch without a confirmation {gap:.2f} s\n"
        f"  other partitions: {len(theirs)} orders, {sum(p.outcome != 'confirmed' for p in theirs)}"
        f" refused; longest stretch without a confirmation {others_gap:.2f} s, max latency"
        f" {max(p.latency_s for p in theirs):.2f} s"
    )

    # No confirmed order lost; the moved partition's ledger: the orders that exist are the ones
    # confirmed (plus any answered OutcomeUnknown), and they took exactly the units that left.
    told = {p.order_id: p for p in ours if p.order_id is not None}
    confirmed = {p.order_id for p in ours if p.outcome == "confirmed"}
    existing = await orders_in_slot(home, MOVED_PARTITION, set(moved))
    assert confirmed - existing.keys() == set(), "confirmed orders missing after the move"
    assert existing.keys() - told.keys() == set(), "orders exist that no client was told of"
    assert {told[o].outcome for o in existing} <= {"confirmed", "OutcomeUnknown"}
    taken: Counter[tuple[str, str]] = Counter()
    for product_id, warehouse_id, quantity in existing.values():
        taken[product_id, warehouse_id] += quantity
    for product_id in moved:
        for lv in await inventory.levels(product_id):
            units_taken = UNITS_PER_WAREHOUSE - lv.level
            assert units_taken == taken[product_id, lv.warehouse_id], (product_id, lv)
    unknown_but_placed = existing.keys() - confirmed
    assert sum(taken.values()) == sum(p.quantity for p in ours if p.outcome == "confirmed") + sum(
        existing[o][2] for o in unknown_but_placed
    )

    # The refused window: only while the slot moved, and seconds long.
    assert all(move.started <= t <= move.done + REFUSALS_AFTER_MOVE_S for t in refused)
    assert window < REFUSED_WINDOW_BOUND_S
    assert gap < REFUSED_WINDOW_BOUND_S
    # The other partitions kept confirming, through the move too.
    assert [p for p in theirs if p.outcome != "confirmed"] == []
    assert others_gap < OTHERS_GAP_BOUND_S
    assert check.returncode == 0, check.stdout + check.stderr
