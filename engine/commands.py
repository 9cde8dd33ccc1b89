"""The engine's border with its Lua scripts: one typed function per script.

Each function owns its script's keys, the encoding of its arguments and the decoding of its reply
into a result or a named domain error, and returns a `scripts.Command` for a `ScriptRunner` to
send (alone, or pipelined with others). No other module builds a script's keys or reads its reply
codes; a reply no branch expects is an error, never "not found".

Every command that changes something carries the ID that makes a second run of it harmless: the
order ID for an order being placed, an operation ID (`engine.ids.new_operation_id`) for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple, TypeAlias

import msgspec

from engine import keys, lifecycle, scripts
from engine.delivery import estimated_delivery
from engine.errors import (
    DomainError,
    HoldNotFound,
    HoldUnavailable,
    IdempotencyKeyReused,
    InvalidTransition,
    NegativeStock,
    OrderMovedOn,
    OrderNotFound,
    OutOfStock,
    UnknownProduct,
    WrongWarehouse,
)
from engine.ids import is_basket_id, partition_of_id
from engine.orders import IDEMPOTENCY_TTL_S, Confirmation, OrderRequest, OrderStatus
from engine.records import (
    BasketRecord,
    OrderRecord,
    ShipmentRecord,
    decode_basket_record,
    decode_record,
    encode_basket_record,
    encode_record,
    new_record_pieces,
)

OPERATION_TTL_S: Final = scripts.OPERATION_TTL_S


@dataclass(frozen=True, slots=True)
class ArchivedCopy:
    """An order's record as read from PostgreSQL (its only home once its hot window passed), and
    when it was read: a command on the order carries it, and the script uses it when the order
    is no longer in Redis (lua/includes/order_record.lua, read_or_restore)."""

    record: OrderRecord | BasketRecord
    read_ms: int


class StaleCopy(Exception):
    """The script refused an archived copy read too long ago: read it again and resend."""


def _copy_args(copy: ArchivedCopy | None) -> list[scripts.Arg]:
    if copy is None:
        return ["", 0]
    record = copy.record
    if isinstance(record, BasketRecord):
        return [encode_basket_record(record), copy.read_ms]
    return [encode_record(record), copy.read_ms]


def _raise_order_refusal(reply: Any, order_id: str, wanted: str, warehouse_id: str = "") -> None:
    """Raise the named error for a refusal any command on an order (or a basket) may answer:
    not in a status `wanted` may follow, another warehouse's, changed since it was read, not
    found, or its archived copy too old. Returns for any other reply."""
    match reply:
        case ["bad_state", status]:
            raise InvalidTransition(order_id, str(status), wanted)
        case ["wrong_warehouse", _holder]:
            raise WrongWarehouse(order_id, warehouse_id)
        case ["moved_on", seq]:
            raise OrderMovedOn(order_id, int(seq))
        case ["not_found"]:
            raise OrderNotFound(order_id)
        case ["stale_copy"]:
            raise StaleCopy(order_id)


class UnexpectedReply(Exception):
    """A script answered something its command does not know: a bug, never a domain answer."""

    def __init__(self, script: str, reply: Any) -> None:
        super().__init__(f"unexpected reply from {script}.lua: {reply!r}")


# --- placing orders: lua/place_orders.lua ---


class Attempt(msgspec.Struct, frozen=True, gc=False):
    """One order on its way to `lua/place_orders.lua`: its ID, the warehouses to try in order.
    A struct, as engine.orders' per-order value objects are."""

    order_id: str
    partition: int
    request: OrderRequest
    candidates: tuple[tuple[str, int], ...]  # (warehouse_id, delivery_days), nearest first


@dataclass(frozen=True, slots=True)
class StockBeyondRings:
    """No candidate had the stock, these other warehouses do: rank them and ask again."""

    warehouse_ids: list[str]


PlaceOutcome = Confirmation | StockBeyondRings | DomainError


