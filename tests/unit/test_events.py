"""Decoding the engine's stream entries (engine/events.py): every field arrives as a string;
a known type that does not decode is MalformedEvent (dead letters), an unknown one UnknownEvent."""

from __future__ import annotations

import msgspec
import pytest

from engine.events import (
    MalformedEvent,
    OrderCancelled,
    OrderConfirmed,
    OrderRerouted,
    OrdersConfirmed,
    OrderStatusChanged,
    StockChanged,
    StockHeld,
    UnknownEvent,
    decode_event,
    order_ids_of,
)
from engine.records import (
    BasketRecord,
    OrderRecord,
    ShipmentRecord,
    encode_basket_record,
    encode_record,
)

RECORD = OrderRecord("sku-1", "w-paris", 2, "confirmed", 2, 1_700_000_000_000, 48.85, 2.35, "k", 1)
TEXT = encode_record(RECORD).decode()
BASKET_TEXT = encode_basket_record(
    BasketRecord(
        (("sku-1", 2),),
        (ShipmentRecord("w-paris", 2, "confirmed", (("sku-1", 2),)),),
        2,
        "confirmed",
        2,
        1_700_000_000_000,
        48.85,
        2.35,
        "",
        1,
        "exact",
    )
).decode()
OTHER = msgspec.structs.replace(RECORD, product_id="sku-2")


def confirmed_entry(*orders: tuple[str, OrderRecord, int]) -> dict[str, str]:
    wire = ",".join(f'["{o}",{encode_record(r).decode()},{a}]' for o, r, a in orders)
    return {"type": "orders.confirmed", "orders": f"[{wire}]"}


def test_orders_confirmed_carries_every_order_of_the_call_in_order() -> None:
    event = decode_event(confirmed_entry(("o-1", RECORD, 8), ("o-2", OTHER, 0)))
    assert event == OrdersConfirmed(
        (OrderConfirmed("o-1", RECORD, 8), OrderConfirmed("o-2", OTHER, 0))
    )
    assert isinstance(event, OrdersConfirmed) and event.products == {"sku-1", "sku-2"}
    assert event.orders[0].record.lat == 48.85  # written as text, read back as a float


def test_the_old_one_order_entry_still_reads() -> None:
    event = decode_event(
        {"type": "order.confirmed", "order": "o-1", "record": TEXT, "available": "8"}
    )
    assert event == OrdersConfirmed((OrderConfirmed("o-1", RECORD, 8),))


AT = {"at_ms": "1700000000001"}
RENAMED_BACK = {"order_id": "order", "level": "available"}  # engine.events.RENAMED_FIELDS


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "order.cancelled", "order_id": "o-1", "record": TEXT, "level": "3", **AT},
        {"type": "order.status", "order_id": "o-1", "record": TEXT, "reason": "", **AT},
        {
            "type": "order.rerouted",
            "order_id": "o-1",
            "record": TEXT,
            "from_warehouse": "w-lyon",
            "reason": "damaged",
            "level": "4",
            **AT,
        },
        {"type": "stock.changed", "product": "p", "warehouse": "w", "level": "7", "reason": "r"},
        {
            "type": "stock.held",
            "hold": "h",
            "product": "p",
            "warehouse": "w",
            "quantity": "2",
            "level": "5",
        },
        {"type": "basket.confirmed", "order_id": "b-1", "record": BASKET_TEXT},
        {"type": "basket.changed", "order_id": "b-1", "record": BASKET_TEXT, "warehouse": "", **AT},
    ],
)
def test_an_entry_written_under_the_old_field_names_still_reads(fields: dict[str, str]) -> None:
    """Before `order_id` and `level`, the scripts wrote `order` and `available`: an entry left in
    a stream across the upgrade decodes to the same event, and names the same orders."""
    old = {RENAMED_BACK.get(name, name): value for name, value in fields.items()}
    assert old != fields
    event = decode_event(old)
    assert not isinstance(event, MalformedEvent | UnknownEvent)
    assert event == decode_event(fields)
    assert order_ids_of(old) == order_ids_of(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "orders.confirmed"},
        {"type": "orders.confirmed", "orders": "not json"},
        {"type": "orders.confirmed", "orders": '[["o-1", [], 8]]'},
        {"type": "order.confirmed", "order": "o-1", "record": TEXT},
        {"type": "order.cancelled", "order_id": "o-1", "record": TEXT, "at_ms": "x", "level": "1"},
        {"type": "order.status", "order_id": "o-1", "record": "{", "at_ms": "1"},
        {"type": "order.status", "order_id": "o-1", "record": TEXT, "at_ms": "-1"},
        {
            "type": "stock.changed",
            "product": "sku-1",
            "warehouse": "w",
            "level": "1.5",
            "reason": "r",
        },
        {"type": "stock.held", "hold": "h"},
        {"product": "sku-1"},
    ],
)
def test_known_types_that_do_not_decode_are_malformed(fields: dict[str, str]) -> None:
    assert isinstance(decode_event(fields), MalformedEvent)


