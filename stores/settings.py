"""Where the stores are, read once from the environment (defaults match `ops/stack.sh`)."""

from __future__ import annotations

import os
from typing import Final

import msgspec


class Settings(msgspec.Struct, frozen=True):
    redis_url: str
    redis_cluster: bool
    postgres_dsn: str
    mongo_url: str
    mongo_db: str
    # Replicas that must hold an order before it is answered (Redis WAIT), and how long to wait
    # for them. 0 on one Redis, which has no replica; 1 on the cluster (see the README).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    # rq (notices) needs one plain Redis, not a cluster: a cluster deployment names one here.
    # Empty means the same Redis as the engine.
    queue_redis_url: str = ""

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.redis_url


DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN: Final = "postgresql://fulfillment:fulfillment@127.0.0.1:5432/fulfillment"
DEFAULT_MONGO_URL: Final = "mongodb://127.0.0.1:27017/"
DEFAULT_MONGO_DB: Final = "fulfillment"


def load_settings() -> Settings:
    return Settings(
        redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        redis_cluster=os.environ.get("REDIS_CLUSTER", "0") == "1",
        postgres_dsn=os.environ.get("POSTGRES_DSN", DEFAULT_POSTGRES_DSN),
        mongo_url=os.environ.get("MONGO_URL", DEFAULT_MONGO_URL),
        mongo_db=os.environ.get("MONGO_DB", DEFAULT_MONGO_DB),
        redis_wait_replicas=int(os.environ.get("REDIS_WAIT_REPLICAS", "0")),
        redis_wait_timeout_ms=int(os.environ.get("REDIS_WAIT_TIMEOUT_MS", "100")),
        queue_redis_url=os.environ.get("QUEUE_REDIS_URL", ""),
    )
