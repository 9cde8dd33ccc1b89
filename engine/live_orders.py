"""Orders wherever they are: in Redis while hot, in PostgreSQL once their hot window passed (the
orders writer lets a record leave Redis only after PostgreSQL holds its latest change).

Reading one, cancelling one, moving one along its lifecycle (`engine.lifecycle`) work the same on
both. A change is always decided in Redis, by one script, atomically with its stock effect: for
an order that left, the command carries the copy read from PostgreSQL, which the script takes as
the record and writes back with the change (`lua/includes/order_record.lua`). The change then
reaches PostgreSQL through the stream like any other, so there is no second write path and no
change half done. Each change is one command with its own operation ID, so the runner may send it
twice without applying it twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from engine import clock, commands, lifecycle, scripts
from engine.commands import ArchivedCopy, StaleCopy
from engine.errors import OrderNotFound, OutcomeUnknown
from engine.ids import is_basket_id, new_operation_id, partition_of_id
from engine.keys import order as order_key
from engine.orders import Order, OrderStatus
from engine.records import BasketRecord, OrderRecord, decode_record

# A copy refused as stale, or a record that left Redis between reading it and changing it: read
# again, a bounded number of times.
LOCATE_ATTEMPTS: Final = 3

BuildChange = Callable[[OrderRecord, ArchivedCopy | None], scripts.Command[OrderRecord]]
R = TypeVar("R")


class RecordReads(Protocol):
    """The one plain read beside the scripts: an order's record by its key."""

    def get(self, name: str, /) -> Awaitable[bytes | str | None]: ...


class CommandRunner(Protocol):
    """What LiveOrders needs of the command layer (`scripts.ScriptRunner`; the unit tier's fake):
    run a command, and read a record."""

    @property
    def redis(self) -> RecordReads: ...

    async def run(self, command: scripts.Command[R]) -> R: ...


class OrderArchive(Protocol):
    """Where an order lives once it left Redis (PostgreSQL, `stores.order_archive`)."""

    async def record(self, order_id: str) -> OrderRecord | None: ...


RecordT = TypeVar("RecordT", OrderRecord, BasketRecord)


async def locate_record(
    redis: RecordReads,
    key: str,
    decode: Callable[[str | bytes], RecordT],
    read_archived: Callable[[], Awaitable[RecordT | None]] | None,
) -> tuple[RecordT, ArchivedCopy | None] | None:
    """A record from Redis under `key`, else the copy `read_archived` finds in PostgreSQL with
    when it was read (a command on it carries both); None when it exists nowhere."""
    raw = await redis.get(key)
    if raw is not None:
        return decode(raw), None
    if read_archived is None:
        return None
    read_ms = clock.now_ms()  # before the read: the copy is at least this fresh
    archived = await read_archived()
    return None if archived is None else (archived, ArchivedCopy(archived, read_ms))


async def change_located(
    order_id: str,
    locate: Callable[[str], Awaitable[tuple[RecordT, ArchivedCopy | None] | None]],
    run: Callable[[scripts.Command[RecordT]], Awaitable[RecordT]],
    build: Callable[[RecordT, ArchivedCopy | None], scripts.Command[RecordT]],
    archived: bool,
) -> RecordT:
    """Run the command `build` makes from a record located by `locate` (and its archived copy,
    when it left Redis), reading it again, a bounded number of times, when the copy was too
    old or the record left Redis meanwhile (`archived`: there is a PostgreSQL to read it from).
    The result is the record after the command."""
    for _ in range(LOCATE_ATTEMPTS):
        located = await locate(order_id)
        if located is None:
            raise OrderNotFound(order_id)
        record, copy = located
        try:
            return await run(build(record, copy))
        except StaleCopy:
            continue  # the copy was read too long ago: read it again
        except OrderNotFound:
            if copy is None and archived:
                continue  # it left Redis just now: read it from PostgreSQL
            raise
        except OutcomeUnknown as unknown:
            raise unknown.about(order_id) from unknown
    raise OutcomeUnknown("the order kept moving between Redis and PostgreSQL", order_id)


class LiveOrders:
    def __init__(self, runner: CommandRunner, archive: OrderArchive | None) -> None:
        """`archive=None`: orders are looked for in Redis only (tools and tests without
        PostgreSQL); an order that left Redis is then not found."""
        self._runner = runner
        self._archive = archive

    async def locate(self, order_id: str) -> tuple[OrderRecord, ArchivedCopy | None] | None:
        """The order's record, and the archived copy a command must carry when the record came
        from PostgreSQL; None when the order exists nowhere."""
        partition = partition_of_id(order_id)
        if partition is None or is_basket_id(order_id):  # not a one-product order's ID
            return None
        archive = self._archive
        return await locate_record(
            self._runner.redis,
            order_key(partition, order_id),
            decode_record,
            None if archive is None else lambda: archive.record(order_id),
        )

    async def get(self, order_id: str) -> Order | None:
        located = await self.locate(order_id)
        return None if located is None else located[0].to_order(order_id)

    async def cancel(self, order_id: str) -> Order:
        """Cancel a confirmed order and return its units to stock, atomically."""
        operation_id = new_operation_id()
        return await self.change(
            order_id,
            lambda record, copy: commands.cancel_order(
                operation_id, order_id, record.product_id, clock.now_ms(), copy
            ),
        )

    async def transition(
        self,
        order_id: str,
        target: OrderStatus,
        *,
        allowed_from: tuple[OrderStatus, ...] | None = None,
        warehouse_id: str = "",
        reason: str = "",
        expected_seq: int = 0,
    ) -> Order:
        """Move an order to `target` if the lifecycle allows it from its current status (checked
        inside Redis, so two callers cannot both move it). `allowed_from` narrows the statuses
        accepted; `warehouse_id`, when given, must be the warehouse that holds the order;
        `expected_seq`, when given, must still be the record's (the sweeper fails an order only
        if nothing happened to it since it was seen stuck: OrderMovedOn otherwise)."""
        sources = lifecycle.allowed_from(target) if allowed_from is None else allowed_from
        operation_id = new_operation_id()
        return await self.change(
            order_id,
            lambda _, copy: commands.transition_order(
                operation_id,
                order_id,
                target,
                sources,
                clock.now_ms(),
                reason=reason,
                warehouse_id=warehouse_id,
                expected_seq=expected_seq,
                copy=copy,
            ),
        )

    async def change(self, order_id: str, build: BuildChange) -> Order:
        """Run the command `build` makes from the order's record (and its archived copy, when
        it left Redis), wherever the order is. `build` is called again, with the same
        operation ID inside, when the record must be read again."""
        updated = await change_located(
            order_id, self.locate, self._runner.run, build, self._archive is not None
        )
        return updated.to_order(order_id)
