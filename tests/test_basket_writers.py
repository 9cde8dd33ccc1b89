"""Baskets through the writers, on the real stores: `basket.confirmed` and `basket.changed`
entries (appended as the scripts append them) reach PostgreSQL as one `orders` row with its
lines, shipments and items; replays and late changes change nothing; the read model rebuilds
the record; the record leaves Redis after the hot window; the inventory writer acks them; the
notifier queues one notice per basket step and shipment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
import redis as sync_redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from engine import commands, keys
from engine.baskets import BasketLine, BasketPlacer, BasketRequest
from engine.events import BasketChanged, BasketConfirmed, decode_event
from engine.ids import new_id, partition_of_id
from engine.inventory import Inventory
from engine.live_baskets import LiveBaskets
from engine.orders import ORDER_FINAL_LINGER_S
from engine.records import BasketRecord, ShipmentRecord, decode_basket_record, encode_basket_record
from engine.warehouses import FixedWarehouses, WarehouseDirectory
from notify.jobs import QUEUE_NAME, Notices, notice_id, shipment_event
from stores.breaker import Breaker
from stores.mongo import INVENTORY, MongoDatabase
from stores.order_archive import OrderArchive
from stores.redis import RedisClient, connect_sync_redis
from stores.settings import Settings
from stores.streams import INVENTORY_GROUP, ORDERS_GROUP, PARTITION_STREAMS
from tests.conftest import runner_for
from tests.test_writers import (
    FAST,
    WAREHOUSES,
    all_entries,
    assert_mongo_mirrors_redis,
    drain,
    place_orders,
    stock_products,
)
from writers.consumer import GroupConsumer
from writers.inventory import InventoryWriter
from writers.notifier import NotifierWriter
from writers.orders import OrdersWriter

HOT_WINDOW_S = 120
PARTITION = 5
CREATED_MS = 1_750_000_000_123  # 2025-06-15, 15:06:40.123 UTC
DAY_MS = 24 * 3600 * 1000
BASKET_TABLES = ("orders", "order_lines", "shipments", "shipment_items", "order_status_history")


def basket_record(**changes: Any) -> BasketRecord:
    """Three lines from two warehouses, nearest first; sku-c is split between them."""
    record = BasketRecord(
        lines=(("sku-a", 2), ("sku-b", 1), ("sku-c", 3)),
        shipments=(
            ShipmentRecord("1", 2, "confirmed", (("sku-a", 2), ("sku-c", 1))),
            ShipmentRecord("wh-2.b", 3, "confirmed", (("sku-b", 1), ("sku-c", 2))),
        ),
        quantity=6,
        status="confirmed",
        eta_days=3,
        created_ms=CREATED_MS,
        lat=48.8566,
        lon=2.3522,
        idempotency_key="basket-key-1",
        seq=1,
        rule="greedy",
    )
    return msgspec.structs.replace(record, **changes)


def with_shipment(record: BasketRecord, index: int, **changes: Any) -> BasketRecord:
    shipments = list(record.shipments)
    shipments[index] = msgspec.structs.replace(shipments[index], **changes)
    return msgspec.structs.replace(record, shipments=tuple(shipments), seq=record.seq + 1)


def confirmed_fields(order_id: str, record: BasketRecord) -> dict[str, str | bytes]:
    """As lua/commit_basket.lua appends it."""
    record_text = encode_basket_record(record)
    return {"type": "basket.confirmed", "order_id": order_id, "record": record_text}


def changed_fields(
    order_id: str, record: BasketRecord, at_ms: int, warehouse: str = "", reason: str = ""
) -> dict[str, str | bytes]:
    """As the lifecycle scripts append it."""
    return {
        "type": "basket.changed",
        "order_id": order_id,
        "record": encode_basket_record(record),
        "at_ms": str(at_ms),
        "warehouse": warehouse,
        "reason": reason,
    }


async def append(redis: RedisClient, *entries: dict[str, str | bytes]) -> None:
    for fields in entries:
        await redis.xadd(keys.stream(PARTITION), fields)


def orders_writer(redis: RedisClient, pg: asyncpg.Pool) -> OrdersWriter:
    return OrdersWriter(pg, runner_for(redis), HOT_WINDOW_S)


@pytest.fixture
async def basket_pg(pg: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """`pg`, with the basket tables emptied too (the shared fixture truncates only its own)."""
    await pg.execute("TRUNCATE order_lines, shipments, shipment_items")
    yield pg


async def persist_all(redis: RedisClient, pg: asyncpg.Pool) -> None:
    await drain(redis, [GroupConsumer(redis, orders_writer(redis, pg), "t", config=FAST)])


async def tables(pg: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    """Every row of the basket tables, in a stable order."""
    found = {}
    for table in BASKET_TABLES:
        rows = await pg.fetch(f"SELECT * FROM {table}")
        found[table] = sorted(
            (dict(row) for row in rows), key=lambda row: sorted(map(str, row.values()))
        )
    return found


async def shipments_of(pg: asyncpg.Pool, order_id: str) -> list[tuple[Any, ...]]:
    rows = await pg.fetch(
        "SELECT warehouse_id, status, estimated_delivery::text, position FROM shipments"
        " WHERE order_id = $1 ORDER BY position",
        order_id,
    )
    return [tuple(row) for row in rows]


async def items_of(pg: asyncpg.Pool, order_id: str) -> list[tuple[Any, ...]]:
    rows = await pg.fetch(
        "SELECT warehouse_id, product_id, quantity, position FROM shipment_items"
        " WHERE order_id = $1 ORDER BY warehouse_id, position",
        order_id,
    )
    return [tuple(row) for row in rows]


async def history_of(pg: asyncpg.Pool, order_id: str) -> list[tuple[Any, ...]]:
    rows = await pg.fetch(
        "SELECT status, warehouse_id, reason FROM order_status_history WHERE order_id = $1"
        " ORDER BY at, event_id",
        order_id,
    )
    return [tuple(row) for row in rows]


# --- persisting ---


async def test_a_basket_and_its_steps_reach_postgres(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, CREATED_MS, basket=True)
    confirmed = basket_record()
    await append(redis, confirmed_fields(order_id, confirmed))
    await persist_all(redis, pg)

    row = await pg.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    assert row is not None
    assert (row["product_id"], row["warehouse_id"]) == (None, None)
    assert (row["quantity"], row["status"], row["seq"]) == (6, "confirmed", 1)
    assert (row["allocation_rule"], row["idempotency_key"]) == ("greedy", "basket-key-1")
    assert (row["customer_lat"], row["customer_lon"]) == (48.8566, 2.3522)
    assert str(row["estimated_delivery"]) == "2025-06-18"  # the latest shipment's: 3 days
    assert row["created_at"] == row["updated_at"]
    assert int(row["created_at"].timestamp() * 1000) == CREATED_MS
    lines = await pg.fetch(
        "SELECT product_id, quantity, line_no FROM order_lines WHERE order_id = $1"
        " ORDER BY line_no",
        order_id,
    )
    assert [tuple(line) for line in lines] == [("sku-a", 2, 0), ("sku-b", 1, 1), ("sku-c", 3, 2)]
    assert await shipments_of(pg, order_id) == [
        ("1", "confirmed", "2025-06-17", 0),
        ("wh-2.b", "confirmed", "2025-06-18", 1),
    ]
    assert await items_of(pg, order_id) == [
        ("1", "sku-a", 2, 0),
        ("1", "sku-c", 1, 1),
        ("wh-2.b", "sku-b", 1, 0),
        ("wh-2.b", "sku-c", 2, 1),
    ]
    assert await history_of(pg, order_id) == [("confirmed", None, None)]

    # The near shipment ships; the other is re-routed to warehouse 3 (new items, later date):
    # lua/reroute_shipment.lua names the warehouse the shipment left.
    shipped = with_shipment(confirmed, 0, status="shipped")
    rerouted = with_shipment(
        shipped, 1, warehouse_id="3", eta_days=4, items=(("sku-c", 2), ("sku-b", 1))
    )
    rerouted = msgspec.structs.replace(rerouted, eta_days=4)
    await append(
        redis,
        changed_fields(order_id, shipped, CREATED_MS + DAY_MS, warehouse="1"),
        changed_fields(order_id, rerouted, CREATED_MS + DAY_MS + 1, "wh-2.b", "damaged"),
    )
    await persist_all(redis, pg)

    row = await pg.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    assert row is not None
    assert (row["status"], row["seq"], str(row["estimated_delivery"])) == (
        "confirmed",
        3,
        "2025-06-19",
    )
    assert int(row["updated_at"].timestamp() * 1000) == CREATED_MS + DAY_MS + 1
    assert await shipments_of(pg, order_id) == [
        ("1", "shipped", "2025-06-17", 0),
        ("3", "confirmed", "2025-06-19", 1),
    ]
    assert await items_of(pg, order_id) == [
        ("1", "sku-a", 2, 0),
        ("1", "sku-c", 1, 1),
        ("3", "sku-c", 2, 0),
        ("3", "sku-b", 1, 1),
    ]
    assert await history_of(pg, order_id) == [
        ("confirmed", None, None),
        ("shipped", "1", None),
        ("confirmed", "wh-2.b", "re-routed from wh-2.b: damaged"),
    ]

    # The whole basket is cancelled: a step of no one shipment.
    cancelled = msgspec.structs.replace(rerouted, status="cancelled", seq=rerouted.seq + 1)
    await append(redis, changed_fields(order_id, cancelled, CREATED_MS + 2 * DAY_MS))
    await persist_all(redis, pg)
    assert await pg.fetchval("SELECT status FROM orders WHERE order_id = $1", order_id) == (
        "cancelled"
    )
    assert (await history_of(pg, order_id))[-1] == ("cancelled", None, None)

    archive = OrderArchive(pg)
    assert await archive.basket_record(order_id) == cancelled
    assert await archive.record(order_id) is None  # not a one-product order
    steps = await archive.basket_history(order_id, Breaker("test"))
    assert steps is not None
    assert [(status, warehouse) for status, _, warehouse in steps] == [
        ("confirmed", None),
        ("shipped", "1"),
        ("confirmed", "wh-2.b"),
        ("cancelled", None),
    ]
    # The one-product history of the same basket still answers (status, at) pairs.
    assert [status for status, _ in await archive.history(order_id, Breaker("test")) or []] == [
        "confirmed",
        "shipped",
        "confirmed",
        "cancelled",
    ]


async def test_the_read_model_rebuilds_the_record_as_written(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    records = {
        new_id(PARTITION, CREATED_MS, basket=True): basket_record(),
        new_id(PARTITION, CREATED_MS, basket=True): basket_record(
            idempotency_key="",
            rule="exact",
            lat=-33.868820123456,
            lon=151.209295987654,
            lines=(("z", 1), ("a", 4)),  # not in product order: the client's order is kept
            shipments=(ShipmentRecord("9", 5, "confirmed", (("z", 1), ("a", 4))),),
            quantity=5,
            eta_days=5,
        ),
    }
    await append(redis, *(confirmed_fields(o, r) for o, r in records.items()))
    await persist_all(redis, pg)
    archive = OrderArchive(pg)
    for order_id, record in records.items():
        assert await archive.basket_record(order_id) == record
    assert await archive.basket_record(new_id(PARTITION, basket=True)) is None


async def test_replaying_basket_entries_changes_nothing(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, CREATED_MS, basket=True)
    confirmed = basket_record()
    shipped = with_shipment(confirmed, 1, status="shipped")
    rerouted = with_shipment(shipped, 0, warehouse_id="7", eta_days=1)
    await append(
        redis,
        confirmed_fields(order_id, confirmed),
        changed_fields(order_id, shipped, CREATED_MS + 1, "wh-2.b"),
        changed_fields(order_id, rerouted, CREATED_MS + 2, "1", "damaged"),
    )
    await persist_all(redis, pg)
    before = await tables(pg)
    assert len(before["order_status_history"]) == 3

    # An operator rewinds the group: every entry is delivered again...
    for stream in PARTITION_STREAMS:
        await redis.xgroup_setid(stream, ORDERS_GROUP, "0")
    await persist_all(redis, pg)
    # ...and the same entries persisted directly, twice in one batch, and one by one.
    entries = await all_entries(redis)
    writer = orders_writer(redis, pg)
    assert await writer.persist(entries + entries) == []
    assert await tables(pg) == before
    for entry in entries:
        assert await writer.persist([entry]) == []
        # The confirmation replayed alone does not bring back the shipment re-routed since.
        assert await tables(pg) == before
    assert [s[0] for s in await shipments_of(pg, order_id)] == ["7", "wh-2.b"]


async def test_a_late_change_does_not_overwrite_a_newer_one(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, CREATED_MS, basket=True)
    confirmed = basket_record()
    picking = with_shipment(confirmed, 0, status="picking")  # seq 2
    shipped = with_shipment(picking, 0, status="shipped")  # seq 3
    await append(
        redis,
        confirmed_fields(order_id, confirmed),
        changed_fields(order_id, shipped, CREATED_MS + 20, "1"),
        changed_fields(order_id, picking, CREATED_MS + 10, "1"),  # arrives after seq 3
    )
    entries = await all_entries(redis)
    writer = orders_writer(redis, pg)
    # One batch with both, then each again in its own batch, the older last.
    assert await writer.persist(entries) == []
    assert await writer.persist(entries[1:2]) == []
    assert await writer.persist(entries[2:3]) == []

    row = await pg.fetchrow(
        "SELECT status, seq, updated_at FROM orders WHERE order_id = $1", order_id
    )
    assert row is not None and row["seq"] == 3
    assert int(row["updated_at"].timestamp() * 1000) == CREATED_MS + 20
    assert [s[:2] for s in await shipments_of(pg, order_id)] == [
        ("1", "shipped"),
        ("wh-2.b", "confirmed"),
    ]
    # Every step still has its history row, at its own time.
    assert await history_of(pg, order_id) == [
        ("confirmed", None, None),
        ("picking", "1", None),
        ("shipped", "1", None),
    ]
    assert await OrderArchive(pg).basket_record(order_id) == shipped


async def test_a_change_whose_basket_is_not_persisted_yet_is_handed_back(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, CREATED_MS, basket=True)
    confirmed = basket_record()
    shipped = with_shipment(confirmed, 0, status="shipped")
    await append(
        redis,
        confirmed_fields(order_id, confirmed),
        changed_fields(order_id, shipped, CREATED_MS + 1, "1"),
    )
    confirm, change = await all_entries(redis)
    writer = orders_writer(redis, pg)
    assert await writer.persist([change]) == [change]
    assert await tables(pg) == {table: [] for table in BASKET_TABLES}
    assert await writer.persist([confirm]) == []
    assert await writer.persist([change]) == []
    assert await pg.fetchval("SELECT seq FROM orders WHERE order_id = $1", order_id) == 2
    assert len(await history_of(pg, order_id)) == 2


async def test_baskets_and_one_product_orders_share_a_batch(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    """A one-product order's entry in the same batch is persisted as before, beside them."""
    pg = basket_pg
    await stock_products(redis, ["sku-1"], 10)
    [(_, one)] = await place_orders(redis, ["sku-1"], 1)
    order_id = new_id(PARTITION, CREATED_MS, basket=True)
    await append(redis, confirmed_fields(order_id, basket_record()))
    assert await orders_writer(redis, pg).persist(await all_entries(redis)) == []
    rows = {str(r["order_id"]): r for r in await pg.fetch("SELECT * FROM orders")}
    assert set(rows) == {one.order_id, order_id}
    assert rows[one.order_id]["product_id"] == "sku-1"
    assert rows[one.order_id]["allocation_rule"] is None
    assert (
        await pg.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", one.order_id) == 0
    )


