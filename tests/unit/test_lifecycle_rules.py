"""The order lifecycle's table (engine/lifecycle.py) and the walks built on it: fulfilling
(engine/fulfillment.py), cancelling and stepping an order (engine/live_orders.py), over the fake
command layer."""

from __future__ import annotations

import pytest

from engine import lifecycle
from engine.errors import InvalidTransition, OrderMovedOn, OrderNotFound, WrongWarehouse
from engine.fulfillment import fulfill
from engine.ids import new_id
from engine.live_orders import LiveOrders
from engine.orders import OrderStatus
from engine.records import OrderRecord
from tests.unit.fakes import FakeScriptRunner

STATUSES: tuple[OrderStatus, ...] = lifecycle.PROGRESS


def placed(runner: FakeScriptRunner, status: str = "confirmed", warehouse: str = "w-paris") -> str:
    order_id = new_id(3)
    runner.put(
        order_id,
        OrderRecord("sku-1", warehouse, 2, status, 2, 1_700_000_000_000, 48.85, 2.35, "", 1),
    )
    return order_id


# Every step the lifecycle allows; any other pair of statuses is refused.
ALLOWED = {
    ("confirmed", "picking"),
    ("confirmed", "cancelled"),
    ("confirmed", "failed"),
    ("picking", "packed"),
    ("picking", "failed"),
    ("packed", "shipped"),
    ("packed", "failed"),
    ("shipped", "delivered"),
    ("shipped", "failed"),
}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_only_the_listed_transitions_are_allowed(current: str, target: str) -> None:
    assert lifecycle.can_move(current, target) is ((current, target) in ALLOWED)


def test_an_unknown_status_may_move_nowhere() -> None:
    assert lifecycle.can_move("no-such-status", "picking") is False


def test_every_transition_moves_forward() -> None:
    """What lets a writer apply status events that arrive twice or late without going back."""
    for status, targets in lifecycle.TRANSITIONS.items():
        for target in targets:
            assert lifecycle.progress(target) > lifecycle.progress(status)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        ("picking", ("confirmed",)),
        ("cancelled", ("confirmed",)),
        ("delivered", ("shipped",)),
        ("failed", ("confirmed", "picking", "packed", "shipped")),
        ("confirmed", ()),
    ],
)
def test_allowed_from_lists_sources_in_lifecycle_order(
    target: OrderStatus, sources: tuple[OrderStatus, ...]
) -> None:
    assert lifecycle.allowed_from(target) == sources


def test_final_statuses_cannot_get_stuck() -> None:
    final = {s for s in STATUSES if not lifecycle.TRANSITIONS[s]}
    assert final == {"delivered", "cancelled", "failed"}
    assert not final & set(lifecycle.STUCK_AFTER_S)
    assert set(lifecycle.STUCK_AFTER_S) | final == set(STATUSES)


@pytest.mark.parametrize("start", ["confirmed", "picking", "packed"])
async def test_fulfil_walks_the_remaining_steps(start: str) -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner, start)
    order = await fulfill(LiveOrders(runner, None), order_id, "w-paris")
    assert order.status == "shipped"
    steps: tuple[str, ...] = lifecycle.FULFILMENT_STEPS
    walked = steps[steps.index(start) + 1 :] if start in steps else steps
    assert [kind for kind, _ in runner.events] == ["order.status"] * len(walked)
    record = runner.record(order_id)
    assert record is not None and record.seq == 1 + len(walked)


@pytest.mark.parametrize("status", ["shipped", "delivered", "cancelled", "failed"])
async def test_fulfil_refuses_a_shipped_or_closed_order(status: str) -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner, status)
    with pytest.raises(InvalidTransition):
        await fulfill(LiveOrders(runner, None), order_id, "w-paris")
    assert runner.sent == []  # refused before any script ran


async def test_fulfil_at_another_warehouse_changes_nothing() -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner)
    with pytest.raises(WrongWarehouse):
        await fulfill(LiveOrders(runner, None), order_id, "w-lyon")
    record = runner.record(order_id)
    assert record is not None and record.status == "confirmed"


async def test_fulfil_an_unknown_order() -> None:
    with pytest.raises(OrderNotFound):
        await fulfill(LiveOrders(FakeScriptRunner(), None), new_id(3), "w-paris")


async def test_an_id_in_another_spelling_names_no_order() -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner)
    assert await LiveOrders(runner, None).get(order_id.upper()) is None


async def test_cancel_gives_the_units_back_once() -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner)
    orders = LiveOrders(runner, None)
    assert (await orders.cancel(order_id)).status == "cancelled"
    assert runner.stock == {("sku-1", "w-paris"): 2}
    with pytest.raises(InvalidTransition):
        await orders.cancel(order_id)
    assert runner.stock == {("sku-1", "w-paris"): 2}


async def test_a_step_with_a_stale_sequence_number_is_refused() -> None:
    runner = FakeScriptRunner()
    order_id = placed(runner)
    orders = LiveOrders(runner, None)
    await orders.transition(order_id, "picking")
    with pytest.raises(OrderMovedOn):
        await orders.transition(order_id, "failed", expected_seq=1)


@pytest.mark.parametrize(
    ("status", "steps"),
    [
        ("confirmed", ("picking", "packed", "shipped")),
        ("picking", ("packed", "shipped")),
        ("packed", ("shipped",)),
        ("shipped", None),
        ("cancelled", None),
        ("failed", None),
    ],
)
def test_fulfilment_resumes_where_the_walk_stopped(
    status: str, steps: tuple[str, ...] | None
) -> None:
    assert lifecycle.fulfilment_steps_from(status) == steps
