"""The Redis connections: one asyncio client (single server or cluster) per process, and the
blocking client rq needs for its job queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stores.settings import Settings

MAX_CONNECTIONS: Final = 256  # per server (per node, for a cluster)
# A caller waits this long for a free connection before it fails.
CONNECTION_WAIT_TIMEOUT_S: Final = 10
# Connections per cluster node kept for pipelines, which bypass the command gate below.
PIPELINE_HEADROOM: Final = 64
SLOT_REREAD_S: Final = 0.5
# Redis is down, restarting, loading its AOF or failing over: all pass, so a caller that can wait
# (a writer, a sweep) retries them.
TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.ClusterError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,  # a demoted master after a failover: the new one takes it
    redis.exceptions.MaxConnectionsError,
    OSError,
    TimeoutError,
)


def refused_by_a_moving_slot(error: BaseException) -> bool:
    """TRYAGAIN, or redis-py giving up after its redirections (`ClusterError: TTL exhausted.`;
    not its subclass ClusterDownError): Redis answered at once and ran nothing, and a resend
    waits only for the slot's move to end, unlike one to a node that does not answer."""
    return isinstance(error, redis.exceptions.TryAgainError) or (
        type(error) is redis.exceptions.ClusterError
    )


class HiredisPackedConnection(Connection):
    """Packs commands with hiredis's C packer.

    redis-py's asyncio connection packs in Python even when hiredis is installed (its sync client
    does not), several times slower than hiredis's packer for a micro-batch's EVALSHA and most of
    its client-side cost (README, "Performance and scaling").
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

    # Redirections (MOVED, ASK, TRYAGAIN) redis-py follows for one command before it gives up with
    # `ClusterError: TTL exhausted.` (16 by its default, the last 8 of them after a 50 ms sleep).
    # A pipeline follows them for its refused calls one after another, before any of its replies
    # comes back: with 16, a call to a moving slot held up the other partitions' calls in its
    # pipeline long enough (README, "Moving a slot under load") that, with every batch slot of the
    # API so held, their orders queued until refused. Giving up sooner is safe: the engine's
    # runner resends such a call on its own, with backoff, and the batch lets go of its slot
    # meanwhile (engine/batching.py).
    RedisClusterRequestTTL = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command_gate = asyncio.Semaphore(MAX_CONNECTIONS - PIPELINE_HEADROOM)
        self._slots_read_at = 0.0

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._command_gate:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        # redis-py's own ClusterPipeline is concrete; its type hints leave one attribute abstract.
        return SlotRefreshingPipeline(self, transaction)  # type: ignore[abstract]

    async def reread_slots(self) -> None:
        """Read the slot map again after a node failed: with retries off (see `_never_retry`),
        redis-py's cluster pipeline never does, and would keep sending to a dead master after
        its replica took over. At most once per SLOT_REREAD_S, however many pipelines failed."""
        now = time.monotonic()
        if now - self._slots_read_at < SLOT_REREAD_S:
            return
        self._slots_read_at = now
        try:
            await self.nodes_manager.initialize()
        except (redis.exceptions.RedisError, OSError):
            self._slots_read_at = 0.0  # no node answers yet: the next fault tries again


class SlotRefreshingPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        node_faults = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterDownError,
        )
        try:
            replies = await super().execute(raise_on_error, allow_redirections)
        except node_faults:
            if isinstance(client, WaitingRedisCluster):
                await client.reread_slots()
            raise
        # A fault while reading replies comes back in the list (raise_on_error=False), not
        # raised: a hung master that was failed over must be noticed that way too.
        if any(isinstance(r, node_faults) for r in replies) and isinstance(
            client, WaitingRedisCluster
        ):
            await client.reread_slots()
        return replies


RedisClient = Redis | RedisCluster


def _never_retry() -> Retry:
    """The client library never sends a command again by itself: after a lost reply it cannot
    know whether Redis ran the command, and a script that ran twice creates or loses units.
    Resending is the engine's job (engine.scripts.ScriptRunner), with IDs that make it safe."""
    return Retry(NoBackoff(), 0)


def connect_redis(settings: Settings) -> RedisClient:
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
    }
    if settings.redis_cluster:
        address_map = settings.address_map()
        return WaitingRedisCluster.from_url(
            settings.redis_url,
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            connection_class=HiredisPackedConnection,
            retry=_never_retry(),
            address_remap=(lambda address: address_map.get(address, address))
            if address_map
            else None,
            **timeouts,
        )
    # A blocking pool: past MAX_CONNECTIONS a caller waits for a connection rather than failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_TIMEOUT_S,
        retry=_never_retry(),
        **timeouts,
    )
    pool.connection_class = HiredisPackedConnection
    return Redis(connection_pool=pool, retry=_never_retry())


def connect_sync_redis(settings: Settings) -> redis.Redis:
    """For rq: it is blocking, speaks bytes (no decoding) and needs one server, not a cluster
    (QUEUE_REDIS_URL names it on a cluster deployment)."""
    return redis.Redis.from_url(settings.queue_url)
