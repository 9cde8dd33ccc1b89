"""Redis's instructions per order for the engine's calls, beside the tiny script's per call: counted
by valgrind's callgrind, not timed.

On this machine the clock moves too much between runs to tell a few per cent of the script's cost
apart (README, "Where the engine's time goes, counted"); a count of the instructions Redis executes
repeats within about 1 %. The Redis is the one the stack runs (no symbols are needed for a total),
under callgrind, counting only while a load runs: the engine benchmark's own calls
(loadtest/engine_load.py), sent 32 in flight, after the bench's catalogue is stocked. What a count
leaves out is the kernel's share (reading and writing the sockets and the AOF) and what the
memory system costs; the timed engine rows have both.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loadtest import engine_load, processes
from stores.redis import connect_redis
from stores.settings import Settings

INSTRUCTIONS_REDIS_PORT: Final = 6407
# Enough calls that the call's share of a fixed cost is gone, few enough that callgrind's ~50x
# slow-down costs seconds.
ORDERS: Final = 2_000
DEPTH: Final = 32


@dataclass(frozen=True)
class Counted:
    """One load's instructions in Redis, per call and per order."""

    name: str
    instructions: int
    calls: int
    orders: float

    @property
    def per_call(self) -> float:
        return self.instructions / self.calls

    @property
    def per_order(self) -> float:
        return self.instructions / self.orders


@dataclass(frozen=True)
class Counts:
    tiny_before: Counted
    loads: list[Counted]
    tiny_after: Counted

    @property
    def tiny_per_call(self) -> float:
        """The tiny script's two counts' mean: they differ by how much a count moves in a run."""
        return (self.tiny_before.per_call + self.tiny_after.per_call) / 2


async def count_loads(
    tiny: engine_load.PackedLoad,
    loads: dict[str, engine_load.PackedLoad],
    seed: Callable[[str], Awaitable[None]],
) -> Counts:
    """Each load's instructions in one Redis under callgrind, `seed`ed first (not counted), with
    the tiny script before and after them."""
    data = processes.redis_data_dir(INSTRUCTIONS_REDIS_PORT)
    wrapper = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # seeding runs at valgrind's pace, not callgrind's
        f"--callgrind-out-file={data}/callgrind.out",
        f"--log-file={data}/valgrind.log",
    )
    with processes.redis_server(INSTRUCTIONS_REDIS_PORT, persistent=True, wrapper=wrapper) as url:
        redis = connect_redis(Settings(url, False, "", "", ""))
        try:
            await seed(url)
            await redis.script_load(engine_load.TINY_DECREMENT)
            pid = int((await redis.info("server"))["process_id"])
        finally:
            await redis.aclose()
        before = await _count("tiny script", tiny, pid, data)
        counted = [await _count(name, load, pid, data) for name, load in loads.items()]
        return Counts(before, counted, await _count("tiny script", tiny, pid, data))


async def _count(name: str, load: engine_load.PackedLoad, pid: int, data: Path) -> Counted:
    before = set(data.glob("callgrind.out.*"))
    _control("--instr=on", pid)
    _control("--zero", pid)
    _, errors = await engine_load.send_pipelined(INSTRUCTIONS_REDIS_PORT, load, DEPTH)
    if errors:
        raise RuntimeError(f"{name}: {errors} calls refused; a count of them would mean nothing")
    _control(f"--dump={name}", pid)
    _control("--instr=off", pid)
    (dump,) = set(data.glob("callgrind.out.*")) - before
    calls = len(load.commands)
    return Counted(name, _summary(dump), calls, calls * load.orders_per_command)


def _control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def _summary(dump: Path) -> int:
    """The events a callgrind dump counted since the counters were zeroed: its `summary:` line."""
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{dump}: no summary line")