def place_orders(
    now_ms: int, attempts: Sequence[Attempt], idempotency_ttl_s: int = IDEMPOTENCY_TTL_S
) -> scripts.Command[list[PlaceOutcome]]:
    """One call for attempts of one partition; one outcome per attempt, in order. An attempt
    whose order ID is already recorded gets what was decided for it then."""
    partition = attempts[0].partition
    script_keys = [keys.stream(partition)]
    idempotency_keys: list[str] = []
    for attempt in attempts:
        request = attempt.request
        script_keys += [
            keys.stock(partition, request.product_id),
            keys.order(partition, attempt.order_id),
        ]
        if request.idempotency_key:
            idempotency_keys.append(
                keys.idempotency(partition, request.product_id, request.idempotency_key)
            )
    orders = [value for attempt in attempts for value in _wire_order(attempt, now_ms)]  # flat

    def decode(reply: Any) -> list[PlaceOutcome]:
        if not isinstance(reply, list) or len(reply) != len(attempts):
            raise UnexpectedReply("place_orders", reply)
        return [_place_outcome(a, one, now_ms) for a, one in zip(attempts, reply, strict=True)]

    args: list[scripts.Arg] = [now_ms, idempotency_ttl_s, msgspec.msgpack.encode(orders)]
    return scripts.Command(scripts.PLACE_ORDERS, script_keys + idempotency_keys, args, decode)


# orderId, quantity, idempotencyKey, fingerprint, recordHead, recordMiddle, recordTail,
# candidates: one order's values in a place call (lua/includes/confirm_order.lua, ORDER_FIELDS).
WireOrder: TypeAlias = tuple[str, int, str, str, str, str, str, str]

# Delivery days a candidate can carry: lua/includes/candidates.lua reads at most four digits.
MAX_DELIVERY_DAYS: Final = 9999


class _CandidateTexts(dict[tuple[str, int], str]):
    """Each candidate's text, 'warehouseId days', by candidate: there are few (warehouses times
    the delivery days they are ever at), and looking one up costs less than formatting it, for
    every candidate of every order. Checked once, when first met: the script gives each placed
    order the number of its candidate, so every candidate must read as one there."""

    def __missing__(self, candidate: tuple[str, int]) -> str:
        warehouse_id, days = candidate
        if not 0 <= days <= MAX_DELIVERY_DAYS or " " in warehouse_id or "," in warehouse_id:
            raise ValueError(f"a candidate the script cannot read: {candidate!r}")
        text = self[candidate] = f"{warehouse_id} {days}"
        return text


_candidate_texts = _CandidateTexts()


def candidates_text(candidates: Sequence[tuple[str, int]]) -> str:
    """(warehouse ID, delivery days) nearest first, as every script that takes candidates reads
    them (lua/includes/candidates.lua)."""
    return ",".join([_candidate_texts[candidate] for candidate in candidates])


def _wire_order(attempt: Attempt, now_ms: int) -> WireOrder:
    """One order's values as lua/place_orders.lua and lua/place_from_hold.lua take them (a call's
    orders one after another in one flat array): what the script reads as values, the record it
    would write in pieces, the candidates as one text that the script reads only as far as it
    needs (most orders stop at their first)."""
    request = attempt.request
    idempotency_key = request.idempotency_key or ""
    record = new_record_pieces(
        request.product_id,
        request.quantity,
        now_ms,
        request.customer.lat,
        request.customer.lon,
        idempotency_key,
    )
    return (
        attempt.order_id,
        request.quantity,
        idempotency_key,
        # Compared only under an idempotency key: not sent (nor built) for an order without one.
        request.fingerprint() if idempotency_key else "",
        *record,
        candidates_text(attempt.candidates),
    )


def place_from_hold(
    now_ms: int, attempt: Attempt, hold_id: str, idempotency_ttl_s: int = IDEMPOTENCY_TTL_S
) -> scripts.Command[PlaceOutcome]:
    """Place one order with the units of a hold; its one candidate is the hold's warehouse."""
    partition, request = attempt.partition, attempt.request
    order_key = keys.order(partition, attempt.order_id)
    idem = request.idempotency_key

    def decode(reply: Any) -> PlaceOutcome:
        match reply:
            case ["hold_unavailable", why]:
                return HoldUnavailable(hold_id, str(why))
        return _place_outcome(attempt, reply, now_ms)

    return scripts.Command(
        scripts.PLACE_FROM_HOLD,
        [
            keys.stream(partition),
            keys.stock(partition, request.product_id),
            order_key,
            # At a fixed place: without a key the order key stands in, never read then.
            keys.idempotency(partition, request.product_id, idem) if idem else order_key,
            keys.hold(partition, hold_id),
            keys.hold_expiries(partition),
        ],
        [
            now_ms,
            idempotency_ttl_s,
            msgspec.msgpack.encode(_wire_order(attempt, now_ms)),
            hold_id,
            request.product_id,
        ],
        decode,
    )


