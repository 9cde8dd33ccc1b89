"""The PostgreSQL breaker, with PostgreSQL stopped for real: GET /orders/{id} keeps answering 200
without the history, and once the breaker has opened it answers without trying the store; after
PostgreSQL is back the history returns. Marked `disruptive` (it stops a shared server), so it
runs last, and it restores the stack in `finally`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from stores.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES_TO_OPEN
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.test_faults import stack_up, stop_postgres

pytestmark = pytest.mark.disruptive

PARIS = {"lat": 48.8566, "lon": 2.3522}
RECOVERY_TIMEOUT_S = 60.0


async def test_order_reads_answer_without_history_while_postgres_is_down(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase, pg: asyncpg.Pool
) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        body = {"warehouseId": "paris", "name": "Paris", "location": PARIS}
        assert (await client.post("/warehouses", json=body)).status_code == 201
        await client.put("/inventory/sku-1/stock/paris", json={"quantity": 5})
        order = {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS}
        order_id = (await client.post("/orders", json=order)).json()["orderId"]
        # The writer's row, written directly: what is under test is the read.
        await pg.execute(
            "INSERT INTO order_status_history (order_id, status, at, event_id) "
            "VALUES ($1::uuid, 'confirmed', now(), '0-1')",
            order_id,
        )
        assert len((await client.get(f"/orders/{order_id}")).json()["history"]) == 1

        timings_ms: list[float] = []
        try:
            stop_postgres()
            for _ in range(DEFAULT_FAILURES_TO_OPEN + 5):
                started = time.perf_counter()
                response = await client.get(f"/orders/{order_id}")
                timings_ms.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
                assert response.json()["status"] == "confirmed"
                assert "history" not in response.json()
        finally:
            stack_up()
        print("GET /orders/{id} with PostgreSQL down, ms:", [f"{t:.1f}" for t in timings_ms])

        await asyncio.sleep(DEFAULT_COOLDOWN_S)  # the breaker lets a trial through after this
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = (await client.get(f"/orders/{order_id}")).json()
            if "history" in answer:
                break
            await asyncio.sleep(0.5)
        assert [step["status"] for step in answer.get("history", [])] == ["confirmed"]
