"""Notifications through the API: POST answers the brief's shape and says the notice is queued and
for which channels; GET /notifications/{notificationId} follows each channel from queued to sent,
retrying or failed, on real servers (the test SMTP server, an SMS provider, rq workers), and only
for the storefront that owns the order (or an operator)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.auth import ApiKeys
from notify.jobs import Notices, notice_id, sent_marker
from stores.mongo import MongoDatabase
from stores.redis import RedisClient, connect_sync_redis
from stores.settings import Settings
from tests import test_api
from tests.conftest import store_env
from tests.notice_servers import SmsProvider, SmtpServer, free_port, sms_provider, smtp_server
from tests.test_api import PARIS, Client
from tests.test_api_fulfillment import place
from tests.test_auth import KEYS, OPS, SHOP_A, SHOP_B
from tests.test_writers import wait_for

__all__ = ["sms_provider", "smtp_server"]  # fixtures
client = test_api.client  # the same app and data as the contract tests

ROOT = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_S = 30.0
WorkerStarter = Callable[[dict[str, str]], subprocess.Popen[bytes]]


@pytest.fixture
def queue(settings: Settings, redis: RedisClient) -> Iterator[sync_redis.Redis]:
    """A blocking client on rq's Redis (`redis` flushed it first)."""
    connection = connect_sync_redis(settings)
    yield connection
    connection.close()


