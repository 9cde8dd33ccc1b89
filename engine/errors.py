"""Named domain errors. `api/errors.py` maps each to one HTTP status; nothing compares strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final


class DomainError(Exception):
    """Base of every error the engine reports to a caller; the message is safe to show."""


class UnknownProduct(DomainError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id!r} is not stocked anywhere")
        self.product_id = product_id


class UnknownWarehouse(DomainError):
    def __init__(self, warehouse_id: str) -> None:
        super().__init__(f"warehouse {warehouse_id!r} does not exist")
        self.warehouse_id = warehouse_id


class WarehouseExists(DomainError):
    def __init__(self, warehouse_id: str) -> None:
        super().__init__(f"warehouse {warehouse_id!r} already exists")
        self.warehouse_id = warehouse_id


class OutOfStock(DomainError):
    def __init__(self, product_id: str, quantity: int, warehouse_id: str | None = None) -> None:
        where = f"at warehouse {warehouse_id!r}" if warehouse_id else "at any warehouse"
        super().__init__(f"{quantity} unit(s) of {product_id!r} are not available {where}")
        self.product_id = product_id
        self.quantity = quantity


class IdempotencyKeyReused(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different request")
        self.key = key


class OrderNotFound(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} does not exist")
        self.order_id = order_id


class InvalidTransition(DomainError):
    def __init__(self, order_id: str, status: str, wanted: str) -> None:
        super().__init__(f"order {order_id!r} is {status}; it cannot become {wanted}")
        self.order_id = order_id
        self.status = status


class WrongWarehouse(DomainError):
    def __init__(self, order_id: str, warehouse_id: str) -> None:
        super().__init__(f"order {order_id!r} is not held at warehouse {warehouse_id!r}")
        self.order_id = order_id
        self.warehouse_id = warehouse_id


class NegativeStock(DomainError):
    def __init__(self, product_id: str, warehouse_id: str, level: int) -> None:
        super().__init__(
            f"adjustment would take {product_id!r} at {warehouse_id!r} below zero (level: {level})"
        )


class HoldUnavailable(DomainError):
    """An order named a hold it cannot take its units from."""

    REASONS: Final[Mapping[str, str]] = {
        "gone": "was used by an order, released, or never existed",
        "expired": "has expired",
        "other_product": "holds another product",
        "other_warehouse": "is at another warehouse",
        "too_few": "holds fewer units than the order",
    }

    def __init__(self, hold_id: str, why: str) -> None:
        super().__init__(f"reservation {hold_id!r} {self.REASONS.get(why, why)}")
        self.hold_id = hold_id
        self.why = why


class HoldNotFound(DomainError):
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"reservation {hold_id!r} does not exist (used, released or expired)")
        self.hold_id = hold_id


class OrderMovedOn(DomainError):
    """The order's record is no longer the one the caller saw (its seq moved): someone else
    changed it meanwhile. Raised only for a transition that named the seq it expected."""

    def __init__(self, order_id: str, seq: int) -> None:
        super().__init__(f"order {order_id!r} changed meanwhile (now at seq {seq})")
        self.order_id = order_id
        self.seq = seq


class OutcomeUnknown(DomainError):
    """Redis may or may not have applied a command: it was sent, and no reply came within the
    command deadline (a cut connection, a paused or failing-over Redis). The command is idempotent
    by its IDs, so looking the subject up, or sending the same request again, tells the truth."""

    def __init__(self, cause: str, subject_id: str | None = None) -> None:
        what = f"whether {subject_id!r} was applied" if subject_id else "the outcome"
        super().__init__(f"could not learn {what} in time ({cause}); look it up or retry")
        self.cause = cause
        self.subject_id = subject_id

    def about(self, subject_id: str) -> OutcomeUnknown:
        return OutcomeUnknown(self.cause, subject_id)


class Overloaded(DomainError):
    """More work is waiting than this worker can send in time; nothing was sent for it."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("the service is over capacity; nothing was placed, retry later")
        self.retry_after_s = retry_after_s


class StoreFull(DomainError):
    """Redis reached its memory limit and refuses writes; nothing was written."""

    def __init__(self) -> None:
        super().__init__("the order store is full; nothing was placed, retry later")


class BasketOutOfStock(DomainError):
    """No set of warehouses holds these lines of a basket; nothing was held or placed."""

    def __init__(self, lines: Sequence[tuple[str, int]]) -> None:
        named = ", ".join(f"{quantity} x {product_id!r}" for product_id, quantity in lines)
        super().__init__(f"no warehouses together hold the basket's lines: {named}")
        self.lines = tuple(lines)


class StoreUnavailable(DomainError):
    """Redis did not answer while a basket's lines were being held: every hold it made is given
    back, and nothing was placed."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"the basket was not placed: Redis did not answer in time ({cause})")
        self.cause = cause
