"""Redis key names, designed for Redis Cluster.

A Lua script may only touch keys of one hash slot. Every key placing an order needs (the product's
stock, the order, the idempotency key and the event stream) therefore carries the hash tag of the
product's *partition*: products are spread over PARTITIONS partitions, each with its own stream.
Partition tags are chosen so partition i hashes into the i-th of PARTITIONS equal slot ranges;
a cluster whose masters own contiguous, equal slot ranges then gets an equal share of partitions.
"""

from __future__ import annotations

import zlib
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PARTITIONS: Final = 16
WAREHOUSES_VERSION_KEY: Final = "warehouses:version"


def _tag_for(partition: int) -> str:
    width = REDIS_CLUSTER_HASH_SLOTS // PARTITIONS
    salt = 0
    while key_slot(f"p{partition}.{salt}".encode()) // width != partition:
        salt += 1
    return f"{{p{partition}.{salt}}}"


TAGS: Final[tuple[str, ...]] = tuple(_tag_for(p) for p in range(PARTITIONS))


def partition_of_product(product_id: str) -> int:
    return partition_of_text(product_id)


def partition_of_text(text: str) -> int:
    """The partition a name falls in (a product ID, a basket's idempotency key)."""
    return zlib.crc32(text.encode()) % PARTITIONS


def stream(partition: int) -> str:
    return f"events:{TAGS[partition]}"


def stock(partition: int, product_id: str) -> str:
    return f"stock:{TAGS[partition]}:{product_id}"


def order(partition: int, order_id: str) -> str:
    return f"order:{TAGS[partition]}:{order_id}"


def basket(partition: int, order_id: str) -> str:
    """A basket's record (engine/records.py, BasketRecord): apart from one-product orders, whose
    scripts never read it."""
    return f"basket:{TAGS[partition]}:{order_id}"


def basket_decision(partition: int, order_id: str) -> str:
    """Whether a basket was committed or aborted: the one key both the placing worker and the
    hold sweeper decide through (engine/baskets.py)."""
    return f"basketdecision:{TAGS[partition]}:{order_id}"


def basket_returns_pending(partition: int) -> str:
    """Cancelled baskets of the partition whose units may not all be back yet (score: when)."""
    return f"basketreturns:{TAGS[partition]}"


def basket_returns(partition: int, order_id: str) -> str:
    """A cancelled basket's parts to give back: [[warehouseId, productId, quantity]...]."""
    return f"basketreturn:{TAGS[partition]}:{order_id}"


def basket_part_returned(partition: int, order_id: str, part: int) -> str:
    """Marks part number `part` of a cancelled basket (its place in the basket's returns) as
    given back, in its product's partition."""
    return f"basketreturned:{TAGS[partition]}:{order_id}:{part}"


def basket_idempotency(partition: int, idempotency_key: str) -> str:
    return f"idem:{TAGS[partition]}:basket:{idempotency_key}"


def idempotency(partition: int, product_id: str, idempotency_key: str) -> str:
    """A key is scoped to its product: the same key with another product is another request,
    whatever the two products' partitions (README, "No duplicates")."""
    return f"idem:{TAGS[partition]}:{product_id}:{idempotency_key}"


def operation(partition: int, operation_id: str) -> str:
    """Where a script stores its reply to an operation, so a resend of it answers the same."""
    return f"op:{TAGS[partition]}:{operation_id}"


def hold(partition: int, hold_id: str) -> str:
    return f"hold:{TAGS[partition]}:{hold_id}"


def hold_expiries(partition: int) -> str:
    return f"holds:{TAGS[partition]}"


def dead_letters(partition: int) -> str:
    """The partition's dead-letter stream: in its stream's hash slot, so moving an entry there
    touches one slot (Redis Cluster)."""
    return f"deadletters:{TAGS[partition]}"
