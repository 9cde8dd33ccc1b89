"""Loading the Lua scripts of `lua/` into Redis and calling them; the only Python that does.

Calls go by EVALSHA. A Redis that restarted or failed over has an empty script cache and answers
NOSCRIPT; the script is then loaded (on every master, for a cluster) and the call sent once more.

Replication is asynchronous: a master that dies right after a reply can take that write with it.
`ReplicaAcks` makes a pipeline end with WAIT on every node it wrote to, so its replies count only
once a replica holds the writes (see the README, "Redis Cluster").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError

from stores.redis import RedisClient

LUA_DIR: Final = Path(__file__).resolve().parent.parent / "lua"

Arg = str | int | float | bytes
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        source = (LUA_DIR / f"{name}.lua").read_text()
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


RESERVE: Final = LuaScript.load("reserve")
SET_STOCK: Final = LuaScript.load("set_stock")
HOLD: Final = LuaScript.load("hold")
CANCEL: Final = LuaScript.load("cancel")
TRANSITION: Final = LuaScript.load("transition")
RELEASE_HOLDS: Final = LuaScript.load("release_holds")
REROUTE: Final = LuaScript.load("reroute")
ALL_SCRIPTS: Final = (RESERVE, SET_STOCK, HOLD, CANCEL, TRANSITION, RELEASE_HOLDS, REROUTE)


async def load_all(redis: RedisClient) -> None:
    for script in ALL_SCRIPTS:
        if isinstance(redis, RedisCluster):
            # Replicas too: one promoted by a failover then already has them.
            await redis.execute_command(
                "SCRIPT LOAD", script.source, target_nodes=RedisCluster.ALL_NODES
            )
        else:
            await redis.script_load(script.source)


@dataclass
class ReplicaAcks:
    """WAIT for `replicas` replicas to hold a pipeline's writes, at most `timeout_ms`.

    A reply that comes back short (the replica is down or lagging, or the shard runs without one
    after a failover) is still returned: the write is on the master, in its AOF. It is counted in
    `short`, which the metrics export, so running without the replica guarantee is visible."""

    replicas: int
    timeout_ms: int
    short: int = 0  # node pipelines whose writes fewer than `replicas` replicas acknowledged


async def call(
    redis: RedisClient, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]
) -> Any:
    try:
        return await redis.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.evalsha(script.sha, len(keys), *keys, *args)


Call = tuple[LuaScript, Sequence[str], Sequence[Arg]]


async def call_pipelined(
    redis: RedisClient, calls: Sequence[Call], acks: ReplicaAcks | None = None
) -> list[Any]:
    """Send every call in one pipeline (one round trip per node); a failed call's slot in the
    result holds its exception instead of a reply. With `acks`, each node's part of the pipeline
    ends with WAIT, on the same connection (WAIT covers the writes of its own connection only)."""
    replies = await _send(redis, calls, acks)
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            await redis.script_load(script.source)
        resent = await _send(redis, [calls[i] for i in missing], acks)
        for i, reply in zip(missing, resent, strict=True):
            replies[i] = reply
    return replies


async def _send(redis: RedisClient, calls: Sequence[Call], acks: ReplicaAcks | None) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for script, keys, args in calls:
        # execute_command, not pipe.evalsha: redis-py refuses EVALSHA in cluster pipelines, yet
        # routes it by its first key, which is all one-slot scripts need.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    if acks is None or not calls:
        return list(await pipe.execute(raise_on_error=False))
    if isinstance(redis, RedisCluster):
        # A cluster pipeline keeps each node's commands in order on one connection, so a WAIT
        # aimed at a node comes after that node's EVALSHAs.
        owners = (redis.get_node_from_key(k[0]) for _, k, _ in calls)
        nodes = {node.name: node for node in owners if node is not None}
        for node in nodes.values():
            pipe.execute_command("WAIT", acks.replicas, acks.timeout_ms, target_nodes=node)
    else:
        pipe.execute_command("WAIT", acks.replicas, acks.timeout_ms)
    replies = list(await pipe.execute(raise_on_error=False))
    _count_short(acks, replies[len(calls) :])
    return replies[: len(calls)]


def _count_short(acks: ReplicaAcks, wait_replies: Sequence[Any]) -> None:
    short = sum(1 for n in wait_replies if isinstance(n, BaseException) or int(n) < acks.replicas)
    if short:
        acks.short += short
        log.warning(
            "writes on %d of %d nodes not acknowledged by %d replica(s) within %d ms",
            short,
            len(wait_replies),
            acks.replicas,
            acks.timeout_ms,
        )
