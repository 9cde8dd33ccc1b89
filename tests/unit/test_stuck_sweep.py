"""The stuck-order sweep's choice (writers/sweeper.py): which orders are past their status's
deadline, and that only an order Redis still holds as PostgreSQL showed it is flagged `failed`."""

from __future__ import annotations

import pytest

from engine import lifecycle
from engine.ids import new_id
from engine.live_orders import LiveOrders
from engine.records import OrderRecord
from tests.unit.fakes import FakeOrderTable, FakeScriptRunner
from writers.sweeper import flag_stuck_orders, stuck_deadlines

DAY_S = 24 * 3600


def test_deadlines_default_to_the_lifecycle() -> None:
    assert stuck_deadlines("") == dict(lifecycle.STUCK_AFTER_S)


def test_deadlines_overridden_per_status() -> None:
    deadlines = stuck_deadlines("confirmed=0.5, shipped=3600,")
    assert deadlines["confirmed"] == 0.5 and deadlines["shipped"] == 3600
    assert deadlines["picking"] == lifecycle.STUCK_AFTER_S["picking"]


@pytest.mark.parametrize("setting", ["delivered=60", "failed=1", "teleported=5"])
def test_a_status_that_cannot_get_stuck_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="not a status that can get stuck"):
        stuck_deadlines(setting)


def order_in(runner: FakeScriptRunner, table: FakeOrderTable, status: str, age_s: float) -> str:
    """An order as Redis and PostgreSQL both hold it, last changed `age_s` ago."""
    order_id = new_id(1)
    runner.put(order_id, OrderRecord("sku-1", "w", 1, status, 2, 1_700_000_000_000, 0, 0, "", 2))
    table.add(order_id, status, 2, age_s)
    return order_id


async def test_only_orders_past_their_deadline_are_flagged_with_the_reason() -> None:
    runner, table = FakeScriptRunner(), FakeOrderTable()
    stuck = order_in(runner, table, "packed", 2 * DAY_S)
    fresh = order_in(runner, table, "packed", 60)
    shipped = order_in(runner, table, "shipped", 2 * DAY_S)  # shipped gets 14 days
    flagged = await flag_stuck_orders(table, LiveOrders(runner, None), lifecycle.STUCK_AFTER_S)
    assert flagged == 1
    assert [runner.record(o).status for o in (stuck, fresh, shipped)] == [  # type: ignore[union-attr]
        "failed",
        "packed",
        "shipped",
    ]


async def test_an_order_that_moved_on_in_redis_is_left_alone() -> None:
    """PostgreSQL lags Redis: an order seen stuck there may have moved since (another status, or
    the same status again after a re-route, with a higher seq)."""
    runner, table = FakeScriptRunner(), FakeOrderTable()
    moved = order_in(runner, table, "confirmed", 2 * DAY_S)
    rerouted = order_in(runner, table, "confirmed", 2 * DAY_S)
    gone = order_in(runner, table, "confirmed", 2 * DAY_S)
    orders = LiveOrders(runner, None)
    await orders.transition(moved, "picking")
    runner.put(
        rerouted, OrderRecord("sku-1", "w2", 1, "confirmed", 2, 1_700_000_000_000, 0, 0, "", 5)
    )
    del runner.redis.values[next(k for k in runner.redis.values if gone in k)]
    assert await flag_stuck_orders(table, orders, lifecycle.STUCK_AFTER_S) == 0
    assert runner.record(moved).status == "picking"  # type: ignore[union-attr]
    assert runner.record(rerouted).status == "confirmed"  # type: ignore[union-attr]