def _place_outcome(attempt: Attempt, reply: Any, now_ms: int) -> PlaceOutcome:
    """`now_ms`: the call's, which a confirmation it made was created at."""
    request = attempt.request
    match reply:
        case int() if type(reply) is int and 1 <= reply <= len(attempt.candidates):
            warehouse_id, days = attempt.candidates[reply - 1]
            return _confirmation(attempt.order_id, warehouse_id, days, now_ms, False)
        case ["ok", order_id, warehouse_id, days, created_ms, replayed, _seq]:
            return _confirmation(
                str(order_id), str(warehouse_id), int(days), int(created_ms), bool(int(replayed))
            )
        case ["far", *warehouse_ids]:
            return StockBeyondRings([str(w) for w in warehouse_ids])
        case ["out_of_stock"]:
            return OutOfStock(request.product_id, request.quantity)
        case ["unknown_product"]:
            return UnknownProduct(request.product_id)
        case ["key_conflict"]:
            return IdempotencyKeyReused(request.idempotency_key or "")
    raise UnexpectedReply("place_orders", reply)


def _confirmation(
    order_id: str, warehouse_id: str, days: int, created_ms: int, replayed: bool
) -> Confirmation:
    return Confirmation(
        order_id=order_id,
        warehouse_id=warehouse_id,
        estimated_delivery=estimated_delivery(created_ms, days),
        created_at=datetime.fromtimestamp(created_ms / 1000, UTC),
        replayed=replayed,
    )


# --- stock: lua/set_stock.lua, lua/hold.lua, lua/release_holds.lua, lua/read_stock.lua ---


@dataclass(frozen=True, slots=True)
class StockSnapshot:
    """Stock hashes of one partition's products, read in one step with how far its stream was."""

    # Entries ever added to the partition's stream: a later stock change has a larger count.
    position: int
    last_entry_id: str  # the stream's last entry ID then: every event up to it is in the hashes
    hashes: dict[str, dict[str, str]]  # product -> its stock hash; products without one left out


def read_stock(partition: int, product_ids: Sequence[str]) -> scripts.Command[StockSnapshot]:
    """The products' stock and the position that orders it; every product must be of
    `partition` (one script call reads one slot)."""
    strays = [p for p in product_ids if keys.partition_of_product(p) != partition]
    if strays:
        raise ValueError(f"products {strays} are not of partition {partition}")

    def decode(reply: Any) -> StockSnapshot:
        if not isinstance(reply, list) or len(reply) != 2 + len(product_ids):
            raise UnexpectedReply("read_stock", reply)
        added, last_id, *flat_hashes = reply
        hashes = {
            product_id: dict(zip(flat[::2], flat[1::2], strict=True))
            for product_id, flat in zip(product_ids, flat_hashes, strict=True)
            if flat
        }
        return StockSnapshot(int(added), str(last_id), hashes)

    return scripts.Command(
        scripts.READ_STOCK,
        [keys.stream(partition), *(keys.stock(partition, p) for p in product_ids)],
        [],
        decode,
    )


def set_stock(
    operation_id: str, product_id: str, warehouse_id: str, level: int, reason: str
) -> scripts.Command[int]:
    """Set one level to `level` (>= 0); the result is the new level."""
    return _stock_change(operation_id, product_id, warehouse_id, "set", level, reason)


def adjust_stock(
    operation_id: str, product_id: str, warehouse_id: str, delta: int, reason: str
) -> scripts.Command[int]:
    """Add `delta` (may be negative) to one level, never below zero (NegativeStock)."""
    return _stock_change(operation_id, product_id, warehouse_id, "adjust", delta, reason)


