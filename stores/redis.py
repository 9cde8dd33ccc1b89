"""The Redis connection: one client (single server or cluster) per process."""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis, RedisCluster

from stores.settings import Settings

RedisClient = Redis | RedisCluster
MAX_CONNECTIONS: Final = 256


def connect_redis(settings: Settings) -> RedisClient:
    if settings.redis_cluster:
        return RedisCluster.from_url(
            settings.redis_url, decode_responses=True, max_connections=MAX_CONNECTIONS
        )
    return Redis.from_url(
        settings.redis_url, decode_responses=True, max_connections=MAX_CONNECTIONS
    )
