"""Order and hold IDs: time-ordered UUIDs (RFC 9562 version 8) that carry their partition.

Layout: 48 bits Unix ms | version 8 | 12 bits kind and partition | variant | 62 random bits. Time
order keeps PostgreSQL's primary-key index append-mostly; the partition lets any worker find the
order's keys in Redis from the ID alone, and the kind bit tells a basket (several lines,
`engine.baskets`) from a one-product order without a lookup. An order placed by an authenticated
storefront carries the client's 16-bit owner tag in the top of the random bits (46 stay random),
so who placed it is read from the ID too: no per-order write records ownership.

An ID has one spelling, the one `new_id` mints (lower-case hex, hyphenated). Any other spelling of
the same UUID (upper case, no hyphens, braces, `urn:uuid:`) is not one of our IDs: Redis keys
and hash tags are built from the text, so a second spelling would miss the live record.
"""

from __future__ import annotations

import os
import re
import struct
import time
from typing import Final

from engine.keys import PARTITIONS

OWNER_TAG_BITS: Final = 16
# 46 random bits left: two IDs collide only within one millisecond and partition, with odds of
# ~1e-13 per pair, so orders tagged at the full order rate still collide once in decades.
_RANDOM_BITS: Final = 62
_OWNER_SHIFT: Final = _RANDOM_BITS - OWNER_TAG_BITS
_OWNER_MASK: Final = (1 << OWNER_TAG_BITS) - 1
# Exactly what new_id prints: version 8, variant 0b10, lower-case hex, hyphens at 8-4-4-4-12.
_CANONICAL_ID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
_PARTITION_CHARS: Final = slice(15, 18)  # the 12 bits after the version digit
_BASKET_BIT: Final = 0x800  # the top one of those 12 bits: the ID is a basket's


def new_id(
    partition: int,
    now_ms: int | None = None,
    owner_tag: int | None = None,
    *,
    basket: bool = False,
) -> str:
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = _random_word() & ((1 << _RANDOM_BITS) - 1)
    if owner_tag is not None:
        rand = (rand & ((1 << _OWNER_SHIFT) - 1)) | (owner_tag & _OWNER_MASK) << _OWNER_SHIFT
    kind = (_BASKET_BIT if basket else 0) | (partition & (_BASKET_BIT - 1))
    value = (ms & ((1 << 48) - 1)) << 80 | 0x8 << 76 | kind << 64 | 0b10 << 62 | rand
    # str(uuid.UUID(int=value)) gives the same text at several times the cost (it runs per order).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Random words are drawn from the OS a block at a time: one getrandom call per ID is a fair share
# of minting it. A forked worker starts with an empty block, never a copy of its parent's.
_WORDS_PER_DRAW: Final = 512
_random_words: list[int] = []
os.register_at_fork(after_in_child=_random_words.clear)


def _random_word() -> int:
    if not _random_words:
        _random_words.extend(struct.unpack(f">{_WORDS_PER_DRAW}Q", os.urandom(8 * _WORDS_PER_DRAW)))
    return _random_words.pop()


def new_operation_id() -> str:
    """The ID of one mutating command (cancel, transition, stock change...): a resend of the
    command carries the same one, so the script can tell it already ran (lua/includes/operation)."""
    return os.urandom(12).hex()


def partition_of_id(id_text: str) -> int | None:
    """The partition an ID was minted for, or None when the text is not one of our IDs in its
    one canonical spelling."""
    if _CANONICAL_ID.fullmatch(id_text) is None:
        return None
    partition = int(id_text[_PARTITION_CHARS], 16) & (_BASKET_BIT - 1)
    return partition if partition < PARTITIONS else None


def is_basket_id(id_text: str) -> bool:
    """True for a basket's order ID (minted with `basket=True`) in its canonical spelling."""
    # A basket's kind digit is 8 (its bit, and a partition below 256): the writers ask this per
    # order, and most are one-product orders, answered here without the full check.
    if id_text[_PARTITION_CHARS][:1] != "8" or partition_of_id(id_text) is None:
        return False
    return bool(int(id_text[_PARTITION_CHARS], 16) & _BASKET_BIT)


def is_canonical_id(id_text: str) -> bool:
    """True for an order or hold ID spelled exactly as this system minted it."""
    return partition_of_id(id_text) is not None


def owner_tag_of_id(id_text: str) -> int | None:
    """The owner tag bits of one of our IDs (random bits when it was minted without a tag), or
    None when the text is not one of our IDs."""
    if partition_of_id(id_text) is None:
        return None
    return (int(id_text.replace("-", ""), 16) >> _OWNER_SHIFT) & _OWNER_MASK
