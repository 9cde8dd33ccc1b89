"""Named domain errors. `api/errors.py` maps each to one HTTP status; nothing compares strings."""

from __future__ import annotations


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
    def __init__(self, product_id: str, warehouse_id: str, available: int) -> None:
        super().__init__(
            f"adjustment would take {product_id!r} at {warehouse_id!r} below zero "
            f"(available: {available})"
        )
