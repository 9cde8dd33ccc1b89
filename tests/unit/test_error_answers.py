"""The one mapping of errors to answers (api/errors.py `answer_for`): each exception class to its
status, code and headers, in the one error shape."""

from __future__ import annotations

import logging

import asyncpg
import msgspec
import pytest
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from redis import exceptions as redis_errors

from api.auth import Forbidden, RateLimited, Unauthenticated
from api.bodies import MalformedJson, UnsupportedMediaType
from api.errors import DOMAIN_STATUS, answer_for
from engine.errors import (
    BasketOutOfStock,
    HoldNotFound,
    HoldUnavailable,
    IdempotencyKeyReused,
    InvalidTransition,
    NegativeStock,
    OrderMovedOn,
    OrderNotFound,
    OutcomeUnknown,
    OutOfStock,
    Overloaded,
    StoreFull,
    StoreUnavailable,
    UnknownProduct,
    UnknownWarehouse,
    WarehouseExists,
    WrongWarehouse,
)
from notify.jobs import NotificationNotFound
from stores.breaker import CircuitOpen

ANSWERS: list[tuple[BaseException, int, str, dict[str, str]]] = [
    (UnknownProduct("sku-1"), 404, "unknown_product", {}),
    (UnknownWarehouse("w"), 404, "unknown_warehouse", {}),
    (OrderNotFound("o"), 404, "order_not_found", {}),
    (NotificationNotFound("n"), 404, "notification_not_found", {}),
    (HoldNotFound("h"), 404, "reservation_not_found", {}),
    (OutOfStock("sku-1", 2), 409, "out_of_stock", {}),
    (BasketOutOfStock([("sku-1", 2)]), 409, "out_of_stock", {}),
    (InvalidTransition("o", "shipped", "cancelled"), 409, "invalid_transition", {}),
    (WarehouseExists("w"), 409, "warehouse_exists", {}),
    (WrongWarehouse("o", "w"), 409, "wrong_warehouse", {}),
    (NegativeStock("sku-1", "w", 1), 409, "negative_stock", {}),
    (OrderMovedOn("o", 3), 409, "order_changed", {}),
    (HoldUnavailable("h", "expired"), 409, "reservation_unavailable", {}),
    (IdempotencyKeyReused("k"), 422, "idempotency_key_reused", {}),
    (Overloaded(0.25), 503, "overloaded", {"Retry-After": "1"}),
    (StoreFull(), 503, "store_full", {"Retry-After": "1"}),
    (OutcomeUnknown("timeout"), 503, "outcome_unknown", {"Retry-After": "1"}),
    (StoreUnavailable("timeout"), 503, "store_unavailable", {"Retry-After": "1"}),
    (Unauthenticated("no key"), 401, "unauthenticated", {}),
    (Forbidden("no scope"), 403, "forbidden", {}),
    (RateLimited("shop", 2.2), 429, "rate_limited", {"Retry-After": "3"}),
    (UnsupportedMediaType("text/plain"), 415, "unsupported_media_type", {}),
    (MalformedJson("trailing data"), 400, "malformed_json", {}),
    (ValidationException("bad quantity"), 400, "validation_error", {}),
    (NotFoundException(), 404, "not_found", {}),
    (HTTPException(status_code=413, detail="too large"), 413, "body_too_large", {}),
    (HTTPException(status_code=418, detail="teapot"), 418, "http_418", {}),
    (redis_errors.OutOfMemoryError("OOM"), 503, "store_full", {"Retry-After": "1"}),
    (redis_errors.ConnectionError("gone"), 503, "store_unavailable", {"Retry-After": "1"}),
    (redis_errors.TimeoutError("slow"), 503, "store_unavailable", {"Retry-After": "1"}),
    (redis_errors.ClusterDownError("down"), 503, "store_unavailable", {"Retry-After": "1"}),
    (redis_errors.TryAgainError("moving"), 503, "store_unavailable", {"Retry-After": "1"}),
    (asyncpg.CannotConnectNowError("starting"), 503, "store_unavailable", {"Retry-After": "1"}),
    (ConnectionRefusedError(), 503, "store_unavailable", {"Retry-After": "1"}),
    (CircuitOpen("postgres", 4.0), 503, "store_unavailable", {"Retry-After": "1"}),
    (KeyError("bug"), 500, "internal_error", {}),
]


@pytest.mark.parametrize(
    ("exc", "status", "code", "headers"), ANSWERS, ids=[type(a[0]).__name__ for a in ANSWERS]
)
def test_each_error_has_its_answer(
    exc: BaseException, status: int, code: str, headers: dict[str, str]
) -> None:
    answer = answer_for(exc, "POST", "/orders")
    assert (answer.status, answer.body.error.code, answer.headers) == (status, code, headers)
    body = msgspec.json.decode(msgspec.json.encode(answer.body))
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])


def test_every_domain_error_is_mapped_and_listed_above() -> None:
    listed = {type(exc) for exc, *_ in ANSWERS}
    assert set(DOMAIN_STATUS) <= listed


def test_outcome_unknown_names_the_order_to_look_up() -> None:
    answer = answer_for(OutcomeUnknown("timeout", "o-1"), "POST", "/orders")
    assert answer.body.error.details == [{"orderId": "o-1"}]


def test_method_not_allowed_says_which_methods_the_path_takes() -> None:
    exc = MethodNotAllowedException(headers={"Allow": "GET, POST"})
    answer = answer_for(exc, "PUT", "/orders")
    assert (answer.status, answer.body.error.code) == (405, "method_not_allowed")
    assert answer.headers == {"Allow": "GET, POST"}


def test_an_empty_body_says_the_body_is_missing() -> None:
    exc = ValidationException("'data'", extra=[{"key": "data", "message": "missing"}])
    answer = answer_for(exc, "POST", "/orders")
    assert answer.body.error.details == [{"message": "the body is empty", "source": "body"}]


def test_litestar_decode_errors_are_malformed_json() -> None:
    wrapped = HTTPException(status_code=400, detail="bad")
    wrapped.__cause__ = SerializationException("unexpected character")
    assert answer_for(wrapped, "POST", "/orders").body.error.code == "malformed_json"


def test_an_unexpected_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        answer_for(RuntimeError("bug"), "GET", "/orders/x")
    assert caplog.records[0].exc_info is not None


def test_a_short_basket_names_the_lines_it_cannot_fill() -> None:
    answer = answer_for(BasketOutOfStock([("sku-2", 3), ("sku-9", 1)]), "POST", "/orders")
    assert answer.body.error.details == [
        {"productId": "sku-2", "quantity": 3},
        {"productId": "sku-9", "quantity": 1},
    ]
