"""Every error leaves the API in one JSON shape: {"error": {"code", "message", "details"?}}.

Domain errors map to a status here and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from redis import exceptions as redis_errors

from api.auth import Forbidden, RateLimited, Unauthenticated, retry_after_header
from api.bodies import MalformedJson, UnsupportedMediaType
from engine.errors import (
    BasketOutOfStock,
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
    StoreUnavailable,
    UnknownProduct,
    UnknownWarehouse,
    WarehouseExists,
    WrongWarehouse,
)
from notify.jobs import NotificationNotFound
from stores.breaker import CircuitOpen
from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS

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
    BasketOutOfStock: (409, "out_of_stock"),
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
    StoreUnavailable: (503, "store_unavailable"),
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


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error as the client gets it, before any framework's response object."""

    status: int
    body: ErrorBody
    headers: dict[str, str] = field(default_factory=dict)


def _answer(status: int, code: str, message: str, details: Any = None) -> ErrorAnswer:
    return ErrorAnswer(status, ErrorBody(ErrorDetail(code, message, details)))


def _retry_later(answer: ErrorAnswer, wait_s: float = RETRY_AFTER_S) -> ErrorAnswer:
    answer.headers["Retry-After"] = retry_after_header(wait_s)
    return answer


# A read that could not reach its store (the engine's writes go through its resends): Redis,
# PostgreSQL down or restarting while an order that left Redis is read, or a breaker open on
# MongoDB (the warehouse directory) or PostgreSQL, so the call was not made.
_STORE_UNAVAILABLE: Final = (
    *REDIS_TRANSIENT_ERRORS,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    OSError,
    CircuitOpen,
)


def answer_for(exc: BaseException, method: str, path: str) -> ErrorAnswer:
    """What the client is told about `exc`: the one mapping of errors to statuses."""
    match exc:
        case DomainError():
            return _domain_answer(exc)
        case Unauthenticated():
            return _answer(401, "unauthenticated", str(exc))
        case Forbidden():
            return _answer(403, "forbidden", str(exc))
        case RateLimited():
            return _retry_later(_answer(429, "rate_limited", str(exc)), exc.retry_after_s)
        case UnsupportedMediaType():
            return _answer(415, "unsupported_media_type", str(exc))
        case MalformedJson():
            return _answer(400, "malformed_json", str(exc))
        case ValidationException():
            return _validation_answer(exc)
        case HTTPException():
            return _http_answer(exc)
        case redis_errors.OutOfMemoryError():
            # A write outside the engine (a warehouse's version bump, a notice's job) refused at
            # maxmemory: the engine's own writes become StoreFull.
            return _domain_answer(StoreFull())
    if isinstance(exc, _STORE_UNAVAILABLE):
        log.warning("store unavailable on %s %s: %s", method, path, exc)
        message = "a store did not answer; retry later"
        return _retry_later(_answer(503, "store_unavailable", message))
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return _answer(500, "internal_error", "the server failed to handle this request")


def _domain_answer(exc: DomainError) -> ErrorAnswer:
    status, code = DOMAIN_STATUS[type(exc)]
    details: list[dict[str, Any]] | None = None
    if isinstance(exc, OutcomeUnknown) and exc.subject_id is not None:
        # The client is told which order to look up (GET /orders/{orderId}) or to retry.
        details = [{"orderId": exc.subject_id}]
    elif isinstance(exc, BasketOutOfStock):
        # The lines that cannot be filled, so the storefront can tell its customer which.
        details = [{"productId": p, "quantity": q} for p, q in exc.lines]
    answer = _answer(status, code, str(exc), details)
    # 503s: nothing is wrong with the request; send it again after Retry-After.
    return _retry_later(answer) if status == 503 else answer


def _validation_answer(exc: ValidationException) -> ErrorAnswer:
    details = exc.extra if isinstance(exc.extra, list) else None
    if details and any(d.get("key") == "data" for d in details if isinstance(d, dict)):
        # Litestar's words for an empty body are "'data'": say what is missing instead.
        return _answer(400, "validation_error", "a JSON request body is required", [MISSING_BODY])
    return _answer(400, "validation_error", exc.detail, details)


def _http_answer(exc: HTTPException) -> ErrorAnswer:
    if isinstance(exc.__cause__, SerializationException):  # Litestar's wrap of a decode error
        return _answer(400, "malformed_json", f"request body is not valid JSON: {exc.detail}")
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    answer = _answer(exc.status_code, code, exc.detail)
    if exc.headers:  # a 405's `Allow` (RFC 9110: the methods the path does take)
        answer.headers.update(exc.headers)
    return answer


def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Litestar's exception handler for every error: the answer `answer_for` gives."""
    answer = answer_for(exc, request.method, request.url.path)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


# Litestar looks a handler up by the exception's classes; ValidationException and HTTPException
# are listed because Litestar has its own handlers for them otherwise.
EXCEPTION_HANDLERS: Final = {
    Exception: on_error,
    HTTPException: on_error,
    ValidationException: on_error,
}
