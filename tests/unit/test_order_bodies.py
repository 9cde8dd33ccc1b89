"""POST /orders' body: one product or a basket, told apart by `items` (api.bodies.ChoiceDecoder)."""

from __future__ import annotations

import json

import pytest
from litestar.exceptions import ValidationException

from api.bodies import decoder_for
from api.orders import OrderBody, PlaceBasket, PlaceOrder

WHERE = {"lat": 48.85, "lon": 2.35}


def decode(body: object) -> object:
    return decoder_for(OrderBody).decode(json.dumps(body).encode())


def test_one_product_and_a_basket_decode_to_their_kind() -> None:
    one = decode({"productId": "sku-1", "quantity": 2, "customerLocation": WHERE})
    assert isinstance(one, PlaceOrder) and one.quantity == 2
    cart = decode({"items": [{"productId": "sku-1", "quantity": 2}], "customerLocation": WHERE})
    assert isinstance(cart, PlaceBasket) and cart.items[0].product_id == "sku-1"


def test_a_product_named_items_is_still_one_product() -> None:
    one = decode({"productId": "items", "quantity": 1, "customerLocation": WHERE})
    assert isinstance(one, PlaceOrder) and one.product_id == "items"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"items": [{"productId": "sku-1", "quantity": "2"}], "customerLocation": WHERE}, "items"),
        ({"items": [], "customerLocation": WHERE}, "items"),
        ({"items": "sku-1", "customerLocation": WHERE}, "items"),
        ({"productId": "sku-1", "quantity": 0, "customerLocation": WHERE}, "quantity"),
    ],
)
def test_a_bad_body_is_refused_in_the_words_of_its_kind(body: object, key: str) -> None:
    with pytest.raises(ValidationException) as refused:
        decode(body)
    assert key in str(refused.value.extra)
