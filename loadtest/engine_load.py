"""Drive `lua/place_orders.lua` straight over the Redis protocol, as fast as one client pipelines.

The calls are built exactly as the engine builds them (ranked candidates, delivery days, keys)
and packed before the clock starts, so the figure is Redis's, not the Python client's.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

import hiredis

from engine import commands, scripts
from engine.commands import Attempt
from engine.orders import OrderRequest
from engine.placement import OrderPlacer
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from geo.distance import Point
from loadtest.catalog import Traffic

TINY_DECREMENT = "return redis.call('DECRBY', KEYS[1], 1)"
TINY_DECREMENT_SHA: Final = hashlib.sha1(TINY_DECREMENT.encode()).hexdigest()
# The tiny script's calls spread over this many keys.
TINY_KEYS: Final = 1000


@dataclass(frozen=True)
class PackedLoad:
    commands: list[bytes]
    orders_per_command: float


def placement_load(
    directory: WarehouseDirectory, traffic: Traffic, orders: int, orders_per_call: int
) -> PackedLoad:
    """EVALSHA commands of `orders_per_call` orders of one partition each, as a batch would be."""
    # Only its ranking is used: no runner, nothing is sent through it.
    placer = OrderPlacer(None, FixedWarehouses(directory), batched=False)  # type: ignore[arg-type]
    by_partition: defaultdict[int, list[Attempt]] = defaultdict(list)
    commands: list[bytes] = []
    now_ms = int(time.time() * 1000)
    for _ in range(orders):
        body: Any = traffic.order_body()
        location = body["customerLocation"]
        request = OrderRequest(body["productId"], 1, Point(location["lat"], location["lon"]))
        attempt = placer.first_attempt(request)
        pending = by_partition[attempt.partition]
        pending.append(attempt)
        if len(pending) == orders_per_call:
            commands.append(_pack(now_ms, pending))
            pending.clear()
    commands += [_pack(now_ms, rest) for rest in by_partition.values() if rest]
    return PackedLoad(commands, orders / len(commands))


def tiny_decrement_load(count: int) -> PackedLoad:
    commands = [_packed(("EVALSHA", TINY_DECREMENT_SHA, 1, tiny_key(i))) for i in range(count)]
    return PackedLoad(commands, 1.0)


def tiny_key(n: int) -> str:
    return f"tiny:{n % TINY_KEYS}"


def _pack(now_ms: int, attempts: list[Attempt]) -> bytes:
    command = commands.place_orders(now_ms, attempts)
    return _packed(
        ("EVALSHA", scripts.PLACE_ORDERS.sha, len(command.keys), *command.keys, *command.args)
    )


def _packed(command: tuple[object, ...]) -> bytes:
    return bytes(hiredis.pack_command(command))  # type: ignore[arg-type]  # its stub is too narrow


async def send_pipelined(port: int, load: PackedLoad, depth: int) -> tuple[float, int]:
    """Send every command, `depth` in flight; returns (orders per second, error replies)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = hiredis.Reader()
    errors = 0
    started = time.perf_counter()
    for start in range(0, len(load.commands), depth):
        chunk = load.commands[start : start + depth]
        writer.write(b"".join(chunk))
        replies = 0
        while replies < len(chunk):
            parser.feed(await reader.read(1 << 20))
            while (reply := parser.gets()) is not False:
                replies += 1
                errors += isinstance(reply, hiredis.ReplyError)
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return len(load.commands) * load.orders_per_command / elapsed, errors
