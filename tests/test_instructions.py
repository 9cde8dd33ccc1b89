"""loadtest/instructions.py, the engine's calls counted in Redis's instructions: a real Redis under
valgrind's callgrind, stocked as the benchmark stocks it (a smaller catalogue), counting each load
alone; a load whose calls Redis refuses is not counted but raised."""

from __future__ import annotations

import hashlib

import hiredis
import pytest

from engine.warehouses import Warehouse, WarehouseDirectory
from geo.distance import Point
from loadtest import engine_load, instructions
from loadtest.bench import seed_stock
from loadtest.catalog import WAREHOUSES, Traffic

PRODUCTS = 40


def directory() -> WarehouseDirectory:
    return WarehouseDirectory(
        [Warehouse(w, name, Point(lat, lon)) for w, (name, lat, lon) in WAREHOUSES.items()]
    )


async def seed(url: str) -> None:
    await seed_stock(url, directory().all(), PRODUCTS)


async def test_each_load_is_counted_alone_beside_the_tiny_script() -> None:
    tiny = engine_load.tiny_decrement_load(64)
    eight = engine_load.placement_load(directory(), Traffic(PRODUCTS, seed=1), 64, 8)
    one = engine_load.placement_load(directory(), Traffic(PRODUCTS, seed=2), 16, 1)
    counts = await instructions.count_loads(tiny, {"8 per call": eight, "1 per call": one}, seed)

    assert [c.name for c in counts.loads] == ["8 per call", "1 per call"]
    assert (counts.tiny_before.calls, counts.tiny_before.orders) == (64, 64)
    assert counts.loads[0].orders == 64 and counts.loads[0].calls == len(eight.commands)
    # Each count is of its own load: placing an order does far more than a decrement, and a call
    # of one order pays the call's cost for one order alone.
    assert 0 < counts.tiny_before.per_call < counts.loads[0].per_order < counts.loads[1].per_order
    assert counts.tiny_per_call == pytest.approx(
        (counts.tiny_before.per_call + counts.tiny_after.per_call) / 2
    )


async def test_a_load_redis_refuses_is_not_counted() -> None:
    unknown = "return 1 -- never loaded"
    sha = hashlib.sha1(unknown.encode()).hexdigest()
    refused = engine_load.PackedLoad([bytes(hiredis.pack_command(("EVALSHA", sha, 0)))] * 4, 1.0)
    with pytest.raises(RuntimeError, match="4 calls refused"):
        await instructions.count_loads(refused, {}, seed)
