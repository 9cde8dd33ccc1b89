"""The Lua scripts, loaded into a real Redis and called through their commands (engine.commands):
the edge cases of each, resends of the same operation, and arguments refused before any write."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgspec
import pytest

from engine import commands, keys, scripts
from engine.commands import Attempt, StockBeyondRings
from engine.errors import (
    IdempotencyKeyReused,
    InvalidTransition,
    NegativeStock,
    OrderMovedOn,
    OrderNotFound,
    OutOfStock,
    UnknownProduct,
    WrongWarehouse,
)
from engine.events import OrdersConfirmed, decode_event
from engine.ids import new_id
from engine.inventory import LEGACY_VERSION_FIELD, Inventory, StockLevel, levels_in
from engine.orders import Confirmation, OrderRequest
from engine.records import OrderRecord, decode_record
from geo.distance import Point
from stores.redis import RedisClient
from tests.conftest import product_in_partition_of, runner_for

P = keys.partition_of_product("sku")
STREAM = keys.stream(P)
STOCK = keys.stock(P, "sku")
NOW_MS = 1_700_000_000_000
CUSTOMER = Point(48.85, 2.35)


@pytest.fixture
def runner(redis: RedisClient) -> scripts.ScriptRunner:
    return runner_for(redis)


def attempt(
    quantity: int,
    candidates: list[tuple[str, int]],
    *,
    product: str = "sku",
    idem: str | None = None,
    order_id: str | None = None,
) -> Attempt:
    request = OrderRequest(product, quantity, CUSTOMER, idempotency_key=idem)
    return Attempt(order_id or new_id(P), P, request, tuple(candidates))


async def place_orders(runner: scripts.ScriptRunner, *attempts: Attempt) -> list[Any]:
    return await runner.run(commands.place_orders(NOW_MS, attempts))


async def set_stock(runner: scripts.ScriptRunner, warehouse: str, level: int) -> int:
    return await runner.run(
        commands.set_stock(f"set-{warehouse}-{level}", "sku", warehouse, level, "t")
    )


async def test_takes_exact_stock_and_then_refuses(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 3)
    (placed,) = await place_orders(runner, attempt(3, [("w1", 2)]))
    assert isinstance(placed, Confirmation) and placed.warehouse_id == "w1"
    assert await redis.hget(STOCK, "w1") == "0"
    refused = attempt(1, [("w1", 2)])
    assert [type(r) for r in await place_orders(runner, refused)] == [OutOfStock]
    assert not await redis.exists(keys.order(P, refused.order_id))


async def test_nearest_candidate_with_enough_stock_wins(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    for warehouse, level in (("near", 1), ("mid", 5), ("far", 50)):
        await set_stock(runner, warehouse, level)
    (placed,) = await place_orders(runner, attempt(2, [("near", 1), ("mid", 2), ("far", 3)]))
    assert placed.warehouse_id == "mid" and not placed.replayed
    assert await redis.hmget(STOCK, ["near", "mid", "far"]) == ["1", "3", "50"]


async def test_zero_stock_everywhere_appends_nothing(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 0)
    await set_stock(runner, "w2", 0)
    before = await redis.xlen(STREAM)
    (reply,) = await place_orders(runner, attempt(1, [("w1", 1), ("w2", 1)]))
    assert isinstance(reply, OutOfStock)
    assert await redis.xlen(STREAM) == before


async def test_unknown_product_changes_nothing(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    (reply,) = await place_orders(runner, attempt(1, [("w1", 1)], product="ghost"))
    assert isinstance(reply, UnknownProduct)
    assert await redis.dbsize() == 0


async def test_stock_only_past_the_candidates_is_reported_not_taken(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "near", 0)
    await set_stock(runner, "remote", 4)
    await set_stock(runner, "tiny", 1)
    assert await place_orders(runner, attempt(2, [("near", 1)])) == [StockBeyondRings(["remote"])]
    assert await redis.hget(STOCK, "remote") == "4"


async def test_a_resent_order_answers_the_same_and_takes_stock_once(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 10)
    order = attempt(3, [("w1", 2)])
    (first,) = await place_orders(runner, order)
    events = await redis.xlen(STREAM)
    (again,) = await place_orders(runner, order)  # the same order ID: a resend after a lost reply
    assert again == first and not again.replayed
    assert await redis.hget(STOCK, "w1") == "7"
    assert await redis.xlen(STREAM) == events


async def test_retried_idempotency_key_gets_the_same_answer_once(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 10)
    (first,) = await place_orders(runner, attempt(2, [("w1", 3)], idem="k"))
    events = await redis.xlen(STREAM)
    retry = attempt(2, [("w1", 3)], idem="k")
    (replayed,) = await place_orders(runner, retry)
    assert replayed.order_id == first.order_id and replayed.replayed
    assert replayed.estimated_delivery == first.estimated_delivery
    assert await redis.hget(STOCK, "w1") == "8"
    assert await redis.xlen(STREAM) == events
    assert not await redis.exists(keys.order(P, retry.order_id))


async def test_idempotency_key_with_another_request_is_refused(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 10)
    await place_orders(runner, attempt(2, [("w1", 3)], idem="k"))
    (reply,) = await place_orders(runner, attempt(5, [("w1", 3)], idem="k"))
    assert isinstance(reply, IdempotencyKeyReused)
    assert await redis.hget(STOCK, "w1") == "8"


async def test_a_batch_decides_in_order_and_a_retry_inside_it_replays(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 3)
    first = attempt(2, [("w1", 1)], idem="k")
    replies = await place_orders(
        runner,
        first,
        attempt(2, [("w1", 1)]),
        attempt(2, [("w1", 1)], idem="k"),
        attempt(1, [("w1", 1)]),
    )
    assert [type(r) for r in replies] == [Confirmation, OutOfStock, Confirmation, Confirmation]
    assert replies[2].order_id == first.order_id and replies[2].replayed
    assert await redis.hget(STOCK, "w1") == "0"


async def test_confirmation_records_the_order_and_appends_one_event(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 5)
    order = attempt(2, [("w1", 4)], idem="k")
    await place_orders(runner, order)
    record = await redis.get(keys.order(P, order.order_id))
    assert decode_record(record) == OrderRecord(
        "sku", "w1", 2, "confirmed", 4, NOW_MS, 48.85, 2.35, "k", 1
    )
    ((_, event),) = await redis.xrevrange(STREAM, count=1)
    assert event == {
        "type": "orders.confirmed",
        "orders": f'[["{order.order_id}",{record},3]]',
    }
    assert await redis.hlen(STOCK) == 1  # the level alone: the stream orders the stock


async def test_numbers_are_written_in_whole_digits(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    """Lua's own number-to-text keeps 14 significant digits and then writes an exponent."""
    await set_stock(runner, "w1", 10**15 + 1)
    order = attempt(1, [("w1", 4)])
    (placed,) = await place_orders(runner, order)
    assert isinstance(placed, Confirmation)
    record = await redis.get(keys.order(P, order.order_id))
    ((_, event),) = await redis.xrevrange(STREAM, count=1)
    assert event["orders"] == f'[["{order.order_id}",{record},{10**15}]]'
    assert f",4,{NOW_MS}," in record


