"""Baskets: orders of several lines, allocated to the fewest warehouses that hold them all, then
the shortest distances (`engine.allocation`), all or nothing.

A basket's lines live in several partitions, so in several hash slots, and no one script can
hold it. It is placed in two phases, with the basket's own slot deciding:

1. Plan and hold. The lines' levels are read, the allocation chosen, and each part is held in
   its product's partition (lua/hold.lua; the hold names the basket and expires after
   BASKET_HOLD_TTL_S). A part another order took meanwhile means planning again, under a new
   order ID, after the holds made are given back.
2. Commit. lua/commit_basket.lua writes the record, the idempotency key and the event, and the
   decision `committed`, in the basket's slot; then every hold is settled: kept, its units sold.

The decision key is the one place both ways out meet. The worker commits through it; the hold
sweeper, finding a basket hold expired (its worker died or lost its connection mid-basket),
resolves the basket through it (lua/resolve_basket.lua): committed if the commit got there first,
else aborted for good, so a commit still on its way is refused. Holds are then kept or given back
by that decision (lua/settle_basket_hold.lua). So no unit is sold twice, no hold outlives its
expiry by more than a sweep, and a basket is confirmed whole or not at all. Every call is safe to
send twice: holds by their IDs, the commit by the record it wrote, a settle because a settled
hold is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, NoReturn, TypeVar

from engine import clock, commands, keys, scripts
from engine.allocation import Allocation, AllocationRule, Shortfall, allocate
from engine.commands import (
    NOT_WRITTEN,
    BasketAborted,
    BasketDuplicate,
    HeldStock,
    HoldSettlement,
)
from engine.delivery import delivery_days, estimated_delivery
from engine.errors import (
    BasketOutOfStock,
    DomainError,
    IdempotencyKeyReused,
    OutcomeUnknown,
    OutOfStock,
    Overloaded,
    StoreUnavailable,
    UnknownProduct,
)
from engine.ids import new_id, partition_of_id
from engine.inventory import levels_in
from engine.orders import IDEMPOTENCY_TTL_S
from engine.records import BasketRecord, ShipmentRecord
from engine.warehouses import WarehouseDirectory, Warehouses
from geo.distance import Point
from stores.redis import TRANSIENT_ERRORS

MAX_BASKET_LINES: Final = 50
# Long enough for a worker to hold every line and commit, short enough that a worker that died
# mid-basket keeps its units from sale only briefly.
BASKET_HOLD_TTL_S: Final = 30
# An aborted basket's decision stays this long, refusing a commit still on its way (a commit's
# resends end within seconds). A committed one has no expiry: its worker deletes it once every
# hold is settled (a worker that dies first leaves it behind: the sweeper may still need it).
ABORTED_DECISION_TTL_S: Final = 24 * 3600
# Plans that lost a part to another order between reading the levels and holding it.
PLAN_ATTEMPTS: Final = 3
CONTENDED_RETRY_AFTER_S: Final = 0.1
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BasketLine:
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class BasketRequest:
    lines: tuple[BasketLine, ...]  # products distinct (the API refuses a product twice)
    customer: Point
    idempotency_key: str | None = None
    owner_tag: int | None = None  # the placing storefront's, minted into the order ID

    def fingerprint(self) -> str:
        """What must match for a retry under the same idempotency key to be the same basket."""
        lines = ";".join(f"{line.product_id}*{line.quantity}" for line in self.lines)
        return f"{lines}|{self.customer.lat:.6f}|{self.customer.lon:.6f}"


@dataclass(frozen=True, slots=True)
class Shipment:
    warehouse_id: str
    items: tuple[BasketLine, ...]
    status: str
    estimated_delivery: date


@dataclass(frozen=True, slots=True)
class Basket:
    """A basket as it stands."""

    order_id: str
    status: str
    lines: tuple[BasketLine, ...]
    shipments: tuple[Shipment, ...]
    customer: Point
    estimated_delivery: date  # its latest shipment's
    created_at: datetime
    rule: AllocationRule  # which rule chose the warehouses


@dataclass(frozen=True, slots=True)
class BasketConfirmation:
    basket: Basket
    replayed: bool  # True when an idempotent retry got the basket placed before


def basket_of(order_id: str, record: BasketRecord) -> Basket:
    created = record.created_ms
    return Basket(
        order_id=order_id,
        status=record.status,
        lines=tuple(BasketLine(p, q) for p, q in record.lines),
        shipments=tuple(
            Shipment(
                s.warehouse_id,
                tuple(BasketLine(p, q) for p, q in s.items),
                s.status,
                estimated_delivery(created, s.eta_days),
            )
            for s in record.shipments
        ),
        customer=Point(record.lat, record.lon),
        estimated_delivery=estimated_delivery(created, record.eta_days),
        created_at=datetime.fromtimestamp(created / 1000, UTC),
        rule=record.rule,
    )


FindBasket = Callable[[str], Awaitable[Basket | None]]


@dataclass(frozen=True, slots=True)
class HeldPart:
    hold_id: str
    product_id: str


class PartHolder:
    """Plans parts and holds them for an owner (a basket being placed, or a shipment's re-route:
    engine.basket_reroute), whose decision key later says whether the holds stay sold."""

    def __init__(
        self, runner: scripts.ScriptRunner, warehouses: Warehouses, hold_ttl_s: int
    ) -> None:
        self.runner = runner
        self.warehouses = warehouses
        self._hold_ttl_s = hold_ttl_s

    async def plan(
        self,
        lines: Sequence[tuple[str, int]],
        customer: Point,
        exclude: frozenset[str] = frozenset(),
    ) -> Allocation | Shortfall:
        """The allocation of `lines` over the warehouses with stock, but those in `exclude`."""
        levels = await self._levels([product_id for product_id, _ in lines])
        directory = self.warehouses.directory
        stocked = {w for per_warehouse in levels.values() for w in per_warehouse} - exclude
        if not stocked <= set(_known(directory, stocked)):
            directory = await self.warehouses.reload()  # stock at a warehouse just created
        distances = {w: directory.distance_km(customer, w) for w in _known(directory, stocked)}
        return allocate(lines, levels, distances)

    async def _levels(self, product_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        pipe = self.runner.redis.pipeline(transaction=False)
        for product_id in product_ids:
            pipe.hgetall(keys.stock(keys.partition_of_product(product_id), product_id))
        found: list[Mapping[str, str]] = list(await pipe.execute())
        levels: dict[str, dict[str, int]] = {}
        for product_id, raw in zip(product_ids, found, strict=True):
            if not raw:
                raise UnknownProduct(product_id)
            levels[product_id] = levels_in(raw)
        return levels

    async def hold(self, owner_id: str, allocation: Allocation) -> list[HeldPart] | None:
        """Hold every part; None when another order took a part meanwhile (every hold is then
        given back already)."""
        at_ms = clock.now_ms()
        parts = [
            (HeldPart(new_id(keys.partition_of_product(p.product_id)), p.product_id), p)
            for p in allocation.parts
        ]
        ttl_ms = self._hold_ttl_s * 1000
        results = await self.runner.run_all(
            [
                commands.hold_stock(
                    held.hold_id, p.product_id, p.warehouse_id, p.quantity, at_ms, ttl_ms, owner_id
                )
                for held, p in parts
            ]
        )
        holds = [held for held, _ in parts]
        failed = [r for r in results if not isinstance(r, HeldStock)]
        if not failed:
            return holds
        # The owner will never be committed (its caller mints a new one to try again): every
        # hold goes back, those whose outcome is unknown too (one made after all is then given
        # back by the sweeper, as its owner has no decision).
        await self.settle(owner_id, holds, "abort")
        if all(isinstance(r, OutOfStock) for r in failed):
            return None
        _raise_first(r for r in failed if not isinstance(r, OutOfStock))

    async def contended(self, lines: Sequence[tuple[str, int]], customer: Point) -> DomainError:
        """What to answer after PLAN_ATTEMPTS plans lost a part to other orders: the lines
        nothing can fill now, if any, else that the stock moves too fast to place it now."""
        allocation = await self.plan(lines, customer)
        if isinstance(allocation, Shortfall):
            return short_of(lines, allocation)
        return Overloaded(CONTENDED_RETRY_AFTER_S)

    async def settle(
        self, owner_id: str, holds: Sequence[HeldPart], settlement: HoldSettlement
    ) -> bool:
        """Settle the holds; False when some could not be (the sweeper settles those)."""
        results = await self.runner.run_all(
            [
                commands.settle_basket_hold(h.hold_id, h.product_id, owner_id, settlement)
                for h in holds
            ]
        )
        return not any(isinstance(r, BaseException) for r in results)

    async def commit(
        self, owner_id: str, holds: Sequence[HeldPart], command: scripts.Command[R]
    ) -> R | None:
        """Run the owner's commit (it writes the owner's decision `committed` with its effect)
        and settle the holds by what it did: kept sold when it committed; given back when it
        refused, and the refusal raised (None when it refused because the owner was aborted
        first: plan again). A commit whose outcome is not known here (no reply, a cancelled
        task) leaves the holds to the sweeper, which settles them by the decision."""
        try:
            committed = await self.runner.run(command)
        except OutcomeUnknown:
            raise
        except BasketAborted:
            await self.settle(owner_id, holds, "abort")
            return None
        except NOT_WRITTEN:
            await self.settle(owner_id, holds, "abort")
            raise
        await self._settle_committed(owner_id, holds)
        return committed

    async def _settle_committed(self, owner_id: str, holds: Sequence[HeldPart]) -> None:
        """Keep the holds sold, then forget the decision: once every hold is settled it has no
        one left to tell."""
        if await self.settle(owner_id, holds, "commit"):
            partition = partition_of_id(owner_id)
            assert partition is not None  # minted here
            # Committed whatever happens here: a decision left behind only takes its key's room.
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self.runner.redis.delete(keys.basket_decision(partition, owner_id))


class BasketPlacer:
    def __init__(
        self,
        runner: scripts.ScriptRunner,
        warehouses: Warehouses,
        find: FindBasket,
        *,
        idempotency_ttl_s: int = IDEMPOTENCY_TTL_S,
        hold_ttl_s: int = BASKET_HOLD_TTL_S,
    ) -> None:
        """`find`: where a retry finds the basket placed before (engine.live_baskets)."""
        self._parts = PartHolder(runner, warehouses, hold_ttl_s)
        self._find = find
        self._idempotency_ttl_s = idempotency_ttl_s

    async def place(self, request: BasketRequest) -> BasketConfirmation:
        placed_before = await self._placed_under_key(request)
        if placed_before is not None:
            return placed_before
        lines = [(line.product_id, line.quantity) for line in request.lines]
        for _ in range(PLAN_ATTEMPTS):
            allocation = await self._parts.plan(lines, request.customer)
            if isinstance(allocation, Shortfall):
                raise short_of(lines, allocation)
            # A new ID per attempt: the holds of an attempt given up on can never be committed.
            order_id = new_id(_basket_partition(request), owner_tag=request.owner_tag, basket=True)
            holds = await self._parts.hold(order_id, allocation)
            if holds is None:
                continue  # another order took a part meanwhile: plan again
            try:
                placed = await self._commit(order_id, request, allocation, holds)
            except BasketDuplicate as first:
                return await self._replay(first.order_id)
            if placed is not None:
                return placed
        raise await self._parts.contended(lines, request.customer)

    async def _placed_under_key(self, request: BasketRequest) -> BasketConfirmation | None:
        key = request.idempotency_key
        if not key:
            return None
        seen = await self._parts.runner.redis.get(
            keys.basket_idempotency(_basket_partition(request), key)
        )
        if seen is None:
            return None
        order_id, _, fingerprint = str(seen).partition("|")
        if fingerprint != request.fingerprint():
            raise IdempotencyKeyReused(key)
        return await self._replay(order_id)

    async def _replay(self, order_id: str) -> BasketConfirmation:
        basket = await self._find(order_id)
        if basket is None:  # its record is written with its key, atomically: never seen
            raise OutcomeUnknown("the basket under this idempotency key was not found", order_id)
        return BasketConfirmation(basket, replayed=True)

    async def _commit(
        self,
        order_id: str,
        request: BasketRequest,
        allocation: Allocation,
        holds: list[HeldPart],
    ) -> BasketConfirmation | None:
        """None when the sweeper aborted the basket first (its holds had expired): plan again."""
        directory = self._parts.warehouses.directory
        record = _record(request, allocation, directory, clock.now_ms())
        command = commands.commit_basket(
            order_id, record, request.fingerprint(), self._idempotency_ttl_s
        )
        try:
            committed = await self._parts.commit(order_id, holds, command)
        except OutcomeUnknown as unknown:
            raise unknown.about(order_id) from unknown
        return (
            None if committed is None else BasketConfirmation(basket_of(order_id, committed), False)
        )


async def settle_expired_basket_holds(
    runner: scripts.ScriptRunner, holds: Sequence[tuple[str, str, str]]
) -> int:
    """The sweeper's part: for these expired (hold ID, product ID, owner ID) holds, decide each
    owner (lua/resolve_basket.lua), then keep or give back its holds by that decision. An owner
    whose Redis does not answer now waits for the next sweep; the others go on. Returns how
    many holds gave their units back."""
    owner_ids = sorted({owner_id for _, _, owner_id in holds})
    decisions = await runner.run_all(
        [commands.resolve_basket(owner, ABORTED_DECISION_TTL_S) for owner in owner_ids]
    )
    decided: dict[str, HoldSettlement] = {
        owner: "commit" if decision == "committed" else "abort"
        for owner, decision in zip(owner_ids, decisions, strict=True)
        if not isinstance(decision, BaseException)
    }
    settled = await runner.run_all(
        [
            commands.settle_basket_hold(hold_id, product_id, owner, decided[owner])
            for hold_id, product_id, owner in holds
            if owner in decided
        ]
    )
    return sum(1 for result in settled if isinstance(result, int))


def short_of(lines: Sequence[tuple[str, int]], shortfall: Shortfall) -> BasketOutOfStock:
    """The refusal naming the lines no set of warehouses can fill, with their quantities."""
    quantity = dict(lines)
    return BasketOutOfStock([(p, quantity[p]) for p in shortfall.product_ids])


def shipments_of(
    allocation: Allocation, directory: WarehouseDirectory, customer: Point
) -> tuple[ShipmentRecord, ...]:
    """One confirmed shipment per warehouse of the allocation, nearest first."""
    return tuple(
        ShipmentRecord(
            warehouse_id,
            delivery_days(directory.distance_km(customer, warehouse_id)),
            "confirmed",
            tuple((p.product_id, p.quantity) for p in allocation.parts_at(warehouse_id)),
        )
        for warehouse_id in allocation.warehouse_ids
    )


def _record(
    request: BasketRequest, allocation: Allocation, directory: WarehouseDirectory, now_ms: int
) -> BasketRecord:
    shipments = shipments_of(allocation, directory, request.customer)
    return BasketRecord(
        lines=tuple((line.product_id, line.quantity) for line in request.lines),
        shipments=shipments,
        quantity=sum(line.quantity for line in request.lines),
        status="confirmed",
        eta_days=max(s.eta_days for s in shipments),
        created_ms=now_ms,
        lat=request.customer.lat,
        lon=request.customer.lon,
        idempotency_key=request.idempotency_key or "",
        seq=1,
        rule=allocation.rule,
    )


def _basket_partition(request: BasketRequest) -> int:
    """Where the basket's record, decision and idempotency key live: by its key when it has one,
    so a retry finds the basket placed before whatever its lines."""
    if request.idempotency_key:
        return keys.partition_of_text(request.idempotency_key)
    return keys.partition_of_product(request.lines[0].product_id)


def _known(directory: WarehouseDirectory, warehouse_ids: Iterable[str]) -> list[str]:
    return [w for w in warehouse_ids if w in directory]


def _raise_first(errors: Iterable[BaseException]) -> NoReturn:
    error = next(iter(errors))
    if isinstance(error, OutcomeUnknown):
        raise StoreUnavailable(error.cause) from error
    raise error
