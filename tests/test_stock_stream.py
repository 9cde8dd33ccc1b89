"""The live stock stream: GET /inventory/stream on a real API process (the Litestar test client
buffers a streamed body whole, so it cannot show an endless SSE response), and the fan-out
component on its own for what HTTP cannot show (a slow subscriber dropped, unsubscribing)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import stock_feed
from api.stock_feed import Dropped, StockFeed, StockUpdate, Subscription
from engine.inventory import Inventory
from engine.stock_changes import LowStockThresholds, StockChange
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.api_process import api_process
from tests.conftest import runner_for, store_env

ROOT = Path(__file__).resolve().parent.parent
API_PORT = 18_431
BASE = f"http://127.0.0.1:{API_PORT}"
PARIS = {"lat": 48.8566, "lon": 2.3522}
LYON = {"lat": 45.764, "lon": 4.8357}
EVENT_TIMEOUT_S = 10.0
DELAY_SAMPLES = 50


@pytest.fixture
def api(settings: Settings, redis: RedisClient, mongo: MongoDatabase) -> Iterator[None]:
    env = {
        **store_env(settings),
        "LOW_STOCK_THRESHOLD": "3",
    }
    with api_process(env, API_PORT):
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{BASE}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        yield


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The events of a text/event-stream body, one dict of fields per event (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def test_stream_sends_levels_then_each_change_in_order(api: None) -> None:
    async with httpx.AsyncClient(base_url=BASE, timeout=EVENT_TIMEOUT_S) as client:
        for warehouse_id, location in (("paris", PARIS), ("lyon", LYON)):
            body = {"warehouseId": warehouse_id, "name": warehouse_id, "location": location}
            assert (await client.post("/warehouses", json=body)).status_code == 201
            put = await client.put(f"/inventory/sku-1/stock/{warehouse_id}", json={"quantity": 5})
            assert put.status_code == 200
        assert (
            await client.get("/inventory/stream", params={"productId": "nope"})
        ).status_code == 404

        async with client.stream(
            "GET", "/inventory/stream", params={"productId": "sku-1"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
            first = await anext(events)
            assert first["event"] == "levels"
            assert json.loads(first["data"]) == {
                "productId": "sku-1",
                "stockLevels": [
                    {"warehouseId": "lyon", "quantity": 5},
                    {"warehouseId": "paris", "quantity": 5},
                ],
            }

            order = {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS}
            placed = await client.post("/orders", json=order)
            assert placed.status_code == 201
            assert (await client.post("/orders", json=order)).status_code == 201
            # Another product's change must not reach this subscriber.
            other = await client.put("/inventory/sku-2/stock/paris", json={"quantity": 1})
            assert other.status_code == 200
            restock = {"quantity": 20, "reason": "restock"}
            assert (await client.put("/inventory/sku-1/stock/paris", json=restock)).is_success
            cancel = await client.post(f"/orders/{placed.json()['orderId']}/cancel")
            assert cancel.status_code == 200
            hold = {"productId": "sku-1", "warehouseId": "lyon", "quantity": 5}
            assert (await client.post("/inventory/reserve", json=hold)).status_code == 200

            expected = [
                ("stock", {"warehouseId": "paris", "quantity": 4, "reason": "order"}),
                ("stock", {"warehouseId": "paris", "quantity": 3, "reason": "order"}),
                ("low_stock", {"warehouseId": "paris", "quantity": 3, "threshold": 3}),
                ("stock", {"warehouseId": "paris", "quantity": 20, "reason": "restock"}),
                ("stock", {"warehouseId": "paris", "quantity": 21, "reason": "cancel"}),
                ("stock", {"warehouseId": "lyon", "quantity": 0, "reason": "hold"}),
                ("low_stock", {"warehouseId": "lyon", "quantity": 0, "threshold": 3}),
            ]
            # The setup's own changes may still come after the levels (the tailer had not read
            # them when this client subscribed; on a cluster it polls): repeats, skipped.
            setup = [
                {"productId": "sku-1", "warehouseId": w, "quantity": 5, "reason": "restock"}
                for w in ("paris", "lyon")
            ]
            event = await asyncio.wait_for(anext(events), EVENT_TIMEOUT_S)
            while json.loads(event["data"]) in setup:
                event = await asyncio.wait_for(anext(events), EVENT_TIMEOUT_S)
            for n, (kind, fields) in enumerate(expected):
                if n:
                    event = await asyncio.wait_for(anext(events), EVENT_TIMEOUT_S)
                assert event["event"] == kind
                assert json.loads(event["data"]) == {"productId": "sku-1", **fields}
            # Both low changes of sku-1 and the one of sku-2 (1 unit), counted once each.
            exposition = (await client.get("/metrics")).text
            assert "low_stock_changes_total 3.0" in exposition

            # Delivery delay, one change at a time with the reader already waiting. The entry ID's
            # first part is the XADD's time in ms (Redis runs on this machine's clock).
            delays_ms: list[float] = []
            for n in range(DELAY_SAMPLES):
                reading = asyncio.create_task(anext(events))
                level = {"quantity": 100 + n, "reason": "count"}
                assert (await client.put("/inventory/sku-1/stock/paris", json=level)).is_success
                event = await asyncio.wait_for(reading, EVENT_TIMEOUT_S)
                delays_ms.append(time.time() * 1000 - int(event["id"].split("-")[0]))
                assert json.loads(event["data"])["quantity"] == 100 + n
            delays_ms.sort()
            print(
                f"\nXADD -> SSE event read by the client: {len(delays_ms)} samples, "
                f"median {delays_ms[len(delays_ms) // 2]:.1f} ms, max {delays_ms[-1]:.1f} ms "
                "(entry IDs have 1 ms resolution)"
            )


async def next_item(subscription: Subscription) -> Any:
    item = await subscription.next(EVENT_TIMEOUT_S)
    assert item is not None, "no change arrived"
    return item


async def test_feed_fans_out_per_product_and_drops_a_slow_subscriber(
    redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = StockFeed(redis, LowStockThresholds(2, {"sku-b": 50}))
    inventory = Inventory(runner_for(redis))
    try:
        a, b = await feed.subscribe("sku-a"), await feed.subscribe("sku-b")
        monkeypatch.setattr(stock_feed, "SUBSCRIBER_QUEUE_SIZE", 3)
        slow = await feed.subscribe("sku-a")
        assert feed.subscriber_count == 3

        await inventory.change("sku-a", "w1", "set", 3, "restock")
        update = await next_item(a)
        restocked = StockChange("sku-a", "w1", 3, "restock")
        assert update == StockUpdate(restocked, update.entry_id, None)
        await inventory.change("sku-a", "w1", "adjust", -1, "damaged")
        update = await next_item(a)
        assert (update.change.level, update.change.reason) == (2, "damaged")
        assert update.low_threshold_units == 2  # at the threshold counts as low
        await inventory.change("sku-b", "w1", "set", 40, "restock")
        assert (await next_item(b)).low_threshold_units == 50  # the product's own threshold

        # `slow` read nothing: the first three changes filled its queue of 3, the fourth overflows.
        await inventory.set_many([("sku-a", "w1", n) for n in (7, 8)], "count")
        for expected in (7, 8):
            assert (await next_item(a)).change.level == expected
        assert isinstance(await next_item(slow), Dropped)
        assert slow.queue.empty()
        assert feed.subscriber_count == 2
        assert feed.low_stock_count == 2

        feed.unsubscribe(a)
        feed.unsubscribe(b)
        assert feed.subscriber_count == 0
        assert feed.tailing is False  # nobody watches: nothing is read
    finally:
        await feed.stop()
