"""Notices end to end on real servers: order events become one rq job each (replays add none), the
job sends by SMTP and SMS once, a failing send is retried and then kept in the failed registry
for an operator to replay."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import asyncpg
import pytest
import redis as sync_redis

from engine.fulfillment import fulfill
from engine.live_orders import LiveOrders
from notify.jobs import QUEUE_NAME, Notices, notice_id
from stores.mongo import MongoDatabase
from stores.redis import RedisClient, connect_sync_redis
from stores.settings import Settings
from stores.streams import PARTITION_STREAMS
from tests.conftest import runner_for
from tests.notice_servers import SmsProvider, SmtpServer, free_port, sms_provider, smtp_server
from tests.test_writers import FAST, consumers_for, drain, place_orders, stock_products
from writers.consumer import GroupConsumer
from writers.notifier import NotifierWriter

__all__ = ["sms_provider", "smtp_server"]  # fixtures


@pytest.fixture
def notices(settings: Settings, redis: RedisClient) -> Iterator[Notices]:
    connection = connect_sync_redis(settings)  # `redis` flushed the database first
    yield Notices(connection)
    connection.close()


@pytest.fixture
def channels(
    monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer, sms_provider: SmsProvider
) -> None:
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("SMS_URL", sms_provider.url)


def queued_ids(connection: sync_redis.Redis) -> list[str]:
    return sorted(i.decode() for i in connection.lrange(f"rq:queue:{QUEUE_NAME}", 0, -1))


async def test_order_events_enqueue_one_job_each_and_replays_add_none(
    redis: RedisClient, pg: asyncpg.Pool, mongo: MongoDatabase, notices: Notices
) -> None:
    await stock_products(redis, ["sku"], 10)
    [(_, a), (_, b)] = await place_orders(redis, ["sku"], 2)
    orders = LiveOrders(runner_for(redis), None)
    await fulfill(orders, a.order_id, a.warehouse_id)  # picking, packed: no notice; shipped: one
    await orders.transition(a.order_id, "delivered")
    await orders.cancel(b.order_id)
    notifier = GroupConsumer(redis, NotifierWriter(notices), "test", config=FAST)
    await drain(redis, [notifier])
    expected = sorted(
        [notice_id(a.order_id, s) for s in ("confirmed", "shipped", "delivered")]
        + [notice_id(b.order_id, s) for s in ("confirmed", "cancelled")]
    )
    connection = notices.queue.connection
    assert queued_ids(connection) == expected

    for stream in PARTITION_STREAMS:  # replay the whole stream to the group
        await redis.xgroup_setid(stream, notifier.group, "0")
    await drain(redis, [notifier])
    assert queued_ids(connection) == expected
    # The orders writer is unaffected by the extra group.
    await drain(redis, consumers_for(redis, pg, mongo))


async def test_a_notice_goes_out_once_by_email_and_sms(
    redis: RedisClient,
    notices: Notices,
    channels: None,
    smtp_server: SmtpServer,
    sms_provider: SmsProvider,
) -> None:
    notices.enqueue_automatic([("order-1", "shipped"), ("order-1", "picking")])
    notices.work(burst=True, in_process=True)
    assert smtp_server.mailbox.messages == [
        ("customer+order-1@example.invalid", "Order shipped", notice_id("order-1", "shipped"))
    ]
    assert [(m["reference"], m["message"]) for m in sms_provider.received] == [
        (notice_id("order-1", "shipped"), "Your order order-1 has shipped.")
    ]
    # The job once more (a replay by an operator, a duplicate delivery): nothing is sent again.
    job = notices.queue.fetch_job(notice_id("order-1", "shipped"))
    assert job is not None
    notices.queue.enqueue_job(job)
    notices.work(burst=True, in_process=True)
    assert len(smtp_server.mailbox.messages) == 1 and len(sms_provider.received) == 1


async def test_a_failed_notice_is_kept_and_replayed_without_resending(
    redis: RedisClient,
    notices: Notices,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpServer,
    sms_provider: SmsProvider,
) -> None:
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("SMS_URL", f"http://127.0.0.1:{free_port()}/sms")  # nobody listens
    notices.enqueue_automatic([("order-2", "delivered")])
    job = notices.queue.fetch_job(notice_id("order-2", "delivered"))
    assert job is not None and job.retries_left == 5
    job.retries_left = 0  # no backoff in this test: fail at once (the fault test waits it out)
    job.save()
    notices.work(burst=True, in_process=True)
    [failed] = notices.failed()
    assert failed.job_id == notice_id("order-2", "delivered")
    assert "Connection refused" in failed.error or "URLError" in failed.error
    assert len(smtp_server.mailbox.messages) == 1  # email went out before SMS failed

    monkeypatch.setenv("SMS_URL", sms_provider.url)
    assert notices.replay_failed() == 1
    notices.work(burst=True, in_process=True)
    assert notices.failed() == []
    assert len(smtp_server.mailbox.messages) == 1  # not sent twice
    assert [m["reference"] for m in sms_provider.received] == [notice_id("order-2", "delivered")]


async def test_a_worker_run_in_process_leaves_the_signal_handlers_as_it_found_them(
    notices: Notices, channels: None
) -> None:
    # rq sets its own: left behind, they turned the test run's Ctrl-C (and the CI limit's SIGINT)
    # into a request to stop a worker that had long returned.
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    notices.enqueue_automatic([("order-1", "shipped")])
    notices.work(burst=True, in_process=True)
    assert {signum: signal.getsignal(signum) for signum in before} == before