@pytest.fixture
def notice_workers(settings: Settings) -> Iterator[WorkerStarter]:
    """Starts `python -m notify worker` processes (with rq's scheduler, as ops/run.sh
    runs it) on the test stores; each is stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "notify", "worker"],
            cwd=ROOT,
            env={**store_env(settings), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def notify(client: Client, order_id: str, headers: dict[str, str] | None = None) -> str:
    body = {"orderId": order_id, "message": "Your parcel is on its way"}
    response = await client.post("/notifications", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["notificationId"])


async def channels(client: Client, notification_id: str) -> dict[str, str]:
    response = await client.get(f"/notifications/{notification_id}")
    assert response.status_code == 200, response.text
    return {c["channel"]: c["status"] for c in response.json()["channels"]}


async def test_a_notice_goes_from_queued_to_sent_through_a_real_worker(
    client: Client,
    queue: sync_redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpServer,
    sms_provider: SmsProvider,
    notice_workers: WorkerStarter,
) -> None:
    order_id = await place(client)
    monkeypatch.setenv("SMS_URL", sms_provider.url)  # the API queues for email and SMS
    body = {"orderId": order_id, "message": "Your parcel is on its way"}
    posted = await client.post("/notifications", json=body)
    assert posted.status_code == 202
    notification_id = posted.json()["notificationId"]
    assert posted.json() == {
        "status": "success",
        "message": "Notification queued for delivery by email and SMS",
        "notificationId": notification_id,
    }
    read = await client.get(f"/notifications/{notification_id}")
    assert read.json() == {
        "notificationId": notification_id,
        "orderId": order_id,
        "channels": [
            {"channel": "email", "status": "queued"},
            {"channel": "sms", "status": "queued"},
        ],
    }

    worker = notice_workers(
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_server.port), "SMS_URL": sms_provider.url}
    )

    async def both_sent() -> bool:
        assert worker.poll() is None, "the notice worker exited"
        return await channels(client, notification_id) == {"email": "sent", "sms": "sent"}

    await wait_for(both_sent, WORKER_TIMEOUT_S, "the notice to be sent")
    assert smtp_server.mailbox.messages == [
        (f"customer+{order_id}@example.invalid", "About your order", notification_id)
    ]
    assert [(m["reference"], m["message"]) for m in sms_provider.received] == [
        (notification_id, "Your parcel is on its way")
    ]


async def test_a_failing_channel_is_retrying_then_failed_then_sent_after_a_replay(
    client: Client,
    queue: sync_redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpServer,
    sms_provider: SmsProvider,
) -> None:
    order_id = await place(client)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("SMS_URL", f"http://127.0.0.1:{free_port()}/sms")  # nobody answers
    notification_id = await notify(client, order_id)
    notices = Notices(queue)

    notices.work(burst=True, in_process=True)  # email goes out; SMS fails and waits for a retry
    assert await channels(client, notification_id) == {"email": "sent", "sms": "retrying"}

    # Stand in for rq's scheduler without its backoff, for the last retry there is.
    job = notices.queue.fetch_job(notification_id)
    assert job is not None
    notices.queue.scheduled_job_registry.remove(job)
    job.retries_left = 0
    job.save()
    notices.queue.enqueue_job(job)
    notices.work(burst=True, in_process=True)
    assert await channels(client, notification_id) == {"email": "sent", "sms": "failed"}
    assert [f.job_id for f in notices.failed()] == [notification_id]

    monkeypatch.setenv("SMS_URL", sms_provider.url)  # the operator fixes the cause, replays
    assert notices.replay_failed() == 1
    assert await channels(client, notification_id) == {"email": "sent", "sms": "retrying"}
    notices.work(burst=True, in_process=True)
    assert await channels(client, notification_id) == {"email": "sent", "sms": "sent"}
    assert len(smtp_server.mailbox.messages) == 1  # the email went out once
    assert [m["reference"] for m in sms_provider.received] == [notification_id]

    # rq drops a finished job after its result TTL: the sent markers still answer.
    job.delete()
    assert await channels(client, notification_id) == {"email": "sent", "sms": "sent"}
    queue.delete(sent_marker(notification_id, "email"), sent_marker(notification_id, "sms"))
    gone = await client.get(f"/notifications/{notification_id}")
    assert gone.status_code == 404


async def test_a_worker_without_the_promised_channel_fails_the_notice(
    client: Client,
    queue: sync_redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpServer,
    sms_provider: SmsProvider,
) -> None:
    """The API said "by email and SMS": a worker with no SMS_URL must not skip SMS silently."""
    order_id = await place(client)
    monkeypatch.setenv("SMS_URL", sms_provider.url)
    notification_id = await notify(client, order_id)
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("SMS_URL", "")
    notices = Notices(queue)
    job = notices.queue.fetch_job(notification_id)
    assert job is not None
    job.retries_left = 0  # fail at once
    job.save()
    notices.work(burst=True, in_process=True)
    assert await channels(client, notification_id) == {"email": "sent", "sms": "failed"}
    [failed] = notices.failed()
    assert "SMS_URL is not set" in failed.error


async def test_automatic_notices_are_read_by_their_id_and_unknown_ids_are_404(
    client: Client, queue: sync_redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = await place(client)
    monkeypatch.delenv("SMS_URL", raising=False)
    Notices(queue).enqueue_automatic([(order_id, "confirmed")])
    assert await channels(client, notice_id(order_id, "confirmed")) == {"email": "queued"}
    for unknown in (
        notice_id(order_id, "shipped"),  # a well-formed ID no notice has
        notice_id(order_id, "message-" + "0" * 32),
        notice_id(order_id, "picking"),  # no notice is sent for this status
        "notice_",
        "not-a-notice",
        order_id,
        "notice_" + "x" * 300 + "_confirmed",
    ):
        response = await client.get(f"/notifications/{unknown}")
        assert response.status_code == 404, unknown
        assert response.json()["error"]["code"] == "notification_not_found"


@pytest.fixture
async def keyed_client(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase
) -> AsyncIterator[Client]:
    app = create_app(settings, api_keys=ApiKeys.parse(json.dumps(KEYS)))
    async with AsyncTestClient(app) as test_client:
        body = {"warehouseId": "paris", "name": "Paris", "location": PARIS}
        assert (await test_client.post("/warehouses", json=body, headers=OPS)).status_code == 201
        stock = {"quantity": 5}
        put = await test_client.put("/inventory/sku-1/stock/paris", json=stock, headers=OPS)
        assert put.status_code == 200
        yield test_client


async def test_only_the_owner_or_an_operator_reads_a_notification(keyed_client: Client) -> None:
    order = {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS}
    placed = await keyed_client.post("/orders", json=order, headers=SHOP_A)
    assert placed.status_code == 201
    notification_id = await notify(keyed_client, placed.json()["orderId"], SHOP_A)
    path = f"/notifications/{notification_id}"
    for headers in (SHOP_A, OPS):
        assert (await keyed_client.get(path, headers=headers)).status_code == 200
    other: Any = await keyed_client.get(path, headers=SHOP_B)
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "notification_not_found"
    assert (await keyed_client.get(path)).status_code == 401
