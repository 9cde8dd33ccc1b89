"""GET /metrics: order outcomes and responses as counted, backlog and writer progress as stored."""

from __future__ import annotations

from typing import Any, Final

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import keys
from stores.redis import RedisClient
from stores.streams import ORDERS_GROUP, PARTITION_STREAMS, create_groups
from tests.conftest import runner_for
from tests.promql import queried_metric_names
from tests.test_api import Client, client, order_body
from writers.consumer import GroupConsumer
from writers.orders import OrdersWriter

__all__ = ["client"]  # the fixture, shared with the API tests

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Series Prometheus adds to every target itself rather than reading them from /metrics.
PROMETHEUS_OWN_SERIES: Final = frozenset({"up"})


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def stream_entries(redis: RedisClient) -> int:
    return sum([int(await redis.xlen(keys.stream(p))) for p in range(keys.PARTITIONS)])


async def test_metrics_count_outcomes_and_report_the_backlog(
    client: Client, redis: RedisClient, pg: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("api.metrics.STORE_CACHE_S", 0.0)  # every scrape reads the stores
    replayed: dict[str, Any] = {"headers": {"Idempotency-Key": "k-1"}}
    assert (await client.post("/orders", json=order_body(1), **replayed)).status_code == 201
    assert (await client.post("/orders", json=order_body(1), **replayed)).status_code == 201
    assert (await client.post("/orders", json=order_body(2))).status_code == 201
    assert (await client.post("/orders", json=order_body(6))).status_code == 409
    unknown = {**order_body(1), "productId": "sku-none"}
    assert (await client.post("/orders", json=unknown)).status_code == 404

    samples = await scrape(client)
    assert value(samples, "orders_total", outcome="confirmed") == 2
    assert value(samples, "orders_total", outcome="replayed") == 1
    assert value(samples, "orders_total", outcome="out_of_stock") == 1
    assert value(samples, "orders_total", outcome="unknown_product") == 1
    assert value(samples, "orders_total", outcome="error") == 0
    assert value(samples, "placement_seconds_count") == 5
    assert value(samples, "http_responses_total", status_class="4xx") == 2
    assert value(samples, "http_responses_total", status_class="5xx") == 0
    # No writer ran yet: every entry of every stream waits for each group.
    entries = await stream_entries(redis)
    assert entries > 0
    assert value(samples, "stream_backlog", group=ORDERS_GROUP) == entries
    assert value(samples, "stream_pending", group=ORDERS_GROUP) == 0
    assert value(samples, "writer_persisted_total", group=ORDERS_GROUP) == 0
    assert value(samples, "notification_failures") == 0

    await create_groups(redis, PARTITION_STREAMS, [ORDERS_GROUP])  # as `python -m writers` does
    consumer = GroupConsumer(redis, OrdersWriter(pg, runner_for(redis)), "metrics-test")
    while await consumer.step():
        pass
    samples = await scrape(client)
    assert value(samples, "stream_backlog", group=ORDERS_GROUP) == 0
    assert value(samples, "writer_persisted_total", group=ORDERS_GROUP) == entries


async def test_every_metric_the_dashboard_and_alerts_query_is_served(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names in ops/alerts.yml and the Grafana dashboard against a real exposition (a typo
    there is a panel that stays empty, an alert that never fires), and the reverse: every
    family /metrics serves is on the dashboard or in an alert."""
    monkeypatch.setattr("api.metrics.STORE_CACHE_S", 0.0)
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    served = {sample.name for family in families for sample in family.samples}
    queried = queried_metric_names()
    unserved = {name: sorted(where) for name, where in queried.items() if name not in served}
    for name in PROMETHEUS_OWN_SERIES:
        unserved.pop(name, None)
    assert unserved == {}, "queried, not served by /metrics"
    names = {f.name for f in families}
    # prometheus_client's text format serves each counter's and histogram's creation time as a
    # gauge family of its own, `<name>_created`: a timestamp, nothing to plot.
    shown = [f.name for f in families if f.name.removesuffix("_created") not in names - {f.name}]
    unshown = [family for family in shown if not any(n.startswith(family) for n in queried)]
    assert unshown == [], "served, on neither the dashboard nor an alert"
