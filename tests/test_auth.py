"""API keys on the real stores: 401 without a known key, 403 outside the key's scopes, a storefront
sees only its own orders, the per-key rate limit answers 429 with Retry-After and recovers; all in
the one error shape. (Loading keys and the routes' declared scopes: tests/unit/test_api_keys.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.auth import ApiKeys, owner_tag
from engine.ids import owner_tag_of_id
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings

Client = AsyncTestClient[Any]
PARIS = {"lat": 48.8566, "lon": 2.3522}
SHOP_A = {"X-API-Key": "key-shop-a"}
SHOP_B = {"X-API-Key": "key-shop-b"}
OPS = {"X-API-Key": "key-ops"}
SLOW = {"X-API-Key": "key-slow"}
KEYS = {
    "key-shop-a": {"client": "shop-a", "scopes": ["orders"]},
    "key-shop-b": {"client": "shop-b", "scopes": ["orders"]},
    "key-ops": {"client": "ops", "scopes": ["operator"], "rate": 1000, "burst": 1000},
    "key-slow": {"client": "slow", "scopes": ["orders"], "rate": 5, "burst": 2},
}
ORDER = {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS}


@pytest.fixture
async def client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase, pg: asyncpg.Pool
) -> AsyncIterator[Client]:
    app = create_app(settings, api_keys=ApiKeys.parse(json.dumps(KEYS)))
    async with AsyncTestClient(app) as test_client:
        body = {"warehouseId": "paris", "name": "Paris", "location": PARIS}
        assert (await test_client.post("/warehouses", json=body, headers=OPS)).status_code == 201
        put = await test_client.put(
            "/inventory/sku-1/stock/paris", json={"quantity": 50}, headers=OPS
        )
        assert put.status_code == 200
        yield test_client


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_a_missing_or_unknown_key_is_unauthenticated(client: Client) -> None:
    assert_error(await client.post("/orders", json=ORDER), 401, "unauthenticated")
    wrong = {"X-API-Key": "not-a-key"}
    assert_error(await client.post("/orders", json=ORDER, headers=wrong), 401, "unauthenticated")
    assert_error(await client.get("/inventory?productId=sku-1"), 401, "unauthenticated")


async def test_health_metrics_and_schema_stay_open(client: Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/schema/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/inventory/sku-1/stock/paris", {"quantity": 3}),
        ("post", "/inventory/sku-1/stock/paris/adjust", {"delta": 1}),
        ("post", "/warehouses", {"warehouseId": "lyon", "name": "L", "location": PARIS}),
        ("post", "/warehouse/fulfill", {"orderId": "x", "warehouseId": "paris"}),
        ("post", "/orders/x/delivered", None),
    ],
)
async def test_a_storefront_may_not_call_operator_routes(
    client: Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, path, json=body, headers=SHOP_A)
    assert_error(response, 403, "forbidden")


async def test_an_operator_may_not_place_orders(client: Client) -> None:
    assert_error(await client.post("/orders", json=ORDER, headers=OPS), 403, "forbidden")


async def test_a_storefront_reads_and_cancels_only_its_own_orders(client: Client) -> None:
    placed = await client.post("/orders", json=ORDER, headers=SHOP_A)
    assert placed.status_code == 201
    order_id = placed.json()["orderId"]
    assert owner_tag_of_id(order_id) == owner_tag("shop-a")

    assert (await client.get(f"/orders/{order_id}", headers=SHOP_A)).status_code == 200
    assert (await client.get(f"/orders/{order_id}", headers=OPS)).status_code == 200
    # Another storefront's order answers as unknown: its existence is not revealed.
    other = await client.get(f"/orders/{order_id}", headers=SHOP_B)
    assert_error(other, 404, "order_not_found")
    cancel = await client.post(f"/orders/{order_id}/cancel", headers=SHOP_B)
    assert_error(cancel, 404, "order_not_found")
    notice = {"orderId": order_id, "message": "hello"}
    assert_error(
        await client.post("/notifications", json=notice, headers=SHOP_B), 404, "order_not_found"
    )
    assert (await client.get(f"/orders/{order_id}", headers=OPS)).json()["status"] == "confirmed"

    cancelled = await client.post(f"/orders/{order_id}/cancel", headers=SHOP_A)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


async def test_idempotency_keys_are_per_storefront(client: Client) -> None:
    key = {"Idempotency-Key": "same-key"}
    first = await client.post("/orders", json=ORDER, headers={**SHOP_A, **key})
    again = await client.post("/orders", json=ORDER, headers={**SHOP_A, **key})
    other = await client.post("/orders", json=ORDER, headers={**SHOP_B, **key})
    assert again.json()["orderId"] == first.json()["orderId"]
    assert "Idempotent-Replayed" not in other.headers
    assert other.json()["orderId"] != first.json()["orderId"]


async def test_rate_limit_answers_429_with_retry_after_then_recovers(client: Client) -> None:
    inventory = "/inventory?productId=sku-1"
    assert (await client.get(inventory, headers=SLOW)).status_code == 200
    assert (await client.get(inventory, headers=SLOW)).status_code == 200
    limited = await client.get(inventory, headers=SLOW)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    # Another key has its own bucket.
    assert (await client.get(inventory, headers=SHOP_A)).status_code == 200
    # Waiting as told lets the key through again (5 tokens/s: one is back within 0.2 s).
    await asyncio.sleep(0.25)
    assert (await client.get(inventory, headers=SLOW)).status_code == 200
