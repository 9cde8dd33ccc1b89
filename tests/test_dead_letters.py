"""Dead letters on the real stores: an entry a writer cannot persist leaves the group (acked, so
trimming goes on) for its partition's dead-letter stream, at once when the error is permanent and
after N deliveries otherwise, while the rest of its batch lands; replay puts it back; /metrics
counts them; `python -m writers dead-letters list` shows them.

Good entries come from the real engine (the helpers of tests/test_writers.py); the poison ones
are real entries with one field spoiled, appended next to them.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from engine import keys
from engine.events import OrdersConfirmed, decode_event, order_ids_of
from engine.live_orders import LiveOrders
from engine.scripts import ScriptRunner
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from stores.streams import (
    INVENTORY_GROUP,
    ORDERS_GROUP,
    PARTITION_STREAMS,
    WRITER_GROUPS,
    create_groups,
    dead_letter_count,
    trim_streams,
)
from tests.conftest import runner_for, store_env
from tests.test_api import Client, client
from tests.test_metrics import scrape, value
from tests.test_writers import (
    FAST,
    consumers_for,
    drain,
    order_rows,
    pending_total,
    place_orders,
    place_orders_one_by_one,
    stock_products,
)
from writers import dead_letters
from writers.consumer import ConsumerConfig, GroupConsumer, StreamEntry
from writers.dead_letters import DeadLetter, Failure
from writers.orders import OrdersWriter

__all__ = ["client"]  # the API fixture, for the metrics test

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = "sku-dl"
STREAM = keys.stream(keys.partition_of_product(PRODUCT))
DEAD_LETTERS = keys.dead_letters(keys.partition_of_product(PRODUCT))
AFTER_3 = ConsumerConfig(claim_idle_ms=300, deferred_retry_s=0.05, dead_letter_after_deliveries=3)


# --- helpers ---


async def confirmed_fields(redis: RedisClient) -> list[tuple[str, dict[str, str]]]:
    """The `orders.confirmed` entries of STREAM, as stored."""
    page: list[Any] = await redis.xrange(STREAM) or []
    return [(str(i), dict(f)) for i, f in page if f.get("type") == "orders.confirmed"]


async def append_poison(redis: RedisClient, **record_changes: Any) -> tuple[str, str]:
    """Append a copy of a real confirmation for a new order ID, its record changed as given;
    returns (entry ID, order ID)."""
    _, fields = (await confirmed_fields(redis))[0]
    event = decode_event(fields)
    assert isinstance(event, OrdersConfirmed)
    placed = event.orders[0]
    record = msgspec.structs.replace(placed.record, **record_changes)
    order_id = str(uuid.uuid4())
    one = msgspec.json.encode([[order_id, record, placed.level]]).decode()
    poison = {"type": "orders.confirmed", "orders": one}
    return str(await redis.xadd(STREAM, poison)), order_id  # type: ignore[arg-type]


async def letters(redis: RedisClient) -> list[DeadLetter]:
    return await dead_letters.list_dead_letters(redis, 1_000)


class FailingOrdersWriter:
    """The real orders writer, except that a batch holding one chosen confirmation fails with
    an error that is neither transient nor permanent (a bug), every time."""

    group = ORDERS_GROUP
    transient_errors = OrdersWriter.transient_errors
    permanent_errors = OrdersWriter.permanent_errors

    def __init__(self, pg: asyncpg.Pool, runner: ScriptRunner, failing_order: str) -> None:
        self._writer = OrdersWriter(pg, runner)
        self.failing_order = failing_order
        self.failed_alone = 0

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        if any(
            placed.order_id == self.failing_order
            for e in entries
            if isinstance(e.event, OrdersConfirmed)
            for placed in e.event.orders
        ):
            self.failed_alone += len(entries) == 1
            raise RuntimeError("the order service is confused")
        return await self._writer.persist(entries)


# --- at once: malformed events and rows PostgreSQL refuses ---


async def test_a_malformed_entry_is_dead_lettered_at_once_and_its_batch_persisted(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    placed = await place_orders(redis, [PRODUCT], 10, seed=1)
    malformed = {"type": "orders.confirmed", "orders": "[1,"}
    poison_id = str(await redis.xadd(STREAM, malformed))  # type: ignore[arg-type]
    placed += await place_orders(redis, [PRODUCT], 10, seed=2)
    consumers = consumers_for(redis, pg, mongo)
    await create_groups(redis, PARTITION_STREAMS, WRITER_GROUPS)

    for consumer in consumers:  # one round each: no claim, no second delivery
        await consumer.step()

    assert sorted(await order_rows(pg)) == sorted(c.order_id for _, c in placed)
    found = await letters(redis)
    assert sorted(letter.group for letter in found) == sorted(WRITER_GROUPS)
    for letter in found:
        assert (letter.stream, letter.entry_id) == (STREAM, poison_id)
        assert letter.dead_letter_stream == DEAD_LETTERS
        assert letter.fields == malformed
        assert letter.deliveries == 1
        assert letter.error.startswith("MalformedEvent: ")
    for group in WRITER_GROUPS:
        assert await pending_total(redis, group) == 0
    length = await redis.xlen(STREAM)
    assert await trim_streams(redis, PARTITION_STREAMS) == length  # the poison does not stop it
    assert await redis.xlen(STREAM) == 0

    # Replayed, it is appended once for both copies, and (still malformed) comes back.
    [replayed] = await dead_letters.replay(redis, None)
    assert replayed.fields == malformed
    assert await dead_letter_count(redis) == 0
    assert await redis.xlen(STREAM) == 1
    await drain(redis, consumers)
    assert len(await letters(redis)) == 2


async def test_a_row_postgres_refuses_is_dead_lettered_at_once_and_its_batch_lands(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    placed = await place_orders(redis, [PRODUCT], 10, seed=1)
    # PostgreSQL refuses a NUL character in text: DataError, retrying cannot help.
    poison_id, poison_order = await append_poison(redis, product_id="sku\u0000dl")
    placed += await place_orders(redis, [PRODUCT], 10, seed=2)
    consumer = GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), "test", config=FAST)
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])

    await consumer.step()

    rows = await order_rows(pg)
    assert sorted(rows) == sorted(c.order_id for _, c in placed)
    assert poison_order not in rows
    [letter] = await letters(redis)
    assert (letter.stream, letter.entry_id, letter.group) == (STREAM, poison_id, ORDERS_GROUP)
    assert letter.order_id == poison_order
    assert letter.event_type == "orders.confirmed"
    assert letter.error.startswith("CharacterNotInRepertoireError: ")  # an asyncpg DataError
    assert letter.deliveries == 1
    assert await pending_total(redis, ORDERS_GROUP) == 0


# --- after N deliveries: errors that are neither transient nor permanent ---


async def test_an_entry_failing_every_delivery_is_dead_lettered_after_n(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    # Three calls, three entries: the 8th order alone in the middle one.
    placed = [
        c.order_id
        for count, seed in ((7, 1), (1, 2), (12, 3))
        for _, c in await place_orders(redis, [PRODUCT], count, seed)
    ]
    [(poison_id, _)] = [
        (i, f) for i, f in await confirmed_fields(redis) if order_ids_of(f) == placed[7]
    ]
    writer = FailingOrdersWriter(pg, runner_for(redis), placed[7])
    consumer = GroupConsumer(redis, writer, "test", config=AFTER_3)
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])

    await consumer.step()
    assert sorted(await order_rows(pg)) == sorted(placed[:7] + placed[8:])
    assert await letters(redis) == []  # first delivery: left pending for another try
    assert await pending_total(redis, ORDERS_GROUP) == 1

    await drain(redis, [consumer])  # XAUTOCLAIM delivers it again every 300 ms

    assert writer.failed_alone == 3
    [letter] = await letters(redis)
    assert (letter.entry_id, letter.order_id, letter.deliveries) == (poison_id, placed[7], 3)
    assert letter.error == "RuntimeError: the order service is confused"
    assert await pending_total(redis, ORDERS_GROUP) == 0
    assert await trim_streams(redis, PARTITION_STREAMS) > 0
    assert await redis.xlen(STREAM) == 0


async def test_a_change_whose_order_was_dead_lettered_follows_it_and_both_replay(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    [(_, placed)] = await place_orders(redis, [PRODUCT], 1)
    await LiveOrders(runner_for(redis), None).cancel(placed.order_id)
    page: list[Any] = await redis.xrange(STREAM) or []
    confirm_id, cancel_id = (
        str(i) for i, f in page if f["type"] in ("orders.confirmed", "order.cancelled")
    )
    writer = FailingOrdersWriter(pg, runner_for(redis), placed.order_id)
    consumer = GroupConsumer(redis, writer, "test", config=AFTER_3)

    # The cancel waits for its order, which goes to the dead letters: the cancel follows it after
    # 3 deliveries, rather than stay pending for good and hold trimming back.
    await drain(redis, [consumer])

    found = {letter.entry_id: letter for letter in await letters(redis)}
    assert sorted(found) == sorted([confirm_id, cancel_id])
    assert found[cancel_id].deliveries == 3
    assert found[cancel_id].error.startswith("still not applicable")
    assert consumer.deferred_count == 0
    assert await trim_streams(redis, PARTITION_STREAMS) > 0
    assert await redis.xlen(STREAM) == 0

    # Once the bug is fixed, both replay, in their stream's order, and land.
    writer.failing_order = ""
    replayed = await dead_letters.replay(redis, [cancel_id, confirm_id], STREAM)
    assert [letter.entry_id for letter in replayed] == [confirm_id, cancel_id]
    await drain(redis, [consumer])
    assert (await order_rows(pg))[placed.order_id]["status"] == "cancelled"
    assert await dead_letter_count(redis) == 0


# --- replay ---


async def dead_letter_one_confirmation(redis: RedisClient) -> tuple[str, str]:
    """Read STREAM as a consumer that then moves one good confirmation to the dead letters by
    hand (and leaves the rest pending, for a claim); returns its (entry ID, order ID)."""
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])
    await redis.xreadgroup(ORDERS_GROUP, "manual", {STREAM: ">"})
    entry_id, fields = (await confirmed_fields(redis))[0]
    failure = Failure(STREAM, entry_id, "moved by hand", permanent=True)
    assert await dead_letters.move(redis, ORDERS_GROUP, [(failure, 1)]) == 1
    return entry_id, order_ids_of(fields)


async def test_replay_puts_an_entry_back_and_it_is_persisted(
    redis: RedisClient, pg: asyncpg.Pool
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    placed = await place_orders_one_by_one(redis, [PRODUCT], 5)
    entry_id, order_id = await dead_letter_one_confirmation(redis)
    consumer = GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), "test", config=FAST)
    await drain(redis, [consumer])  # claims the rest from "manual"
    assert sorted(await order_rows(pg)) == sorted(
        c.order_id for _, c in placed if c.order_id != order_id
    )

    [replayed] = await dead_letters.replay(redis, [entry_id])

    assert (replayed.entry_id, replayed.order_id) == (entry_id, order_id)
    assert await dead_letter_count(redis) == 0
    last: list[Any] = await redis.xrevrange(STREAM, count=1) or []
    [(new_id, fields)] = last
    assert new_id != entry_id
    assert fields == replayed.fields  # the original fields, no dl_* ones
    await drain(redis, [consumer])
    assert sorted(await order_rows(pg)) == sorted(c.order_id for _, c in placed)
    assert await dead_letters.replay(redis, [entry_id]) == []  # gone from the dead letters


async def test_replay_wants_the_stream_when_an_id_is_in_two(redis: RedisClient) -> None:
    streams = [keys.stream(0), keys.stream(1)]
    for stream in streams:
        await redis.xadd(stream, {"type": "stock.changed"}, id="5-1")
        await create_groups(redis, [stream], [INVENTORY_GROUP])
        await redis.xreadgroup(INVENTORY_GROUP, "manual", {stream: ">"})
        failure = Failure(stream, "5-1", "test", permanent=True)
        await dead_letters.move(redis, INVENTORY_GROUP, [(failure, 1)])

    with pytest.raises(dead_letters.AmbiguousEntry):
        await dead_letters.replay(redis, ["5-1"])
    [replayed] = await dead_letters.replay(redis, ["5-1"], streams[1])
    assert replayed.stream == streams[1]
    assert await dead_letter_count(redis) == 1


# --- metrics and the CLI ---


async def test_metrics_count_the_dead_letters(
    client: Client, redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("api.metrics.STORE_CACHE_S", 0.0)
    assert value(await scrape(client), "dead_letters") == 0
    await stock_products(redis, [PRODUCT], 100)
    await place_orders(redis, [PRODUCT], 2)
    await dead_letter_one_confirmation(redis)
    assert value(await scrape(client), "dead_letters") == 1


async def test_the_cli_lists_and_replays_dead_letters(
    redis: RedisClient, settings: Settings
) -> None:
    await stock_products(redis, [PRODUCT], 100)
    await place_orders(redis, [PRODUCT], 2)
    entry_id, order_id = await dead_letter_one_confirmation(redis)

    listed = writers_cli(settings, "dead-letters", "list")
    header, row = listed.stdout.splitlines()
    assert header.split("\t")[:3] == ["stream", "entry_id", "group"]
    stream, listed_id, group, deliveries, _, event_type, listed_order, error = row.split("\t")
    assert (stream, listed_id, group, deliveries) == (STREAM, entry_id, ORDERS_GROUP, "1")
    assert (event_type, listed_order, error) == ("orders.confirmed", order_id, "moved by hand")
    assert "1 of 1 dead letter(s) shown" in listed.stderr

    replayed = writers_cli(settings, "dead-letters", "replay", "--entry", entry_id)
    assert replayed.stdout == f"{STREAM}\t{entry_id}\treplayed\n"
    assert await dead_letter_count(redis) == 0
    missing = writers_cli(settings, "dead-letters", "replay", "--entry", entry_id, check=False)
    assert missing.returncode == 1
    assert f"{entry_id}: no such dead letter" in missing.stderr


def writers_cli(
    settings: Settings, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "writers", *args],
        cwd=ROOT,
        env=store_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
        check=check,
    )