def _stock_change(
    operation_id: str, product_id: str, warehouse_id: str, mode: str, amount: int, reason: str
) -> scripts.Command[int]:
    """`amount`: the new level (`set`) or the delta (`adjust`)."""
    partition = keys.partition_of_product(product_id)

    def decode(reply: Any) -> int:
        match reply:
            # With a version: remembered by a set_stock.lua before the stream ordered the stock.
            case ["ok", level] | ["ok", level, _]:
                return int(level)
            case ["negative", level]:
                raise NegativeStock(product_id, warehouse_id, int(level))
        raise UnexpectedReply("set_stock", reply)

    return scripts.Command(
        scripts.SET_STOCK,
        [
            keys.stream(partition),
            keys.stock(partition, product_id),
            keys.operation(partition, operation_id),
        ],
        [product_id, warehouse_id, mode, amount, reason, OPERATION_TTL_S],
        decode,
    )


class HeldStock(NamedTuple):
    level: int  # the warehouse's level after the hold
    expires_ms: int


def hold_stock(
    hold_id: str,
    product_id: str,
    warehouse_id: str,
    quantity: int,
    now_ms: int,
    ttl_ms: int,
    owner_id: str = "",
) -> scripts.Command[HeldStock]:
    """Take `quantity` units at one named warehouse until `now_ms + ttl_ms`; the hold ID is the
    operation ID. `owner_id`: the hold is part of that basket (or a shipment's re-route), and
    its owner's decision says whether it stays sold (lua/settle_basket_hold.lua)."""
    partition = keys.partition_of_product(product_id)

    def decode(reply: Any) -> HeldStock:
        match reply:
            case ["ok", level, expires_ms]:
                return HeldStock(int(level), int(expires_ms))
            case ["unknown_product"]:
                raise UnknownProduct(product_id)
            case ["out_of_stock", _level]:
                raise OutOfStock(product_id, quantity, warehouse_id)
        raise UnexpectedReply("hold", reply)

    return scripts.Command(
        scripts.HOLD,
        [
            keys.stream(partition),
            keys.stock(partition, product_id),
            keys.hold(partition, hold_id),
            keys.hold_expiries(partition),
            keys.operation(partition, hold_id),
        ],
        [hold_id, product_id, warehouse_id, quantity, now_ms, ttl_ms, OPERATION_TTL_S, owner_id],
        decode,
    )


def release_hold(operation_id: str, hold_id: str, product_id: str) -> scripts.Command[int]:
    """Give a hold's units back before it expires; the result is the warehouse's new level."""
    partition = keys.partition_of_product(product_id)

    def decode(reply: Any) -> int:
        match reply:
            case ["ok", level]:
                return int(level)
            case ["not_found"]:
                raise HoldNotFound(hold_id)
        raise UnexpectedReply("release_hold", reply)

    return scripts.Command(
        scripts.RELEASE_HOLD,
        [
            keys.stream(partition),
            keys.hold(partition, hold_id),
            keys.hold_expiries(partition),
            keys.stock(partition, product_id),
            keys.operation(partition, operation_id),
        ],
        [hold_id, product_id, OPERATION_TTL_S],
        decode,
    )


def release_expired_holds(
    partition: int, now_ms: int, holds: Sequence[tuple[str, str | None]]
) -> scripts.Command[int]:
    """Give back the units of these (hold ID, product ID) holds of one partition if they have
    expired by `now_ms`; the result is how many were released. Naturally idempotent: a released
    hold is gone."""
    script_keys = [keys.stream(partition), keys.hold_expiries(partition)]
    for hold_id, product_id in holds:
        # A hold with no hash left is only removed from the set: any key of the slot will do.
        stock_key = (
            keys.stock(partition, product_id) if product_id else keys.hold(partition, hold_id)
        )
        script_keys += [keys.hold(partition, hold_id), stock_key]

    def decode(reply: Any) -> int:
        if not isinstance(reply, int):
            raise UnexpectedReply("release_holds", reply)
        return reply

    args: list[scripts.Arg] = [now_ms, *(hold_id for hold_id, _ in holds)]
    return scripts.Command(scripts.RELEASE_HOLDS, script_keys, args, decode)


