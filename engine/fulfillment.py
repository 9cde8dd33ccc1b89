"""Fulfilling an order at its warehouse: pick, pack, ship, each step a recorded transition.

The walk resumes where an order stands, so a call interrupted half way (a Redis blip between two
steps) is finished by calling again; a shipped or closed order is refused.
"""

from __future__ import annotations

from engine import lifecycle
from engine.errors import InvalidTransition, OrderNotFound
from engine.live_orders import LiveOrders
from engine.orders import Order


async def fulfill(orders: LiveOrders, order_id: str, warehouse_id: str) -> Order:
    order = await orders.get(order_id)
    if order is None:
        raise OrderNotFound(order_id)
    remaining = lifecycle.fulfilment_steps_from(order.status)
    if remaining is None:
        raise InvalidTransition(order_id, order.status, lifecycle.FULFILMENT_STEPS[-1])
    # Each step re-checks status and warehouse inside Redis: a concurrent cancel or a second
    # fulfil between two steps makes this one stop with the error, never skip a state.
    for step in remaining:
        order = await orders.transition(order_id, step, warehouse_id=warehouse_id)
    return order
