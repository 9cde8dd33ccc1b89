"""A basket's notices (notify/jobs.py, writers/notifier.py): its confirmation and each step of a
shipment get a notice of their own, whose ID names the shipment's warehouse in the characters rq
allows, reads back to its order, and never collides with another warehouse's."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from engine.events import BasketChanged, BasketConfirmed
from engine.records import BasketRecord, ShipmentRecord
from notify.jobs import automatic_notice, notice_id, parse_notice_id, shipment_event
from writers.consumer import StreamEntry
from writers.notifier import NotifierWriter

ORDER = "0190a0c4-5e00-8805-8123-456789abcdef"
RECORD = BasketRecord(
    lines=(("sku-a", 2), ("sku-b", 1)),
    shipments=(
        ShipmentRecord("1", 2, "shipped", (("sku-a", 2),)),
        ShipmentRecord("wh-2.b", 3, "picking", (("sku-b", 1),)),
    ),
    quantity=3,
    status="confirmed",
    eta_days=3,
    created_ms=1_750_000_000_000,
    lat=48.85,
    lon=2.35,
    idempotency_key="",
    seq=2,
    rule="greedy",
)
WAREHOUSES = [
    "1",
    "a",
    "A",
    "wh-1",
    "wh_1",
    "wh.1",
    "wh:1",
    "wh-2d1",
    "-",
    "--",
    "_",
    "é",
    "a" * 64,
]


@pytest.mark.parametrize("warehouse_id", WAREHOUSES)
def test_a_shipment_notice_id_is_an_rq_id_that_reads_back(warehouse_id: str) -> None:
    event = shipment_event("shipped", warehouse_id)
    notice = notice_id(ORDER, event)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in notice)  # rq's job IDs
    assert "_" not in event  # the ID splits at its last `_`
    assert parse_notice_id(notice) == (ORDER, event)
    subject, text = automatic_notice(ORDER, event) or ("", "")
    assert subject == "Order shipped"
    assert text == f"Your order {ORDER}: the shipment from warehouse {warehouse_id} has shipped."


def test_two_warehouses_never_share_a_notice() -> None:
    events = {shipment_event(status, w) for status in ("shipped", "delivered") for w in WAREHOUSES}
    assert len(events) == 2 * len(WAREHOUSES)


def test_plain_warehouse_ids_stay_readable() -> None:
    assert notice_id(ORDER, shipment_event("delivered", "paris1")) == (
        f"notice_{ORDER}_delivered-paris1"
    )
    assert shipment_event("shipped", "wh-2.b") == "shipped-wh-2d2-2eb"


@pytest.mark.parametrize(
    "event",
    [
        "picking-1",  # no notice for the step
        "shipped-",  # no warehouse
        "shipped-a-",  # a broken escape
        "shipped-a-zz",
        "shipped-A-2D",  # escapes are lower-case hex, as written
        "shipped_1",
        "confirmed-1",  # confirmed is the basket's notice, never a shipment's
    ],
)
def test_other_texts_are_no_shipment_notice(event: str) -> None:
    assert automatic_notice(ORDER, event) is None
    assert parse_notice_id(notice_id(ORDER, event)) is None


def test_order_notices_are_unchanged() -> None:
    assert automatic_notice(ORDER, "shipped") == (
        "Order shipped",
        f"Your order {ORDER} has shipped.",
    )
    assert automatic_notice(ORDER, "picking") is None
    assert parse_notice_id(notice_id(ORDER, "confirmed")) == (ORDER, "confirmed")


class FakeNotices:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def enqueue_automatic(self, changes: Sequence[tuple[str, str]]) -> int:
        self.changes += changes
        return len(changes)


async def notified(*events: BasketConfirmed | BasketChanged) -> list[tuple[str, str]]:
    notices = FakeNotices()
    writer = NotifierWriter(notices)  # type: ignore[arg-type]
    entries = [StreamEntry("s", f"{i}-0", event) for i, event in enumerate(events)]
    assert await writer.persist(entries) == []
    return notices.changes


async def test_the_notifier_tells_of_a_basket_and_of_each_shipment_that_moved() -> None:
    assert await notified(BasketConfirmed(ORDER, RECORD)) == [(ORDER, "confirmed")]
    assert await notified(BasketChanged(ORDER, RECORD, 1, "1")) == [
        (ORDER, shipment_event("shipped", "1"))
    ]
    # The notice queue drops the steps it has no notice for (this one is picking).
    assert await notified(BasketChanged(ORDER, RECORD, 1, "wh-2.b")) == [
        (ORDER, shipment_event("picking", "wh-2.b"))
    ]
    assert automatic_notice(ORDER, shipment_event("picking", "wh-2.b")) is None
    # The whole basket cancelled: one notice.
    cancelled = msgspec.structs.replace(RECORD, status="cancelled")
    assert await notified(BasketChanged(ORDER, cancelled, 1)) == [(ORDER, "cancelled")]
    # No shipment named and not cancelled: nothing to tell (a carrier's callback appends one
    # event per shipment it moved, each naming it).
    assert await notified(BasketChanged(ORDER, RECORD, 1)) == []
    # A named warehouse the record no longer holds: that shipment was re-routed.
    assert await notified(BasketChanged(ORDER, RECORD, 1, "9", "damaged")) == [
        (ORDER, shipment_event("rerouted", "9"))
    ]
    assert automatic_notice(ORDER, shipment_event("rerouted", "9")) == (
        "Order re-routed",
        f"Your order {ORDER}: what warehouse 9 was to send now ships from another warehouse;"
        " the delivery date may change.",
    )