# --- baskets: lua/commit_basket.lua, lua/resolve_basket.lua, lua/settle_basket_hold.lua ---


class BasketAborted(Exception):
    """The basket's decision was already `aborted` (the sweeper gave up on its holds): it was not
    placed, and its holds go back."""


class BasketDuplicate(Exception):
    """Another request under the same idempotency key, for the same basket, was committed
    first: that basket is the answer, and this one's holds go back."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"basket {order_id!r} was placed under this key first")
        self.order_id = order_id


# What a reply (or Redis refusing a command before it ran) says was not applied: the scripts
# check everything before their first write, so a refusal wrote nothing. Any other failure
# leaves the outcome unknown.
NOT_WRITTEN: Final = (
    DomainError,
    StaleCopy,
    BasketAborted,
    BasketDuplicate,
    scripts.ScriptRefused,
)

BasketDecision = Literal["committed", "aborted"]
HoldSettlement = Literal["commit", "abort"]


def commit_basket(
    order_id: str,
    record: BasketRecord,
    fingerprint: str,
    idempotency_ttl_s: int,
) -> scripts.Command[BasketRecord]:
    """Commit a basket whose lines are all held; the result is its record as stored (a resend
    gets the record the first send wrote)."""
    partition = _order_partition(order_id)
    record_key = keys.basket(partition, order_id)
    idem = record.idempotency_key

    def decode(reply: Any) -> BasketRecord:
        match reply:
            case ["ok", stored]:
                return decode_basket_record(stored)
            case ["aborted"]:
                raise BasketAborted(order_id)
            case ["key_conflict"]:
                raise IdempotencyKeyReused(idem)
            case ["duplicate", other]:
                raise BasketDuplicate(str(other))
        raise UnexpectedReply("commit_basket", reply)

    return scripts.Command(
        scripts.COMMIT_BASKET,
        [
            keys.stream(partition),
            record_key,
            keys.basket_decision(partition, order_id),
            keys.basket_idempotency(partition, idem) if idem else record_key,
        ],
        [
            order_id,
            encode_basket_record(record),
            f"{order_id}|{fingerprint}" if idem else "",
            idempotency_ttl_s,
        ],
        decode,
    )


def resolve_basket(order_id: str, decision_ttl_s: int) -> scripts.Command[BasketDecision]:
    """The basket's decision, made `aborted` now if it was not committed yet."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> BasketDecision:
        match reply:
            case "committed":
                return "committed"
            case "aborted":
                return "aborted"
        raise UnexpectedReply("resolve_basket", reply)

    return scripts.Command(
        scripts.RESOLVE_BASKET,
        [keys.basket_decision(partition, order_id), keys.basket(partition, order_id)],
        [decision_ttl_s],
        decode,
    )


def settle_basket_hold(
    hold_id: str, product_id: str, owner_id: str, settlement: HoldSettlement
) -> scripts.Command[int | None]:
    """Keep (`commit`) or give back (`abort`) one line hold of a decided basket; the result is
    the warehouse's new level when units went back, else None."""
    partition = keys.partition_of_product(product_id)

    def decode(reply: Any) -> int | None:
        match reply:
            case ["kept"] | ["gone"]:
                return None
            case ["returned", level]:
                return int(level)
        raise UnexpectedReply("settle_basket_hold", reply)

    return scripts.Command(
        scripts.SETTLE_BASKET_HOLD,
        [
            keys.stream(partition),
            keys.hold(partition, hold_id),
            keys.hold_expiries(partition),
            keys.stock(partition, product_id),
        ],
        [hold_id, settlement, owner_id],
        decode,
    )


