"""Exactly once under faults (README, "Guarantees"): a connection cut after Redis ran a script, or
a Redis paused under load, never makes an order or a stock change happen twice, never leaves an
order nobody was told about, and never leaves a client without the truth.

The API's Redis connections go through `tests.tcp_proxy.TcpProxy` (one per master on a cluster,
mapped with REDIS_ADDRESS_MAP), which cuts them after forwarding a script call and before its
reply. What the clients were told is then checked against what Redis holds, found by scanning
every order key, so an order nobody heard of is caught too.

The API runs in this event loop (httpx's ASGI transport), so the proxy, the clients and the app
share one loop and the clients really are concurrent. The pause test runs a real API process
instead (`python -m api`): its memory is measured from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from redis.asyncio import RedisCluster

from api.app import create_app
from engine import keys
from engine.ids import partition_of_id
from engine.records import OrderRecord, decode_record
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.api_process import api_process
from tests.conftest import scan_keys, store_env
from tests.notice_servers import free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults

ROOT: Final = Path(__file__).resolve().parent.parent
# Every Lua call goes out as EVALSHA (EVAL after a NOSCRIPT): both contain this.
SCRIPT_CALL: Final = b"EVAL"
LOCATIONS: Final = {
    "paris": (48.8566, 2.3522),
    "lyon": (45.764, 4.8357),
    "lille": (50.6292, 3.0573),
    "marseille": (43.2965, 5.3698),
}
# Three products, each on another cluster master (partitions 3, 9 and 11): `tee` is ample
# everywhere, `flash` is tight (a flash sale that runs out: many 409s), `mug` is tight in one
# warehouse and ample in another, so orders fall through to a farther warehouse.
STOCK: Final[dict[tuple[str, str], int]] = {
    **{("tee", warehouse): 5_000 for warehouse in LOCATIONS},
    ("flash", "paris"): 300,
    ("flash", "lyon"): 200,
    ("flash", "lille"): 100,
    ("mug", "paris"): 60,
    ("mug", "marseille"): 2_000,
}
PRODUCT_WEIGHTS: Final = {"flash": 4, "tee": 4, "mug": 2}

LOAD_ORDERS: Final = 2_000
LOAD_CLIENTS: Final = 50
CUT_EVERY: Final = 3  # every 3rd script call through a proxy is cut ...
CUT_PROBABILITY: Final = 0.25  # ... or each with this chance, so a resend is sometimes cut too
CUTS_MAX: Final = 60  # ... at most this many times per proxy
MAX_ATTEMPTS: Final = 6  # a client sends one order at most this many times (same key)
RETRY_BACKOFF_S: Final = 0.05  # times the attempt number
# Default COMMAND_DEADLINE_S plus slack: once this has passed after the last answer, no resend the
# engine may still have had in flight can land any more.
LATE_RESEND_GRACE_S: Final = 3.5

Http = httpx.AsyncClient
Slot = tuple[str, str]  # (product, warehouse)


class Verdict:
    """Every broken invariant of one test, reported together: a 5xx and a broken ledger in one
    run say more than the first of them alone."""

    def __init__(self) -> None:
        self.broken: list[str] = []

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.broken.append(message)

    def expect_none(self, found: Collection[Any], message: str) -> None:
        """`found` lists the offenders, one entry each (a list counts repeats)."""
        if found:
            examples = sorted(set(map(str, found)))[:5]
            self.broken.append(f"{message}: {len(found)}, e.g. {', '.join(examples)}")

    def done(self) -> None:
        if self.broken:
            raise AssertionError("\n".join(["invariants broken:", *self.broken]))


# --- Redis behind proxies ---------------------------------------------------------------------


@dataclass
class Proxies:
    """One proxy per Redis master, keyed by the master's real address ("host:port")."""

    by_node: dict[str, TcpProxy]
    redis: RedisClient  # direct, not proxied: tells which master owns a key

    def owning(self, key: str) -> TcpProxy:
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(key)
            assert node is not None
            return self.by_node[node.name]
        (only,) = self.by_node.values()
        return only

    @property
    def cuts(self) -> int:
        return sum(p.cuts for p in self.by_node.values())

    @property
    def cuts_after_reply(self) -> int:
        return sum(p.cuts_after_reply for p in self.by_node.values())

    def cut_every(self, every: int, limit: int) -> None:
        for proxy in self.by_node.values():
            proxy.cut_every(SCRIPT_CALL, every, limit=limit)

    def cut_randomly(self, probability: float, seed: int, limit: int) -> None:
        for n, proxy in enumerate(self.by_node.values()):
            proxy.cut_randomly(SCRIPT_CALL, probability, seed=seed + n, limit=limit)

    def stop_cutting(self) -> None:
        for proxy in self.by_node.values():
            proxy.stop_cutting()


