"""Redis at its memory limit (`maxmemory`, `noeviction`): every write is refused whole with 503
`store_full` and Retry-After, reads still answer, and orders are taken again once memory frees,
with nothing restarted. On one Redis and on the cluster (the limit is set on every master).

maxmemory is a server-wide setting, so while a test here runs, the other databases of the same
server (other test processes) are at the limit too: the limit is set just above the memory in
use, then below it while the checks run, a few seconds in all, and put back in `finally`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster

from api.app import create_app
from api.orders import IDEMPOTENCY_KEY_MAX_LENGTH
from engine import keys
from engine.events import OrdersConfirmed, decode_event
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from stores.streams import (
    ORDERS_GROUP,
    PARTITION_STREAMS,
    backlog,
    create_groups,
    persisted_counts,
    trim_streams,
)
from tests.conftest import runner_for, scan_keys
from writers.consumer import GroupConsumer, StreamEntry
from writers.orders import OrdersWriter

pytestmark = pytest.mark.faults  # Redis refuses writes server-wide for a few seconds

Client = AsyncTestClient[Any]
PARIS: Final = {"lat": 48.8566, "lon": 2.3522}
LYON: Final = {"lat": 45.764, "lon": 4.8357}
# Names of their own: other test processes may create their "paris" in the same test database.
WAREHOUSES: Final = {"full-paris": PARIS, "full-lyon": LYON}
UNITS_PER_WAREHOUSE: Final = 1_000_000
# Room above the memory in use when the test starts: the orders fill it. ~1 KB per order (record,
# stream entry, idempotency key), so ~1,000 orders per master.
MARGIN_BYTES: Final = 1024 * 1024
ROUND_ORDERS: Final = 64
MAX_FILL_S: Final = 120.0


def one_product_per_partition() -> list[str]:
    """Orders on every partition, so every master of a cluster fills."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < keys.PARTITIONS:
        product = f"full-{n}"
        found.setdefault(keys.partition_of_product(product), product)
        n += 1
    return [found[p] for p in range(keys.PARTITIONS)]


PRODUCTS: Final = one_product_per_partition()


# --- the limit ----------------------------------------------------------------------------------


class MemoryLimit:
    """maxmemory on every master, through a plain connection to each (CONFIG and INFO are per
    server). Replicas are left alone: a replica applies its master's writes, it refuses nothing."""

    def __init__(self, nodes: dict[str, Redis]) -> None:
        self.nodes = nodes  # by "host:port", the `node` label of the metrics
        self.original: dict[str, int] = {}
        self.limits: dict[str, int] = {}

    async def remember(self) -> None:
        for name, node in self.nodes.items():
            self.original[name] = int((await node.config_get("maxmemory"))["maxmemory"] or 0)

    async def used(self) -> dict[str, int]:
        return {
            name: int((await node.info("memory"))["used_memory"])
            for name, node in self.nodes.items()
        }

    async def set_above_use(self, margin_bytes: int) -> None:
        """maxmemory = what each master uses now + margin."""
        for name, used in (await self.used()).items():
            self.limits[name] = used + margin_bytes
            await self.nodes[name].config_set("maxmemory", self.limits[name])

    async def hold_full(self) -> None:
        """maxmemory 1 byte: every master stays over its limit whatever another process on the
        same server frees meanwhile (a test fixture flushing its database would otherwise let a
        write in between two checks)."""
        for name, node in self.nodes.items():
            self.limits[name] = 1
            await node.config_set("maxmemory", 1)

    async def restore(self) -> None:
        for name, value in self.original.items():
            await self.nodes[name].config_set("maxmemory", value)
        self.limits = {}


async def master_connections(redis: RedisClient, settings: Settings) -> dict[str, Redis]:
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # asked fresh: a failover in an earlier test may have moved them
        primaries = [(node.host, int(node.port)) for node in redis.get_primaries()]
    else:
        url = urlsplit(settings.redis_url)
        primaries = [(url.hostname or "127.0.0.1", url.port or 6379)]
    return {
        f"{host}:{port}": Redis(host=host, port=port, decode_responses=True)
        for host, port in primaries
    }


