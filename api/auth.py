"""API keys: who is calling (header `X-API-Key`), what its scopes let it call, how fast, and which
orders are its own.

Keys come from the settings (stores/settings.py): API_KEYS_FILE (a JSON file) or API_KEYS (the same
JSON inline),
mapping each key to {"client", "scopes", "rate"?, "burst"?}. With neither set the API runs open
(the dev and test default, warned about loudly at start). The check is one app-level guard that
runs before a handler reads its body; it holds no store round trip: keys, scopes and rate limits
are all in the worker's memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.types import ID_PATTERN
from engine.errors import OrderNotFound
from engine.ids import OWNER_TAG_BITS, owner_tag_of_id
from stores.settings import Settings

API_KEY_HEADER: Final = "x-api-key"
DEFAULT_RATE_PER_S: Final = 50.0
DEFAULT_BURST: Final = 100
ORDERS: Final = "orders"
OPERATOR: Final = "operator"
Scope = Literal["orders", "operator"]

# Each route handler's scopes (any one suffices), by the handler's qualified name, so the service
# modules carry no auth code. A handler missing here needs `operator` (fail closed); a test checks
# that every route the app serves is listed here or in OPEN_HANDLERS.
ROUTE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "OrderController.place": frozenset({ORDERS}),
    "OrderController.read": frozenset({ORDERS, OPERATOR}),  # a storefront only its own
    "OrderController.cancel": frozenset({ORDERS}),  # its own only
    "OrderController.delivered": frozenset({OPERATOR}),
    "InventoryController.levels": frozenset({ORDERS, OPERATOR}),
    "InventoryController.stream": frozenset({ORDERS, OPERATOR}),
    "InventoryController.reserve": frozenset({ORDERS}),
    "InventoryController.release": frozenset({ORDERS, OPERATOR}),  # a storefront only its own
    "InventoryController.set_level": frozenset({OPERATOR}),
    "InventoryController.adjust_level": frozenset({OPERATOR}),
    "WarehouseController.create": frozenset({OPERATOR}),
    "WarehouseController.list_all": frozenset({ORDERS, OPERATOR}),
    "WarehouseController.read": frozenset({ORDERS, OPERATOR}),
    "FulfillmentController.fulfill_order": frozenset({OPERATOR}),
    "FulfillmentController.report_unfulfillable": frozenset({OPERATOR}),
    "NotificationController.send": frozenset({ORDERS}),  # about its own orders only
    "NotificationController.status": frozenset({ORDERS, OPERATOR}),  # a storefront only its own
}
OPEN_HANDLERS: Final = frozenset({"healthz", "readyz", "metrics"})
OPERATOR_ONLY: Final = frozenset({OPERATOR})
CALLER_STATE: Final = "caller"

ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]


class KeySpec(msgspec.Struct, forbid_unknown_fields=True):
    client: ClientId
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)]
    rate: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_RATE_PER_S  # requests per second
    burst: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_BURST


class Unauthenticated(Exception):
    """No X-API-Key header, or a key that is not configured."""


class Forbidden(Exception):
    """The key is known but its scopes do not cover this route."""


class RateLimited(Exception):
    def __init__(self, client: str, retry_after_s: float) -> None:
        super().__init__(f"rate limit of client {client!r} exceeded")
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, up to `burst`; a request takes one."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = self.clock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class Caller:
    client: str
    scopes: frozenset[str]
    bucket: TokenBucket
    owner_tag: int

    @property
    def reads_any_order(self) -> bool:
        return OPERATOR in self.scopes

    def owns(self, order_id: str) -> bool:
        return owner_tag_of_id(order_id) == self.owner_tag

    def idempotency_key(self, key: str | None) -> str | None:
        """Keys are per client: another storefront's same key is another request, and must not
        replay this one's confirmation."""
        return None if key is None else f"{self.client}|{key}"


def owner_tag(client: str) -> int:
    return int.from_bytes(hashlib.sha256(client.encode()).digest()[:8], "big") >> (
        64 - OWNER_TAG_BITS
    )


class ApiKeys:
    def __init__(self, specs: Mapping[str, KeySpec]) -> None:
        tags: dict[int, str] = {}
        for spec in specs.values():
            other = tags.setdefault(owner_tag(spec.client), spec.client)
            if other != spec.client:  # two storefronts could then read each other's orders
                raise ValueError(f"clients {other!r} and {spec.client!r} share an owner tag")
        # Looked up by the key's SHA-256: the dict's string compare then leaks nothing useful
        # about the key through timing.
        self._callers = {
            _digest(key): Caller(
                spec.client,
                frozenset(spec.scopes),
                TokenBucket(spec.rate, spec.burst),
                owner_tag(spec.client),
            )
            for key, spec in specs.items()
        }

    @classmethod
    def parse(cls, text: str | bytes) -> ApiKeys:
        return cls(msgspec.json.decode(text, type=dict[str, KeySpec]))

    def authenticate(self, key: str | None) -> Caller:
        if not key:
            raise Unauthenticated("missing X-API-Key header")
        caller = self._callers.get(_digest(key))
        if caller is None:
            raise Unauthenticated("unknown API key")
        return caller

    def admit(self, key: str | None, handler_name: str) -> Caller:
        """The caller of the route handler `handler_name` with this key, or why it may not."""
        caller = self.authenticate(key)
        # Counted before the scope check: a key hammering routes it may not call is still slowed.
        wait_s = caller.bucket.take()
        if wait_s > 0:
            raise RateLimited(caller.client, wait_s)
        if not ROUTE_SCOPES.get(handler_name, OPERATOR_ONLY) & caller.scopes:
            raise Forbidden(f"client {caller.client!r} may not call this route")
        return caller


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load_api_keys(settings: Settings) -> ApiKeys | None:
    """The configured keys, or None when none are (the API then runs open)."""
    if settings.api_keys_file:
        with open(settings.api_keys_file, "rb") as file:
            return ApiKeys.parse(file.read())
    return ApiKeys.parse(settings.api_keys_json) if settings.api_keys_json else None


def require_api_key(keys: ApiKeys, open_path_prefixes: tuple[str, ...]) -> Guard:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        name = handler.fn.__qualname__
        if name in OPEN_HANDLERS or connection.scope["path"].startswith(open_path_prefixes):
            return
        if connection.scope.get("method") == "OPTIONS":  # Litestar's own: lists the methods
            return
        connection.state[CALLER_STATE] = keys.admit(connection.headers.get(API_KEY_HEADER), name)

    return guard


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller | None:
    """The authenticated caller, or None when the API runs open."""
    caller: Caller | None = connection.state.get(CALLER_STATE)
    return caller


def require_owner(connection: ASGIConnection[Any, Any, Any, Any], order_id: str) -> None:
    """A storefront may touch only orders it placed; another's answers as unknown, so order IDs
    cannot be probed. Operators and the open API pass."""
    if not may_touch(connection, order_id):
        raise OrderNotFound(order_id)


def may_touch(connection: ASGIConnection[Any, Any, Any, Any], minted_id: str) -> bool:
    """Whether the caller may use an order or a hold: its own (the owner tag minted into the
    ID, engine.ids), or any for an operator and the open API."""
    return caller_may_touch(caller_of(connection), minted_id)


def caller_may_touch(caller: Caller | None, minted_id: str) -> bool:
    """`may_touch` for a caller already known (None: the open API)."""
    return caller is None or caller.reads_any_order or caller.owns(minted_id)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
