"""Every setting a process takes from the environment, read here and nowhere else: where the
stores are (defaults match `ops/stack.sh`), the API's keys and batching, stock and lifecycle
thresholds, the writers' dead-letter limit, and how notices are sent. Other modules are given
what they need from these structs."""

from __future__ import annotations

import os
from typing import Final

import msgspec

DEFAULT_LOW_STOCK_THRESHOLD_UNITS: Final = 10
DEFAULT_DEAD_LETTER_AFTER_DELIVERIES: Final = 5


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
    # API keys (api/auth.py): a JSON file, or the same JSON inline; neither runs the API open.
    api_keys_file: str = ""
    api_keys_json: str = ""
    # False sends one EVALSHA per order: the baseline the benchmark measures batching against.
    api_batching: bool = True
    # Units at or below which a level counts as low (the live stock stream), and per-product
    # overrides as `sku-1=5,sku-2=50` (engine/stock_changes.py parses them).
    low_stock_threshold: int = DEFAULT_LOW_STOCK_THRESHOLD_UNITS
    low_stock_thresholds: str = ""
    # Seconds an order may rest in a status before the sweep flags it failed, per status, as
    # `confirmed=86400,shipped=1209600` (writers/sweeper.py parses it; a status left out keeps
    # engine.lifecycle's default).
    stuck_after_s: str = ""
    # Deliveries after which an entry that keeps failing goes to the dead letters.
    dead_letter_after_deliveries: int = DEFAULT_DEAD_LETTER_AFTER_DELIVERIES

    def address_map(self) -> dict[tuple[str, int], tuple[str, int]]:
        pairs = (item.split("=", 1) for item in self.redis_address_map.split(",") if item.strip())
        return {_host_port(announced): _host_port(reachable) for announced, reachable in pairs}

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.redis_url


class NoticeSettings(msgspec.Struct, frozen=True):
    """How notices are sent (notify/channels.py): SMTP, and an SMS provider when one is set."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    sender: str = "orders@example.invalid"
    sms_url: str = ""  # '' = SMS disabled


DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN: Final = "postgresql://fulfillment:fulfillment@127.0.0.1:5432/fulfillment"
DEFAULT_MONGO_URL: Final = "mongodb://127.0.0.1:27017/"
DEFAULT_MONGO_DB: Final = "fulfillment"


def settings_for_a_command() -> Settings:
    """The settings of a command-line tool (`python -m writers`, `python -m notify`): a setting
    it cannot read ends the command with its reason (exit code 1) instead of a traceback."""
    try:
        return load_settings()
    except ValueError as invalid:
        raise SystemExit(f"invalid setting: {invalid}") from invalid


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
        api_keys_file=os.environ.get("API_KEYS_FILE", ""),
        api_keys_json=os.environ.get("API_KEYS", ""),
        api_batching=os.environ.get("API_BATCHING", "1") != "0",
        low_stock_threshold=int(
            os.environ.get("LOW_STOCK_THRESHOLD", DEFAULT_LOW_STOCK_THRESHOLD_UNITS)
        ),
        low_stock_thresholds=os.environ.get("LOW_STOCK_THRESHOLDS", ""),
        stuck_after_s=os.environ.get("STUCK_AFTER_S", ""),
        dead_letter_after_deliveries=_at_least_one(
            "DEAD_LETTER_AFTER_DELIVERIES", DEFAULT_DEAD_LETTER_AFTER_DELIVERIES
        ),
    )


def load_notice_settings() -> NoticeSettings:
    """Read when a notice is queued or sent: the notice worker and the API each send by what
    their own environment says (README, Notifications)."""
    defaults = NoticeSettings()
    return NoticeSettings(
        smtp_host=os.environ.get("SMTP_HOST", defaults.smtp_host),
        smtp_port=int(os.environ.get("SMTP_PORT", defaults.smtp_port)),
        sender=os.environ.get("NOTICE_FROM", defaults.sender),
        sms_url=os.environ.get("SMS_URL", ""),
    )


def _at_least_one(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number >= 1, not {raw!r}")
    return int(raw)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host, int(port)
