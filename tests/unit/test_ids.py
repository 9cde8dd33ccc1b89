"""Order and hold IDs have one spelling, the one `new_id` mints: any other spelling of the same
UUID is not one of our IDs (engine.ids), so no route can reach an order by a second name."""

from __future__ import annotations

import os
import uuid

import pytest

from engine.ids import is_basket_id, is_canonical_id, new_id, owner_tag_of_id, partition_of_id
from engine.keys import PARTITIONS


@pytest.mark.parametrize("partition", [0, 7, PARTITIONS - 1])
def test_a_minted_id_is_canonical_and_carries_its_partition_and_owner(partition: int) -> None:
    order_id = new_id(partition, owner_tag=0xBEEF)
    assert is_canonical_id(order_id)
    assert partition_of_id(order_id) == partition
    assert owner_tag_of_id(order_id) == 0xBEEF
    assert order_id == str(uuid.UUID(order_id))  # the standard text form, lower case


ORDER_ID = new_id(5)


@pytest.mark.parametrize(
    "spelling",
    [
        ORDER_ID.upper(),
        ORDER_ID.replace("-", ""),
        "{" + ORDER_ID + "}",
        "urn:uuid:" + ORDER_ID,
        ORDER_ID + "\n",
        " " + ORDER_ID,
        ORDER_ID[:-1],
        ORDER_ID + "0",
        ORDER_ID[:14] + "4" + ORDER_ID[15:],  # version 4, not ours
        ORDER_ID[:19] + "c" + ORDER_ID[20:],  # another variant
        str(uuid.UUID(int=(uuid.UUID(ORDER_ID).int & ~(0xFFF << 64)) | (PARTITIONS << 64))),
        "",
        "not-an-id",
        "\uff10" + ORDER_ID[1:],  # a full-width digit zero: int() would read it
    ],
)
def test_any_other_spelling_is_not_one_of_our_ids(spelling: str) -> None:
    assert not is_canonical_id(spelling)
    assert partition_of_id(spelling) is None
    assert owner_tag_of_id(spelling) is None


def test_a_forked_process_mints_other_ids_than_its_parent() -> None:
    """IDs draw on a block of random words: a child must not reuse the block its parent drew."""
    new_id(7)  # the parent now holds a block
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write_end, "\n".join(new_id(7, now_ms=1) for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        from_child = set(pipe.read().split("\n"))
    os.waitpid(child, 0)
    from_parent = {new_id(7, now_ms=1) for _ in range(50)}
    assert len(from_child) == 50
    assert not from_child & from_parent


def test_a_basket_id_says_so_and_keeps_its_partition() -> None:
    for partition in range(PARTITIONS):
        basket, order = new_id(partition, basket=True), new_id(partition)
        assert is_basket_id(basket) and not is_basket_id(order)
        assert partition_of_id(basket) == partition_of_id(order) == partition
    assert not is_basket_id(new_id(3, basket=True).upper())  # one spelling only
    assert not is_basket_id("not-an-id")
