"""The script border (engine/commands.py): each command's reply, in every shape its script
answers, becomes the result or the named domain error; any other reply is UnexpectedReply, never
"not found"."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest

from engine import commands
from engine.commands import Attempt, StockBeyondRings, UnexpectedReply
from engine.errors import (
    HoldNotFound,
    HoldUnavailable,
    IdempotencyKeyReused,
    InvalidTransition,
    NegativeStock,
    OrderMovedOn,
    OrderNotFound,
    OutOfStock,
    UnknownProduct,
    WrongWarehouse,
)
from engine.ids import new_id
from engine.orders import Confirmation, OrderRequest
from engine.records import OrderRecord, encode_record
from geo.distance import Point

CREATED_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
RECORD = OrderRecord("sku-1", "w-paris", 2, "picking", 2, CREATED_MS, 48.85, 2.35, "", 4)
ORDER_ID = new_id(5)


def attempt(idempotency_key: str | None = None) -> Attempt:
    request = OrderRequest("sku-1", 2, Point(48.85, 2.35), idempotency_key)
    return Attempt(ORDER_ID, 5, request, (("w-paris", 2), ("w-lyon", 3)))


def test_place_orders_decodes_one_outcome_per_attempt() -> None:
    command = commands.place_orders(CREATED_MS, [attempt(), attempt("key-1"), attempt(), attempt()])
    outcomes = command.decode(
        [
            ["ok", ORDER_ID, "w-lyon", "3", str(CREATED_MS), "1", "1"],
            ["key_conflict"],
            ["far", "w-madrid", "w-rome"],
            ["out_of_stock"],
        ]
    )
    assert outcomes[0] == Confirmation(
        order_id=ORDER_ID,
        warehouse_id="w-lyon",
        estimated_delivery=date(2023, 11, 17),
        created_at=datetime.fromtimestamp(CREATED_MS / 1000, UTC),
        replayed=True,
    )
    assert isinstance(outcomes[1], IdempotencyKeyReused)
    assert outcomes[2] == StockBeyondRings(["w-madrid", "w-rome"])
    assert isinstance(outcomes[3], OutOfStock)
    assert isinstance(
        commands.place_orders(0, [attempt()]).decode([["unknown_product"]])[0], UnknownProduct
    )


def test_an_order_placed_by_the_call_comes_back_as_what_was_decided() -> None:
    """The number of the candidate it was placed at: the order ID, its time (the call's), its
    warehouse and days and its seq are the caller's."""
    (outcome,) = commands.place_orders(CREATED_MS, [attempt()]).decode([2])
    assert outcome == Confirmation(
        order_id=ORDER_ID,
        warehouse_id="w-lyon",
        estimated_delivery=date(2023, 11, 17),
        created_at=datetime.fromtimestamp(CREATED_MS / 1000, UTC),
        replayed=False,
    )


def test_only_orders_with_an_idempotency_key_name_one() -> None:
    keys_sent = commands.place_orders(CREATED_MS, [attempt(), attempt("key-1"), attempt()]).keys
    assert len(keys_sent) == 1 + 2 * 3 + 1
    assert "key-1" in keys_sent[-1]


def test_place_orders_sends_the_fingerprint_only_under_an_idempotency_key() -> None:
    command = commands.place_orders(CREATED_MS, [attempt(), attempt("key-1")])
    orders = command.args[2]
    assert isinstance(orders, bytes)
    flat = msgspec.msgpack.decode(orders)
    plain, keyed = flat[:8], flat[8:]
    assert plain[2:4] == ["", ""]
    assert keyed[2] == "key-1" and keyed[3] == attempt("key-1").request.fingerprint()
    assert plain[7] == "w-paris 2,w-lyon 3"  # nearest first, as the script reads them


def test_a_new_record_is_the_pieces_around_what_the_script_decides() -> None:
    """The script writes head + warehouse + middle + days + tail: exactly encode_record's
    record, the location's digits kept as text."""
    command = commands.place_orders(CREATED_MS, [attempt('k"/é')])
    order = msgspec.msgpack.decode(command.args[2])
    head, middle, tail = order[4:7]
    written = head + "w-lyon" + middle + "3" + tail
    expected = OrderRecord("sku-1", "w-lyon", 2, "confirmed", 3, CREATED_MS, 48.85, 2.35, 'k"/é', 1)
    assert written.encode() == encode_record(expected)
    assert '"48.85","2.35"' in written


@pytest.mark.parametrize(
    "candidate", [("w-lyon", 10_000), ("w-lyon", -1), ("w lyon", 2), ("w,lyon", 2)]
)
def test_a_candidate_the_script_cannot_read_is_never_sent(candidate: tuple[str, int]) -> None:
    """The script answers a placed order by its candidate's number: each must read as one. A
    re-route reads the same text, so it is refused there too."""
    request = OrderRequest("sku-1", 2, Point(48.85, 2.35))
    with pytest.raises(ValueError):
        commands.place_orders(CREATED_MS, [Attempt(ORDER_ID, 5, request, (candidate,))])
    with pytest.raises(ValueError):
        commands.reroute_order(
            "op", ORDER_ID, RECORD, "w-paris", [("w-lyon", 3), candidate], "damaged", CREATED_MS
        )


def test_candidates_go_as_one_text_nearest_first() -> None:
    """lua/includes/candidates.lua: 'warehouseId days,warehouseId days'."""
    assert commands.candidates_text([("w-lyon", 3), ("w-paris", 12)]) == "w-lyon 3,w-paris 12"
    assert commands.candidates_text([]) == ""
    reroute = commands.reroute_order(
        "op", ORDER_ID, RECORD, "w-paris", [("w-lyon", 3), ("w-nice", 0)], "damaged", CREATED_MS
    )
    assert "w-lyon 3,w-nice 0" in reroute.args


@pytest.mark.parametrize(
    "reply",
    [None, "ok", [["ok"]], [["ok", ORDER_ID]], [["what"]], [["ok"], ["ok"]], [0], [3], [True]],
)
def test_place_orders_refuses_a_reply_it_does_not_know(reply: Any) -> None:
    with pytest.raises(UnexpectedReply):
        commands.place_orders(CREATED_MS, [attempt()]).decode(reply)


def test_place_from_hold_names_the_hold() -> None:
    command = commands.place_from_hold(CREATED_MS, attempt(), "hold-1")
    outcome = command.decode(["hold_unavailable", "expired"])
    assert isinstance(outcome, HoldUnavailable) and "hold-1" in str(outcome)
    assert isinstance(command.decode(["out_of_stock"]), OutOfStock)


def test_stock_changes() -> None:
    set_stock = commands.set_stock("op", "sku-1", "w-paris", 5, "restock")
    assert set_stock.decode(["ok", 5]) == 5
    # Remembered before the stream ordered the stock: the reply held the hash's version too.
    assert set_stock.decode(["ok", 5, 9]) == 5
    adjust = commands.adjust_stock("op", "sku-1", "w-paris", -9, "adjustment")
    with pytest.raises(NegativeStock):
        adjust.decode(["negative", 4])
    with pytest.raises(UnexpectedReply):
        adjust.decode(["not_found"])


def test_holds() -> None:
    hold = commands.hold_stock("h1", "sku-1", "w-paris", 3, CREATED_MS, 900_000)
    assert hold.decode(["ok", 7, CREATED_MS + 900_000]) == (7, CREATED_MS + 900_000)
    with pytest.raises(UnknownProduct):
        hold.decode(["unknown_product"])
    with pytest.raises(OutOfStock):
        hold.decode(["out_of_stock", 2])
    release = commands.release_hold("op", "h1", "sku-1")
    assert release.decode(["ok", 10]) == 10
    with pytest.raises(HoldNotFound):
        release.decode(["not_found"])
    expired = commands.release_expired_holds(0, CREATED_MS, [("h1", "sku-1"), ("h2", None)])
    assert expired.decode(2) == 2
    with pytest.raises(UnexpectedReply):
        expired.decode(["ok"])


TRANSITION_REPLIES: list[tuple[Any, type[Exception]]] = [
    (["bad_state", "shipped"], InvalidTransition),
    (["wrong_warehouse", "w-lyon"], WrongWarehouse),
    (["moved_on", 7], OrderMovedOn),
    (["not_found"], OrderNotFound),
    (["stale_copy"], commands.StaleCopy),
    (["ok"], UnexpectedReply),
    ("ok", UnexpectedReply),
]


@pytest.mark.parametrize(("reply", "error"), TRANSITION_REPLIES)
def test_transition_errors(reply: Any, error: type[Exception]) -> None:
    command = commands.transition_order("op", ORDER_ID, "packed", ("picking",), CREATED_MS)
    with pytest.raises(error):
        command.decode(reply)


def test_transition_ok_is_the_new_record() -> None:
    command = commands.transition_order("op", ORDER_ID, "packed", ("picking",), CREATED_MS)
    assert command.decode(["ok", encode_record(RECORD)]) == RECORD
    assert list(command.args[-1:]) == ["picking"]  # the statuses the target is reached from


def test_an_id_not_minted_here_is_not_found_before_any_script() -> None:
    with pytest.raises(OrderNotFound):
        commands.transition_order("op", ORDER_ID.upper(), "packed", ("picking",), CREATED_MS)
    with pytest.raises(OrderNotFound):
        commands.cancel_order("op", "not-an-id", "sku-1", CREATED_MS)


def test_cancel_and_reroute() -> None:
    cancel = commands.cancel_order("op", ORDER_ID, "sku-1", CREATED_MS)
    assert cancel.decode(["ok", encode_record(RECORD), 12]) == RECORD
    with pytest.raises(InvalidTransition):
        cancel.decode(["bad_state", "shipped"])
    reroute = commands.reroute_order(
        "op", ORDER_ID, RECORD, "w-paris", [("w-lyon", 3)], "damaged", CREATED_MS
    )
    assert reroute.decode(["ok", encode_record(RECORD), 1]) == RECORD
    with pytest.raises(OutOfStock):
        reroute.decode(["out_of_stock"])
    with pytest.raises(WrongWarehouse):
        reroute.decode(["wrong_warehouse", "w-lyon"])
    with pytest.raises(UnexpectedReply):
        reroute.decode(["far"])


def test_expire_persisted_counts() -> None:
    command = commands.expire_persisted(5, [(ORDER_ID, 3)], 900_000, 60_000)
    assert command.decode(1) == 1
    with pytest.raises(UnexpectedReply):
        command.decode("1")
