"""The HTTP contract: response shapes from the brief, one error shape, bad input changes nothing."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import GC_THRESHOLDS, MAX_BODY_BYTES, create_app
from engine import keys
from engine.orders import MAX_ORDER_QUANTITY
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings

Client = AsyncTestClient[Any]
PARIS = {"lat": 48.8566, "lon": 2.3522}
LYON = {"lat": 45.764, "lon": 4.8357}


@pytest.fixture
async def client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(settings)) as test_client:
        for warehouse_id, location in (("paris", PARIS), ("lyon", LYON)):
            body = {"warehouseId": warehouse_id, "name": warehouse_id.title(), "location": location}
            assert (await test_client.post("/warehouses", json=body)).status_code == 201
        for warehouse_id in ("paris", "lyon"):
            put = await test_client.put(
                f"/inventory/sku-1/stock/{warehouse_id}", json={"quantity": 5}
            )
            assert put.status_code == 200
        yield test_client


async def test_the_app_serves_with_the_serving_collector_and_gives_it_back(
    settings: Settings, redis: RedisClient
) -> None:
    before = gc.get_threshold()
    async with AsyncTestClient(create_app(settings)) as serving:
        assert (await serving.get("/healthz")).status_code == 200
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold() == before != GC_THRESHOLDS


def order_body(quantity: int = 1, location: dict[str, float] = PARIS) -> dict[str, Any]:
    return {"productId": "sku-1", "quantity": quantity, "customerLocation": location}


async def stock(client: Client) -> dict[str, int]:
    response = await client.get("/inventory", params={"productId": "sku-1"})
    return {lv["warehouseId"]: lv["quantity"] for lv in response.json()["stockLevels"]}


async def test_place_order_answers_the_contract(client: Client) -> None:
    response = await client.post("/orders", json=order_body(2))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"orderId", "status", "estimatedDelivery"}
    assert body["status"] == "confirmed"
    assert date.fromisoformat(body["estimatedDelivery"]) > date.today()
    assert await stock(client) == {"paris": 3, "lyon": 5}


async def test_inventory_answers_the_contract_and_is_live(client: Client) -> None:
    response = await client.get("/inventory", params={"productId": "sku-1"})
    assert response.json() == {
        "productId": "sku-1",
        "stockLevels": [
            {"warehouseId": "lyon", "quantity": 5},
            {"warehouseId": "paris", "quantity": 5},
        ],
    }
    await client.post("/orders", json=order_body(1, LYON))
    assert (await stock(client))["lyon"] == 4


async def test_reserve_answers_the_contract(client: Client) -> None:
    body = {"productId": "sku-1", "warehouseId": "lyon", "quantity": 5}
    response = await client.post("/inventory/reserve", json=body)
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert response.json()["message"] == "Stock reserved successfully"
    assert (await stock(client))["lyon"] == 0
    again = await client.post("/inventory/reserve", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "out_of_stock"


async def test_read_and_cancel_an_order(client: Client) -> None:
    order_id = (await client.post("/orders", json=order_body(2))).json()["orderId"]
    read = await client.get(f"/orders/{order_id}")
    assert read.status_code == 200
    assert read.json() | {"createdAt": None} == {
        "orderId": order_id,
        "status": "confirmed",
        "productId": "sku-1",
        "quantity": 2,
        "warehouseId": "paris",
        "customerLocation": PARIS,
        "estimatedDelivery": read.json()["estimatedDelivery"],
        "createdAt": None,
        "history": [],  # no writer runs here: PostgreSQL has not seen the order yet
    }
    cancelled = await client.post(f"/orders/{order_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert await stock(client) == {"paris": 5, "lyon": 5}
    again = await client.post(f"/orders/{order_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"


async def test_idempotency_key_replays_the_same_answer(client: Client) -> None:
    headers = {"Idempotency-Key": "checkout-42"}
    first = await client.post("/orders", json=order_body(2), headers=headers)
    retry = await client.post("/orders", json=order_body(2), headers=headers)
    assert (first.status_code, retry.status_code) == (201, 201)
    assert first.json() == retry.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await stock(client) == {"paris": 3, "lyon": 5}
    other = await client.post("/orders", json=order_body(1), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_out_of_stock_everywhere_is_409(client: Client) -> None:
    assert (await client.post("/orders", json=order_body(5))).status_code == 201
    assert (await client.post("/orders", json=order_body(5))).status_code == 201
    response = await client.post("/orders", json=order_body(1))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "out_of_stock"


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


BAD_ORDERS = [
    pytest.param(
        raw({"quantity": 1, "customerLocation": PARIS}), 400, "validation_error", id="no-product"
    ),
    pytest.param(
        raw({"productId": "sku-1", "customerLocation": PARIS}),
        400,
        "validation_error",
        id="no-quantity",
    ),
    pytest.param(
        raw({"productId": "sku-1", "quantity": 1}), 400, "validation_error", id="no-location"
    ),
    pytest.param(raw(order_body(0)), 400, "validation_error", id="zero-quantity"),
    pytest.param(raw(order_body(-3)), 400, "validation_error", id="negative-quantity"),
    pytest.param(
        raw(order_body(MAX_ORDER_QUANTITY + 1)), 400, "validation_error", id="huge-quantity"
    ),
    pytest.param(raw(order_body(10**30)), 400, "validation_error", id="enormous-quantity"),
    pytest.param(raw(order_body(1.5)), 400, "validation_error", id="fractional-quantity"),
    pytest.param(
        raw(order_body(1, {"lat": 91, "lon": 0})), 400, "validation_error", id="lat-off-globe"
    ),
    pytest.param(
        raw(order_body(1, {"lat": 0, "lon": -180.5})), 400, "validation_error", id="lon-off-globe"
    ),
    pytest.param(
        raw(order_body(1, {"lat": "north", "lon": 0})),
        400,
        "validation_error",
        id="lat-not-a-number",
    ),
    pytest.param(
        raw(order_body(1) | {"productId": ""}), 400, "validation_error", id="empty-product"
    ),
    pytest.param(
        raw(order_body(1) | {"productId": "a{b}"}), 400, "validation_error", id="braces-in-product"
    ),
    pytest.param(
        raw(order_body(1) | {"productId": "x" * 65}), 400, "validation_error", id="long-product"
    ),
    pytest.param(
        raw(order_body(1) | {"productId": "sku-1\n"}),
        400,
        "validation_error",
        id="newline-after-product",
    ),
    pytest.param(
        raw(order_body(1) | {"coupon": "FREE"}), 400, "validation_error", id="unknown-field"
    ),
    pytest.param(
        raw(order_body(1) | {"productId": "ghost"}), 404, "unknown_product", id="unknown-product"
    ),
    pytest.param(raw([order_body(1)]), 400, "validation_error", id="array-body"),
    pytest.param(
        b'{"productId": "sku-1", "quantity": 1,', 400, "malformed_json", id="truncated-json"
    ),
    pytest.param(b"not json at all", 400, "malformed_json", id="not-json"),
    pytest.param(b"", 400, "validation_error", id="empty-body"),
    pytest.param(b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "body_too_large", id="oversized-body"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_ORDERS)
async def test_bad_order_is_refused_clearly_and_changes_nothing(
    client: Client, redis: RedisClient, body: bytes, status: int, code: str
) -> None:
    stream = keys.stream(keys.partition_of_product("sku-1"))
    events_before = await redis.xlen(stream)
    response = await client.post(
        "/orders", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert await stock(client) == {"paris": 5, "lyon": 5}
    assert await redis.xlen(stream) == events_before


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("get", "/orders/not-an-order", None, 404, "order_not_found"),
        ("get", "/orders/01a2148a-796e-8026-8633-2e09d423cfde", None, 404, "order_not_found"),
        (
            "post",
            "/orders/01a2148a-796e-8026-8633-2e09d423cfde/cancel",
            None,
            404,
            "order_not_found",
        ),
        ("get", "/inventory?productId=ghost", None, 404, "unknown_product"),
        ("get", "/inventory", None, 400, "validation_error"),
        ("put", "/inventory/sku-1/stock/atlantis", {"quantity": 1}, 404, "unknown_warehouse"),
        ("put", "/inventory/sku-1/stock/paris", {"quantity": -1}, 400, "validation_error"),
        ("put", "/inventory/sku%7B1%7D/stock/paris", {"quantity": 1}, 400, "validation_error"),
        ("post", "/inventory/sku-1/stock/paris/adjust", {"delta": -6}, 409, "negative_stock"),
        (
            "post",
            "/inventory/reserve",
            {"productId": "sku-1", "warehouseId": "paris", "quantity": 0},
            400,
            "validation_error",
        ),
        (
            "post",
            "/inventory/reserve",
            {"productId": "sku-1", "warehouseId": "atlantis", "quantity": 1},
            404,
            "unknown_warehouse",
        ),
        (
            "post",
            "/inventory/reserve",
            {"productId": "ghost", "warehouseId": "paris", "quantity": 1},
            404,
            "unknown_product",
        ),
        (
            "post",
            "/warehouses",
            {"warehouseId": "paris", "name": "Again", "location": PARIS},
            409,
            "warehouse_exists",
        ),
        (
            "post",
            "/warehouses",
            {"warehouseId": "x", "name": "X", "location": {"lat": 0, "lon": 200}},
            400,
            "validation_error",
        ),
        ("get", "/warehouses/atlantis", None, 404, "unknown_warehouse"),
        ("get", "/no/such/route", None, 404, "not_found"),
        ("delete", "/orders", None, 405, "method_not_allowed"),
    ],
)
async def test_other_bad_requests_share_the_error_shape(
    client: Client, method: str, path: str, body: Any, status: int, code: str
) -> None:
    kwargs = {} if body is None else {"json": body}
    response = await client.request(method.upper(), path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await stock(client) == {"paris": 5, "lyon": 5}


async def test_operators_set_and_adjust_stock(client: Client) -> None:
    set_response = await client.put("/inventory/sku-2/stock/lyon", json={"quantity": 7})
    assert set_response.json() == {"productId": "sku-2", "warehouseId": "lyon", "quantity": 7}
    adjusted = await client.post(
        "/inventory/sku-2/stock/lyon/adjust", json={"delta": -2, "reason": "damaged"}
    )
    assert adjusted.json()["quantity"] == 5


async def test_warehouses_are_listed_and_read(client: Client) -> None:
    listed = (await client.get("/warehouses")).json()
    assert [w["warehouseId"] for w in listed] == ["lyon", "paris"]
    assert (await client.get("/warehouses/lyon")).json()["location"] == LYON


async def test_health_readiness_and_openapi(client: Client) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "postgres": "ok", "mongo": "ok"}
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/orders", "/inventory", "/inventory/reserve", "/warehouses"} <= set(schema["paths"])