async def test_a_basket_the_engine_moves_reaches_postgres_as_redis_holds_it(
    redis: RedisClient, basket_pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    """The real scripts, end to end: placed, one shipment fulfilled, then (its record gone from
    Redis) delivered from the PostgreSQL copy; another basket cancelled, its units back."""
    pg = basket_pg
    runner = runner_for(redis)
    baskets = LiveBaskets(runner, OrderArchive(pg))
    placer = BasketPlacer(runner, FixedWarehouses(WarehouseDirectory(WAREHOUSES)), baskets.get)
    await Inventory(runner).set_many([("sku-x", "1", 5), ("sku-y", "3", 5)], "test")
    customer = WAREHOUSES[0].location
    request = BasketRequest((BasketLine("sku-y", 1), BasketLine("sku-x", 2)), customer)
    placed = (await placer.place(request)).basket
    assert [s.warehouse_id for s in placed.shipments] == ["1", "3"]  # Paris first
    kept = (await placer.place(BasketRequest((BasketLine("sku-x", 1),), customer, "k"))).basket
    await baskets.fulfill(placed.order_id, placed.shipments[0].warehouse_id)
    await baskets.cancel(kept.order_id)
    consumers = [
        GroupConsumer(redis, orders_writer(redis, pg), "t", config=FAST),
        GroupConsumer(redis, InventoryWriter(runner_for(redis), mongo), "t", config=FAST),
    ]
    await drain(redis, consumers)

    archive = OrderArchive(pg)
    for order_id in (placed.order_id, kept.order_id):
        partition = partition_of_id(order_id)
        assert partition is not None
        key = keys.basket(partition, order_id)
        assert await archive.basket_record(order_id) == decode_basket_record(await redis.get(key))
        assert await redis.ttl(key) > 0  # persisted: it may leave
    await assert_mongo_mirrors_redis(redis, mongo, ["sku-x", "sku-y"])

    partition = partition_of_id(placed.order_id)
    assert partition is not None
    await redis.delete(keys.basket(partition, placed.order_id))  # its hot window passed
    first = placed.shipments[0].warehouse_id
    await baskets.step(placed.order_id, "delivered", warehouse_id=first)
    await drain(redis, consumers)
    raw = await redis.get(keys.basket(partition, placed.order_id))
    assert await archive.basket_record(placed.order_id) == decode_basket_record(raw)
    steps = await archive.basket_history(placed.order_id, Breaker("test"))
    assert [(status, warehouse) for status, _, warehouse in steps or []] == [
        ("confirmed", None),
        ("picking", first),
        ("packed", first),
        ("shipped", first),
        ("delivered", first),
    ]


# --- the hot window ---


async def test_a_persisted_basket_leaves_redis_after_the_hot_window(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, basket=True)
    runner = runner_for(redis)
    # The real script: it writes the record under keys.basket and appends basket.confirmed.
    await runner.run(commands.commit_basket(order_id, basket_record(), "fp", 60))
    key = keys.basket(PARTITION, order_id)
    assert await redis.ttl(key) == -1  # not persisted yet: stays
    await persist_all(redis, pg)
    assert HOT_WINDOW_S - 5 < await redis.ttl(key) <= HOT_WINDOW_S

    # A lifecycle step rewrites the record (dropping the expiry) and appends its event; once
    # persisted, the final state lingers only briefly.
    cancelled = basket_record(status="cancelled", seq=2)
    await redis.set(key, encode_basket_record(cancelled))
    await append(redis, changed_fields(order_id, cancelled, CREATED_MS + 1))
    assert await redis.ttl(key) == -1
    await persist_all(redis, pg)
    assert ORDER_FINAL_LINGER_S - 5 < await redis.ttl(key) <= ORDER_FINAL_LINGER_S
    assert await OrderArchive(pg).basket_record(order_id) == cancelled


async def test_a_basket_newer_in_redis_than_what_was_persisted_stays(
    redis: RedisClient, basket_pg: asyncpg.Pool
) -> None:
    pg = basket_pg
    order_id = new_id(PARTITION, basket=True)
    key = keys.basket(PARTITION, order_id)
    await redis.set(key, encode_basket_record(basket_record(seq=2)))  # moved on meanwhile
    await append(redis, confirmed_fields(order_id, basket_record()))
    await persist_all(redis, pg)
    assert await redis.ttl(key) == -1


# --- the inventory writer and the notifier ---


async def test_the_inventory_writer_acks_basket_entries(
    redis: RedisClient, mongo: MongoDatabase
) -> None:
    order_id = new_id(PARTITION, basket=True)
    confirmed = basket_record()
    await append(
        redis,
        confirmed_fields(order_id, confirmed),
        changed_fields(order_id, with_shipment(confirmed, 0, status="shipped"), 1, "1"),
    )
    writer = InventoryWriter(runner_for(redis), mongo)
    assert await writer.persist(await all_entries(redis)) == []
    await drain(redis, [GroupConsumer(redis, writer, "t", config=FAST)])
    report = await redis.xpending(keys.stream(PARTITION), INVENTORY_GROUP)
    assert report["pending"] == 0
    assert await redis.xlen(keys.dead_letters(PARTITION)) == 0
    assert await mongo[INVENTORY].count_documents({}) == 0  # no stock moved


@pytest.fixture
def notices(settings: Settings, redis: RedisClient) -> Iterator[Notices]:
    connection = connect_sync_redis(settings)  # `redis` flushed the database first
    yield Notices(connection)
    connection.close()


def queued_ids(connection: sync_redis.Redis) -> list[str]:
    return sorted(i.decode() for i in connection.lrange(f"rq:queue:{QUEUE_NAME}", 0, -1))


async def test_the_notifier_queues_one_notice_per_basket_step_and_shipment(
    redis: RedisClient,
    pg: asyncpg.Pool,
    mongo: MongoDatabase,
    notices: Notices,
    settings: Settings,
) -> None:
    order_id = new_id(PARTITION, basket=True)
    confirmed = basket_record()
    picking = with_shipment(confirmed, 0, status="picking")
    shipped_1 = with_shipment(picking, 0, status="shipped")
    shipped_2 = with_shipment(shipped_1, 1, status="shipped")
    delivered_1 = with_shipment(shipped_2, 0, status="delivered")
    other_id = new_id(PARTITION, basket=True)
    cancelled = basket_record(status="cancelled", seq=2)
    await append(
        redis,
        confirmed_fields(order_id, confirmed),
        changed_fields(order_id, picking, 1, "1"),  # no notice for picking
        changed_fields(order_id, shipped_1, 2, "1"),
        changed_fields(order_id, shipped_2, 3, "wh-2.b"),
        changed_fields(order_id, delivered_1, 4, "1"),
        confirmed_fields(other_id, confirmed),
        changed_fields(other_id, cancelled, 5),  # the whole basket
    )
    notifier = GroupConsumer(redis, NotifierWriter(notices), "t", config=FAST)
    await drain(redis, [notifier])
    expected = sorted(
        [
            notice_id(order_id, "confirmed"),
            notice_id(order_id, shipment_event("shipped", "1")),
            notice_id(order_id, shipment_event("shipped", "wh-2.b")),
            notice_id(order_id, shipment_event("delivered", "1")),
            notice_id(other_id, "confirmed"),
            notice_id(other_id, "cancelled"),
        ]
    )
    connection = notices.queue.connection
    assert queued_ids(connection) == expected
    assert notice_id(order_id, shipment_event("shipped", "wh-2.b")) == (
        f"notice_{order_id}_shipped-wh-2d2-2eb"
    )
    job = notices.queue.fetch_job(notice_id(order_id, shipment_event("shipped", "wh-2.b")))
    assert job is not None
    assert job.args[3] == f"Your order {order_id}: the shipment from warehouse wh-2.b has shipped."

    for stream in PARTITION_STREAMS:  # replay the whole stream to the group
        await redis.xgroup_setid(stream, notifier.group, "0")
    await drain(redis, [notifier])
    assert queued_ids(connection) == expected

    # GET /notifications/{id} follows a shipment's notice like any other.
    async with AsyncTestClient(create_app(settings)) as client:
        for notice in expected:
            response = await client.get(f"/notifications/{notice}")
            assert response.status_code == 200, (notice, response.text)
            assert response.json()["orderId"] in (order_id, other_id)
            assert {c["status"] for c in response.json()["channels"]} == {"queued"}


def test_entries_hold_what_the_tests_append() -> None:
    """The helpers above write what the engine decodes: a guard against testing a made-up
    format."""
    record = basket_record()

    def as_stream(fields: dict[str, str | bytes]) -> dict[str, str]:
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in fields.items()}

    assert decode_event(as_stream(confirmed_fields("o", record))) == BasketConfirmed("o", record)
    assert decode_event(as_stream(changed_fields("o", record, 7, "1", "why"))) == BasketChanged(
        "o", record, 7, "1", "why"
    )
