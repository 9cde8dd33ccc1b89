"""POST /orders with `items` (a basket) over HTTP: the contract, the refusals, reading it back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings

Client = AsyncTestClient[Any]
PARIS = {"lat": 48.8566, "lon": 2.3522}
WAREHOUSES = {"paris": PARIS, "lyon": {"lat": 45.764, "lon": 4.8357}}
STOCK = {("sku-1", "paris"): 5, ("sku-2", "lyon"): 5, ("sku-3", "paris"): 1, ("sku-3", "lyon"): 1}


@pytest.fixture
async def client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(settings)) as test_client:
        for warehouse_id, location in WAREHOUSES.items():
            body = {"warehouseId": warehouse_id, "name": warehouse_id.title(), "location": location}
            assert (await test_client.post("/warehouses", json=body)).status_code == 201
        for (product, warehouse_id), quantity in STOCK.items():
            put = await test_client.put(
                f"/inventory/{product}/stock/{warehouse_id}", json={"quantity": quantity}
            )
            assert put.status_code == 200
        yield test_client


def basket(*items: tuple[str, Any]) -> dict[str, Any]:
    return {"items": [{"productId": p, "quantity": q} for p, q in items], "customerLocation": PARIS}


async def levels(client: Client) -> dict[tuple[str, str], int]:
    found = {}
    for product in ("sku-1", "sku-2", "sku-3"):
        response = await client.get("/inventory", params={"productId": product})
        for level in response.json()["stockLevels"]:
            found[(product, level["warehouseId"])] = level["quantity"]
    return found


async def test_a_basket_answers_its_shipments(client: Client) -> None:
    response = await client.post("/orders", json=basket(("sku-1", 2), ("sku-2", 1), ("sku-3", 2)))
    assert response.status_code == 201, response.text
    body = response.json()
    assert list(body) == ["orderId", "status", "estimatedDelivery", "shipments", "allocation"]
    assert body["status"] == "confirmed" and body["allocation"] == "exact"
    shipments = {s["warehouseId"]: s for s in body["shipments"]}
    assert set(shipments) == {"paris", "lyon"}
    assert shipments["paris"]["items"] == [
        {"productId": "sku-1", "quantity": 2},
        {"productId": "sku-3", "quantity": 1},
    ]
    assert shipments["lyon"]["items"] == [
        {"productId": "sku-2", "quantity": 1},
        {"productId": "sku-3", "quantity": 1},
    ]
    latest = max(date.fromisoformat(s["estimatedDelivery"]) for s in body["shipments"])
    assert date.fromisoformat(body["estimatedDelivery"]) == latest
    assert await levels(client) == {
        ("sku-1", "paris"): 3,
        ("sku-2", "lyon"): 4,
        ("sku-3", "paris"): 0,
        ("sku-3", "lyon"): 0,
    }

    read = await client.get(f"/orders/{body['orderId']}")
    assert read.status_code == 200
    order = read.json()
    assert order["status"] == "confirmed" and order["allocation"] == "exact"
    assert order["items"] == [
        {"productId": "sku-1", "quantity": 2},
        {"productId": "sku-2", "quantity": 1},
        {"productId": "sku-3", "quantity": 2},
    ]
    assert [(s["warehouseId"], s["status"]) for s in order["shipments"]] == [
        (s["warehouseId"], "confirmed") for s in body["shipments"]
    ]
    assert order["customerLocation"] == PARIS


async def test_a_short_basket_is_refused_whole_and_names_its_lines(client: Client) -> None:
    before = await levels(client)
    response = await client.post("/orders", json=basket(("sku-1", 1), ("sku-3", 3)))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "out_of_stock"
    assert error["details"] == [{"productId": "sku-3", "quantity": 3}]
    assert await levels(client) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(basket(), 400, "validation_error", id="no-lines"),
        pytest.param(
            basket(*((f"p{i}", 1) for i in range(51))), 400, "validation_error", id="51-lines"
        ),
        pytest.param(basket(("sku-1", 1), ("sku-1", 1)), 400, "validation_error", id="twice"),
        pytest.param(basket(("sku-1", 0)), 400, "validation_error", id="quantity-0"),
        pytest.param(basket(("sku-1", 1001)), 400, "validation_error", id="quantity-1001"),
        pytest.param(basket(("sku 1", 1)), 400, "validation_error", id="bad-product-id"),
        pytest.param({"items": "x", "customerLocation": PARIS}, 400, "validation_error", id="str"),
        pytest.param({**basket(("sku-1", 1)), "coupon": 1}, 400, "validation_error", id="field"),
        pytest.param(basket(("sku-1", 1), ("nope", 1)), 404, "unknown_product", id="unknown"),
    ],
)
async def test_bad_baskets_change_nothing(
    client: Client, body: dict[str, Any], status: int, code: str
) -> None:
    before = await levels(client)
    response = await client.post("/orders", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await levels(client) == before


async def test_a_one_product_order_keeps_its_exact_answer(client: Client) -> None:
    body = {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS}
    response = await client.post("/orders", json=body)
    assert response.status_code == 201
    assert list(response.json()) == ["orderId", "status", "estimatedDelivery"]


async def test_a_basket_is_fulfilled_shipment_by_shipment_over_http(client: Client) -> None:
    placed = await client.post("/orders", json=basket(("sku-1", 1), ("sku-2", 1)))
    order_id = placed.json()["orderId"]
    fulfilled = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "lyon"}
    )
    assert fulfilled.status_code == 200, fulfilled.text
    assert fulfilled.json() == {
        "status": "success",
        "message": "Order fulfilled successfully",
        "orderId": order_id,
        "warehouseId": "lyon",
        "orderStatus": "confirmed",
        "shipmentStatus": "shipped",
    }
    refused = await client.post(f"/orders/{order_id}/cancel")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invalid_transition"
    wrong = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "madrid"}
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "wrong_warehouse"
    fulfilled = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "paris"}
    )
    assert fulfilled.json()["orderStatus"] == "shipped"
    one = await client.post(f"/orders/{order_id}/delivered", params={"warehouseId": "paris"})
    assert one.status_code == 200 and one.json()["status"] == "shipped"
    every = await client.post(f"/orders/{order_id}/delivered")
    assert every.json()["status"] == "delivered"
    assert [s["status"] for s in every.json()["shipments"]] == ["delivered", "delivered"]


async def test_a_cancelled_basket_gives_every_line_back(client: Client) -> None:
    before = await levels(client)
    placed = await client.post("/orders", json=basket(("sku-1", 2), ("sku-2", 3)))
    order_id = placed.json()["orderId"]
    assert await levels(client) != before
    cancelled = await client.post(f"/orders/{order_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert await levels(client) == before
    read = await client.get(f"/orders/{order_id}")
    assert read.json()["status"] == "cancelled"


async def test_a_basket_shipment_is_rerouted_over_http(client: Client) -> None:
    placed = await client.post("/orders", json=basket(("sku-1", 1), ("sku-2", 1)))
    order_id = placed.json()["orderId"]
    put = await client.put("/inventory/sku-2/stock/paris", json={"quantity": 2})
    assert put.status_code == 200
    moved = await client.post(
        "/warehouse/unfulfillable",
        json={"orderId": order_id, "warehouseId": "lyon", "reason": "shelf empty"},
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["orderId"], body["status"], body["warehouseId"]) == (order_id, "confirmed", None)
    assert [(s["warehouseId"], s["items"]) for s in body["shipments"]] == [
        ("paris", [{"productId": "sku-1", "quantity": 1}, {"productId": "sku-2", "quantity": 1}])
    ]
    again = await client.post(
        "/warehouse/unfulfillable", json={"orderId": order_id, "warehouseId": "lyon"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "wrong_warehouse"
    nowhere = await client.post(
        "/warehouse/unfulfillable", json={"orderId": order_id, "warehouseId": "paris"}
    )
    assert nowhere.status_code == 409 and nowhere.json()["error"]["code"] == "out_of_stock"
