"""A throwaway Redis Cluster of three masters on loopback, to measure how the engine's throughput
moves from one shard to three (each master and its client on the same 2 cores)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio import RedisCluster
from redis.crc import key_slot

from engine import scripts
from engine.inventory import Inventory
from engine.warehouses import WarehouseDirectory
from loadtest import engine_load, processes
from loadtest.catalog import WAREHOUSES, Traffic, product_id
from stores.settings import load_settings

PRODUCTS = 10_000
ORDERS_PER_CALL = 32
DEPTH = 32


@contextlib.contextmanager
def cluster(ports: Sequence[int]) -> Iterator[None]:
    extra = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(
                processes.redis_server(
                    port,
                    persistent=False,
                    extra=(*extra, "--cluster-config-file", f"nodes-{port}.conf"),
                )
            )
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 30
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True
            ).stdout
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark cluster did not become ready")
            time.sleep(0.2)
        yield


def _send(port: int, load: engine_load.PackedLoad, results: multiprocessing.Queue[float]) -> None:
    rate, _ = asyncio.run(engine_load.send_pipelined(port, load, DEPTH))
    results.put(rate)


def _in_parallel(loads: dict[int, engine_load.PackedLoad]) -> float:
    """One client process per master, all at once; returns the summed orders placed/s."""
    results: multiprocessing.Queue[float] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_send, args=(port, load, results))
        for port, load in loads.items()
    ]
    for worker in workers:
        worker.start()
    rates = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


async def _seed(ports: Sequence[int]) -> RedisCluster:
    client = RedisCluster(host="127.0.0.1", port=ports[0], decode_responses=True)
    await client.initialize()
    for script in scripts.ALL_SCRIPTS:
        await client.script_load(script.source)
    inventory = Inventory(
        scripts.ScriptRunner(client, deadline_s=load_settings().command_deadline_s)
    )
    levels = [(product_id(r), w, 10**9) for r in range(PRODUCTS) for w in WAREHOUSES]
    for start in range(0, len(levels), 5_000):
        await inventory.set_many(levels[start : start + 5_000], "bench seed")
    return client


async def cluster_scaling(
    ports: Sequence[int], directory: WarehouseDirectory, orders: int
) -> tuple[float, float]:
    with cluster(ports):
        client = await _seed(ports)
        port_of_slot = {}
        slots: Any = (
            await client.cluster_slots()
        )  # redis-py parses it into a dict; its stub says list
        for (low, high), owners in slots.items():
            for slot in range(int(low), int(high) + 1):
                port_of_slot[slot] = int(owners["primary"][1])
        await client.aclose()
        load = engine_load.placement_load(
            directory, Traffic(PRODUCTS, seed=9), orders, ORDERS_PER_CALL
        )
        by_port: defaultdict[int, list[bytes]] = defaultdict(list)
        for command in load.commands:
            by_port[port_of_slot[key_slot(_first_key(command))]].append(command)
        loads = {
            port: engine_load.PackedLoad(cmds, load.orders_per_command)
            for port, cmds in by_port.items()
        }
        first = min(loads)
        one = _in_parallel({first: loads[first]})
        three = _in_parallel(loads)
    return one, three


def _first_key(command: bytes) -> bytes:
    """The first key of a packed EVALSHA (*N $7 EVALSHA $40 sha $n numkeys $len key ...)."""
    parts = command.split(b"\r\n")
    return parts[8]
