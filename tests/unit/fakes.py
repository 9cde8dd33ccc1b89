"""Fakes with behaviour for the unit tier: the engine's command layer and the orders table, in
memory, so the rules that live in Python run without Redis or PostgreSQL.

`FakeScriptRunner` answers the order commands (`lua/transition.lua`, `lua/cancel.lua`) with the
rules those scripts apply and in their reply format; each command's own `decode` turns the reply
into the result or the named error, exactly as with a real `ScriptRunner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from engine import keys, scripts
from engine.ids import partition_of_id
from engine.records import OrderRecord, decode_record, encode_record

R = TypeVar("R")

# Where the copy a command carries for an order that left Redis sits in its arguments.
_TRANSITION_COPY_ARG = 7
_TRANSITION_ALLOWED_FROM_ARG = 9


class UnknownScript(Exception):
    """A command this fake does not implement: the test reached further than the fake goes."""


@dataclass
class FakeRedis:
    """The plain reads the engine makes beside its scripts: an order's record by its key."""

    values: dict[str, bytes] = field(default_factory=dict)

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)


@dataclass
class FakeScriptRunner:
    """Orders and stock levels in memory, changed by the commands the engine sends; a
    `live_orders.CommandRunner`, so `LiveOrders(FakeScriptRunner(), None)` runs on it."""

    redis: FakeRedis = field(default_factory=FakeRedis)
    stock: dict[tuple[str, str], int] = field(default_factory=dict)  # (product, warehouse)
    events: list[tuple[str, str]] = field(default_factory=list)  # (type, order ID), appended
    sent: list[str] = field(default_factory=list)  # the scripts run, in order

    def put(self, order_id: str, record: OrderRecord) -> None:
        self.redis.values[_order_key(order_id)] = encode_record(record)

    def record(self, order_id: str) -> OrderRecord | None:
        raw = self.redis.values.get(_order_key(order_id))
        return None if raw is None else decode_record(raw)

    async def run(self, command: scripts.Command[R]) -> R:
        self.sent.append(command.script.name)
        return command.decode(self._reply(command))

    def _reply(self, command: scripts.Command[Any]) -> list[Any]:
        args = list(command.args)
        match command.script.name:
            case "transition":
                return self._transition(args)
            case "cancel":
                return self._cancel(args)
        raise UnknownScript(command.script.name)

    def _transition(self, args: Sequence[Any]) -> list[Any]:
        order_id, target, _now_ms, _reason, warehouse_id, expected_seq = args[:6]
        if args[_TRANSITION_COPY_ARG]:
            raise UnknownScript("transition with an archived copy")
        record = self.record(order_id)
        if record is None:
            return ["not_found"]
        if expected_seq and record.seq != expected_seq:
            return ["moved_on", record.seq]
        if record.status not in args[_TRANSITION_ALLOWED_FROM_ARG:]:
            return ["bad_state", record.status]
        if warehouse_id and record.warehouse_id != warehouse_id:
            return ["wrong_warehouse", record.warehouse_id]
        return ["ok", self._save(order_id, record, target, "order.status")]

    def _cancel(self, args: Sequence[Any]) -> list[Any]:
        order_id, product_id = args[0], args[1]
        record = self.record(order_id)
        if record is None:
            return ["not_found"]
        if record.status != "confirmed":
            return ["bad_state", record.status]
        at = (product_id, record.warehouse_id)
        self.stock[at] = self.stock.get(at, 0) + record.quantity
        return [
            "ok",
            self._save(order_id, record, "cancelled", "order.cancelled"),
            self.stock[at],
        ]

    def _save(self, order_id: str, record: OrderRecord, status: str, event: str) -> bytes:
        updated = msgspec.structs.replace(record, status=status, seq=record.seq + 1)
        self.put(order_id, updated)
        self.events.append((event, order_id))
        return encode_record(updated)


def _order_key(order_id: str) -> str:
    partition = partition_of_id(order_id)
    assert partition is not None, f"{order_id!r} is not an ID the engine mints"
    return keys.order(partition, order_id)


@dataclass
class OrderRow:
    order_id: str
    status: str
    seq: int
    updated_at: datetime


@dataclass
class FakeOrderTable:
    """PostgreSQL's `orders` as the stuck-order sweep reads it (`writers.sweeper.FIND_STUCK`):
    orders in one status not updated for longer than a deadline, oldest first, up to a limit."""

    rows: list[OrderRow] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def add(self, order_id: str, status: str, seq: int, age_s: float) -> None:
        self.rows.append(OrderRow(order_id, status, seq, self.now - timedelta(seconds=age_s)))

    async def fetch(self, _query: str, status: str, deadline_s: float, limit: int) -> list[Any]:
        cutoff = self.now - timedelta(seconds=deadline_s)
        found = sorted(
            (row for row in self.rows if row.status == status and row.updated_at < cutoff),
            key=lambda row: row.updated_at,
        )
        return [{"order_id": row.order_id, "seq": row.seq} for row in found[:limit]]