@pytest.fixture
async def memory_limit(redis: RedisClient, settings: Settings) -> AsyncIterator[MemoryLimit]:
    nodes = await master_connections(redis, settings)
    limit = MemoryLimit(nodes)
    try:
        await limit.remember()
        yield limit
    finally:
        try:
            await limit.restore()  # CONFIG SET is never refused, not even at the limit
        finally:
            for node in nodes.values():
                await node.aclose()


@pytest.fixture
async def client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(settings)) as http:
        for warehouse_id, location in WAREHOUSES.items():
            body = {"warehouseId": warehouse_id, "name": warehouse_id.title(), "location": location}
            assert (await http.post("/warehouses", json=body)).status_code == 201
        for product in PRODUCTS:
            for warehouse_id in WAREHOUSES:
                level = {"quantity": UNITS_PER_WAREHOUSE}
                put = await http.put(f"/inventory/{product}/stock/{warehouse_id}", json=level)
                assert put.status_code == 200
        yield http


# --- placing orders and keeping the books -------------------------------------------------------


@dataclass
class Ledger:
    """What the clients were told."""

    # Per order ID: its product and quantity.
    confirmed: dict[str, tuple[str, int]] = field(default_factory=dict)
    refused: int = 0
    placed: int = 0  # orders sent, for unique idempotency keys


