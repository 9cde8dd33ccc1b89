"""Holds an order can use (POST /orders with a reservationId) and release early (DELETE
/inventory/reservations/{id}); one idempotency rule whatever the partitions of the products."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from api.app import create_app
from api.auth import ApiKeys
from engine import keys
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.test_api import LYON, PARIS, Client, client, order_body, stock

__all__ = ["client"]  # fixture


async def hold(client: Client, quantity: int, warehouse: str = "lyon") -> str:
    body = {"productId": "sku-1", "warehouseId": warehouse, "quantity": quantity}
    response = await client.post("/inventory/reserve", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["reservationId"])


def from_hold(
    reservation_id: str, quantity: int, location: dict[str, float] = PARIS
) -> dict[str, Any]:
    return {**order_body(quantity, location), "reservationId": reservation_id}


async def test_an_order_takes_its_units_from_the_hold_and_the_rest_goes_back(
    client: Client,
) -> None:
    held = await hold(client, 4)  # lyon 5 -> 1
    # Placed from Paris, yet at Lyon: the storefront chose the warehouse when it held the units.
    response = await client.post("/orders", json=from_hold(held, 3))
    assert response.status_code == 201, response.text
    order = (await client.get(f"/orders/{response.json()['orderId']}")).json()
    assert (order["warehouseId"], order["quantity"]) == ("lyon", 3)
    assert await stock(client) == {"paris": 5, "lyon": 2}  # the hold's 4th unit is back
    again = await client.post("/orders", json=from_hold(held, 1))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "reservation_unavailable"
    assert await stock(client) == {"paris": 5, "lyon": 2}


async def test_an_order_larger_than_its_hold_or_of_another_product_is_refused(
    client: Client,
) -> None:
    held = await hold(client, 2)
    for body in (from_hold(held, 3), {**from_hold(held, 1), "productId": "sku-2"}):
        response = await client.post("/orders", json=body)
        assert response.status_code in (404, 409), response.text
    assert await stock(client) == {"paris": 5, "lyon": 3}  # the hold still stands
    assert (await client.post("/orders", json=from_hold(held, 2))).status_code == 201


async def test_a_released_hold_gives_its_units_back_once_and_cannot_be_used(
    client: Client,
) -> None:
    held = await hold(client, 4)
    released = await client.delete(f"/inventory/reservations/{held}")
    assert released.status_code == 200, released.text
    assert released.json() == {"status": "released", "reservationId": held}
    assert await stock(client) == {"paris": 5, "lyon": 5}
    assert (await client.delete(f"/inventory/reservations/{held}")).status_code == 404
    assert (await client.post("/orders", json=from_hold(held, 1))).status_code == 409
    assert await stock(client) == {"paris": 5, "lyon": 5}


async def test_a_used_hold_cannot_be_released(client: Client) -> None:
    held = await hold(client, 2)
    assert (await client.post("/orders", json=from_hold(held, 2))).status_code == 201
    response = await client.delete(f"/inventory/reservations/{held}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "reservation_not_found"
    assert await stock(client) == {"paris": 5, "lyon": 3}


async def test_another_clients_hold_is_refused(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> None:
    api_keys = ApiKeys.parse(
        '{"shop-a-key-0123456789abcdef": {"client": "shop-a", "scopes": ["orders"]},'
        ' "shop-b-key-0123456789abcdef": {"client": "shop-b", "scopes": ["orders"]},'
        ' "ops-key-0123456789abcdef0": {"client": "ops", "scopes": ["operator"]}}'
    )
    async with AsyncTestClient(create_app(settings, api_keys=api_keys)) as http:
        ops = {"X-API-Key": "ops-key-0123456789abcdef0"}
        shop_a = {"X-API-Key": "shop-a-key-0123456789abcdef"}
        shop_b = {"X-API-Key": "shop-b-key-0123456789abcdef"}
        body = {"warehouseId": "lyon", "name": "Lyon", "location": LYON}
        assert (await http.post("/warehouses", json=body, headers=ops)).status_code == 201
        put = await http.put("/inventory/sku-1/stock/lyon", json={"quantity": 5}, headers=ops)
        assert put.status_code == 200
        hold_body = {"productId": "sku-1", "warehouseId": "lyon", "quantity": 2}
        held = (await http.post("/inventory/reserve", json=hold_body, headers=shop_a)).json()
        hold_id = held["reservationId"]
        stolen = await http.post("/orders", json=from_hold(hold_id, 1), headers=shop_b)
        assert stolen.status_code == 409
        released = await http.delete(f"/inventory/reservations/{hold_id}", headers=shop_b)
        assert released.status_code == 404
        own = await http.post("/orders", json=from_hold(hold_id, 2), headers=shop_a)
        assert own.status_code == 201, own.text


def products_in(partitions: str) -> tuple[str, str]:
    """Two product IDs in the same partition (`same`) or in two different ones (`different`)."""
    first = "sku-1"
    for n in range(2, 10_000):
        other = f"sku-{n}"
        same = keys.partition_of_product(other) == keys.partition_of_product(first)
        if same == (partitions == "same"):
            return first, other
    raise AssertionError("no such product")


async def test_the_same_key_with_another_product_is_another_request_in_any_partition(
    client: Client,
) -> None:
    for partitions in ("same", "different"):
        _, other = products_in(partitions)
        put = await client.put(f"/inventory/{other}/stock/paris", json={"quantity": 5})
        assert put.status_code == 200
        key = {"Idempotency-Key": f"basket-{partitions}"}
        first = await client.post("/orders", json=order_body(1), headers=key)
        second = await client.post(
            "/orders", json={**order_body(1), "productId": other}, headers=key
        )
        assert (first.status_code, second.status_code) == (201, 201), second.text
        assert first.json()["orderId"] != second.json()["orderId"]
        repeat = await client.post("/orders", json=order_body(1), headers=key)
        assert repeat.json()["orderId"] == first.json()["orderId"]
        changed = await client.post("/orders", json=order_body(2), headers=key)
        assert changed.status_code == 422
