"""Every error leaves the API in one JSON shape: {"error": {"code", "message", "details"?}}.

Domain errors map to a status here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from redis import exceptions as redis_errors

from api.auth import Forbidden, RateLimited, Unauthenticated, retry_after_header
from api.bodies import MalformedJson, UnsupportedMediaType
from engine.errors import (
    DomainError,
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
    UnknownProduct,
    UnknownWarehouse,
    WarehouseExists,
    WrongWarehouse,
)
from notify.jobs import NotificationNotFound
from stores.breaker import CircuitOpen

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


DOMAIN_STATUS: Final[dict[type[DomainError], tuple[int, str]]] = {
    UnknownProduct: (404, "unknown_product"),
    UnknownWarehouse: (404, "unknown_warehouse"),
    OrderNotFound: (404, "order_not_found"),
    NotificationNotFound: (404, "notification_not_found"),
    OutOfStock: (409, "out_of_stock"),
    InvalidTransition: (409, "invalid_transition"),
    WarehouseExists: (409, "warehouse_exists"),
    WrongWarehouse: (409, "wrong_warehouse"),
    NegativeStock: (409, "negative_stock"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    OrderMovedOn: (409, "order_changed"),
    HoldUnavailable: (409, "reservation_unavailable"),
    HoldNotFound: (404, "reservation_not_found"),
    # 503s: nothing is wrong with the request; send it again after Retry-After.
    Overloaded: (503, "overloaded"),
    StoreFull: (503, "store_full"),
    OutcomeUnknown: (503, "outcome_unknown"),
}
RETRY_AFTER_S: Final = 1
MISSING_BODY: Final = {"message": "the body is empty", "source": "body"}

HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: Any = None
) -> Response[ErrorBody]:
    return Response(ErrorBody(ErrorDetail(code, message, details)), status_code=status)


def on_domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorBody]:
    status, code = DOMAIN_STATUS[type(exc)]
    details = None
    if isinstance(exc, OutcomeUnknown) and exc.subject_id is not None:
        # The client is told which order to look up (GET /orders/{orderId}) or to retry.
        details = [{"orderId": exc.subject_id}]
    response = error_response(status, code, str(exc), details)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def on_unauthenticated(_: Request[Any, Any, Any], exc: Unauthenticated) -> Response[ErrorBody]:
    return error_response(401, "unauthenticated", str(exc))


def on_forbidden(_: Request[Any, Any, Any], exc: Forbidden) -> Response[ErrorBody]:
    return error_response(403, "forbidden", str(exc))


def on_rate_limited(_: Request[Any, Any, Any], exc: RateLimited) -> Response[ErrorBody]:
    response = error_response(429, "rate_limited", str(exc))
    response.headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    return response


def on_unsupported_media_type(
    _: Request[Any, Any, Any], exc: UnsupportedMediaType
) -> Response[ErrorBody]:
    return error_response(415, "unsupported_media_type", str(exc))


def on_malformed_json(_: Request[Any, Any, Any], exc: MalformedJson) -> Response[ErrorBody]:
    return error_response(400, "malformed_json", str(exc))


def on_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    details = exc.extra if isinstance(exc.extra, list) else None
    if details and any(d.get("key") == "data" for d in details if isinstance(d, dict)):
        # Litestar's words for an empty body are "'data'": say what is missing instead.
        return error_response(
            400, "validation_error", "a JSON request body is required", [MISSING_BODY]
        )
    return error_response(400, "validation_error", exc.detail, details)


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc.__cause__, SerializationException):  # Litestar's wrap of a decode error
        return error_response(
            400, "malformed_json", f"request body is not valid JSON: {exc.detail}"
        )
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    response = error_response(exc.status_code, code, exc.detail)
    if exc.headers:  # a 405's `Allow` (RFC 9110: the methods the path does take)
        response.headers.update(exc.headers)
    return response


def on_store_full(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """A write outside the engine (a warehouse's version bump, a notice's job) refused at
    maxmemory: the engine's own writes become StoreFull."""
    return on_domain_error(request, StoreFull())


def on_store_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """A read that could not reach its store (the engine's writes go through its resends)."""
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    response = error_response(503, "store_unavailable", "a store did not answer; retry later")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def on_unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to handle this request")


EXCEPTION_HANDLERS: Final = {
    DomainError: on_domain_error,
    Unauthenticated: on_unauthenticated,
    Forbidden: on_forbidden,
    RateLimited: on_rate_limited,
    UnsupportedMediaType: on_unsupported_media_type,
    MalformedJson: on_malformed_json,
    ValidationException: on_validation_error,
    HTTPException: on_http_error,
    redis_errors.OutOfMemoryError: on_store_full,
    redis_errors.ConnectionError: on_store_unavailable,
    redis_errors.TimeoutError: on_store_unavailable,
    # PostgreSQL down or restarting while an order that left Redis is read.
    asyncpg.PostgresConnectionError: on_store_unavailable,
    asyncpg.CannotConnectNowError: on_store_unavailable,
    OSError: on_store_unavailable,
    # A breaker open on MongoDB (the warehouse directory) or PostgreSQL: the call was not made.
    CircuitOpen: on_store_unavailable,
    Exception: on_unexpected_error,
}
