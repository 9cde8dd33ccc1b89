"""POST /orders answered by the HTTP protocol itself, before ASGI: uvicorn's httptools protocol,
with the one route that runs per order taken off uvicorn's ASGI cycle.

For every request, uvicorn builds a cycle with its event, runs the app in a task through ASGI's
receive and send, checks each answer header against its patterns and writes the answer's head
and its body apart. For an order, this protocol hands the headers it parsed and the whole body to
api.order_intake, and writes its answer at once: the same bytes (tests/test_order_protocol.py
compares the two ways in), about half of the server's own work per request (README, "Where the
API's time goes").

It takes only the plain form: `POST /orders` (or `/orders/`), a Content-Length within the body
limit, no `Expect: 100-continue`, no Upgrade, not behind a request on the same connection still
being answered.
Every other request, and every request when the app has no intake (the benchmark's no-op
reference), goes to the app as uvicorn sends it, and the app's ASGI front answers POST /orders in
any other form through the same intake. The intake is found only on the app itself: a middleware
of uvicorn's around it (`proxy_headers`, trace logging) leaves every request to ASGI, so each
worker says once, on its first connection, which way POST /orders goes. Two of uvicorn's settings
are not applied on this path, and `python -m api` sets neither: `limit_concurrency` and the access
log.

An exchange stands in for uvicorn's cycle while it is answered, so the connection works as for
any request: requests pipelined behind it wait for its answer, a client that goes away is not
written to, a graceful shutdown closes the connection once it is answered, and the server waits
for its task before it stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.order_intake import PATHS, IntakeAnswer, OrderHeaders, OrderIntake

log = logging.getLogger(__name__)

RAW_PATHS: Final = frozenset(path.encode() for path in PATHS)


class _NoWaiter:
    """What uvicorn wakes when a connection is lost (its cycle's message event): nothing waits
    on an exchange's body, which is whole before its answer starts."""

    def set(self) -> None:
        pass


class _OrderExchange:
    """One POST /orders, standing in for uvicorn's RequestResponseCycle as the connection's
    current cycle. What uvicorn's protocol uses of a cycle: it reads `response_complete` (may the
    next request start?), sets `disconnected` (the client went away), `keep_alive` (shutting
    down: close once answered) and wakes `message_event` when the connection is lost."""

    __slots__ = ("body", "disconnected", "headers", "keep_alive", "path", "response_complete")
    message_event: Final = _NoWaiter()

    def __init__(self, headers: OrderHeaders, path: str, keep_alive: bool) -> None:
        self.headers = headers
        self.path = path
        self.body = bytearray()
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False


class OrderProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections open once the app's lifespan has started, which is when it makes its intake.
        self._intake = _intake_of(self.app)
        _say_which_way(self._intake is not None)
        # The request being read, while it is one this protocol answers; `self.cycle` is the
        # request being answered (uvicorn's cycle or an exchange), which may be an earlier one.
        self._exchange: _OrderExchange | None = None

    def on_headers_complete(self) -> None:
        self._exchange = self._order_exchange()
        if self._exchange is None:
            super().on_headers_complete()
        else:
            self.cycle = cast(Any, self._exchange)

    def _order_exchange(self) -> _OrderExchange | None:
        """The request as an exchange, when it is one this protocol answers itself."""
        intake = self._intake
        if intake is None or self.url not in RAW_PATHS or self.expect_100_continue:
            return None
        parser = self.parser
        if parser.get_method() != b"POST" or parser.should_upgrade():
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind an answer still being made: uvicorn queues it
        headers = OrderHeaders.of(self.headers)
        length = headers.content_length
        if length is None or length > intake.max_body_bytes:
            return None  # a chunked body, or one the intake refuses before reading
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return _OrderExchange(headers, self.url.decode("ascii"), keep_alive)

    def on_body(self, body: bytes) -> None:
        if self._exchange is None:
            super().on_body(body)
        else:
            self._exchange.body += body

    def on_message_complete(self) -> None:
        exchange = self._exchange
        if exchange is None:
            super().on_message_complete()
            return
        self._exchange = None
        task = self.loop.create_task(self._answer(exchange))
        self.tasks.add(task)  # the server waits for these before it stops
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, exchange: _OrderExchange) -> None:
        intake = cast(OrderIntake, self._intake)
        try:
            answer = await intake.answer(exchange.headers, bytes(exchange.body), exchange.path)
            encoded = self._encoded(answer, exchange.keep_alive)
        except asyncio.CancelledError:
            log.warning("an order's answer was cut off by the server's shutdown timeout")
            self.transport.close()
            raise
        except Exception:
            # The intake answers every error it knows; this is a fault of this module's own.
            log.exception("failed to answer POST %s", exchange.path)
            exchange.keep_alive = False
            encoded = _INTERNAL_ERROR
        if exchange.disconnected or self.transport.is_closing():
            return  # the client went away: the order stands, as when an ASGI answer finds no one
        self.transport.write(encoded)
        exchange.response_complete = True
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _encoded(self, answer: IntakeAnswer, keep_alive: bool) -> bytes:
        """The answer as uvicorn writes an ASGI app's: status line, the server's headers (its
        date), the answer's, `connection: close` when the connection ends with it."""
        parts = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.headers()):
            parts += (name, b": ", value, b"\r\n")
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", answer.body)
        return b"".join(parts)


# As uvicorn answers an ASGI app that failed before its answer started.
_INTERNAL_ERROR: Final = (
    STATUS_LINE[500] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
    b"connection: close\r\n\r\nInternal Server Error"
)


@functools.cache
def _say_which_way(by_protocol: bool) -> None:
    """Once per worker (the answer is the same for each of its connections)."""
    way = "the HTTP protocol (api.order_protocol)" if by_protocol else "the app, through ASGI"
    log.info("POST /orders is answered by %s", way)


def _intake_of(app: object) -> OrderIntake | None:
    intake = getattr(app, "order_intake", None)
    return intake if isinstance(intake, OrderIntake) else None
