"""The Lua scripts, loaded into a real Redis and called directly: edge cases of each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import keys, scripts
from engine.records import OrderRecord, decode_record
from stores.redis import RedisClient

P = keys.partition_of_product("sku")
STREAM = keys.stream(P)
STOCK = keys.stock(P, "sku")
TTL_S = 60
NOW_MS = 1_700_000_000_000


Order = tuple[list[str], list[Any]]


def order_args(
    order_id: str,
    quantity: int,
    candidates: list[tuple[str, int]],
    *,
    product: str = "sku",
    idem: str = "",
    fingerprint: str = "fp",
) -> Order:
    """An order's keys and its JSON array, as engine.reservations.reserve_call builds them."""
    order_key = keys.order(P, order_id)
    idem_key = keys.idempotency(P, idem) if idem else order_key
    warehouses = [w for w, _ in candidates]
    days = [d for _, d in candidates]
    fields = [order_id, product, quantity, idem, fingerprint, "48.85", "2.35", warehouses, days]
    return [keys.stock(P, product), order_key, idem_key], fields


async def reserve(redis: RedisClient, *orders: Order) -> list[list[Any]]:
    script_keys = [STREAM]
    for order_keys, _ in orders:
        script_keys += order_keys
    batch = json.dumps([fields for _, fields in orders])
    return list(await scripts.call(redis, scripts.RESERVE, script_keys, [NOW_MS, TTL_S, batch]))


async def set_stock(redis: RedisClient, warehouse: str, units: int, mode: str = "set") -> list[Any]:
    return list(
        await scripts.call(
            redis, scripts.SET_STOCK, [STREAM, STOCK], ["sku", warehouse, mode, units, "test"]
        )
    )


async def test_takes_exact_stock_and_then_refuses(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 3)
    assert (await reserve(redis, order_args("o1", 3, [("w1", 2)])))[0][:3] == ["ok", "o1", "w1"]
    assert await redis.hget(STOCK, "w1") == "0"
    assert await reserve(redis, order_args("o2", 1, [("w1", 2)])) == [["out_of_stock"]]
    assert not await redis.exists(keys.order(P, "o2"))


async def test_nearest_candidate_with_enough_stock_wins(redis: RedisClient) -> None:
    await set_stock(redis, "near", 1)
    await set_stock(redis, "mid", 5)
    await set_stock(redis, "far", 50)
    reply = await reserve(redis, order_args("o1", 2, [("near", 1), ("mid", 2), ("far", 3)]))
    assert reply == [["ok", "o1", "mid", 2, NOW_MS, 0]]
    assert await redis.hmget(STOCK, ["near", "mid", "far"]) == ["1", "3", "50"]


async def test_zero_stock_everywhere(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 0)
    await set_stock(redis, "w2", 0)
    before = await redis.xlen(STREAM)
    assert await reserve(redis, order_args("o1", 1, [("w1", 1), ("w2", 1)])) == [["out_of_stock"]]
    assert await redis.xlen(STREAM) == before


async def test_unknown_product_changes_nothing(redis: RedisClient) -> None:
    reply = await reserve(redis, order_args("o1", 1, [("w1", 1)], product="ghost"))
    assert reply == [["unknown_product"]]
    assert await redis.dbsize() == 0


async def test_stock_only_past_the_candidates_is_reported_not_taken(redis: RedisClient) -> None:
    await set_stock(redis, "near", 0)
    await set_stock(redis, "remote", 4)
    await set_stock(redis, "tiny", 1)
    reply = await reserve(redis, order_args("o1", 2, [("near", 1)]))
    assert reply == [["far", "remote"]]
    assert await redis.hget(STOCK, "remote") == "4"


async def test_retried_idempotency_key_gets_the_same_answer_once(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 10)
    first = await reserve(redis, order_args("o1", 2, [("w1", 3)], idem="k"))
    events = await redis.xlen(STREAM)
    retry = await reserve(redis, order_args("o2", 2, [("w1", 3)], idem="k"))
    assert first == [["ok", "o1", "w1", 3, NOW_MS, 0]]
    assert retry == [["ok", "o1", "w1", "3", str(NOW_MS), 1]]  # replayed from the stored text
    assert await redis.hget(STOCK, "w1") == "8"
    assert await redis.xlen(STREAM) == events
    assert not await redis.exists(keys.order(P, "o2"))
    assert 0 < await redis.ttl(keys.idempotency(P, "k")) <= TTL_S