async def test_one_event_carries_every_order_a_call_confirmed(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 2)
    first, refused, second = (
        attempt(1, [("w1", 1)]),
        attempt(5, [("w1", 1)]),
        attempt(1, [("w1", 1)]),
    )
    events = await redis.xlen(STREAM)
    await place_orders(runner, first, refused, second)
    assert await redis.xlen(STREAM) == events + 1
    ((_, fields),) = await redis.xrevrange(STREAM, count=1)
    event = decode_event(fields)
    assert isinstance(event, OrdersConfirmed)
    assert [(o.order_id, o.level) for o in event.orders] == [
        (first.order_id, 1),
        (second.order_id, 0),
    ]


async def test_a_resend_finds_its_order_whatever_the_stock_now_is(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    """The first send took the last unit at w1: resent, the order is not out of stock; with
    stock back at w2 only, it takes none there. With its key, it is not a replay either."""
    await set_stock(runner, "w1", 1)
    order = attempt(1, [("w1", 1), ("w2", 2)], idem="k")
    (first,) = await place_orders(runner, order)
    assert await place_orders(runner, order) == [first]
    await set_stock(runner, "w2", 5)
    unkeyed = attempt(1, [("w2", 2), ("w1", 1)])
    (placed,) = await place_orders(runner, unkeyed)
    await set_stock(runner, "w1", 3)
    # Found by the write that would repeat it:
    assert await place_orders(runner, unkeyed) == [placed]
    assert not first.replayed and not placed.replayed
    assert (await redis.hget(STOCK, "w1"), await redis.hget(STOCK, "w2")) == ("3", "4")
    assert await confirmed_orders(redis) == [order.order_id, unkeyed.order_id]


async def confirmed_orders(redis: RedisClient) -> list[str]:
    entries = await redis.xrange(STREAM)
    return [
        o.order_id
        for _, fields in entries
        if isinstance(event := decode_event(fields), OrdersConfirmed)
        for o in event.orders
    ]


async def test_every_stock_change_moves_the_position_read_with_the_stock(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    """lua/read_stock.lua: the inventory writer keeps the state read at the larger position, so
    each change must move it, a call that changed nothing must not, and neither may trimming or
    deleting entries (the writers trim; the last entry may be deleted)."""

    never_stocked = product_in_partition_of("sku")

    async def read() -> commands.StockSnapshot:
        return await runner.run(commands.read_stock(P, ["sku", never_stocked]))

    assert await read() == commands.StockSnapshot(0, "0-0", {})  # no stream yet
    await set_stock(runner, "w1", 5)
    snapshots = [await read()]
    await place_orders(runner, attempt(2, [("w1", 1)]))
    snapshots.append(await read())
    await place_orders(runner, attempt(9, [("w1", 1)]))  # refused: nothing changed
    assert await read() == snapshots[-1]
    hold_id = new_id(P)
    await runner.run(commands.hold_stock(hold_id, "sku", "w1", 1, NOW_MS, 60_000))
    snapshots.append(await read())
    await runner.run(commands.release_hold("op-release", hold_id, "sku"))
    snapshots.append(await read())
    assert [s.hashes for s in snapshots] == [{"sku": {"w1": level}} for level in "5323"]
    positions = [s.position for s in snapshots]
    assert positions == sorted(set(positions))  # strictly increasing
    (last_id, _), *_ = await redis.xrevrange(STREAM, count=1)
    assert snapshots[-1].last_entry_id == last_id
    await redis.xdel(STREAM, last_id)
    assert await read() == snapshots[-1]
    await redis.xtrim(STREAM, maxlen=0)
    assert await read() == snapshots[-1]
    await set_stock(runner, "w1", 7)
    assert (await read()).position > positions[-1]


def test_reading_stock_takes_the_products_of_one_partition_only() -> None:
    other = next(f"sku-{i}" for i in range(100) if keys.partition_of_product(f"sku-{i}") != P)
    with pytest.raises(ValueError, match="partition"):
        commands.read_stock(P, ["sku", other])


async def test_set_and_adjust_stock_never_go_negative_and_apply_once(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    assert await runner.run(commands.set_stock("op-1", "sku", "w1", 5, "t")) == 5
    adjust = commands.adjust_stock("op-2", "sku", "w1", -2, "t")
    assert await runner.run(adjust) == 3
    assert await runner.run(adjust) == 3  # resent: the stored answer, not 1
    with pytest.raises(NegativeStock):
        await runner.run(commands.adjust_stock("op-3", "sku", "w1", -4, "t"))
    assert await redis.hget(STOCK, "w1") == "3"
    assert await redis.xlen(STREAM) == 2  # the resend and the refusal appended nothing


async def test_hold_takes_units_at_the_named_warehouse_once(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 3)
    hold = commands.hold_stock("h1", "sku", "w1", 2, 1_000, 60_000)
    assert await runner.run(hold) == (1, 61_000)
    assert await runner.run(hold) == (1, 61_000)  # resent: held once
    assert await redis.hget(STOCK, "w1") == "1"
    with pytest.raises(OutOfStock):
        await runner.run(commands.hold_stock("h2", "sku", "w1", 2, 1_000, 60_000))
    with pytest.raises(UnknownProduct):
        await runner.run(commands.hold_stock("h3", "ghost", "w1", 1, 1_000, 60_000))
    assert await redis.zscore(keys.hold_expiries(P), "h1") == 61_000


@pytest.mark.parametrize("status", ["cancelled", "shipped"])
async def test_cancel_releases_units_once_and_only_when_confirmed(
    runner: scripts.ScriptRunner, redis: RedisClient, status: str
) -> None:
    await set_stock(runner, "w1", 5)
    order = attempt(2, [("w1", 1)])
    await place_orders(runner, order)
    cancel = commands.cancel_order("op-c", order.order_id, "sku", NOW_MS)
    assert (await runner.run(cancel)).status == "cancelled"
    assert (await runner.run(cancel)).status == "cancelled"  # resent: released once
    assert await redis.hget(STOCK, "w1") == "5"
    key = keys.order(P, order.order_id)
    record = json.loads(await redis.get(key))
    await redis.set(key, json.dumps([*record[:3], status, *record[4:]]))
    with pytest.raises(InvalidTransition):
        await runner.run(commands.cancel_order("op-d", order.order_id, "sku", NOW_MS))
    assert await redis.hget(STOCK, "w1") == "5"
    with pytest.raises(OrderNotFound):
        await runner.run(commands.cancel_order("op-e", new_id(P), "sku", NOW_MS))


async def test_transition_checks_state_warehouse_and_seq(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 5)
    order = attempt(1, [("w1", 1)])
    await place_orders(runner, order)
    oid = order.order_id

    def to(target: Any, op: str, **kwargs: Any) -> scripts.Command[OrderRecord]:
        sources = {"picking": ("confirmed",), "packed": ("picking",)}[target]
        return commands.transition_order(op, oid, target, sources, NOW_MS, **kwargs)

    with pytest.raises(InvalidTransition):
        await runner.run(to("packed", "t1"))
    with pytest.raises(WrongWarehouse):
        await runner.run(to("picking", "t2", warehouse_id="w2"))
    with pytest.raises(OrderMovedOn):
        await runner.run(to("picking", "t3", expected_seq=7))
    events = await redis.xlen(STREAM)
    picked = await runner.run(to("picking", "t4", warehouse_id="w1", expected_seq=1))
    assert (picked.status, picked.seq) == ("picking", 2)
    assert await runner.run(to("picking", "t4", warehouse_id="w1")) == picked  # resent
    assert await redis.xlen(STREAM) == events + 1
    ((_, event),) = await redis.xrevrange(STREAM, count=1)
    assert event == {
        "type": "order.status",
        "order_id": oid,
        "record": await redis.get(keys.order(P, oid)),
        "at_ms": str(NOW_MS),
        "reason": "",
    }


async def test_reroute_moves_the_order_once(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 1)
    await set_stock(runner, "w2", 4)
    order = attempt(2, [("w1", 1), ("w2", 2)])
    (placed,) = await place_orders(runner, order)
    assert placed.warehouse_id == "w2"
    await set_stock(runner, "w3", 5)
    record = decode_record(await redis.get(keys.order(P, order.order_id)))
    move = commands.reroute_order(
        "op-r", order.order_id, record, "w2", [("w1", 1), ("w3", 13)], "damaged", NOW_MS
    )
    moved = await runner.run(move)
    assert (moved.warehouse_id, moved.status, moved.eta_days) == ("w3", "confirmed", 13)
    assert await runner.run(move) == moved  # resent: taken once
    assert await redis.hmget(STOCK, ["w1", "w2", "w3"]) == ["1", "2", "3"]


async def test_reroute_with_no_candidate_is_out_of_stock(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 3)
    order = attempt(1, [("w1", 1)])
    await place_orders(runner, order)
    stored = await redis.get(keys.order(P, order.order_id))
    record = decode_record(stored)
    with pytest.raises(OutOfStock):
        await runner.run(
            commands.reroute_order("op-n", order.order_id, record, "w1", [], "damaged", NOW_MS)
        )
    assert await redis.get(keys.order(P, order.order_id)) == stored
    assert await redis.hget(STOCK, "w1") == "2"


async def assert_unapplied(redis: RedisClient, events: int, good: Attempt) -> None:
    """A refused call changed nothing: the stock set to 10 at w1, the stream as long as `events`,
    and no record for the good order beside the bad one."""
    assert await redis.hget(STOCK, "w1") == "10"
    assert await redis.xlen(STREAM) == events
    assert not await redis.exists(keys.order(P, good.order_id))


@pytest.mark.parametrize(
    "bad",
    [
        OrderRequest("sku", 0, CUSTOMER),
        OrderRequest("sku", -3, CUSTOMER),
        # A Lua number holds every whole number up to 2^53 only.
        OrderRequest("sku", 2**53, CUSTOMER),
    ],
)
async def test_a_bad_order_in_a_batch_leaves_the_whole_call_unapplied(
    runner: scripts.ScriptRunner, redis: RedisClient, bad: OrderRequest
) -> None:
    await set_stock(runner, "w1", 10)
    events = await redis.xlen(STREAM)
    good = attempt(1, [("w1", 1)])
    wrong = Attempt(new_id(P), P, bad, (("w1", 1),))
    with pytest.raises(scripts.ScriptRefused):
        await place_orders(runner, good, wrong)
    await assert_unapplied(redis, events, good)


QUANTITY_FIELD = 1  # of an order's values in a place call (engine/commands.py, WireOrder)
WRONG_FIELDS = [
    *((QUANTITY_FIELD, wrong) for wrong in ["1", True, [1], None, 1.5]),
    *((field, wrong) for field in (0, 2, 3, 4, 5, 6, 7) for wrong in [7, False, ["a"], {"a": 1}]),
]


@pytest.mark.parametrize(("field", "wrong"), WRONG_FIELDS)
async def test_an_order_field_of_the_wrong_type_leaves_the_whole_call_unapplied(
    runner: scripts.ScriptRunner, redis: RedisClient, field: int, wrong: object
) -> None:
    """Every field is checked before the first write, whatever a client sends: the quantity a
    whole number, every other field text (lua/includes/confirm_order.lua, order_problem)."""
    await set_stock(runner, "w1", 10)
    events = await redis.xlen(STREAM)
    good, second = attempt(1, [("w1", 1)]), attempt(1, [("w1", 1)])
    command = commands.place_orders(NOW_MS, [good, second])
    wire = msgspec.msgpack.decode(command.args[2])
    wire[len(wire) // 2 + field] = wrong  # the second order's
    bad = dataclasses.replace(command, args=[*command.args[:2], msgspec.msgpack.encode(wire)])
    with pytest.raises(scripts.ScriptRefused):
        await runner.run(bad)
    await assert_unapplied(redis, events, good)


async def test_orders_with_and_without_keys_each_read_their_own_key(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    """Only keyed orders name a key, after every order's two keys: each keyed order must find
    its own, whatever the orders without one between them."""
    await set_stock(runner, "w1", 10)
    (earlier,) = await place_orders(runner, attempt(1, [("w1", 1)], idem="k2"))
    replies = await place_orders(
        runner,
        attempt(1, [("w1", 1)], idem="k1"),
        attempt(1, [("w1", 1)]),
        attempt(1, [("w1", 1)], idem="k2"),
        attempt(1, [("w1", 1)]),
        attempt(3, [("w1", 1)], idem="k1"),
    )
    assert [isinstance(r, Confirmation) for r in replies[:4]] == [True] * 4
    assert replies[2].order_id == earlier.order_id and replies[2].replayed
    assert isinstance(replies[4], IdempotencyKeyReused)
    assert await redis.hget(STOCK, "w1") == "6"


async def test_a_corrupt_level_counts_as_no_stock_and_is_never_changed(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    await set_stock(runner, "w1", 10)
    await redis.hset(STOCK, "w2", "lots")
    good = attempt(1, [("w1", 1)])
    placed, refused, past_it = await place_orders(
        runner, good, attempt(1, [("w2", 1)]), attempt(1, [("w2", 1), ("w1", 2)])
    )
    assert isinstance(placed, Confirmation) and placed.warehouse_id == "w1"
    assert isinstance(refused, StockBeyondRings | OutOfStock)
    assert isinstance(past_it, Confirmation) and past_it.warehouse_id == "w1"
    assert await redis.hmget(STOCK, ["w1", "w2"]) == ["8", "lots"]
    with pytest.raises(scripts.ScriptRefused):
        await runner.run(commands.adjust_stock("op-x", "sku", "w2", 1, "t"))
    with pytest.raises(scripts.ScriptRefused):
        await runner.run(commands.set_stock("op-y", "sku", "w1", -1, "t"))


async def test_an_unexpected_reply_is_an_error_not_a_refusal(
    runner: scripts.ScriptRunner,
) -> None:
    command = commands.set_stock("op-z", "sku", "w1", 1, "t")
    with pytest.raises(commands.UnexpectedReply):
        command.decode(["maybe"])


async def test_scripts_are_reloaded_after_the_cache_is_flushed(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    if isinstance(redis, scripts.RedisCluster):
        await redis.execute_command("SCRIPT FLUSH", target_nodes=scripts.RedisCluster.ALL_NODES)
    else:
        await redis.script_flush()
    assert await set_stock(runner, "w1", 1) == 1


async def test_a_legacy_version_field_is_no_warehouse(
    runner: scripts.ScriptRunner, redis: RedisClient
) -> None:
    """Stock hashes written before the stream ordered the stock keep a `_v` counter: it never
    counts as stock, nor can a warehouse take its name."""
    await set_stock(runner, "w1", 1)
    await redis.hset(STOCK, LEGACY_VERSION_FIELD, "7")
    (refused,) = await place_orders(runner, attempt(5, [("w1", 1)]))
    assert isinstance(refused, OutOfStock)  # not 'far' at a warehouse named `_v`
    assert await Inventory(runner).levels("sku") == [StockLevel("w1", 1)]
    snapshot = await runner.run(commands.read_stock(P, ["sku"]))
    assert levels_in(snapshot.hashes["sku"]) == {"w1": 1}
    with pytest.raises(scripts.ScriptRefused):
        await runner.run(commands.set_stock("op-v", "sku", LEGACY_VERSION_FIELD, 3, "t"))
