"""The fault-injection proxy itself, against the real Redis: a cut lands after Redis ran the
command and before the client hears back; the every-k-th, random and close-all modes do what
they say. The other fault tests rely on this."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from stores.redis import RedisClient
from tests.conftest import TEST_SETTINGS
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    TEST_SETTINGS.redis_cluster, reason="a plain Redis is enough to test the proxy"
)

# The test Redis (TEST_REDIS_URL), the one the `redis` fixture reads back from.
_URL: Final = urlsplit(TEST_SETTINGS.redis_url)
REDIS_ADDRESS: Final = (_URL.hostname or "127.0.0.1", _URL.port or 6379)
DB: Final = int(_URL.path.lstrip("/") or 0)
# The RESP bulk string of the command name: a bare b"SET" would also match CLIENT SETINFO,
# which redis-py sends on every new connection.
SET: Final = b"$3\r\nSET\r\n"


def through(proxy: TcpProxy) -> Redis:
    # No retry: redis-py would otherwise resend the command and hide the cut from the test.
    return Redis.from_url(f"redis://{proxy.address}/{DB}", retry=Retry(NoBackoff(), 0))


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with TcpProxy(REDIS_ADDRESS) as running:
        yield running


async def test_forwards_both_ways(proxy: TcpProxy) -> None:
    client = through(proxy)
    try:
        await client.set("proxy:plain", "1")
        assert await client.get("proxy:plain") == b"1"
        assert proxy.cuts == 0
    finally:
        await client.aclose()


async def test_a_cut_set_lands_in_redis_but_the_client_gets_a_connection_error(
    proxy: TcpProxy, redis: RedisClient
) -> None:
    client = through(proxy)
    try:
        await client.ping()  # connected before the cut is armed: the cut hits the SET itself
        proxy.cut_next(SET)
        with pytest.raises(RedisConnectionError):
            await client.set("proxy:cut", "landed")
        assert await redis.get("proxy:cut") == "landed"
        assert (proxy.cuts, proxy.cuts_after_reply) == (1, 1)
        await client.set("proxy:after", "1")  # once only: the next command goes through
        assert proxy.cuts == 1
    finally:
        await client.aclose()


async def test_cut_every_kth_matching_chunk_up_to_a_limit(
    proxy: TcpProxy, redis: RedisClient
) -> None:
    client = through(proxy)
    try:
        proxy.cut_every(SET, 3, limit=2)
        failed: list[int] = []
        for i in range(1, 10):
            try:
                await client.set(f"proxy:k:{i}", i)
            except RedisConnectionError:
                failed.append(i)
        assert failed == [3, 6]  # the 9th would be cut too, past the limit
        landed = await redis.mget([f"proxy:k:{i}" for i in range(1, 10)])
        assert landed == [str(i) for i in range(1, 10)]  # every SET ran, the cut ones included
        assert proxy.cuts == 2
    finally:
        await client.aclose()


async def test_random_cuts_follow_the_seed(proxy: TcpProxy) -> None:
    client = through(proxy)
    seed, probability, sends = 11, 0.3, 30
    rng = random.Random(seed)
    expected = [i for i in range(sends) if rng.random() < probability]
    try:
        proxy.cut_randomly(SET, probability, seed=seed, limit=None)
        failed: list[int] = []
        for i in range(sends):
            try:
                await client.set(f"proxy:r:{i}", i)
            except RedisConnectionError:
                failed.append(i)
        assert failed == expected and failed
        assert proxy.cuts == len(expected)
    finally:
        await client.aclose()


async def test_close_all_drops_open_connections(proxy: TcpProxy) -> None:
    client = through(proxy)
    try:

        async def wait_forever() -> Any:
            return await client.blpop(["proxy:never"], timeout=10)

        waiting = asyncio.create_task(wait_forever())
        await asyncio.sleep(0.2)  # the BLPOP is parked in Redis, its connection open
        proxy.close_all()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(waiting, 5)
    finally:
        await client.aclose()