async def masters(redis: RedisClient, settings: Settings) -> list[tuple[str, int]]:
    if isinstance(redis, RedisCluster):
        # Asked fresh: a failover in an earlier test may have moved the masters.
        await redis.initialize()
        return [(node.host, int(node.port)) for node in redis.get_primaries()]
    url = urlsplit(settings.redis_url)
    return [(url.hostname or "127.0.0.1", url.port or 6379)]


@contextlib.asynccontextmanager
async def proxied(
    redis: RedisClient, settings: Settings
) -> AsyncIterator[tuple[Settings, Proxies]]:
    """Settings whose every connection to a Redis master passes through a proxy."""
    async with contextlib.AsyncExitStack() as stack:
        by_node: dict[str, TcpProxy] = {}
        for host, port in await masters(redis, settings):
            by_node[f"{host}:{port}"] = await stack.enter_async_context(TcpProxy((host, port)))
        first = next(iter(by_node.values()))
        url = urlsplit(settings.redis_url)
        proxied_url = url._replace(netloc=first.address).geturl()
        if settings.redis_cluster:
            address_map = ",".join(f"{node}={p.address}" for node, p in by_node.items())
            fronted = msgspec.structs.replace(
                settings, redis_url=proxied_url, redis_address_map=address_map
            )
        else:
            fronted = msgspec.structs.replace(settings, redis_url=proxied_url)
        yield fronted, Proxies(by_node, redis)


