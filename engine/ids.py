"""Order and hold IDs: time-ordered UUIDs (RFC 9562 version 8) that carry their partition.

Layout: 48 bits Unix ms | version 8 | 12 bits partition | variant | 62 random bits. Time order keeps
PostgreSQL's primary-key index append-mostly; the partition lets any worker find the order's keys
in Redis from the ID alone. An order placed by an authenticated storefront carries the client's
16-bit owner tag in the top of the random bits (46 stay random), so who placed it is read from the
ID too: no per-order write records ownership.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

from engine.keys import PARTITIONS

OWNER_TAG_BITS: Final = 16
# 46 random bits left: two IDs collide only within one millisecond and partition, with odds of
# ~1e-13 per pair, so orders tagged at the full order rate still collide once in decades.
_RANDOM_BITS: Final = 62
_OWNER_SHIFT: Final = _RANDOM_BITS - OWNER_TAG_BITS
_OWNER_MASK: Final = (1 << OWNER_TAG_BITS) - 1


def new_id(partition: int, now_ms: int | None = None, owner_tag: int | None = None) -> str:
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << _RANDOM_BITS) - 1)
    if owner_tag is not None:
        rand = (rand & ((1 << _OWNER_SHIFT) - 1)) | (owner_tag & _OWNER_MASK) << _OWNER_SHIFT
    value = (ms & ((1 << 48) - 1)) << 80 | 0x8 << 76 | (partition & 0xFFF) << 64 | 0b10 << 62 | rand
    # str(uuid.UUID(int=value)) gives the same text at three times the cost (it runs per order).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_operation_id() -> str:
    """The ID of one mutating command (cancel, transition, stock change...): a resend of the
    command carries the same one, so the script can tell it already ran (lua/includes/operation)."""
    return os.urandom(12).hex()


def partition_of_id(id_text: str) -> int | None:
    """The partition an ID was minted for, or None when the text is not one of our IDs."""
    try:
        value = uuid.UUID(id_text)
    except ValueError:
        return None
    partition = (value.int >> 64) & 0xFFF
    if value.version != 8 or partition >= PARTITIONS:
        return None
    return partition


def owner_tag_of_id(id_text: str) -> int | None:
    """The owner tag bits of one of our IDs (random bits when it was minted without a tag), or
    None when the text is not one of our IDs."""
    if partition_of_id(id_text) is None:
        return None
    return (uuid.UUID(id_text).int >> _OWNER_SHIFT) & _OWNER_MASK