def basket_step(
    operation_id: str,
    order_id: str,
    target: OrderStatus,
    allowed_from: Sequence[OrderStatus],
    now_ms: int,
    *,
    warehouse_id: str = "",
    reason: str = "",
    copy: ArchivedCopy | None = None,
) -> scripts.Command[BasketRecord]:
    """Move the shipment at `warehouse_id` (every shipment that may move, when '') to `target`
    if its status is one of `allowed_from`; the result is the basket's record after it."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> BasketRecord:
        match reply:
            case ["ok", record]:
                return decode_basket_record(record)
        _raise_order_refusal(reply, order_id, target, warehouse_id)
        raise UnexpectedReply("basket_step", reply)

    return scripts.Command(
        scripts.BASKET_STEP,
        [
            keys.stream(partition),
            keys.basket(partition, order_id),
            keys.operation(partition, operation_id),
        ],
        [
            order_id,
            target,
            now_ms,
            reason,
            warehouse_id,
            OPERATION_TTL_S,
            *_copy_args(copy),
            msgspec.json.encode(lifecycle.PROGRESS),
            *allowed_from,
        ],
        decode,
    )


def cancel_basket(
    operation_id: str, order_id: str, now_ms: int, copy: ArchivedCopy | None = None
) -> scripts.Command[BasketRecord]:
    """Cancel a basket none of whose shipments started, its parts written down to go back
    (return_basket_units); the result is its record."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> BasketRecord:
        match reply:
            case ["ok", record]:
                return decode_basket_record(record)
        _raise_order_refusal(reply, order_id, "cancelled")
        raise UnexpectedReply("cancel_basket", reply)

    return scripts.Command(
        scripts.CANCEL_BASKET,
        [
            keys.stream(partition),
            keys.basket(partition, order_id),
            keys.operation(partition, operation_id),
            keys.basket_returns_pending(partition),
            keys.basket_returns(partition, order_id),
        ],
        [order_id, now_ms, OPERATION_TTL_S, *_copy_args(copy)],
        decode,
    )


def return_basket_units(
    order_id: str, part: int, warehouse_id: str, product_id: str, quantity: int, mark_ttl_s: int
) -> scripts.Command[int | None]:
    """Give part number `part` of a cancelled basket back, once; the result is the warehouse's
    new level, or None when the part was given back before."""
    partition = keys.partition_of_product(product_id)

    def decode(reply: Any) -> int | None:
        match reply:
            case ["returned", level]:
                return int(level)
            case ["done"]:
                return None
        raise UnexpectedReply("return_basket_units", reply)

    return scripts.Command(
        scripts.RETURN_BASKET_UNITS,
        [
            keys.stream(partition),
            keys.stock(partition, product_id),
            keys.basket_part_returned(partition, order_id, part),
        ],
        [product_id, warehouse_id, quantity, mark_ttl_s],
        decode,
    )


def reroute_shipment(
    order_id: str,
    reroute_id: str,
    from_warehouse_id: str,
    moved_to: Sequence[ShipmentRecord],
    planned_seq: int,
    reason: str,
    now_ms: int,
    copy: ArchivedCopy | None = None,
) -> scripts.Command[BasketRecord]:
    """Move the shipment at `from_warehouse_id` to the shipments `moved_to`, whose lines are
    held under `reroute_id`, if the basket is still at `planned_seq`; the result is its record."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> BasketRecord:
        match reply:
            case ["ok", record]:
                return decode_basket_record(record)
            case ["aborted"]:
                raise BasketAborted(reroute_id)
        _raise_order_refusal(reply, order_id, "re-routed", from_warehouse_id)
        raise UnexpectedReply("reroute_shipment", reply)

    shipments = [[s.warehouse_id, s.eta_days, s.items] for s in moved_to]
    return scripts.Command(
        scripts.REROUTE_SHIPMENT,
        [
            keys.stream(partition),
            keys.basket(partition, order_id),
            keys.basket_decision(partition, reroute_id),
        ],
        [
            order_id,
            from_warehouse_id,
            now_ms,
            reason,
            msgspec.json.encode(shipments),
            planned_seq,
            msgspec.json.encode(lifecycle.PROGRESS),
            *_copy_args(copy),
        ],
        decode,
    )


# --- an order's lifecycle: lua/cancel.lua, lua/transition.lua, lua/reroute.lua ---


def _order_partition(order_id: str) -> int:
    partition = partition_of_id(order_id)
    if partition is None:  # not an ID this system minted
        raise OrderNotFound(order_id)
    return partition


def cancel_order(
    operation_id: str,
    order_id: str,
    product_id: str,
    now_ms: int,
    copy: ArchivedCopy | None = None,
) -> scripts.Command[OrderRecord]:
    """Cancel a confirmed order, its units back at its warehouse; the result is its record."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> OrderRecord:
        match reply:
            case ["ok", record, _level]:
                return decode_record(record)
        _raise_order_refusal(reply, order_id, "cancelled")
        raise UnexpectedReply("cancel", reply)

    return scripts.Command(
        scripts.CANCEL,
        [
            keys.stream(partition),
            keys.order(partition, order_id),
            keys.stock(partition, product_id),
            keys.operation(partition, operation_id),
        ],
        [order_id, product_id, now_ms, OPERATION_TTL_S, *_copy_args(copy)],
        decode,
    )


