"""POST /orders answered by api.order_intake is the route Litestar declares: for the same request,
the same status, headers and body as Litestar's own handling of that route (reached here by
calling Litestar's entry point past the intake), and the orders it places are the route's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import MAX_BODY_BYTES, FulfillmentApi, create_app
from api.auth import ApiKeys
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings

Client = AsyncTestClient[Any]
JSON = {"content-type": "application/json"}
KEYS = {
    "key-shop": {"client": "shop", "scopes": ["orders"], "rate": 1000, "burst": 1000},
    "key-ops": {"client": "ops", "scopes": ["operator"]},
}
SHOP = {**JSON, "x-api-key": "key-shop"}


def body(**changes: Any) -> bytes:
    order = {"productId": "sku-1", "quantity": 1, "customerLocation": {"lat": 48.85, "lon": 2.35}}
    return json.dumps({**order, **changes}).encode()


# (name, path, headers, body): every way a request can be refused before or by the engine.
REFUSED = [
    ("no key", "/orders", JSON, body()),
    ("unknown key", "/orders", {**JSON, "x-api-key": "nope"}, body()),
    ("key without the orders scope", "/orders", {**JSON, "x-api-key": "key-ops"}, body()),
    ("empty body", "/orders", SHOP, b""),
    ("empty body, no content type", "/orders", {"x-api-key": "key-shop"}, b""),
    ("text/plain", "/orders", {**SHOP, "content-type": "text/plain"}, body()),
    ("no content type", "/orders", {"x-api-key": "key-shop"}, body()),
    ("latin-1", "/orders", {**SHOP, "content-type": "application/json; charset=latin-1"}, body()),
    ("charset utf-8", "/orders", {**SHOP, "content-type": "application/json; charset=UTF-8"}, b"{"),
    ("malformed", "/orders", SHOP, b'{"productId": '),
    ("trailing slash", "/orders/", SHOP, b"{"),
    ("duplicate key", "/orders", SHOP, body()[:-1] + b', "quantity": 2}'),
    ("string quantity", "/orders", SHOP, body(quantity="1")),
    ("quantity 0", "/orders", SHOP, body(quantity=0)),
    ("latitude 91", "/orders", SHOP, body(customerLocation={"lat": 91, "lon": 0})),
    ("unknown field", "/orders", SHOP, body(coupon="x")),
    ("an array", "/orders", SHOP, b"[1]"),
    ("too deep", "/orders", SHOP, b"[" * 40 + b"]" * 40),
    ("too large", "/orders", SHOP, b"{" + b" " * MAX_BODY_BYTES + b"}"),
    ("empty idempotency key", "/orders", {**SHOP, "idempotency-key": ""}, body()),
    ("long idempotency key", "/orders", {**SHOP, "idempotency-key": "k" * 129}, body()),
    ("unknown product", "/orders", SHOP, body(productId="sku-none")),
    ("out of stock", "/orders", SHOP, body(quantity=50)),
    (
        "another product's hold",
        "/orders",
        SHOP,
        body(reservationId="0" * 8 + "-0000-8000-8000-" + "0" * 12),
    ),
]


def basket(*items: tuple[str, Any], **changes: Any) -> bytes:
    lines = [{"productId": p, "quantity": q} for p, q in items]
    cart = {"items": lines, "customerLocation": {"lat": 48.85, "lon": 2.35}}
    return json.dumps({**cart, **changes}).encode()


REFUSED += [
    ("basket: no lines", "/orders", SHOP, basket()),
    ("basket: 51 lines", "/orders", SHOP, basket(*((f"p{i}", 1) for i in range(51)))),
    ("basket: a product twice", "/orders", SHOP, basket(("sku-1", 1), ("sku-1", 2))),
    ("basket: string quantity", "/orders", SHOP, basket(("sku-1", "1"))),
    ("basket: and a productId", "/orders", SHOP, basket(("sku-1", 1), productId="sku-1")),
    ("basket: with a reservation", "/orders", SHOP, basket(("sku-1", 1), reservationId="x")),
    ("basket: no location", "/orders", SHOP, b'{"items": [{"productId": "sku-1", "quantity": 1}]}'),
    ("basket: unknown product", "/orders", SHOP, basket(("sku-1", 1), ("sku-none", 1))),
    ("basket: out of stock", "/orders", SHOP, basket(("sku-1", 50))),
]


PAST_THE_INTAKE = "/past-the-intake"


def with_a_way_past_the_intake(app: FulfillmentApi) -> Any:
    """The app, where a path under PAST_THE_INTAKE is handled by Litestar alone (POST /orders
    included): one client, one lifespan, one set of services for both ways in."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path.startswith(PAST_THE_INTAKE):
            scope = {**scope, "path": path.removeprefix(PAST_THE_INTAKE), "raw_path": b""}
            await Litestar.__call__(app, scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi


@pytest.fixture
async def client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> AsyncIterator[Client]:
    app = create_app(settings, api_keys=ApiKeys.parse(json.dumps(KEYS)))
    assert isinstance(app, FulfillmentApi)
    ops = {"x-api-key": "key-ops"}
    async with AsyncTestClient(with_a_way_past_the_intake(app)) as http:
        location = {"lat": 48.86, "lon": 2.35}
        created = await http.post(
            "/warehouses",
            json={"warehouseId": "paris", "name": "Paris", "location": location},
            headers=ops,
        )
        assert created.status_code == 201
        stocked = await http.put("/inventory/sku-1/stock/paris", json={"quantity": 20}, headers=ops)
        assert stocked.status_code == 200
        yield http


def answer(response: Any) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    return response.status_code, headers, response.json()


@pytest.mark.parametrize(
    ("name", "path", "headers", "content"), REFUSED, ids=[r[0] for r in REFUSED]
)
async def test_refusals_are_the_routes(
    client: Client, name: str, path: str, headers: dict[str, str], content: bytes
) -> None:
    ours = answer(await client.post(path, headers=headers, content=content))
    theirs = answer(await client.post(PAST_THE_INTAKE + path, headers=headers, content=content))
    assert ours == theirs
    assert 400 <= ours[0] < 500, name


async def test_a_placed_order_and_its_replay_are_the_routes(client: Client) -> None:
    keyed = {**SHOP, "idempotency-key": "cart-1"}
    placed = await client.post("/orders", headers=keyed, content=body(quantity=2))
    assert placed.status_code == 201
    assert set(placed.json()) == {"orderId", "status", "estimatedDelivery"}
    assert "idempotent-replayed" not in placed.headers
    # The other way in finds the same key: the same confirmation, marked as a replay, both ways.
    replays = [
        await client.post(path, headers=keyed, content=body(quantity=2))
        for path in (PAST_THE_INTAKE + "/orders", "/orders")
    ]
    assert [answer(r) for r in replays] == [answer(replays[0])] * 2
    assert replays[0].json() == placed.json()
    assert replays[0].headers["idempotent-replayed"] == "true"
    # The order is the caller's, readable through Litestar's routes.
    order_id = placed.json()["orderId"]
    read = await client.get(f"/orders/{order_id}", headers={"x-api-key": "key-shop"})
    assert read.status_code == 200
    assert read.json()["quantity"] == 2
    levels = await client.get("/inventory", params={"productId": "sku-1"}, headers=SHOP)
    assert levels.json()["stockLevels"][0]["quantity"] == 18


async def test_metrics_count_the_intakes_answers(client: Client) -> None:
    await client.post("/orders", headers=SHOP, content=body())
    await client.post("/orders", headers=SHOP, content=b"{")
    scrape = (await client.get("/metrics")).text
    assert _sample(scrape, 'http_responses_total{status_class="2xx"}') >= 1
    assert _sample(scrape, 'http_responses_total{status_class="4xx"}') >= 1
    assert _sample(scrape, 'orders_total{outcome="confirmed"}') == 1


def _sample(scrape: str, name: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_placed_basket_and_its_replay_are_the_routes(client: Client) -> None:
    keyed = {**SHOP, "idempotency-key": "cart-2"}
    placed = await client.post("/orders", headers=keyed, content=basket(("sku-1", 3)))
    assert placed.status_code == 201
    assert set(placed.json()) == {
        "orderId",
        "status",
        "estimatedDelivery",
        "shipments",
        "allocation",
    }
    replays = [
        await client.post(path, headers=keyed, content=basket(("sku-1", 3)))
        for path in (PAST_THE_INTAKE + "/orders", "/orders")
    ]
    assert [answer(r) for r in replays] == [answer(replays[0])] * 2
    assert replays[0].json() == placed.json()
    assert replays[0].headers["idempotent-replayed"] == "true"
