"""The HTTP contract of the lifecycle: fulfil at the warehouse, the carrier's delivery callback,
the status history read back from PostgreSQL, and queued notifications."""

from __future__ import annotations

import asyncpg
import pytest

from engine.ids import new_id
from engine.keys import partition_of_product
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from tests import test_api
from tests.test_api import Client, order_body
from tests.test_writers import consumers_for, drain

client = test_api.client  # the same app and data as the contract tests


async def place(client: Client) -> str:
    response = await client.post("/orders", json=order_body(1))
    assert response.status_code == 201
    return str(response.json()["orderId"])


async def test_fulfil_ships_and_delivery_completes(
    client: Client, redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase
) -> None:
    order_id = await place(client)
    body = {"orderId": order_id, "warehouseId": "paris"}
    shipped = await client.post("/warehouse/fulfill", json=body)
    assert shipped.status_code == 200
    assert shipped.json() == {
        "status": "success",
        "message": "Order fulfilled successfully",
        "orderId": order_id,
        "warehouseId": "paris",
        "orderStatus": "shipped",
    }
    assert list(shipped.json())[:2] == ["status", "message"]  # the brief's two fields lead
    assert (await client.get(f"/orders/{order_id}")).json()["status"] == "shipped"

    delivered = await client.post(f"/orders/{order_id}/delivered")
    assert delivered.status_code == 200 and delivered.json()["status"] == "delivered"

    await drain(redis, consumers_for(redis, pg, mongo))
    read = (await client.get(f"/orders/{order_id}")).json()
    assert read["status"] == "delivered"
    assert [step["status"] for step in read["history"]] == [
        "confirmed",
        "picking",
        "packed",
        "shipped",
        "delivered",
    ]
    assert all(step["at"] for step in read["history"])


async def test_fulfil_refusals(client: Client) -> None:
    order_id = await place(client)
    wrong = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "lyon"}
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "wrong_warehouse"
    early = await client.post(f"/orders/{order_id}/delivered")
    assert early.status_code == 409 and early.json()["error"]["code"] == "invalid_transition"

    assert (await client.post(f"/orders/{order_id}/cancel")).status_code == 200
    closed = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "paris"}
    )
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "invalid_transition"

    unknown = new_id(partition_of_product("sku-1"))
    for oid in (unknown, "not-an-order"):
        missing = await client.post(
            "/warehouse/fulfill", json={"orderId": oid, "warehouseId": "paris"}
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"
    bad = await client.post("/warehouse/fulfill", json={"orderId": order_id})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


async def test_notifications_are_queued_for_known_orders_only(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = await place(client)
    monkeypatch.delenv("SMS_URL", raising=False)
    queued = await client.post("/notifications", json={"orderId": order_id, "message": "Hello"})
    assert queued.status_code == 202
    notification_id = queued.json()["notificationId"]
    assert queued.json() == {
        "status": "success",
        "message": "Notification queued for delivery by email",
        "notificationId": notification_id,
    }
    assert notification_id.startswith(f"notice_{order_id}_message-")
    monkeypatch.setenv("SMS_URL", "http://127.0.0.1:9/sms")  # an SMS provider is configured
    both = await client.post("/notifications", json={"orderId": order_id, "message": "Hello"})
    assert both.json()["message"] == "Notification queued for delivery by email and SMS"
    assert both.json()["notificationId"] != notification_id
    unknown = new_id(partition_of_product("sku-1"))
    missing = await client.post("/notifications", json={"orderId": unknown, "message": "Hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"
    empty = await client.post("/notifications", json={"orderId": order_id, "message": ""})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "validation_error"
