"""The notice queue (rq): what is enqueued, the job that sends, and the operator's view of what
failed.

Exactly once, as far as it can be had: a notice's job ID is deterministic (`notice_{order}_{event}`;
rq allows only letters, digits, `_` and `-` in IDs, so not colons) so a replayed stream event finds
its job and does not enqueue it twice; and the job writes a
Redis marker per channel after that channel's send succeeded (SET NX) and skips a channel whose
marker exists, so a retry after a partial failure does not send again what already went out.
What remains: a worker dying between a successful send and its marker sends that one channel twice
(the notice carries its ID, `X-Notice-Id` / `reference`, for the receiver to drop the copy).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import redis
from rq import Queue, Retry, SimpleWorker, Worker, get_current_job
from rq.job import Job
from rq.queue import EnqueueData
from rq.registry import FailedJobRegistry

from notify.channels import ChannelSettings, send_email, send_sms, smtp_breaker
from notify.contacts import contact_for

QUEUE_NAME: Final = "notices"
# Transient failures (SMTP down, provider 5xx) are retried 5 times over ~48 s; after that the job
# stays in rq's FailedJobRegistry until `python -m writers notices replay`.
RETRY_INTERVALS_S: Final = [1, 2, 5, 10, 30]
SENT_MARKER_TTL_S: Final = 30 * 24 * 3600
FAILED_TTL_S: Final = 30 * 24 * 3600  # how long a failed notice waits for a person
JOB_TIMEOUT_S: Final = 60

# The notices that go out without anyone asking, per order status reached (and per re-route:
# one notice per order, however often it is re-routed).
AUTOMATIC: Final[dict[str, tuple[str, str]]] = {
    "confirmed": ("Order confirmed", "Your order {order} is confirmed."),
    "shipped": ("Order shipped", "Your order {order} has shipped."),
    "delivered": ("Order delivered", "Your order {order} was delivered."),
    "cancelled": ("Order cancelled", "Your order {order} was cancelled."),
    "rerouted": (
        "Order re-routed",
        "Your order {order} now ships from another warehouse; the delivery date may change.",
    ),
}
log = logging.getLogger(__name__)


def notice_id(order_id: str, event: str) -> str:
    return f"notice_{order_id}_{event}"


def sent_marker(notice: str, channel: str) -> str:
    return f"{notice}:sent:{channel}"


def send_notice(order_id: str, event: str, subject: str, body: str) -> list[str]:
    """The rq job: email, then SMS (when configured), each skipped if it already went out.
    Returns the channels sent by this run. Raises on any failure, so rq retries."""
    job = get_current_job()
    assert job is not None, "send_notice runs inside an rq worker"
    connection: redis.Redis = job.connection
    settings = ChannelSettings.from_env()
    contact = contact_for(order_id)
    ref = notice_id(order_id, event)
    sent = []
    if not connection.exists(sent_marker(ref, "email")):
        send_email(settings, contact.email, subject, body, ref, smtp_breaker(connection))
        connection.set(sent_marker(ref, "email"), 1, nx=True, ex=SENT_MARKER_TTL_S)
        sent.append("email")
    if settings.sms_url and not connection.exists(sent_marker(ref, "sms")):
        send_sms(settings, contact.phone, body, ref)
        connection.set(sent_marker(ref, "sms"), 1, nx=True, ex=SENT_MARKER_TTL_S)
        sent.append("sms")
    return sent


@dataclass(frozen=True, slots=True)
class FailedNotice:
    job_id: str
    error: str  # the last line of the last failure


class Notices:
    """Enqueue notices and manage the failed ones; `redis` is a blocking client (stores.redis)."""

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self.queue = Queue(QUEUE_NAME, connection=connection)

    def enqueue_automatic(self, changes: Sequence[tuple[str, str]]) -> int:
        """One job per (order, status) with an automatic notice whose job does not exist yet.
        Returns how many were enqueued."""
        wanted = {notice_id(o, s): (o, s) for o, s in changes if s in AUTOMATIC}
        if not wanted:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for job_id in wanted:
            pipe.exists(Job.key_for(job_id))
        known = pipe.execute()
        datas: list[EnqueueData] = []
        for (job_id, (order_id, status)), exists in zip(wanted.items(), known, strict=True):
            if exists:  # a replayed event: the job is queued, running, done or failed already
                continue
            subject, text = AUTOMATIC[status]
            datas.append(self._data(job_id, order_id, status, subject, text.format(order=order_id)))
        if datas:
            self.queue.enqueue_many(datas)
        return len(datas)

    def enqueue_message(self, order_id: str, message: str) -> str:
        """A message someone asked to send (POST /notifications); returns its notification ID."""
        notification = uuid.uuid4().hex
        event = f"message-{notification}"
        data = self._data(notice_id(order_id, event), order_id, event, "About your order", message)
        self.queue.enqueue_many([data])
        return notification

    def failed(self) -> list[FailedNotice]:
        registry = FailedJobRegistry(queue=self.queue)
        notices = []
        for job_id in registry.get_job_ids():
            result = Job.fetch(job_id, connection=self._redis).latest_result()
            error = ""
            if result is not None and result.exc_string:
                error = result.exc_string.strip().splitlines()[-1]
            notices.append(FailedNotice(job_id, error))
        return notices

    def failed_count(self) -> int:
        """How many notices failed for good: one ZCARD, cheap enough for every metrics scrape
        (expired entries are left to the rq workers' own periodic cleanup)."""
        return FailedJobRegistry(queue=self.queue).get_job_count(cleanup=False)

    def replay_failed(self) -> int:
        """Re-enqueue every failed notice (after the cause was fixed). Channels already sent stay
        sent: their markers make the job skip them."""
        registry = FailedJobRegistry(queue=self.queue)
        count = 0
        for job_id in registry.get_job_ids():
            registry.requeue(job_id)
            count += 1
        return count

    def work(self, *, burst: bool = False, in_process: bool = False) -> None:
        """Run a worker on the notice queue, with rq's scheduler (it enqueues the retries when
        their backoff is over). `in_process` runs jobs without forking (tests)."""
        worker_class = SimpleWorker if in_process else Worker
        worker = worker_class([self.queue], connection=self._redis)
        worker.work(burst=burst, with_scheduler=not burst, logging_level="WARNING")

    def _data(self, job_id: str, order_id: str, event: str, subject: str, body: str) -> EnqueueData:
        return Queue.prepare_data(
            send_notice,
            (order_id, event, subject, body),
            job_id=job_id,
            retry=Retry(max=len(RETRY_INTERVALS_S), interval=RETRY_INTERVALS_S),
            timeout=JOB_TIMEOUT_S,
            failure_ttl=FAILED_TTL_S,
        )
