"""Moving one hash slot between Redis Cluster masters as `redis-cli --cluster reshard` moves each
slot (redis-cli's `clusterManagerMoveSlot`), for a slot of our choosing: redis-cli picks the slots
itself and cannot be told which one.

1. target `CLUSTER SETSLOT <slot> IMPORTING <source-id>`, source `... MIGRATING <target-id>`;
2. `CLUSTER GETKEYSINSLOT` on the source and `MIGRATE ... KEYS` them to the target, a batch at a
   time (redis-cli's `--cluster-pipeline`), until none is left;
3. `CLUSTER SETSLOT <slot> NODE <target-id>` on the target, the source, then the other masters.

Between 1 and 3 the source answers a command for keys it no longer has with ASK (ask the target),
and a command whose keys are split between the two nodes, or that names a key neither has, with
TRYAGAIN; so does the target. A script that creates a key (placing any order: a new order key)
is therefore refused from step 1 to step 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

# redis-cli's default `--cluster-pipeline`: keys per MIGRATE.
REDIS_CLI_KEYS_PER_MIGRATE: Final = 10
MIGRATE_TIMEOUT_MS: Final = 10_000
# A bound on the key loop: a slot that never empties fails the move instead of looping on.
MAX_MIGRATE_BATCHES: Final = 50_000


@dataclass(frozen=True)
class Master:
    node_id: str
    host: str
    port: int
    slots: tuple[tuple[int, int], ...]  # inclusive ranges

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def owns(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


@dataclass(frozen=True)
class SlotMove:
    slot: int
    source: str
    target: str
    keys_per_migrate: int
    keys_moved: int
    migrates: int
    started: float  # time.monotonic(), just before step 1
    done: float  # after step 3: every master names the target as the owner

    @property
    def seconds(self) -> float:
        return self.done - self.started


def _client(host: str, port: int) -> Redis:
    return Redis(host=host, port=port, decode_responses=True, socket_timeout=30)


async def masters(host: str, port: int) -> list[Master]:
    """The cluster's masters, as the node at host:port sees them (`CLUSTER NODES`)."""
    client = _client(host, port)
    try:
        text = await client.execute_command("CLUSTER", "NODES")
    finally:
        await client.aclose()
    found = []
    for line in str(text).splitlines():
        fields = line.split()
        flags = fields[2].split(",") if len(fields) > 2 else []
        if len(fields) < 8 or "master" not in flags or "fail" in flags:
            continue
        node_host, node_port = fields[1].split("@", 1)[0].rsplit(":", 1)
        ranges = []
        for part in fields[8:]:
            if part.startswith("["):  # "[slot->-id]", "[slot-<-id]": an open migration
                continue
            low, _, high = part.partition("-")
            ranges.append((int(low), int(high or low)))
        found.append(Master(fields[0], node_host, int(node_port), tuple(ranges)))
    return sorted(found, key=lambda m: m.port)


def owner(nodes: list[Master], slot: int) -> Master:
    (found,) = [m for m in nodes if m.owns(slot)]
    return found


async def move_slot(
    slot: int,
    source: Master,
    target: Master,
    others: list[Master],
    keys_per_migrate: int = REDIS_CLI_KEYS_PER_MIGRATE,
) -> SlotMove:
    """Move `slot` from `source` to `target`: every key, then the ownership. Run again after a
    move that stopped between steps 1 and 3, it finishes that move."""
    src, dst = _client(source.host, source.port), _client(target.host, target.port)
    rest = [_client(m.host, m.port) for m in others]
    started = time.monotonic()
    moved = migrates = 0
    try:
        await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        for _ in range(MAX_MIGRATE_BATCHES):
            batch = await src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, keys_per_migrate)
            if not batch:
                break
            await src.execute_command(
                "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *batch
            )
            moved += len(batch)
            migrates += 1
        else:
            raise RuntimeError(f"slot {slot} still had keys after {MAX_MIGRATE_BATCHES} MIGRATEs")
        # The target first, so that when the source lets go the slot already has its owner.
        for client in (dst, src, *rest):
            await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    finally:
        for client in (src, dst, *rest):
            await client.aclose()
    return SlotMove(
        slot,
        source.address,
        target.address,
        keys_per_migrate,
        moved,
        migrates,
        started,
        time.monotonic(),
    )


async def put_back(slot: int, home: Master, away: Master, others: list[Master]) -> SlotMove:
    """Give `slot` back to `home` after a move to `away`, finishing that move first if it stopped
    half way (the slot still `home`'s, some keys perhaps already on `away`)."""
    if owner(await masters(home.host, home.port), slot).node_id == home.node_id:
        await move_slot(slot, home, away, others)
    return await move_slot(slot, away, home, others)
