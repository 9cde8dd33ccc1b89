"""A basket's events as the orders writer's rows (writers/orders.py): the `orders` row, its lines,
shipments and items in the record's order, the history row of each step (the moved shipment's
status and warehouse), and the newest event of each basket in a batch."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest

from engine.events import BasketChanged, BasketConfirmed
from engine.records import BasketRecord, ShipmentRecord
from writers.orders import (
    basket_row,
    basket_state_row,
    latest_baskets,
    line_rows,
    shipment_rows,
    step_row,
)

CREATED_MS = 1_750_000_000_123  # 2025-06-15 UTC
CREATED = datetime(2025, 6, 15, 15, 6, 40, 123_000, tzinfo=UTC)
RECORD = BasketRecord(
    lines=(("sku-b", 1), ("sku-a", 2)),
    shipments=(
        ShipmentRecord("1", 2, "shipped", (("sku-a", 2),)),
        ShipmentRecord("2", 4, "confirmed", (("sku-b", 1),)),
    ),
    quantity=3,
    status="confirmed",
    eta_days=4,
    created_ms=CREATED_MS,
    lat=48.85,
    lon=2.35,
    idempotency_key="",
    seq=3,
    rule="exact",
)


def test_a_confirmation_is_one_orders_row_without_product_or_warehouse() -> None:
    assert basket_row(BasketConfirmed("o-1", RECORD)) == (
        "o-1",
        3,
        "confirmed",
        48.85,
        2.35,
        date(2025, 6, 19),  # the latest shipment's date
        None,  # no idempotency key
        CREATED,
        3,
        "exact",
    )
    keyed = msgspec.structs.replace(RECORD, idempotency_key="k")
    assert basket_row(BasketConfirmed("o-1", keyed))[6] == "k"


def test_lines_keep_the_clients_order() -> None:
    assert line_rows("o-1", RECORD) == [("o-1", "sku-b", 1, 0), ("o-1", "sku-a", 2, 1)]


def test_shipments_keep_the_records_order_with_their_own_dates_and_items() -> None:
    shipments, items = shipment_rows("o-1", RECORD)
    assert shipments == [
        ("o-1", "1", "shipped", date(2025, 6, 17), 0),
        ("o-1", "2", "confirmed", date(2025, 6, 19), 1),
    ]
    assert items == [("o-1", "1", "sku-a", 2, 0), ("o-1", "2", "sku-b", 1, 0)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (BasketConfirmed("o-1", RECORD), ("confirmed", CREATED, None, None)),
        # One shipment moved: its status, not the basket's, and its warehouse.
        (BasketChanged("o-1", RECORD, CREATED_MS + 5, "1", ""), ("shipped", None, None, "1")),
        (
            BasketChanged("o-1", RECORD, CREATED_MS + 5, "2", "a reason"),
            ("confirmed", None, "a reason", "2"),
        ),
        # The whole basket moved.
        (BasketChanged("o-1", RECORD, CREATED_MS + 5), ("confirmed", None, None, None)),
        # A warehouse the record no longer holds: its shipment was re-routed.
        (
            BasketChanged("o-1", RECORD, CREATED_MS + 5, "9"),
            ("confirmed", None, "re-routed from 9", "9"),
        ),
        (
            BasketChanged("o-1", RECORD, CREATED_MS + 5, "9", "damaged"),
            ("confirmed", None, "re-routed from 9: damaged", "9"),
        ),
    ],
)
def test_each_step_has_its_history_row(
    event: BasketConfirmed | BasketChanged,
    expected: tuple[str, datetime | None, str | None, str | None],
) -> None:
    order_id, status, at, event_id, reason, warehouse_id = step_row("1-0", event)
    assert (order_id, event_id) == ("o-1", "1-0")
    status_wanted, at_wanted, reason_wanted, warehouse_wanted = expected
    assert (status, reason, warehouse_id) == (status_wanted, reason_wanted, warehouse_wanted)
    assert at == (at_wanted or datetime.fromtimestamp((CREATED_MS + 5) / 1000, UTC))


def test_a_change_sets_the_rows_status_date_and_time() -> None:
    changed = BasketChanged("o-1", msgspec.structs.replace(RECORD, status="cancelled"), 99_000)
    assert basket_state_row(changed) == (
        "o-1",
        3,
        "cancelled",
        date(2025, 6, 19),
        datetime(1970, 1, 1, 0, 1, 39, tzinfo=UTC),
    )


def test_the_newest_event_of_each_basket_wins_whatever_their_order() -> None:
    old = BasketConfirmed("o-1", msgspec.structs.replace(RECORD, seq=1))
    new = BasketChanged("o-1", RECORD, 5, "1")
    late = BasketChanged("o-1", msgspec.structs.replace(RECORD, seq=2), 4, "1")
    other = BasketConfirmed("o-2", RECORD)
    assert latest_baskets([old, new, late, other]) == {"o-1": new, "o-2": other}
    assert latest_baskets([late, new, old]) == {"o-1": new}
    assert latest_baskets([]) == {}
