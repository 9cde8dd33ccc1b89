"""loadtest/instructions.py, the engine's calls counted in Redis's instructions: a real Redis under
valgrind's callgrind, stocked as the benchmark stocks it (a smaller catalogue), counting each load
alone; a load whose calls Redis refuses is not counted but raised."""

from __future__ import annotations

import hashlib

import hiredis
import pytest

from engine.warehouses import WarehouseDirectory
from loadtest import catalog, engine_load, instructions
from loadtest.bench import seed_stock
from loadtest.catalog import Traffic

PRODUCTS = 40
DIRECTORY = WarehouseDirectory(catalog.warehouses())


async def seed(url: str) -> None:
    await seed_stock(url, DIRECTORY.all(), PRODUCTS)


def placement_load(orders: int, per_call: int) -> engine_load.PackedLoad:
    return engine_load.placement_load(DIRECTORY, Traffic(PRODUCTS, seed=per_call), orders, per_call)


async def test_a_load_is_counted_alone_after_the_tiny_script() -> None:
    tiny = engine_load.tiny_decrement_load(64)
    eight_per_call = placement_load(64, 8)
    eight = await instructions.count_load(tiny, eight_per_call, seed)
    one = await instructions.count_load(tiny, placement_load(16, 1), seed)

    assert (eight.tiny.calls, eight.tiny.orders) == (64, 64)
    assert (eight.placed.calls, eight.placed.orders) == (len(eight_per_call.commands), 64)
    # Each count is of its own load: placing an order does far more than a decrement.
    assert 0 < eight.tiny.per_call < eight.placed.per_order
    assert 0 < one.tiny.per_call < one.placed.per_order


async def test_a_load_redis_refuses_is_not_counted() -> None:
    unknown = "return 1 -- never loaded"
    sha = hashlib.sha1(unknown.encode()).hexdigest()
    refused = engine_load.PackedLoad([bytes(hiredis.pack_command(("EVALSHA", sha, 0)))] * 4, 1.0)
    with pytest.raises(RuntimeError, match="4 calls refused"):
        await instructions.count_load(engine_load.tiny_decrement_load(8), refused, seed)
