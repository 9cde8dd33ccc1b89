"""Bad input, in-process, on every route that reads it: strict types (a string is never a number),
undecodable bodies (400 malformed_json, never a 500), bodies that are not application/json (415),
and order IDs in any spelling but the one the API mints (404 order_not_found, never a stale
status). Each refused request changes nothing. The same inputs through nginx: test_gateway.py.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest

from api.bodies import MAX_JSON_DEPTH
from engine import keys
from stores.redis import RedisClient
from tests import test_api
from tests.test_api import PARIS, Client, order_body, stock

client = test_api.client  # the same app and data as the contract tests: paris, lyon, sku-1 x5

JSON: Final = {"Content-Type": "application/json"}
ORDER: Final = (
    b'{"productId": "sku-1", "quantity": 1, "customerLocation": {"lat": 48.8, "lon": 2.3}}'
)


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


async def post(client: Client, path: str, body: bytes, headers: dict[str, str] = JSON) -> Any:
    return await client.post(path, content=body, headers=headers)


async def assert_refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


async def events(redis: RedisClient) -> int:
    return int(await redis.xlen(keys.stream(keys.partition_of_product("sku-1"))))


# --- 1. strict types: no string is ever read as a number, on any route -------------------------

STRINGS_FOR_NUMBERS = [
    pytest.param("post", "/orders", order_body(1) | {"quantity": "1"}, id="order-quantity"),
    pytest.param(
        "post", "/orders", order_body(1) | {"customerLocation": {"lat": "48", "lon": 2.35}},
        id="order-lat",
    ),
    pytest.param(
        "post", "/orders", order_body(1) | {"customerLocation": {"lat": 48.8, "lon": "2.3"}},
        id="order-lon",
    ),
    pytest.param("post", "/orders", order_body(1) | {"quantity": True}, id="order-quantity-bool"),
    pytest.param(
        "post",
        "/inventory/reserve",
        {"productId": "sku-1", "warehouseId": "paris", "quantity": "2"},
        id="reserve-quantity",
    ),
    pytest.param("put", "/inventory/sku-1/stock/paris", {"quantity": "5"}, id="set-quantity"),
    pytest.param(
        "post", "/inventory/sku-1/stock/paris/adjust", {"delta": "-1"}, id="adjust-delta"
    ),
    pytest.param(
        "post",
        "/warehouses",
        {"warehouseId": "nice", "name": "Nice", "location": {"lat": "43.7", "lon": 7.26}},
        id="warehouse-lat",
    ),
    pytest.param(
        "post",
        "/warehouse/fulfill",
        {"orderId": 12, "warehouseId": "paris"},
        id="fulfil-order-id-number",
    ),
    pytest.param(
        "post",
        "/warehouse/unfulfillable",
        {"orderId": "x", "warehouseId": "paris", "reason": 5},
        id="unfulfillable-reason-number",
    ),
    pytest.param("post", "/notifications", {"orderId": "x", "message": 7}, id="notice-message"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), STRINGS_FOR_NUMBERS)
async def test_a_value_of_the_wrong_json_type_is_refused_never_coerced(
    client: Client, redis: RedisClient, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await events(redis)
    response = await client.request(method.upper(), path, json=body)
    error = await assert_refused(response, 400, "validation_error")
    assert error["details"][0]["source"] == "body"
    assert await stock(client) == {"paris": 5, "lyon": 5}
    assert (await client.get("/warehouses/nice")).status_code == 404
    assert await events(redis) == before


async def test_a_whole_number_may_carry_a_fraction_of_zero_but_not_more(client: Client) -> None:
    # JSON has one number type and JSON Schema counts 2.0 as an integer; 2.5 is not one.
    accepted = await post(client, "/orders", json.dumps(order_body(1) | {"quantity": 2.0}).encode())
    assert accepted.status_code == 201, accepted.text
    assert await stock(client) == {"paris": 3, "lyon": 5}
    refused = await post(client, "/orders", json.dumps(order_body(1) | {"quantity": 2.5}).encode())
    await assert_refused(refused, 400, "validation_error")
    assert await stock(client) == {"paris": 3, "lyon": 5}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/inventory?productId=", 400, "validation_error"),
        ("/inventory?productId=sku%7B1%7D", 400, "validation_error"),
        ("/inventory?productId=" + "x" * 65, 400, "validation_error"),
        ("/inventory/stream?productId=", 400, "validation_error"),
        ("/warehouses/" + "x" * 65, 400, "validation_error"),
        ("/orders/" + "x" * 65, 400, "validation_error"),
    ],
)
async def test_query_and_path_parameters_keep_their_limits(
    client: Client, path: str, status: int, code: str
) -> None:
    await assert_refused(await client.get(path), status, code)


async def test_control_characters_in_stored_text_are_refused(client: Client) -> None:
    # PostgreSQL and FerretDB cannot store U+0000: refused where it enters, not by a writer.
    body = {"warehouseId": "nice", "name": "Ni\u0000ce", "location": {"lat": 43.7, "lon": 7.26}}
    await assert_refused(await client.post("/warehouses", json=body), 400, "validation_error")
    adjust = {"delta": 1, "reason": "re\u0000stock"}
    response = await client.post("/inventory/sku-1/stock/paris/adjust", json=adjust)
    await assert_refused(response, 400, "validation_error")
    assert await stock(client) == {"paris": 5, "lyon": 5}


# --- 2. undecodable bodies: 400 malformed_json, never a 500 ----------------------------------

MALFORMED = [
    pytest.param(ORDER[:-1] + b', "productId": "sku-1"}', id="duplicate-key"),
    pytest.param(
        b'{"productId": "sku-1", "quantity": 5000, "quantity": 1, '
        b'"customerLocation": {"lat": 48.8, "lon": 2.3}}',
        id="duplicate-key-first-out-of-range",
    ),
    pytest.param(
        b'{"productId": "sku-1", "quantity": 1, "\\u0071uantity": 2, '
        b'"customerLocation": {"lat": 48.8, "lon": 2.3}}',
        id="duplicate-key-escaped",
    ),
    pytest.param(
        b'{"productId": "sku-1", "quantity": 1, '
        b'"customerLocation": {"lat": 48.8, "lon": 2.3, "lat": 1}}',
        id="duplicate-key-nested",
    ),
    pytest.param(b'{"productId": ' + nested(7_000) + b"}", id="nested-14kb"),
    pytest.param(nested(8_000), id="nested-array-body"),
    pytest.param(b"[" * 14_000, id="nested-unclosed"),
    pytest.param(
        b'{"productId": ' + nested(MAX_JSON_DEPTH) + b', "quantity": 1}', id="nested-past-limit"
    ),
    pytest.param(ORDER.replace(b"sku-1", b"sku-\xff"), id="invalid-utf8"),
    pytest.param(ORDER.replace(b"sku-1", b"sku-\xed\xa0\x80"), id="utf8-surrogate"),
    pytest.param(ORDER.replace(b"sku-1", b"sku-\\ud800"), id="lone-surrogate-escape"),
    pytest.param(b"\xef\xbb\xbf" + ORDER, id="byte-order-mark"),
    pytest.param(ORDER + b" trailing", id="trailing-garbage"),
    pytest.param(ORDER + ORDER, id="two-values"),
    pytest.param(ORDER.replace(b"48.8", b"NaN"), id="nan"),
    pytest.param(b'{"productId": "sku-1", "quantity": "1",', id="truncated-after-type-error"),
    pytest.param(b"\x00", id="nul-byte"),
]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize("path", ["/orders", "/inventory/reserve", "/notifications"])
async def test_an_undecodable_body_is_malformed_json(
    client: Client, redis: RedisClient, path: str, body: bytes
) -> None:
    before = await events(redis)
    await assert_refused(await post(client, path, body), 400, "malformed_json")
    assert await stock(client) == {"paris": 5, "lyon": 5}
    assert await events(redis) == before


async def test_nesting_up_to_the_limit_is_json_of_the_wrong_shape(client: Client) -> None:
    body = b'{"productId": ' + nested(MAX_JSON_DEPTH - 1) + b"}"
    await assert_refused(await post(client, "/orders", body), 400, "validation_error")


async def test_the_same_key_in_different_objects_is_no_duplicate(client: Client) -> None:
    # lat and lon in a warehouse's location, and warehouseId beside it: nothing repeats within
    # one object; the slow check (a backslash in a name) must agree.
    body = {"warehouseId": "nice", "name": "Nice \\ Côte", "location": {"lat": 43.7, "lon": 7.26}}
    created = await post(client, "/warehouses", json.dumps(body).encode())
    assert created.status_code == 201, created.text


# --- 2b. only application/json: anything else is 415 ------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
        None,
    ],
)
@pytest.mark.parametrize("path", ["/orders", "/inventory/reserve", "/warehouses", "/notifications"])
async def test_a_body_that_is_not_application_json_is_415(
    client: Client, redis: RedisClient, path: str, content_type: str | None
) -> None:
    before = await events(redis)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await post(client, path, ORDER, headers)
    await assert_refused(response, 415, "unsupported_media_type")
    assert await stock(client) == {"paris": 5, "lyon": 5}
    assert await events(redis) == before


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON", "application/json; charset=UTF-8"]
)
async def test_json_in_any_spelling_of_its_media_type_is_taken(
    client: Client, content_type: str
) -> None:
    response = await post(client, "/orders", ORDER, {"Content-Type": content_type})
    assert response.status_code == 201, response.text


# --- 3. one spelling of an order ID ------------------------------------------------------------


def other_spellings(order_id: str) -> list[str]:
    return [
        order_id.upper(),
        order_id.replace("-", ""),
        "%7B" + order_id + "%7D",  # {braces}, as a path carries them
        "urn:uuid:" + order_id,
        order_id[:9] + order_id[9:].upper(),
        " " + order_id,
    ]


async def test_an_order_id_in_another_spelling_is_not_found_on_every_route(
    client: Client, redis: RedisClient
) -> None:
    order_id = (await client.post("/orders", json=order_body(2))).json()["orderId"]
    shipped = await client.post(
        "/warehouse/fulfill", json={"orderId": order_id, "warehouseId": "paris"}
    )
    assert shipped.status_code == 200, shipped.text
    before = await events(redis)
    for spelling in other_spellings(order_id):
        as_text = spelling.replace("%7B", "{").replace("%7D", "}")
        for method, path, body in [
            ("GET", f"/orders/{spelling}", None),
            ("POST", f"/orders/{spelling}/cancel", None),
            ("POST", f"/orders/{spelling}/delivered", None),
            ("POST", "/warehouse/fulfill", {"orderId": as_text, "warehouseId": "paris"}),
            ("POST", "/warehouse/unfulfillable", {"orderId": as_text, "warehouseId": "paris"}),
            ("POST", "/notifications", {"orderId": as_text, "message": "hello"}),
        ]:
            response = await client.request(method, path, json=body)
            await assert_refused(response, 404, "order_not_found")
    # Never a stale status, and nothing changed: the order is shipped, read by its one spelling.
    assert (await client.get(f"/orders/{order_id}")).json()["status"] == "shipped"
    assert await events(redis) == before


async def test_a_hold_id_in_another_spelling_is_not_found(client: Client) -> None:
    body = {"productId": "sku-1", "warehouseId": "lyon", "quantity": 2}
    hold_id = (await client.post("/inventory/reserve", json=body)).json()["reservationId"]
    for spelling in other_spellings(hold_id):
        response = await client.delete(f"/inventory/reservations/{spelling}")
        await assert_refused(response, 404, "reservation_not_found")
    assert (await stock(client))["lyon"] == 3  # the hold still stands
    assert (await client.delete(f"/inventory/reservations/{hold_id}")).status_code == 200
    assert (await stock(client))["lyon"] == 5


async def test_a_405_names_the_allowed_methods(client: Client) -> None:
    response = await client.request("TRACE", "/warehouses")
    await assert_refused(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    options = await client.options("/warehouses")
    assert set(options.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}


async def test_a_good_body_is_still_taken_after_all_this(client: Client) -> None:
    placed = await client.post("/orders", json=order_body(1, PARIS))
    assert placed.status_code == 201