def transition_order(
    operation_id: str,
    order_id: str,
    target: OrderStatus,
    allowed_from: Sequence[OrderStatus],
    now_ms: int,
    *,
    reason: str = "",
    warehouse_id: str = "",
    expected_seq: int = 0,
    copy: ArchivedCopy | None = None,
) -> scripts.Command[OrderRecord]:
    """Move an order to `target` if its status is one of `allowed_from`, `warehouse_id` (when
    given) holds it and its record is still at `expected_seq` (when not 0)."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> OrderRecord:
        match reply:
            case ["ok", record]:
                return decode_record(record)
        _raise_order_refusal(reply, order_id, target, warehouse_id)
        raise UnexpectedReply("transition", reply)

    return scripts.Command(
        scripts.TRANSITION,
        [
            keys.stream(partition),
            keys.order(partition, order_id),
            keys.operation(partition, operation_id),
        ],
        [
            order_id,
            target,
            now_ms,
            reason,
            warehouse_id,
            expected_seq,
            OPERATION_TTL_S,
            *_copy_args(copy),
            *allowed_from,
        ],
        decode,
    )


def reroute_order(
    operation_id: str,
    order_id: str,
    record: OrderRecord,
    from_warehouse_id: str,
    candidates: Sequence[tuple[str, int]],
    reason: str,
    now_ms: int,
    copy: ArchivedCopy | None = None,
) -> scripts.Command[OrderRecord]:
    """Move an order its warehouse cannot fulfil to the first of `candidates` (warehouse ID,
    delivery days; nearest first) that has its quantity; the result is its new record."""
    partition = _order_partition(order_id)

    def decode(reply: Any) -> OrderRecord:
        match reply:
            case ["ok", updated, _level]:
                return decode_record(updated)
            case ["out_of_stock"]:
                raise OutOfStock(record.product_id, record.quantity)
        _raise_order_refusal(reply, order_id, "re-routed", from_warehouse_id)
        raise UnexpectedReply("reroute", reply)

    return scripts.Command(
        scripts.REROUTE,
        [
            keys.stream(partition),
            keys.order(partition, order_id),
            keys.stock(partition, record.product_id),
            keys.operation(partition, operation_id),
        ],
        [
            order_id,
            record.product_id,
            from_warehouse_id,
            now_ms,
            reason,
            candidates_text(candidates),
            OPERATION_TTL_S,
            *_copy_args(copy),
        ],
        decode,
    )


# --- the hot window: lua/expire_persisted.lua ---


def expire_persisted(
    partition: int, persisted: Sequence[tuple[str, int]], window_ms: int, linger_ms: int
) -> scripts.Command[int]:
    """The orders writer persisted these (order ID, seq) of one partition: each record leaves
    Redis after the hot window (`linger_ms` in a final state) if it is still at that seq. A
    basket's record has its own key, read by the same rule (its status and seq sit where an
    order's do). The result is how many got their expiry."""

    def decode(reply: Any) -> int:
        if not isinstance(reply, int):
            raise UnexpectedReply("expire_persisted", reply)
        return reply

    return scripts.Command(
        scripts.EXPIRE_PERSISTED,
        [
            keys.basket(partition, order_id)
            if is_basket_id(order_id)
            else keys.order(partition, order_id)
            for order_id, _ in persisted
        ],
        [window_ms, linger_ms, *(seq for _, seq in persisted)],
        decode,
    )
