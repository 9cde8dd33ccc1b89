"""The brief's second reference point: the no-op handler (loadtest/noop_app.py) with one EVALSHA
through redis-py's asyncio client per request, the plain way to put a Redis script behind
Litestar. The script is the engine benchmark's tiny decrement, on one of its keys picked by
the order's product, so the figure is what the handler and one round trip cost, not what Redis
does. The API is reported as a ratio to it; the brief asks for at least 2x.

Served as the API is (`python -m api --app loadtest.evalsha_app:app`); the Redis at REDIS_URL."""

from __future__ import annotations

import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, post
from litestar.datastructures import State
from litestar.params import JSONBody
from redis.asyncio import Redis

from loadtest.engine_load import TINY_DECREMENT, TINY_DECREMENT_SHA, tiny_key
from loadtest.noop_app import FIXED_ANSWER, OrderPlaced, PlaceOrder


@asynccontextmanager
async def redis_client(app: Litestar) -> AsyncIterator[None]:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    await redis.script_load(TINY_DECREMENT)
    app.state.redis = redis
    try:
        yield
    finally:
        await redis.aclose()


@post("/orders", status_code=201)
async def place(data: JSONBody[PlaceOrder], state: State) -> OrderPlaced:
    key = tiny_key(zlib.crc32(data.product_id.encode()))
    await state.redis.evalsha(TINY_DECREMENT_SHA, 1, key)
    return FIXED_ANSWER


app = Litestar([place], lifespan=[redis_client], logging_config=None)