@contextlib.asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[Http]:
    """The app in this event loop. Not Litestar's AsyncTestClient: it runs the app on a portal
    thread's loop and blocks this one per request, which would serialize the clients and
    deadlock against a proxy living in this loop."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    try:
        async with app.lifespan(), Http(transport=transport, base_url="http://api.test") as client:
            yield client
    except BaseExceptionGroup as group:
        # Litestar's lifespan runs in a task group, which wraps a failed assertion of the test
        # body: unwrap it so pytest shows the assertion itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


# --- the shop: warehouses and stock -----------------------------------------------------------


async def open_shop(http: Http, stock: dict[Slot, int]) -> None:
    for warehouse, (lat, lon) in LOCATIONS.items():
        body = {"warehouseId": warehouse, "name": warehouse.title(), "location": loc(lat, lon)}
        response = await http.post("/warehouses", json=body)
        assert response.status_code == 201, response.text
    for (product, warehouse), level in stock.items():
        response = await http.put(
            f"/inventory/{product}/stock/{warehouse}", json={"quantity": level}
        )
        assert response.status_code == 200, response.text


def loc(lat: float, lon: float) -> dict[str, float]:
    return {"lat": lat, "lon": lon}


async def levels(http: Http, products: Sequence[str]) -> dict[Slot, int]:
    found: dict[Slot, int] = {}
    for product in products:
        response = await http.get("/inventory", params={"productId": product})
        assert response.status_code == 200, response.text
        for level in response.json()["stockLevels"]:
            found[(product, level["warehouseId"])] = level["quantity"]
    return found


# --- orders: what clients send and what they are told ----------------------------------------


@dataclass(frozen=True)
class Plan:
    """One order a storefront wants placed."""

    index: int
    product: str
    quantity: int
    location: dict[str, float]
    key: str | None

    def body(self) -> dict[str, Any]:
        return {
            "productId": self.product,
            "quantity": self.quantity,
            "customerLocation": self.location,
        }


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    retry_after: str | None
    sent_at: float
    latency_s: float

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return None if error is None else str(error.get("code"))

    @property
    def order_id(self) -> str | None:
        """The order a 201 confirms, or the one an `outcome_unknown` 503 names."""
        if self.status == 201:
            return str(self.body["orderId"])
        if self.code == "outcome_unknown":
            with contextlib.suppress(KeyError, IndexError, TypeError):
                return str(self.body["error"]["details"][0]["orderId"])
        return None


def plans(count: int, seed: int, *, keyed: bool, prefix: str) -> list[Plan]:
    rng = random.Random(seed)
    products = [p for p, weight in PRODUCT_WEIGHTS.items() for _ in range(weight)]
    result = []
    for i in range(count):
        lat, lon = LOCATIONS[rng.choice(("paris", "lyon"))]
        where = loc(round(lat + rng.uniform(-1, 1), 6), round(lon + rng.uniform(-1, 1), 6))
        key = f"{prefix}-{seed}-{i}" if keyed else None
        result.append(Plan(i, rng.choice(products), rng.randint(1, 3), where, key))
    return result


async def post_order(http: Http, plan: Plan) -> Reply:
    headers = {"Idempotency-Key": plan.key} if plan.key else {}
    started = time.monotonic()
    response = await http.post("/orders", json=plan.body(), headers=headers)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Reply(
        response.status_code,
        body,
        response.headers.get("Retry-After"),
        started,
        time.monotonic() - started,
    )


def is_final(reply: Reply) -> bool:
    return reply.status in (201, 409)


async def place_until_final(http: Http, plan: Plan, max_attempts: int) -> list[Reply]:
    """Send, and with a key resend what was not final (bounded, short backoff)."""
    replies = [await post_order(http, plan)]
    while plan.key and not is_final(replies[-1]) and len(replies) < max_attempts:
        await asyncio.sleep(RETRY_BACKOFF_S * len(replies))
        replies.append(await post_order(http, plan))
    return replies


async def storefronts(
    http: Http, todo: Sequence[Plan], clients: int, max_attempts: int
) -> dict[int, list[Reply]]:
    """`clients` concurrent clients work through `todo`; every reply of every plan."""
    queue = iter(todo)
    replies: dict[int, list[Reply]] = {}

    async def client() -> None:
        for plan in queue:
            replies[plan.index] = await place_until_final(http, plan, max_attempts)

    await asyncio.gather(*(client() for _ in range(clients)))
    return replies


# --- what Redis holds -------------------------------------------------------------------------


async def orders_in_redis(redis: RedisClient) -> dict[str, OrderRecord]:
    """Every order that exists, found by its key: `order:{tag}:<orderId>`."""
    # Only `order:{tag}:<id>` itself: any other key under the prefix is not an order record.
    order_keys = [
        key
        for key in await scan_keys(redis, "order:*")
        if partition_of_id(key.split(":")[-1]) is not None and key.count(":") == 2
    ]
    pipe = redis.pipeline(transaction=False)
    for key in order_keys:
        pipe.get(key)
    raws = await pipe.execute() if order_keys else []
    return {
        key.rsplit(":", 1)[1]: decode_record(raw)
        for key, raw in zip(order_keys, raws, strict=True)
        if raw is not None
    }


def units_in_orders(orders: dict[str, OrderRecord]) -> Counter[Slot]:
    """Units the orders hold (a cancelled order gave its units back)."""
    held: Counter[Slot] = Counter()
    for record in orders.values():
        if record.status != "cancelled":
            held[(record.product_id, record.warehouse_id)] += record.quantity
    return held


async def check_ledger(
    verdict: Verdict, http: Http, stock_in: dict[Slot, int], orders: dict[str, OrderRecord]
) -> None:
    """Every unit taken from stock is in exactly one existing order, and no unit twice."""
    now = await levels(http, sorted({product for product, _ in stock_in}))
    taken = Counter({slot: level - now.get(slot, 0) for slot, level in stock_in.items()})
    held = units_in_orders(orders)
    wrong = {
        f"{slot}: taken {taken[slot]}, in orders {held[slot]}"
        for slot in set(taken) | set(held)
        if taken[slot] != held[slot]
    }
    verdict.expect_none(wrong, "units taken from stock differ from the units in orders")


def statuses(replies: dict[int, list[Reply]]) -> Counter[tuple[int, str | None]]:
    return Counter((r.status, r.code) for rs in replies.values() for r in rs)


def confirmed_ids(verdict: Verdict, replies: dict[int, list[Reply]]) -> dict[int, str]:
    """The order each plan was confirmed as (a retry's 201 must name the same order)."""
    confirmed: dict[int, str] = {}
    twice: list[int] = []
    for index, rs in replies.items():
        ids = {str(r.body["orderId"]) for r in rs if r.status == 201}
        if len(ids) > 1:
            twice.append(index)
        if ids:
            confirmed[index] = min(ids)
    verdict.expect_none(twice, "requests confirmed as two different orders")
    return confirmed


async def read_orders(http: Http, order_ids: Sequence[str]) -> dict[str, Reply]:
    gate = asyncio.Semaphore(32)

    async def read(order_id: str) -> tuple[str, Reply]:
        async with gate:
            started = time.monotonic()
            response = await http.get(f"/orders/{order_id}")
            reply = Reply(
                response.status_code, response.json(), None, started, time.monotonic() - started
            )
            return order_id, reply

    return dict(await asyncio.gather(*(read(o) for o in order_ids)))


def check_answers(verdict: Verdict, replies: dict[int, list[Reply]]) -> None:
    """Only 201, 409 and the two 503s of the contract, each 503 with Retry-After."""
    every = [r for rs in replies.values() for r in rs]
    verdict.expect_none(
        [(r.status, r.code) for r in every if r.status not in (201, 409, 503)],
        "answers other than 201, 409, 503",
    )
    unavailable = [r for r in every if r.status == 503]
    verdict.expect_none(
        [r.code for r in unavailable if r.code not in ("overloaded", "outcome_unknown")],
        "503s with another code than overloaded/outcome_unknown",
    )
    verdict.expect(all(r.retry_after for r in unavailable), "a 503 without Retry-After")
    verdict.expect_none(
        [r.body for r in unavailable if r.code == "outcome_unknown" and r.order_id is None],
        "outcome_unknown answers that name no orderId in details",
    )


# --- a. repeated cuts, keyed orders, clients retry ---------------------------------------------


async def test_repeated_cuts_with_keys_retried_place_each_order_once(
    redis: RedisClient, settings: Settings, mongo: MongoDatabase
) -> None:
    async with proxied(redis, settings) as (fronted, proxies), api(fronted) as http:
        await open_shop(http, STOCK)
        proxies.cut_every(CUT_EVERY, CUTS_MAX)
        todo = plans(LOAD_ORDERS, seed=1, keyed=True, prefix="a")
        replies = await storefronts(http, todo, LOAD_CLIENTS, MAX_ATTEMPTS)
        proxies.stop_cutting()
        report(proxies, replies)
        assert proxies.cuts_after_reply > 0, "no connection was cut: the test proved nothing"

        verdict = Verdict()
        check_answers(verdict, replies)
        verdict.expect_none(
            {i for i, rs in replies.items() if not is_final(rs[-1])},
            f"requests without a final answer after {MAX_ATTEMPTS} attempts",
        )
        confirmed = confirmed_ids(verdict, replies)
        orders = await orders_in_redis(redis)
        told = set(confirmed.values())
        verdict.expect_none(set(orders) - told, "orders exist that no client was told about")
        verdict.expect_none(told - set(orders), "confirmed orders that do not exist")
        per_key = Counter(record.idempotency_key for record in orders.values())
        verdict.expect_none({k for k, n in per_key.items() if n > 1}, "keys with two orders")
        verdict.expect_none(
            {
                order_id
                for index, order_id in confirmed.items()
                if order_id in orders
                and (orders[order_id].idempotency_key, orders[order_id].quantity)
                != (todo[index].key, todo[index].quantity)
            },
            "confirmed orders that are not the order requested",
        )
        reads = await read_orders(http, sorted(told))
        verdict.expect_none(
            {o for o, r in reads.items() if r.status != 200 or r.body["orderId"] != o},
            "confirmed orders GET does not find",
        )
        await check_ledger(verdict, http, STOCK, orders)
        verdict.done()


def report(proxies: Proxies, replies: dict[int, list[Reply]]) -> None:
    print(f"cuts: {proxies.cuts} ({proxies.cuts_after_reply} after Redis replied)")
    print("answers:", dict(statuses(replies)))


# --- b. one single cut: nobody notices ---------------------------------------------------------


@pytest.mark.parametrize("keyed", [True, False], ids=["with-keys", "without-keys"])
async def test_one_cut_is_invisible_to_clients(
    redis: RedisClient, settings: Settings, mongo: MongoDatabase, keyed: bool
) -> None:
    async with proxied(redis, settings) as (fronted, proxies), api(fronted) as http:
        await open_shop(http, STOCK)
        todo = plans(300, seed=2, keyed=keyed, prefix="b")
        # The first script call on the connection of `flash`'s master, while orders flow.
        proxies.owning(keys.stock(keys.partition_of_product("flash"), "flash")).cut_next(
            SCRIPT_CALL
        )
        replies = await storefronts(http, todo, 20, max_attempts=1)
        report(proxies, replies)
        assert (proxies.cuts, proxies.cuts_after_reply) == (1, 1), "not exactly one cut"

        verdict = Verdict()
        verdict.expect_none(
            [(r.status, r.code) for rs in replies.values() for r in rs if not is_final(r)],
            "answers other than 201 and 409",
        )
        told = set(confirmed_ids(verdict, replies).values())
        orders = await orders_in_redis(redis)
        verdict.expect_none(set(orders) - told, "orders exist that no client was told about")
        verdict.expect_none(told - set(orders), "confirmed orders that do not exist")
        await check_ledger(verdict, http, STOCK, orders)
        verdict.done()


# --- c. repeated cuts without keys: every client hears the truth -------------------------------


async def test_repeated_cuts_without_keys_tell_every_client_the_truth(
    redis: RedisClient, settings: Settings, mongo: MongoDatabase
) -> None:
    async with proxied(redis, settings) as (fronted, proxies), api(fronted) as http:
        await open_shop(http, STOCK)
        proxies.cut_randomly(CUT_PROBABILITY, seed=3, limit=CUTS_MAX)
        todo = plans(LOAD_ORDERS, seed=3, keyed=False, prefix="c")
        replies = await storefronts(http, todo, LOAD_CLIENTS, max_attempts=1)
        proxies.stop_cutting()
        report(proxies, replies)
        assert proxies.cuts_after_reply > 0, "no connection was cut: the test proved nothing"

        verdict = Verdict()
        check_answers(verdict, replies)
        told = set(confirmed_ids(verdict, replies).values())
        found, absent = await resolve_unknown(verdict, http, replies)
        orders = await orders_in_redis(redis)
        verdict.expect_none(told - set(orders), "201s whose order does not exist")
        verdict.expect_none(absent & set(orders), "GET said 404, yet the order exists now")
        verdict.expect_none(
            set(orders) - told - found, "orders exist whose client was told they failed"
        )
        await check_ledger(verdict, http, STOCK, orders)
        verdict.done()


async def resolve_unknown(
    verdict: Verdict, http: Http, replies: dict[int, list[Reply]]
) -> tuple[set[str], set[str]]:
    """Look up every order an `outcome_unknown` named: (found, absent). Asked at once, since the
    answer must already be the truth; then wait out any resend still in flight, so a late one
    that lands an order GET called absent is caught by the caller's scan."""
    unknown = {
        order_id
        for rs in replies.values()
        for r in rs
        if r.code == "outcome_unknown" and (order_id := r.order_id)
    }
    lookups = await read_orders(http, sorted(unknown))
    found = {o for o, r in lookups.items() if r.status == 200 and r.body["orderId"] == o}
    absent = {o for o, r in lookups.items() if r.status == 404}
    verdict.expect_none(unknown - found - absent, "outcome_unknown orders GET answers neither way")
    if unknown:
        await asyncio.sleep(LATE_RESEND_GRACE_S)
    return found, absent


# --- d. every stock change applies once when its reply is cut ----------------------------------

OP_PRODUCT: Final = "sku-op"
OP_STOCK: Final = {(OP_PRODUCT, "paris"): 50, (OP_PRODUCT, "lyon"): 50}


@dataclass(frozen=True)
class StockOp:
    """One operation whose script call is cut: how to send it, the status it must get and how
    much it must change the Paris level."""

    send: Callable[[Http, str | None], Awaitable[httpx.Response]]
    status: int
    paris_delta: int
    needs_order: bool = False


async def _adjust(http: Http, delta: int) -> httpx.Response:
    return await http.post(f"/inventory/{OP_PRODUCT}/stock/paris/adjust", json={"delta": delta})


STOCK_OPS: Final = {
    "adjust-up": StockOp(lambda http, _: _adjust(http, 7), 200, +7),
    "adjust-down": StockOp(lambda http, _: _adjust(http, -4), 200, -4),
    "set": StockOp(
        lambda http, _: http.put(f"/inventory/{OP_PRODUCT}/stock/paris", json={"quantity": 20}),
        200,
        -30,
    ),
    "hold": StockOp(
        lambda http, _: http.post(
            "/inventory/reserve",
            json={"productId": OP_PRODUCT, "warehouseId": "paris", "quantity": 3},
        ),
        200,
        -3,
    ),
    "order": StockOp(
        lambda http, _: http.post(
            "/orders",
            json={
                "productId": OP_PRODUCT,
                "quantity": 2,
                "customerLocation": loc(*LOCATIONS["paris"]),
            },
        ),
        201,
        -2,
    ),
    "cancel": StockOp(
        lambda http, order_id: http.post(f"/orders/{order_id}/cancel"), 200, +5, needs_order=True
    ),
}


@pytest.mark.parametrize("name", list(STOCK_OPS))
async def test_a_cut_stock_change_applies_exactly_once(
    redis: RedisClient, settings: Settings, mongo: MongoDatabase, name: str
) -> None:
    op = STOCK_OPS[name]
    async with proxied(redis, settings) as (fronted, proxies), api(fronted) as http:
        await open_shop(http, OP_STOCK)
        order_id = await _order_to_cancel(http) if op.needs_order else None
        before = await levels(http, [OP_PRODUCT])
        orders_before = await orders_in_redis(redis)
        proxies.owning(keys.stock(keys.partition_of_product(OP_PRODUCT), OP_PRODUCT)).cut_next(
            SCRIPT_CALL
        )
        response = await op.send(http, order_id)

        assert (proxies.cuts, proxies.cuts_after_reply) == (1, 1), "the call was not cut"
        after = await levels(http, [OP_PRODUCT])
        changed = after[(OP_PRODUCT, "paris")] - before[(OP_PRODUCT, "paris")]
        # Status and change together: a 500 over a change that did apply says more than either.
        assert (response.status_code, changed) == (op.status, op.paris_delta), response.text
        assert after[(OP_PRODUCT, "lyon")] == before[(OP_PRODUCT, "lyon")]
        await _assert_one_record(redis, name, response, orders_before)


async def _order_to_cancel(http: Http) -> str:
    body = {"productId": OP_PRODUCT, "quantity": 5, "customerLocation": loc(*LOCATIONS["paris"])}
    response = await http.post("/orders", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["orderId"])


async def _assert_one_record(
    redis: RedisClient, name: str, response: httpx.Response, orders_before: dict[str, OrderRecord]
) -> None:
    """What the operation recorded besides the level: one hold, one order, one cancellation."""
    orders = await orders_in_redis(redis)
    if name == "hold":
        assert len(await scan_keys(redis, "hold:*")) == 1, "the hold was recorded twice"
    elif name == "order":
        new = set(orders) - set(orders_before)
        assert new == {response.json()["orderId"]}, f"orders created: {new}"
    elif name == "cancel":
        assert set(orders) == set(orders_before)
        assert [r.status for r in orders.values()] == ["cancelled"]


# --- e. Redis paused under load -----------------------------------------------------------------

PAUSE_S: Final = 5.0
PAUSE_DEADLINE_S: Final = 2.0  # COMMAND_DEADLINE_S of the API under test
PAUSE_SOCKET_TIMEOUT_S: Final = 0.5  # its REDIS_SOCKET_TIMEOUT_S
# Every answer within this: the last resend may start just before the deadline and wait out one
# socket timeout; the rest is HTTP and scheduling on a loaded 2-core machine.
ANSWER_BUDGET_S: Final = PAUSE_DEADLINE_S + PAUSE_SOCKET_TIMEOUT_S + 1.0
PAUSE_CLIENTS: Final = 100
PAUSE_CLIENT_TIMEOUT_S: Final = 15.0  # a hung request is recorded as hung, not waited for
WARMUP_S: Final = 1.5
AFTER_PAUSE_S: Final = 2.5
# Memory the API may gain during the pause. Requests answered within their budget keep at most
# rate x budget requests in the process; this catches an unbounded queue or resend buffer.
RSS_GROWTH_MAX_BYTES: Final = 64 * 1024 * 1024
PAUSE_STOCK: Final = {(product, w): 1_000_000 for product in PRODUCT_WEIGHTS for w in LOCATIONS}
START_TIMEOUT_S: Final = 30.0


async def wait_healthy(http: Http, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API exited: {log.read_text()[-2000:]}"
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the API did not start: {log.read_text()[-2000:]}")


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants (a server may fork its workers)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children[pid]
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
    return total


@dataclass
class RssSamples:
    samples: list[tuple[float, int]] = field(default_factory=list)

    def peak(self, start: float, end: float) -> int:
        return max(rss for at, rss in self.samples if start <= at <= end)


async def sample_rss(pid: int, into: RssSamples, stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.samples.append((time.monotonic(), tree_rss_bytes(pid)))
        await asyncio.sleep(0.1)


async def paused_victim(redis: RedisClient) -> int:
    """The pid of the Redis to pause: on a cluster, the master of `flash`'s partition."""
    return await redis_pid_holding(redis, keys.stock(keys.partition_of_product("flash"), "flash"))


async def redis_pid_holding(redis: RedisClient, key: str) -> int:
    """The pid of the Redis that holds `key`: on a cluster, the master of its slot."""
    if isinstance(redis, RedisCluster):
        info = await redis.info("server", target_nodes=redis.get_node_from_key(key))
    else:
        info = await redis.info("server")
    return int(info["process_id"])


@contextlib.contextmanager
def redis_paused(pid: int) -> Iterator[None]:
    """SIGSTOP, and SIGCONT however the block ends. A detached watchdog sends SIGCONT too, in
    case this process dies while Redis is stopped."""
    watchdog = subprocess.Popen(
        ["sh", "-c", f"sleep {PAUSE_S + 20}; kill -CONT {pid}"], start_new_session=True
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        os.killpg(watchdog.pid, signal.SIGKILL)  # its own session: the shell and its sleep
        watchdog.wait()


class KeepAliveClient:
    """One HTTP/1.1 connection that sends one order at a time. The load of the pause test goes
    through these rather than httpx: under this churn httpx's pool held requests back for
    seconds before writing them (measured: they reached the server up to 6 s after they were
    "sent"), which would charge the client's queueing to the API."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post_order(self, plan: Plan) -> Reply:
        body = json.dumps(plan.body()).encode()
        key = f"Idempotency-Key: {plan.key}\r\n" if plan.key else ""
        head = (
            f"POST /orders HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n{key}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        started = time.monotonic()
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._streams
        try:
            writer.write(head.encode() + body)
            async with asyncio.timeout(PAUSE_CLIENT_TIMEOUT_S):
                await writer.drain()
                status_line, headers = await self._read_head(reader)
                payload = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(
            int(status_line.split()[1]),
            json.loads(payload) if payload else None,
            headers.get("retry-after"),
            started,
            time.monotonic() - started,
        )

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def pause_load(port: int, stop: asyncio.Event) -> list[tuple[Plan, Reply | None]]:
    """PAUSE_CLIENTS clients send orders with a fresh key each, never retrying, until `stop`."""
    sent: list[tuple[Plan, Reply | None]] = []

    async def client(number: int) -> None:
        rng = random.Random(number)
        connection = KeepAliveClient(port)
        try:
            for n in range(1_000_000):
                if stop.is_set():
                    return
                lat, lon = LOCATIONS[rng.choice(("paris", "lyon"))]
                product = rng.choice(list(PRODUCT_WEIGHTS))
                plan = Plan(n, product, 1, loc(lat, lon), f"e-{number}-{n}")
                try:
                    reply: Reply | None = await connection.post_order(plan)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                    reply = None  # hung past the client's timeout, or the API died
                sent.append((plan, reply))
                # A 503 comes back at once: without a pause the clients would spin on it.
                await asyncio.sleep(0.05 if reply is None or reply.status == 503 else 0.01)
        finally:
            connection.close()

    await asyncio.gather(*(client(n) for n in range(PAUSE_CLIENTS)))
    return sent


async def test_paused_redis_sheds_load_in_time_and_places_nothing_it_refused(
    redis: RedisClient,
    settings: Settings,
    mongo: MongoDatabase,
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "api.log"
    env = {
        **store_env(settings),
        "COMMAND_DEADLINE_S": str(PAUSE_DEADLINE_S),
        "REDIS_SOCKET_TIMEOUT_S": str(PAUSE_SOCKET_TIMEOUT_S),
        # On the cluster the pause outlasts cluster-node-timeout, so the replica takes over:
        # answers must wait for it to hold the order (README, "Redis Cluster").
        "REDIS_WAIT_REPLICAS": "1" if settings.redis_cluster else "0",
    }
    limits = httpx.Limits(max_connections=PAUSE_CLIENTS + 8)
    timeout = httpx.Timeout(PAUSE_CLIENT_TIMEOUT_S)
    with api_process(env, port, log) as process:
        async with Http(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout
        ) as http:
            await wait_healthy(http, process, log)
            await open_shop(http, PAUSE_STOCK)
            victim = await paused_victim(redis)
            rss, stop = RssSamples(), asyncio.Event()
            sampler = asyncio.create_task(sample_rss(process.pid, rss, stop))
            load = asyncio.create_task(pause_load(port, stop))
            try:
                await asyncio.sleep(WARMUP_S)
                baseline = max(r for _, r in rss.samples)
                with redis_paused(victim):
                    paused_at = time.monotonic()
                    await asyncio.sleep(PAUSE_S)
                resumed_at = time.monotonic()
                await asyncio.sleep(AFTER_PAUSE_S)
            finally:
                stop.set()
                sent = await load
                await sampler
                if settings.redis_cluster:  # the paused master rejoins as a replica; wait for it
                    subprocess.run(
                        ["bash", str(ROOT / "ops" / "stack.sh"), "cluster-up"], check=True
                    )
            verdict = await _check_pause(http, redis, sent, paused_at, resumed_at)
            peak = rss.peak(paused_at, resumed_at + AFTER_PAUSE_S)
            print(f"API RSS: {baseline / 2**20:.0f} MiB before the pause, peak {peak / 2**20:.0f}")
            verdict.expect(
                peak - baseline < RSS_GROWTH_MAX_BYTES,
                f"the API grew by {(peak - baseline) / 2**20:.0f} MiB while Redis was paused",
            )
            verdict.done()


async def _check_pause(
    http: Http,
    redis: RedisClient,
    sent: list[tuple[Plan, Reply | None]],
    paused_at: float,
    resumed_at: float,
) -> Verdict:
    verdict = Verdict()
    replies = {i: [r] for i, (_, r) in enumerate(sent) if r is not None}
    print("answers:", dict(statuses(replies)), f"of {len(sent)} requests")
    verdict.expect_none(
        {plan.key for plan, r in sent if r is None},
        f"requests without an answer within {PAUSE_CLIENT_TIMEOUT_S} s",
    )
    check_answers(verdict, replies)
    verdict.expect_none(
        [
            f"{r.status} sent at pause{r.sent_at - paused_at:+.1f}s took {r.latency_s:.1f}s"
            for _, r in sent
            if r and r.latency_s > ANSWER_BUDGET_S
        ],
        f"answers slower than {ANSWER_BUDGET_S} s",
    )
    during = [r for _, r in sent if r and paused_at <= r.sent_at < resumed_at]
    verdict.expect(any(r.status == 503 for r in during), "nothing was refused during the pause")

    found, absent = await resolve_unknown(verdict, http, replies)
    await check_keyed_retries(verdict, http, sent, found)
    orders = await orders_in_redis(redis)
    told = {r.order_id for _, r in sent if r and r.status == 201}
    verdict.expect_none(told - set(orders), "201s whose order does not exist")
    verdict.expect_none(absent & set(orders), "GET said 404, yet the order exists now")
    verdict.expect_none(set(orders) - told - found, "orders exist that no client was told about")
    refused = {plan.key for plan, r in sent if r and r.code == "overloaded"}
    placed = {record.idempotency_key for record in orders.values()}
    verdict.expect_none(refused & placed, "orders placed for requests answered `overloaded`")
    await check_ledger(verdict, http, PAUSE_STOCK, orders)
    return verdict


async def check_keyed_retries(
    verdict: Verdict, http: Http, sent: list[tuple[Plan, Reply | None]], found: set[str]
) -> None:
    """A retry with the same key of an `outcome_unknown` whose order exists confirms that order
    (a replay: nothing new is placed, so the ledger below is unaffected)."""
    retried = [
        (plan, r.order_id)
        for plan, r in sent
        if r and r.code == "outcome_unknown" and r.order_id in found
    ]
    replays = await asyncio.gather(*(post_order(http, plan) for plan, _ in retried))
    verdict.expect_none(
        [
            f"{order_id} retried: {again.status} {again.body}"
            for (_, order_id), again in zip(retried, replays, strict=True)
            if again.status != 201 or again.order_id != order_id
        ],
        "keyed retries of outcome_unknown that do not confirm the order GET found",
    )