async def test_idempotency_key_with_another_request_is_refused(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 10)
    await reserve(redis, order_args("o1", 2, [("w1", 3)], idem="k", fingerprint="a"))
    reply = await reserve(redis, order_args("o2", 5, [("w1", 3)], idem="k", fingerprint="b"))
    assert reply == [["key_conflict"]]
    assert await redis.hget(STOCK, "w1") == "8"


async def test_a_batch_decides_in_order_and_a_retry_inside_it_replays(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 3)
    replies = await reserve(
        redis,
        order_args("o1", 2, [("w1", 1)], idem="k"),
        order_args("o2", 2, [("w1", 1)]),
        order_args("o3", 2, [("w1", 1)], idem="k"),
        order_args("o4", 1, [("w1", 1)]),
    )
    assert [r[0] for r in replies] == ["ok", "out_of_stock", "ok", "ok"]
    assert replies[2][1] == "o1" and replies[2][5] == 1
    assert await redis.hget(STOCK, "w1") == "0"


async def test_confirmation_records_the_order_and_appends_one_event(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 5)
    await reserve(redis, order_args("o1", 2, [("w1", 4)], idem="k"))
    record = await redis.get(keys.order(P, "o1"))
    assert decode_record(record) == OrderRecord(
        "sku", "w1", 2, "confirmed", 4, NOW_MS, 48.85, 2.35, "k"
    )
    ((_, event),) = await redis.xrevrange(STREAM, count=1)
    assert event == {"type": "order.confirmed", "order": "o1", "record": record, "available": "3"}
    assert await redis.hget(STOCK, "_v") == "2"  # set_stock was version 1


async def test_the_version_moves_once_per_product_per_call(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 5)
    await reserve(redis, *(order_args(f"o{i}", 1, [("w1", 1)]) for i in range(3)))
    assert await redis.hget(STOCK, "_v") == "2"


async def test_set_and_adjust_stock_bump_the_version_and_never_go_negative(
    redis: RedisClient,
) -> None:
    assert await set_stock(redis, "w1", 5) == ["ok", 5, 1]
    assert await set_stock(redis, "w1", -2, "adjust") == ["ok", 3, 2]
    assert await set_stock(redis, "w1", -4, "adjust") == ["negative", 3]
    assert await redis.hget(STOCK, "w1") == "3"
    assert await redis.xlen(STREAM) == 2  # the refused adjustment appended nothing


async def test_hold_takes_units_at_the_named_warehouse_only(redis: RedisClient) -> None:
    await set_stock(redis, "w1", 2)
    hold_keys = [STREAM, STOCK, keys.hold(P, "h1"), keys.hold_expiries(P)]
    args: list[Any] = ["h1", "sku", "w1", 2, 1_000, 60_000]
    assert await scripts.call(redis, scripts.HOLD, hold_keys, args) == ["ok", 0, 61_000]
    assert await scripts.call(redis, scripts.HOLD, hold_keys, args) == ["out_of_stock", 0]
    assert await redis.zscore(keys.hold_expiries(P), "h1") == 61_000


@pytest.mark.parametrize("status", ["cancelled", "shipped"])
async def test_cancel_releases_units_once_and_only_when_confirmed(
    redis: RedisClient, status: str
) -> None:
    await set_stock(redis, "w1", 5)
    await reserve(redis, order_args("o1", 2, [("w1", 1)]))
    cancel_keys = [STREAM, keys.order(P, "o1"), STOCK]
    assert await scripts.call(redis, scripts.CANCEL, cancel_keys, ["o1", "sku", 1]) == [
        "ok",
        "w1",
        2,
        5,
    ]
    record = json.loads(await redis.get(keys.order(P, "o1")))
    await redis.set(keys.order(P, "o1"), json.dumps([*record[:3], status, *record[4:]]))
    assert await scripts.call(redis, scripts.CANCEL, cancel_keys, ["o1", "sku", 2]) == [
        "bad_state",
        status,
    ]
    assert await redis.hget(STOCK, "w1") == "5"
    no_order = [STREAM, keys.order(P, "o9"), STOCK]
    assert await scripts.call(redis, scripts.CANCEL, no_order, ["o9", "sku", 3]) == ["not_found"]


async def test_scripts_are_reloaded_after_the_cache_is_flushed(redis: RedisClient) -> None:
    await redis.script_flush()
    assert await set_stock(redis, "w1", 1) == ["ok", 1, 1]
