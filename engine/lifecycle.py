"""The order lifecycle: which status may follow which, and how long an order may rest in one.

confirmed -> picking -> packed -> shipped -> delivered; a confirmed order may be cancelled (its
units go back to stock, `lua/cancel.lua`); any order not yet delivered may be flagged `failed`
for a person to look at. `lua/transition.lua` enforces this table inside Redis, atomically: the
engine passes it the statuses a target may be reached from, so the rule lives here, once.

Stock: units are taken from the warehouse when the order is confirmed (`lua/place_orders.lua`).
Shipping therefore changes nothing on stock: the units taken simply never come back. Only a
cancellation returns them. A failed order keeps its units until a person decides (restock or
adjust).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from engine.orders import OrderStatus

TRANSITIONS: Final[Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    "confirmed": frozenset({"picking", "cancelled", "failed"}),
    "picking": frozenset({"packed", "failed"}),
    "packed": frozenset({"shipped", "failed"}),
    "shipped": frozenset({"delivered", "failed"}),
    "delivered": frozenset(),
    "cancelled": frozenset(),
    "failed": frozenset(),
}

# Every allowed transition moves forward in this order, so a writer can apply status events
# that arrive twice or late without ever moving an order back (see writers/orders.py).
PROGRESS: Final[tuple[OrderStatus, ...]] = (
    "confirmed",
    "picking",
    "packed",
    "shipped",
    "delivered",
    "cancelled",
    "failed",
)

# The warehouse walks an order through these on `POST /warehouse/fulfill`.
FULFILMENT_STEPS: Final[tuple[OrderStatus, ...]] = ("picking", "packed", "shipped")

# How long an order may rest in a status before the sweeper flags it `failed` (seconds).
STUCK_AFTER_S: Final[Mapping[OrderStatus, int]] = {
    "confirmed": 24 * 3600,
    "picking": 24 * 3600,
    "packed": 24 * 3600,
    "shipped": 14 * 24 * 3600,
}


def fulfilment_steps_from(status: str) -> tuple[OrderStatus, ...] | None:
    """The fulfilment steps left from `status`: all of them from confirmed, the rest when a
    walk was interrupted half way; None when shipping is behind it or out of its reach."""
    walk: tuple[str, ...] = ("confirmed", *FULFILMENT_STEPS[:-1])
    if status not in walk:
        return None
    return FULFILMENT_STEPS[walk.index(status) :]


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())  # type: ignore[call-overload]


def allowed_from(target: OrderStatus) -> tuple[OrderStatus, ...]:
    """The statuses `target` may be reached from, in lifecycle order."""
    return tuple(status for status in PROGRESS if target in TRANSITIONS[status])


def progress(status: str) -> int:
    return PROGRESS.index(status)
