"""Re-routing: a warehouse that cannot fulfil an order (units damaged or missing) hands it to the
nearest other warehouse with the stock, atomically, and the customer is told."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from engine import keys
from engine.events import OrderRerouted, decode_event
from engine.ids import new_id
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from tests import test_api
from tests.test_api import Client, order_body, stock
from tests.test_writers import consumers_for, drain
from writers.consumer import StreamEntry
from writers.notifier import NotifierWriter

client = test_api.client  # paris and lyon, 5 units of sku-1 each


async def place(client: Client, quantity: int) -> str:
    response = await client.post("/orders", json=order_body(quantity))
    assert response.status_code == 201
    return str(response.json()["orderId"])


def report(order_id: str, warehouse_id: str) -> dict[str, str]:
    return {"orderId": order_id, "warehouseId": warehouse_id, "reason": "2 units crushed"}


async def test_reroute_moves_the_order_to_the_next_warehouse_with_stock(
    client: Client, redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    order_id = await place(client, 2)  # near Paris: paris holds it
    moved = await client.post("/warehouse/unfulfillable", json=report(order_id, "paris"))
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["orderId"], body["status"], body["warehouseId"]) == (order_id, "confirmed", "lyon")
    # The reporting warehouse keeps its loss (those units are the missing ones); lyon gives 2.
    assert await stock(client) == {"paris": 3, "lyon": 3}
    read = (await client.get(f"/orders/{order_id}")).json()
    assert (read["warehouseId"], read["status"]) == ("lyon", "confirmed")
    assert read["estimatedDelivery"] == body["estimatedDelivery"]

    ((_, fields),) = await redis.xrevrange(keys.stream(keys.partition_of_product("sku-1")), count=1)
    event = decode_event(fields)
    assert isinstance(event, OrderRerouted)
    assert (event.from_warehouse, event.record.warehouse_id, event.level) == (
        "paris",
        "lyon",
        3,
    )

    await drain(redis, consumers_for(redis, pg, mongo))
    row = await pg.fetchrow("SELECT warehouse_id, status FROM orders WHERE order_id = $1", order_id)
    assert (row["warehouse_id"], row["status"]) == ("lyon", "confirmed")
    reasons = await pg.fetch(
        "SELECT reason FROM order_status_history WHERE order_id = $1 AND reason IS NOT NULL",
        order_id,
    )
    assert [r["reason"] for r in reasons] == ["re-routed from paris: 2 units crushed"]
    # It goes on at the new warehouse.
    shipped = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "lyon"}
    )
    assert shipped.status_code == 200


async def test_reroute_refusals_change_nothing(client: Client) -> None:
    order_id = await place(client, 2)
    wrong = await client.post("/warehouse/unfulfillable", json=report(order_id, "lyon"))
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "wrong_warehouse"

    await client.put("/inventory/sku-1/stock/lyon", json={"quantity": 1})
    nowhere = await client.post("/warehouse/unfulfillable", json=report(order_id, "paris"))
    assert nowhere.status_code == 409 and nowhere.json()["error"]["code"] == "out_of_stock"
    assert (await client.get(f"/orders/{order_id}")).json()["warehouseId"] == "paris"
    assert await stock(client) == {"paris": 3, "lyon": 1}

    await client.post("/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "paris"})
    late = await client.post("/warehouse/unfulfillable", json=report(order_id, "paris"))
    assert late.status_code == 409 and late.json()["error"]["code"] == "invalid_transition"

    unknown = new_id(keys.partition_of_product("sku-1"))
    missing = await client.post("/warehouse/unfulfillable", json=report(unknown, "paris"))
    assert missing.status_code == 404


class RecordingNotices:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def enqueue_automatic(self, changes: Sequence[tuple[str, str]]) -> int:
        self.changes += changes
        return len(changes)


async def test_the_customer_is_told_of_a_reroute(client: Client, redis: RedisClient) -> None:
    order_id = await place(client, 1)
    await client.post("/warehouse/unfulfillable", json=report(order_id, "paris"))
    stream = keys.stream(keys.partition_of_product("sku-1"))
    entries = [StreamEntry(stream, i, decode_event(f)) for i, f in await redis.xrange(stream)]
    notices = RecordingNotices()
    await NotifierWriter(notices).persist(entries)  # type: ignore[arg-type]
    assert (order_id, "rerouted") in notices.changes