def test_an_unknown_type_is_ignored_not_malformed() -> None:
    assert decode_event({"type": "order.teleported", "order_id": "o-1"}) == UnknownEvent(
        "order.teleported"
    )


def test_every_event_type_decodes_from_strings() -> None:
    at = {"at_ms": "1700000000001"}
    assert decode_event(
        {"type": "order.cancelled", "order_id": "o-1", "record": TEXT, "level": "3", **at}
    ) == OrderCancelled("o-1", RECORD, 1_700_000_000_001, 3)
    status = decode_event({"type": "order.status", "order_id": "o-1", "record": TEXT, **at})
    assert status == OrderStatusChanged("o-1", RECORD, 1_700_000_000_001, "")
    rerouted = decode_event(
        {
            "type": "order.rerouted",
            "order_id": "o-1",
            "record": TEXT,
            "from_warehouse": "w-lyon",
            "reason": "damaged",
            "level": "4",
            **at,
        }
    )
    assert isinstance(rerouted, OrderRerouted) and rerouted.product == "sku-1"
    assert decode_event(
        {
            "type": "stock.changed",
            "product": "sku-1",
            "warehouse": "w",
            "level": "7",
            "reason": "order",
        }
    ) == StockChanged("sku-1", "w", 7, "order")
    assert decode_event(
        {
            "type": "stock.held",
            "hold": "h",
            "product": "sku-1",
            "warehouse": "w",
            "quantity": "2",
            "level": "5",
        }
    ) == StockHeld("h", "sku-1", "w", 2, 5)


def test_order_ids_of_an_entry() -> None:
    assert order_ids_of(confirmed_entry(("o-1", RECORD, 8), ("o-2", OTHER, 0))) == "o-1,o-2"
    assert order_ids_of({"type": "order.status", "order_id": "o-3"}) == "o-3"
    assert order_ids_of({"type": "orders.confirmed", "orders": "broken"}) == ""
    assert order_ids_of({"type": "stock.changed", "product": "sku-1"}) == ""


def test_events_decode_from_stream_strings() -> None:
    """A stock change and a cancellation as a stream hands them over; the cancellation's record is
    one written before `seq` existed (it reads as seq 0)."""
    fields = {
        "type": "stock.changed",
        "product": "p",
        "warehouse": "1",
        "level": "7",
        "reason": "restock",
    }
    assert decode_event(fields) == StockChanged("p", "1", 7, "restock")
    record = '["p","w1",2,"cancelled",3,1700000000000,"48.5","2.25",""]'
    cancelled = {"type": "order.cancelled", "order_id": "o-1", "record": record, "at_ms": "5"}
    assert decode_event({**cancelled, "level": "9"}) == OrderCancelled(
        "o-1", OrderRecord("p", "w1", 2, "cancelled", 3, 1_700_000_000_000, 48.5, 2.25, ""), 5, 9
    )
    assert isinstance(decode_event({**cancelled, "record": "[1,"}), MalformedEvent)