def assert_store_full(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "store_full"
    assert int(response.headers["Retry-After"]) >= 1


async def place_round(http: Client, ledger: Ledger) -> tuple[int, int]:
    """ROUND_ORDERS concurrent orders over every product, each with a long idempotency key (more
    bytes per order). Every answer is 201 or 503 store_full. Returns (confirmed, refused)."""

    async def place(n: int) -> tuple[dict[str, Any], Any]:
        body = {
            "productId": PRODUCTS[n % len(PRODUCTS)],
            "quantity": 1 + n % 3,
            "customerLocation": PARIS if n % 2 else LYON,
        }
        key = f"store-full-{n:08d}-".ljust(IDEMPOTENCY_KEY_MAX_LENGTH, "k")
        return body, await http.post("/orders", json=body, headers={"Idempotency-Key": key})

    first = ledger.placed
    ledger.placed += ROUND_ORDERS
    answers = await asyncio.gather(*(place(first + i) for i in range(ROUND_ORDERS)))
    confirmed = 0
    for body, response in answers:
        if response.status_code == 201:
            ledger.confirmed[response.json()["orderId"]] = (body["productId"], body["quantity"])
            confirmed += 1
        else:
            assert_store_full(response)
            ledger.refused += 1
    return confirmed, ROUND_ORDERS - confirmed


async def redis_state(redis: RedisClient) -> dict[str, Any]:
    """Everything a write would change: stock levels, stream lengths, order records, idempotency
    keys, holds."""
    return {
        "stock": [
            await redis.hgetall(keys.stock(keys.partition_of_product(p), p)) for p in PRODUCTS
        ],
        "streams": [await redis.xlen(keys.stream(p)) for p in range(keys.PARTITIONS)],
        "orders": sorted(await scan_keys(redis, "order:*")),
        "idempotency_keys": len(await scan_keys(redis, "idem:*")),
        "holds": len(await scan_keys(redis, "hold:*")),
    }


async def fill(http: Client, ledger: Ledger) -> None:
    """Place rounds of orders until Redis refuses some: it reached its limit."""
    give_up_at = time.monotonic() + MAX_FILL_S
    while time.monotonic() < give_up_at:
        _, refused = await place_round(http, ledger)
        if refused:
            return
    pytest.fail(f"Redis not full after {MAX_FILL_S} s ({len(ledger.confirmed)} orders)")


async def confirmed_events(redis: RedisClient) -> Counter[str]:
    """Order ID of every order in the `orders.confirmed` entries, over every partition stream."""
    found: Counter[str] = Counter()
    for stream in PARTITION_STREAMS:
        entries: list[tuple[str, dict[str, str]]] = await redis.xrange(stream)  # type: ignore[assignment]
        for _, fields in entries:
            event = decode_event(fields)
            if isinstance(event, OrdersConfirmed):
                found.update(placed.order_id for placed in event.orders)
    return found


async def assert_books_balance(http: Client, redis: RedisClient, ledger: Ledger) -> None:
    """Units that left stock are the confirmed orders' units; every order key has its one event,
    and both are exactly the orders the clients were told about. Read through the API (200 at
    the limit) and from Redis."""
    for product in PRODUCTS:
        response = await http.get("/inventory", params={"productId": product})
        assert response.status_code == 200
        left = sum(level["quantity"] for level in response.json()["stockLevels"])
        taken = sum(quantity for p, quantity in ledger.confirmed.values() if p == product)
        assert len(WAREHOUSES) * UNITS_PER_WAREHOUSE - left == taken, product
    order_ids = {key.rsplit(":", 1)[1] for key in await scan_keys(redis, "order:*")}
    assert order_ids == set(ledger.confirmed)
    events = await confirmed_events(redis)
    assert set(events) == set(ledger.confirmed)
    assert set(events.values()) == {1}
    assert len(await scan_keys(redis, "idem:*")) == len(ledger.confirmed)


async def scrape(http: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# --- the tests ----------------------------------------------------------------------------------


async def test_orders_are_refused_whole_at_the_limit_and_taken_again_once_memory_frees(
    client: Client,
    redis: RedisClient,
    memory_limit: MemoryLimit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("api.metrics.STORE_CACHE_S", 0.0)  # every scrape reads the stores
    ledger = Ledger()
    await memory_limit.set_above_use(MARGIN_BYTES)
    await fill(client, ledger)
    # Filled from below: orders were taken until the limit (~1,000 per master on a quiet server;
    # fewer when other test processes write to it meanwhile), then refused.
    # /metrics reports each master's limit, and its memory at it (less by what another process
    # may have freed since).
    samples = await scrape(client)
    for node, limit in memory_limit.limits.items():
        labels = (("node", node), ("role", "master"))
        assert samples[("redis_memory_max_bytes", labels)] == limit
        assert samples[("redis_memory_used_bytes", labels)] > 0.5 * limit
    await memory_limit.hold_full()

    # A refused batch changes nothing: the scripts are refused before they run, so not even a
    # stream entry is added.
    before = await redis_state(redis)
    assert await place_round(client, ledger) == (0, ROUND_ORDERS)
    assert await redis_state(redis) == before
    await assert_books_balance(client, redis, ledger)

    # Reads answer at the limit; every other write is refused whole too.
    order_id = next(iter(ledger.confirmed))
    product = PRODUCTS[0]
    read = await client.get(f"/orders/{order_id}")
    assert read.status_code == 200 and read.json()["status"] == "confirmed"
    before = await redis_state(redis)
    assert_store_full(await client.post(f"/orders/{order_id}/cancel"))
    assert_store_full(
        await client.put(f"/inventory/{product}/stock/full-paris", json={"quantity": 7})
    )
    adjust = await client.post(f"/inventory/{product}/stock/full-lyon/adjust", json={"delta": -1})
    assert_store_full(adjust)
    hold = {"productId": product, "warehouseId": "full-paris", "quantity": 1}
    assert_store_full(await client.post("/inventory/reserve", json=hold))
    assert await redis_state(redis) == before
    assert (await client.get(f"/orders/{order_id}")).json()["status"] == "confirmed"

    # Memory frees (here: the limit goes back up): orders are taken again, nothing restarted.
    await memory_limit.restore()
    confirmed, refused = await place_round(client, ledger)
    assert (confirmed, refused) == (ROUND_ORDERS, 0)
    await assert_books_balance(client, redis, ledger)
    samples = await scrape(client)
    for node, limit in memory_limit.original.items():
        labels = (("node", node), ("role", "master"))
        assert samples[("redis_memory_max_bytes", labels)] == limit


async def test_redis_refuses_only_commands_that_may_grow_memory(
    redis: RedisClient, memory_limit: MemoryLimit
) -> None:
    """What the writers can still do at the limit (Redis 7.0 command flags): read and ack their
    groups and trim the streams, i.e. drain a backlog; not append, count or create groups."""
    stream = keys.stream(0)
    entry_id = await redis.xadd(stream, {"type": "test"})
    await create_groups(redis, [stream], ["limit-test"])
    await memory_limit.hold_full()
    reply: Any = await redis.xreadgroup("limit-test", "c1", {stream: ">"}, count=10)
    assert [entry[0] for _, entries in reply for entry in entries] == [entry_id]
    assert await redis.xautoclaim(stream, "limit-test", "c2", 0, count=10)
    assert await redis.xack(stream, "limit-test", entry_id) == 1
    assert await trim_streams(redis, [stream]) == 1
    assert await redis.get("writers:persisted:limit-test") is None  # reads answer
    with pytest.raises(redis_errors.OutOfMemoryError):
        await redis.incrby("writers:persisted:limit-test", 1)
    with pytest.raises(redis_errors.OutOfMemoryError):
        await redis.xadd(stream, {"type": "test"})
    with pytest.raises(redis_errors.OutOfMemoryError):
        await redis.xgroup_create(stream, "limit-test", id="0")  # not even BUSYGROUP


class CountingWriter:
    """Persists nothing anywhere: the consumer-group mechanics alone."""

    group = "limit-writer"
    transient_errors: tuple[type[BaseException], ...] = ()
    permanent_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self.persisted: list[StreamEntry] = []

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        self.persisted += entries
        return []


async def test_a_group_consumer_drains_its_backlog_at_the_limit(
    client: Client, redis: RedisClient, memory_limit: MemoryLimit
) -> None:
    writer = CountingWriter()
    await create_groups(
        redis, PARTITION_STREAMS, [writer.group]
    )  # at start, as `python -m writers`
    ledger = Ledger()
    await place_round(client, ledger)
    await memory_limit.hold_full()  # past the limit, with a backlog
    consumer = GroupConsumer(redis, writer, "store-full")
    while await consumer.step():
        pass
    persisted = {
        placed.order_id
        for e in writer.persisted
        if isinstance(e.event, OrdersConfirmed)
        for placed in e.event.orders
    }
    assert persisted == set(ledger.confirmed)
    (group,) = await backlog(redis, [writer.group])
    assert (group.lag, group.pending) == (0, 0)
    assert await trim_streams(redis, PARTITION_STREAMS) > 0  # memory frees
    # The progress counter is refused at the limit (its INCRBY may grow memory); the acks are not.
    assert (await persisted_counts(redis, [writer.group]))[writer.group] <= len(writer.persisted)


async def test_the_orders_writer_drains_its_backlog_at_the_limit(
    client: Client, redis: RedisClient, pg: asyncpg.Pool, memory_limit: MemoryLimit
) -> None:
    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])
    ledger = Ledger()
    await place_round(client, ledger)
    await memory_limit.hold_full()  # past the limit, with a backlog
    consumer = GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), "store-full")
    for _ in range(3):
        try:
            if not await consumer.step():
                break
        except redis_errors.OutOfMemoryError:  # the persisted counter: see the test above
            continue
    stored = await pg.fetchval(
        "SELECT count(*) FROM orders WHERE order_id = ANY($1::uuid[])", list(ledger.confirmed)
    )
    assert stored == len(ledger.confirmed)
    (group,) = await backlog(redis, [ORDERS_GROUP])
    assert (group.lag, group.pending) == (0, 0)
