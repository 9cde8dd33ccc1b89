"""The reference point of the benchmark: Litestar + msgspec, a POST handler that decodes the same
order body and does nothing else, served as the API is (and on granian, the brief's server). The
API is reported as a ratio to it."""

from __future__ import annotations

from typing import Final

import msgspec
from litestar import Litestar, post
from litestar.params import JSONBody


class Location(msgspec.Struct):
    lat: float
    lon: float


class PlaceOrder(msgspec.Struct, rename="camel"):
    product_id: str
    quantity: int
    customer_location: Location


class OrderPlaced(msgspec.Struct, rename="camel"):
    order_id: str
    status: str
    estimated_delivery: str


FIXED_ANSWER: Final = OrderPlaced("00000000-0000-8000-8000-000000000000", "confirmed", "2030-01-01")


@post("/orders", status_code=201)
async def place(data: JSONBody[PlaceOrder]) -> OrderPlaced:
    return FIXED_ANSWER


app = Litestar([place], logging_config=None)
