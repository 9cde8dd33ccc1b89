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
    # Replicas that must hold every write before it is answered (Redis WAIT), and how long to
    # wait for them. Default: 0 on one Redis, which has no replica; 1 on the cluster (README).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    # No reply within this: the connection is presumed dead (a paused or partitioned Redis).
    redis_socket_timeout_s: float = 1.0
    # How long the engine keeps resending a command whose reply was lost before it answers
    # "outcome unknown". At most a quarter of engine.scripts.OPERATION_TTL_S.
    command_deadline_s: float = 3.0
    # How long an order stays in Redis after its latest change reached PostgreSQL (an order in a
    # final state leaves sooner, engine.orders.ORDER_FINAL_LINGER_S); then PostgreSQL is its home.
    order_hot_window_s: int = 15 * 60
    # How long a retry with the same Idempotency-Key gets the stored answer from Redis.
    idempotency_ttl_s: int = 24 * 3600
    # Cluster only: node addresses as announced -> as reachable from here, for a NAT or a proxy
    # in front of each node; `host:port=host:port,...`.
    redis_address_map: str = ""
    # rq (notices) needs one plain Redis, not a cluster: a cluster deployment names one here.
    # Empty means the same Redis as the engine.
    queue_redis_url: str = ""

    def address_map(self) -> dict[tuple[str, int], tuple[str, int]]:
        pairs = (item.split("=", 1) for item in self.redis_address_map.split(",") if item.strip())
        return {_host_port(announced): _host_port(reachable) for announced, reachable in pairs}

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.redis_url


DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN: Final = "postgresql://fulfillment:fulfillment@127.0.0.1:5432/fulfillment"
DEFAULT_MONGO_URL: Final = "mongodb://127.0.0.1:27017/"
DEFAULT_MONGO_DB: Final = "fulfillment"


def load_settings() -> Settings:
    cluster = os.environ.get("REDIS_CLUSTER", "0") == "1"
    return Settings(
        redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        redis_cluster=cluster,
        postgres_dsn=os.environ.get("POSTGRES_DSN", DEFAULT_POSTGRES_DSN),
        mongo_url=os.environ.get("MONGO_URL", DEFAULT_MONGO_URL),
        mongo_db=os.environ.get("MONGO_DB", DEFAULT_MONGO_DB),
        redis_wait_replicas=int(os.environ.get("REDIS_WAIT_REPLICAS", "1" if cluster else "0")),
        redis_wait_timeout_ms=int(os.environ.get("REDIS_WAIT_TIMEOUT_MS", "100")),
        redis_socket_timeout_s=float(os.environ.get("REDIS_SOCKET_TIMEOUT_S", "1.0")),
        command_deadline_s=float(os.environ.get("COMMAND_DEADLINE_S", "3.0")),
        redis_address_map=os.environ.get("REDIS_ADDRESS_MAP", ""),
        order_hot_window_s=int(os.environ.get("ORDER_HOT_WINDOW_S", str(15 * 60))),
        idempotency_ttl_s=int(os.environ.get("IDEMPOTENCY_TTL_S", str(24 * 3600))),
        queue_redis_url=os.environ.get("QUEUE_REDIS_URL", ""),
    )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host, int(port)
