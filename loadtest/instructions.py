"""Redis's instructions per order for the engine's calls, beside the tiny script's per call: counted
by valgrind's callgrind, not timed.

On this machine the clock moves too much between runs to tell a few per cent of the script's cost
apart (README, "Where the engine's time goes, counted"); a count of the instructions Redis executes
repeats within about 1 %. The Redis is the one the stack runs (no symbols are needed for a total),
under callgrind, counting only while a load runs: the engine benchmark's own calls
(loadtest/engine_load.py), sent 32 in flight, after the bench's catalogue is stocked. What a count
leaves out is the kernel's share (reading and writing the sockets and the AOF) and what the
memory system costs; the timed engine rows have both. What it has besides the calls is Redis's own
timers while they run (1-2 million instructions per second of the clock under callgrind on the
bench's catalogue, a few per cent of a load's count).
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
    tiny: Counted  # the tiny script, on the same fresh Redis just before
    placed: Counted


async def count_load(
    tiny: engine_load.PackedLoad,
    load: engine_load.PackedLoad,
    seed: Callable[[str], Awaitable[None]],
) -> Counts:
    """`load`'s instructions in a fresh Redis under callgrind, `seed`ed first (not counted), right
    after the tiny script's there: a fresh Redis per load, as the timed engine rows have, so no
    count carries the keys an earlier load left (nor a resize of Redis's key table)."""
    wrapper = (
        "valgrind",
        "-q",  # its errors only, on stderr
        "--tool=callgrind",
        "--instr-atstart=no",  # seeding runs at valgrind's pace, not callgrind's
        f"--callgrind-out-file={processes.redis_data_dir(INSTRUCTIONS_REDIS_PORT)}/callgrind.out",
    )
    with processes.redis_server(INSTRUCTIONS_REDIS_PORT, persistent=True, wrapper=wrapper) as url:
        redis = connect_redis(Settings(url, False, "", "", ""))
        try:
            await seed(url)
            await redis.script_load(engine_load.TINY_DECREMENT)
            pid = int((await redis.info("server"))["process_id"])
        finally:
            await redis.aclose()
        return Counts(await _count("tiny script", tiny, pid), await _count("placed", load, pid))


async def _count(name: str, load: engine_load.PackedLoad, pid: int) -> Counted:
    """Counting only while `load` runs: a dump writes what was counted since the last one."""
    dumps = processes.redis_data_dir(INSTRUCTIONS_REDIS_PORT).glob
    before = set(dumps("callgrind.out.*"))
    _monitor(pid, "instrumentation", "on")
    # Counting starts from zero: callgrind's dump writes what was counted since its last dump,
    # which instrumentation turned off and on again would leave meaningless (even negative).
    _monitor(pid, "zero")
    _, errors = await engine_load.send_pipelined(INSTRUCTIONS_REDIS_PORT, load, DEPTH)
    _monitor(pid, "dump", name)
    _monitor(pid, "instrumentation", "off")
    if errors:
        raise RuntimeError(f"{name}: {errors} calls refused; a count of them would mean nothing")
    new = set(dumps("callgrind.out.*")) - before
    if len(new) != 1:
        raise RuntimeError(f"{name}: callgrind wrote {len(new)} dumps, not one")
    instructions = _summary(new.pop())
    if instructions <= 0:
        raise RuntimeError(f"{name}: callgrind counted nothing; was it instrumenting?")
    calls = len(load.commands)
    return Counted(name, instructions, calls, calls * load.orders_per_command)


def _monitor(pid: int, *command: str) -> None:
    """A callgrind monitor command, through vgdb: it answers once done, and exits non-zero when
    it cannot reach the process (callgrind_control exits 0 either way)."""
    subprocess.run(["vgdb", f"--pid={pid}", *command], check=True, capture_output=True)


def _summary(dump: Path) -> int:
    """The events a callgrind dump counted since the counters were zeroed: its `summary:` line."""
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{dump}: no summary line")
