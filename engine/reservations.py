"""Placing an order: rank the warehouses, then let `lua/reserve.lua` decide atomically in Redis.

Concurrent orders are micro-batched: one EVALSHA per partition carries every order of that
partition, and one pipeline carries every partition, so a batch costs one round trip.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from engine import keys, scripts
from engine.batching import MicroBatcher
from engine.delivery import delivery_days, estimated_delivery
from engine.errors import (
    DomainError,
    IdempotencyKeyReused,
    InvalidTransition,
    OrderNotFound,
    OutOfStock,
    UnknownProduct,
    WrongWarehouse,
)
from engine.ids import new_id
from engine.live_orders import read_record
from engine.orders import IDEMPOTENCY_TTL_S, Confirmation, Order, OrderRequest
from engine.records import decode_record
from engine.warehouses import WarehouseDirectory
from geo.rings import Point, RankedSite
from stores.redis import RedisClient

ORDERS_PER_SCRIPT_CALL: Final = 64
ORDERS_PER_BATCH: Final = 1024
BATCHES_IN_FLIGHT: Final = 4
# A 'far' answer lists warehouses past the rings that had stock; by the next call another order
# may have taken it, so ask again a bounded number of times before calling it out of stock.
FAR_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class Attempt:
    """One order on its way to `lua/reserve.lua`: its ID and the warehouses to try, in order."""

    order_id: str
    partition: int
    request: OrderRequest
    candidates: tuple[tuple[str, int], ...]  # (warehouse_id, delivery_days), nearest first


@dataclass(frozen=True, slots=True)
class _StockBeyondRings:
    warehouse_ids: list[str]


_Outcome = Confirmation | _StockBeyondRings
DirectoryReloader = Callable[[], Awaitable[WarehouseDirectory]]


class ReservationEngine:
    """Places orders. `batched=False` sends one EVALSHA per order (the baseline it is measured
    against); the decision and every reply are the same either way."""

    def __init__(
        self,
        redis: RedisClient,
        directory: WarehouseDirectory,
        reload_directory: DirectoryReloader,
        *,
        batched: bool = True,
        replica_acks: scripts.ReplicaAcks | None = None,
    ) -> None:
        self._redis = redis
        self.replica_acks = replica_acks
        self.directory = directory
        self._reload_directory = reload_directory
        self._batcher: MicroBatcher[Attempt, _Outcome] | None = (
            MicroBatcher(self._send, ORDERS_PER_BATCH, BATCHES_IN_FLIGHT) if batched else None
        )

    def first_attempt(self, request: OrderRequest) -> Attempt:
        """A new order ID and the warehouses within the ring walk, nearest first."""
        partition = keys.partition_of_product(request.product_id)
        ranked = self.directory.nearest_first(request.customer)
        order_id = new_id(partition, owner_tag=request.owner_tag)
        return Attempt(order_id, partition, request, _with_days(ranked))

    async def place(self, request: OrderRequest) -> Confirmation:
        attempt = self.first_attempt(request)
        order_id, partition = attempt.order_id, attempt.partition
        outcome = await self._attempt(attempt)
        for _ in range(FAR_ATTEMPTS):
            if isinstance(outcome, Confirmation):
                return outcome
            far = await self._rank_beyond_rings(request, outcome.warehouse_ids)
            outcome = await self._attempt(Attempt(order_id, partition, request, _with_days(far)))
        if isinstance(outcome, Confirmation):
            return outcome
        raise OutOfStock(request.product_id, request.quantity)

    async def reroute(self, order_id: str, from_warehouse_id: str, reason: str) -> Order:
        """Move an order its warehouse cannot fulfil to the nearest other warehouse with the
        stock (every known warehouse is a candidate, ring walk first), atomically in Redis."""
        live = await read_record(self._redis, order_id)
        if live is None:
            raise OrderNotFound(order_id)
        partition, record = live
        customer = Point(record.lat, record.lon)
        ranked = self.directory.nearest_first(customer)
        in_rings = {site_id for site_id, _ in ranked}
        rest = [w.warehouse_id for w in self.directory.all() if w.warehouse_id not in in_rings]
        candidates = [
            (warehouse_id, days)
            for warehouse_id, days in _with_days(
                [*ranked, *self.directory.by_distance(customer, rest)]
            )
            if warehouse_id != from_warehouse_id
        ]
        reply = await scripts.call(
            self._redis,
            scripts.REROUTE,
            [
                keys.stream(partition),
                keys.order(partition, order_id),
                keys.stock(partition, record.product_id),
            ],
            [
                order_id,
                record.product_id,
                from_warehouse_id,
                int(time.time() * 1000),
                reason,
                msgspec.json.encode([[w for w, _ in candidates], [d for _, d in candidates]]),
            ],
        )
        match reply[0]:
            case "ok":
                return decode_record(reply[1]).to_order(order_id)
            case "out_of_stock":
                raise OutOfStock(record.product_id, record.quantity)
            case "bad_state":
                raise InvalidTransition(order_id, reply[1], "re-routed")
            case "wrong_warehouse":
                raise WrongWarehouse(order_id, from_warehouse_id)
            case _:
                raise OrderNotFound(order_id)

    async def _rank_beyond_rings(
        self, request: OrderRequest, warehouse_ids: list[str]
    ) -> list[RankedSite]:
        if any(w not in self.directory for w in warehouse_ids):
            # Stock at a warehouse this worker has not heard of yet: it was just created.
            self.directory = await self._reload_directory()
        return self.directory.by_distance(request.customer, warehouse_ids)

    async def _attempt(self, attempt: Attempt) -> _Outcome:
        if self._batcher is not None:
            return await self._batcher.submit(attempt)
        now_ms = int(time.time() * 1000)
        call = (scripts.RESERVE, *reserve_call(now_ms, [attempt]))
        if self.replica_acks is None:
            reply = await scripts.call(self._redis, *call)
        else:  # WAIT must follow on the same connection: a pipeline of one call
            (reply,) = await scripts.call_pipelined(self._redis, [call], self.replica_acks)
            if isinstance(reply, BaseException):
                raise reply
        outcome = _outcome(attempt, reply[0])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def _send(self, attempts: list[Attempt]) -> list[_Outcome | BaseException]:
        by_partition: defaultdict[int, list[int]] = defaultdict(list)
        for i, attempt in enumerate(attempts):
            by_partition[attempt.partition].append(i)
        groups = [
            idx[start : start + ORDERS_PER_SCRIPT_CALL]
            for idx in by_partition.values()
            for start in range(0, len(idx), ORDERS_PER_SCRIPT_CALL)
        ]
        now_ms = int(time.time() * 1000)
        calls = [
            (scripts.RESERVE, *reserve_call(now_ms, [attempts[i] for i in group]))
            for group in groups
        ]
        replies = await scripts.call_pipelined(self._redis, calls, self.replica_acks)
        results: list[_Outcome | BaseException] = [RuntimeError("no reply")] * len(attempts)
        for group, reply in zip(groups, replies, strict=True):
            for i, one in zip(group, _split(reply, len(group)), strict=True):
                results[i] = one if isinstance(one, BaseException) else _outcome(attempts[i], one)
        return results


def _with_days(ranked: Sequence[RankedSite]) -> tuple[tuple[str, int], ...]:
    return tuple((site_id, delivery_days(km)) for site_id, km in ranked)


def reserve_call(now_ms: int, attempts: Sequence[Attempt]) -> tuple[list[str], list[scripts.Arg]]:
    """KEYS and ARGV of one `lua/reserve.lua` call for attempts of one partition."""
    partition = attempts[0].partition
    script_keys = [keys.stream(partition)]
    orders: list[tuple[object, ...]] = []
    for attempt in attempts:
        request = attempt.request
        order_key = keys.order(partition, attempt.order_id)
        idem = request.idempotency_key
        script_keys += [
            keys.stock(partition, request.product_id),
            order_key,
            keys.idempotency(partition, idem) if idem else order_key,
        ]
        orders.append(
            (
                attempt.order_id,
                request.product_id,
                request.quantity,
                idem or "",
                request.fingerprint(),
                # As text: Lua's cjson keeps 14 significant digits, and a location must come back
                # exactly as it was sent.
                repr(request.customer.lat),
                repr(request.customer.lon),
                [warehouse_id for warehouse_id, _ in attempt.candidates],
                [days for _, days in attempt.candidates],
            )
        )
    return script_keys, [now_ms, IDEMPOTENCY_TTL_S, msgspec.json.encode(orders)]


def _split(reply: Any, count: int) -> list[Any]:
    if isinstance(reply, BaseException):
        return [reply] * count
    return list(reply)


def _outcome(attempt: Attempt, reply: list[Any]) -> _Outcome | DomainError:
    """The reply of one order as a result, or as the domain error to raise to its caller."""
    request = attempt.request
    match reply[0]:
        case "ok":
            created_ms = int(reply[4])
            return Confirmation(
                order_id=reply[1],
                warehouse_id=reply[2],
                estimated_delivery=estimated_delivery(created_ms, int(reply[3])),
                created_at=datetime.fromtimestamp(created_ms / 1000, UTC),
                replayed=bool(int(reply[5])),
            )
        case "far":
            return _StockBeyondRings(list(reply[1:]))
        case "out_of_stock":
            return OutOfStock(request.product_id, request.quantity)
        case "unknown_product":
            return UnknownProduct(request.product_id)
        case "key_conflict":
            return IdempotencyKeyReused(request.idempotency_key or "")
    raise RuntimeError(f"unexpected reply from reserve.lua: {reply!r}")
