"""loadtest/evalsha_app.py, the benchmark's one-EVALSHA reference handler: each order it
answers ran the tiny script once in a real Redis (so its figure includes the round trip), and
input the no-op handler refuses it refuses without touching Redis."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from loadtest.engine_load import tiny_key
from loadtest.evalsha_app import app
from stores.settings import Settings

ORDER = {"productId": "p-reference", "quantity": 1, "customerLocation": {"lat": 1.5, "lon": 2.5}}
KEY = tiny_key(zlib.crc32(b"p-reference"))


@pytest.fixture
async def plain(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Redis]:
    # The queue Redis is a single server on either tier, as the benchmark's Redis is.
    monkeypatch.setenv("REDIS_URL", settings.queue_url)
    client = Redis.from_url(settings.queue_url, decode_responses=True)
    await client.delete(KEY)
    try:
        yield client
    finally:
        await client.delete(KEY)
        await client.aclose()


async def test_each_order_answered_ran_the_tiny_script_once(plain: Redis) -> None:
    async with AsyncTestClient(app) as client:
        answers = [await client.post("/orders", json=ORDER) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert answers[0].json()["status"] == "confirmed"
    assert await plain.get(KEY) == "-3"


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({**ORDER, "productId": 7}).encode(),
        json.dumps({"productId": "p-reference", "quantity": 1}).encode(),
        b'{"productId": "p-reference",',
    ],
)
async def test_input_the_no_op_handler_refuses_is_refused_before_redis(
    plain: Redis, body: bytes
) -> None:
    async with AsyncTestClient(app) as client:
        answer = await client.post(
            "/orders", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 400
    assert await plain.get(KEY) is None
