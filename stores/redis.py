"""The Redis connections: one asyncio client (single server or cluster) per process, and the
blocking client rq needs for its job queue."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection

from stores.settings import Settings

MAX_CONNECTIONS: Final = 256  # per server (per node, for a cluster)
# A caller waits this long for a free connection before it fails.
CONNECTION_WAIT_TIMEOUT_S: Final = 10
# Connections per cluster node kept for pipelines, which bypass the command gate below.
PIPELINE_HEADROOM: Final = 64


class HiredisPackedConnection(Connection):
    """Packs commands with hiredis's C packer.

    redis-py's asyncio connection packs in Python even when hiredis is installed (its sync client
    does not): ~25 us for a 40-argument EVALSHA against ~3 us here, which is most of a micro-batch's
    client-side cost.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:  # 'SCRIPT LOAD' goes out as two arguments
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]


class WaitingRedisCluster(RedisCluster):
    """A cluster client whose callers wait for a free connection instead of failing.

    redis-py's cluster client has no blocking pool: a node with MAX_CONNECTIONS in use answers
    the next command with MaxConnectionsError at once. A burst of un-batched calls (one EVALSHA
    per request, thousands in flight) turned into 500s that way. A semaphore bounds the single
    commands in flight below the per-node limit; pipelines take one connection per node each and
    use the headroom left.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command_gate = asyncio.Semaphore(MAX_CONNECTIONS - PIPELINE_HEADROOM)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._command_gate:
            return await super().execute_command(*args, **kwargs)


RedisClient = Redis | RedisCluster


def connect_redis(settings: Settings) -> RedisClient:
    if settings.redis_cluster:
        return WaitingRedisCluster.from_url(
            settings.redis_url,
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            connection_class=HiredisPackedConnection,
        )
    # A blocking pool: past MAX_CONNECTIONS a caller waits for a connection rather than failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_TIMEOUT_S,
    )
    pool.connection_class = HiredisPackedConnection
    return Redis(connection_pool=pool)


def connect_sync_redis(settings: Settings) -> redis.Redis:
    """For rq: it is blocking, speaks bytes (no decoding) and needs one server, not a cluster
    (QUEUE_REDIS_URL names it on a cluster deployment)."""
    return redis.Redis.from_url(settings.queue_url)
