"""POST /orders served ahead of Litestar's request machinery: the one route that runs per order.

Litestar's route (api.orders.OrderController.place) stays the route's declaration: the OpenAPI
schema, its scopes and its errors come from it. This path keeps its contract and answers the same
bytes for the same request (tests/test_order_intake.py compares the two), but does only what the
route needs: the headers it reads, the caller admitted as the app's guard does, the body read
under the same limit and decoded by the same strict decoder, and errors mapped by api.errors like
every other route's. What it skips is Litestar's per-request work that this route does not use
(signature model, kwargs extraction, response objects, middleware layers).

Two ways lead in: the app's ASGI front (api.app.FulfillmentApi) for any server and any form of
the request, and the API's own HTTP protocol (api.order_protocol), which hands over the plain
form's headers and whole body without going through ASGI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import HTTPResponseStartEvent, HTTPScope, Receive, Send

from api.auth import API_KEY_HEADER, ApiKeys, Caller
from api.bodies import check_content_type, decoder_for
from api.errors import MISSING_BODY, answer_for
from api.metrics import Metrics
from api.orders import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    REPLAYED_HEADERS,
    OrderBody,
    OrderController,
    place_order,
)

PATHS: Final = frozenset({"/orders", "/orders/"})
HANDLER_NAME: Final = OrderController.place.fn.__qualname__  # its scopes, in api.auth
_ENCODER: Final = msgspec.json.Encoder()
_JSON: Final = (b"content-type", b"application/json")
API_KEY_HEADER_BYTES: Final = API_KEY_HEADER.encode()
_DECODER: Final = decoder_for(OrderBody)


def serves(scope: HTTPScope) -> bool:
    return scope["method"] == "POST" and scope["path"] in PATHS


class IntakeAnswer(msgspec.Struct, frozen=True):
    """What POST /orders answers: its status, JSON body and the headers beyond the body's own."""

    status: int
    body: bytes
    extra_headers: list[tuple[bytes, bytes]]

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Every header of the answer but the server's own (its date, the connection's close)."""
        return [_JSON, (b"content-length", str(len(self.body)).encode()), *self.extra_headers]


class OrderIntake:
    """Answers POST /orders, by either way in: an ASGI call (`__call__`), or a request whose
    headers and body the HTTP protocol read whole (`answer`, for api.order_protocol). `state` is
    the Litestar app's (services, metrics)."""

    def __init__(self, state: State, keys: ApiKeys | None, max_body_bytes: int) -> None:
        self._state = state
        self._keys = keys
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        headers = OrderHeaders.of(scope["headers"])
        try:
            caller = self._admit(headers.api_key)
            raw = await self._read_body(receive, headers.content_length)
            answer = await self._placed(caller, headers, raw)
        except _ClientGone:
            return
        except Exception as exc:
            answer = self._refusal(exc, scope["path"])
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": answer.headers(),
        }
        await send(start)
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

    async def answer(self, headers: OrderHeaders, raw: bytes, path: str) -> IntakeAnswer:
        """The answer to a request whose whole body is `raw`, no longer than max_body_bytes."""
        try:
            caller = self._admit(headers.api_key)
            return await self._placed(caller, headers, raw)
        except Exception as exc:
            return self._refusal(exc, path)

    async def _placed(
        self, caller: Caller | None, headers: OrderHeaders, raw: bytes
    ) -> IntakeAnswer:
        if not raw:
            raise ValidationException("a JSON request body is required", extra=[MISSING_BODY])
        check_content_type(headers.content_type)
        data: OrderBody = _DECODER.decode(raw)
        metrics: Metrics = self._state.metrics
        placed = await place_order(
            self._state.services, metrics, caller, data, _idempotency_key(headers)
        )
        metrics.count_status(201)
        replayed = _REPLAYED if placed.replayed else []
        return IntakeAnswer(201, _ENCODER.encode(placed.body), replayed)

    def _refusal(self, exc: Exception, path: str) -> IntakeAnswer:
        answer = answer_for(exc, "POST", path)
        self._state.metrics.count_status(answer.status)
        body = _ENCODER.encode(answer.body)
        return IntakeAnswer(answer.status, body, _asgi_headers(answer.headers))

    def _admit(self, api_key: str | None) -> Caller | None:
        return None if self._keys is None else self._keys.admit(api_key, HANDLER_NAME)

    async def _read_body(self, receive: Receive, content_length: int | None) -> bytes:
        if content_length is not None and content_length > self.max_body_bytes:
            raise _too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer, nothing placed."""


class OrderHeaders(msgspec.Struct):
    content_type: str = ""
    content_length: int | None = None
    api_key: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, raw: Iterable[tuple[bytes, bytes]]) -> OrderHeaders:
        """The headers this route reads, their names in lower case (as ASGI servers give them,
        and uvicorn's protocol keeps them). A header sent twice counts once, the first time, as
        Litestar reads it."""
        found = cls()
        for name, value in raw:
            if name == b"content-type" and not found.content_type:
                found.content_type = value.decode("latin-1")
            elif name == b"content-length" and found.content_length is None:
                found.content_length = int(value) if value.isdigit() else None
            elif name == API_KEY_HEADER_BYTES and found.api_key is None:
                found.api_key = value.decode("latin-1")
            elif name == b"idempotency-key" and found.idempotency_key is None:
                found.idempotency_key = value.decode("latin-1")
        return found


def _asgi_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


_REPLAYED: Final = _asgi_headers(REPLAYED_HEADERS)


def _idempotency_key(headers: OrderHeaders) -> str | None:
    """The Idempotency-Key header, checked as the route's declaration states it."""
    key = headers.idempotency_key
    if key is None:
        return None
    if not key:
        raise _header_invalid("Expected `str` of length >= 1")
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise _header_invalid(f"Expected `str` of length <= {IDEMPOTENCY_KEY_MAX_LENGTH}")
    return key


def _header_invalid(message: str) -> ValidationException:
    detail = {"message": message, "key": "idempotency_key", "source": "header"}
    return ValidationException("Validation failed for POST /orders", extra=[detail])


def _too_large() -> HTTPException:
    return HTTPException(status_code=413, detail="Request Entity Too Large")
