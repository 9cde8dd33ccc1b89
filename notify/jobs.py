"""The notice queue (rq): what is enqueued, the job that sends, and the operator's view of what
failed.

Exactly once, as far as it can be had: a notice's job ID is deterministic (`notice_{order}_{event}`;
rq allows only letters, digits, `_` and `-` in IDs, so not colons) so a replayed stream event finds
its job and does not enqueue it twice; and the job writes a
Redis marker per channel after that channel's send succeeded (SET NX) and skips a channel whose
marker exists, so a retry after a partial failure does not send again what already went out.
What remains: a worker dying between a successful send and its marker sends that one channel twice
(the notice carries its ID, `X-Notice-Id` / `reference`, for the receiver to drop the copy).

A notice's ID is also what the API calls its notificationId: `status()` reads, per channel, whether
it is queued, sent, retrying or failed, from rq's job and the sent markers.

A basket's shipments move one by one: a step of one shipment is its own event, the status and the
shipment's warehouse (`shipment_event`: `notice_{order}_shipped-{warehouse}`), so each shipment
gets its own shipped, delivered or re-routed notice, and the notice names its warehouse (a
cancelled basket gets one notice, as an order does).
"""

from __future__ import annotations

import logging
import re
import signal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import redis
from rq import Queue, Retry, SimpleWorker, Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import EnqueueData
from rq.registry import FailedJobRegistry

from engine.errors import DomainError
from notify.channels import (
    CHANNELS,
    Channel,
    ChannelNotConfigured,
    channels_of,
    send_email,
    send_sms,
    smtp_breaker,
)
from notify.contacts import contact_for
from stores.settings import load_notice_settings

QUEUE_NAME: Final = "notices"
# Transient failures (SMTP down, provider 5xx) are retried 5 times over ~48 s; after that the job
# stays in rq's FailedJobRegistry until `python -m notify replay`.
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
# The same steps of one shipment of a basket (`shipment_event`), naming its warehouse (a
# re-routed shipment: the warehouse it left).
SHIPMENT_AUTOMATIC: Final[dict[str, tuple[str, str]]] = {
    "shipped": (
        "Order shipped",
        "Your order {order}: the shipment from warehouse {warehouse} has shipped.",
    ),
    "delivered": (
        "Order delivered",
        "Your order {order}: the shipment from warehouse {warehouse} was delivered.",
    ),
    "rerouted": (
        "Order re-routed",
        "Your order {order}: what warehouse {warehouse} was to send now ships from another"
        " warehouse; the delivery date may change.",
    ),
}
NOTICE_PREFIX: Final = "notice_"
MESSAGE_EVENT_PREFIX: Final = "message-"  # + 32 hex digits: one per POST /notifications
# A warehouse ID inside an event: rq's IDs allow letters, digits, `_` and `-`, and the event may
# not hold `_`, so every other byte is written `-` and two hex digits (`wh-1.b` -> `wh-2d1-2eb`):
# two warehouses never share an event.
_PLAIN: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ESCAPED: Final = re.compile("-([0-9a-f]{2})")
_SHIPMENT_EVENT: Final = re.compile(
    f"({'|'.join(SHIPMENT_AUTOMATIC)})-((?:[A-Za-z0-9]|-[0-9a-f]{{2}})+)"
)
# The event closes the ID and holds no `_`, so an ID splits at its last `_` whatever the order ID.
_EVENT: Final = re.compile(
    "|".join(
        [*AUTOMATIC, re.escape(MESSAGE_EVENT_PREFIX) + "[0-9a-f]{32}", _SHIPMENT_EVENT.pattern]
    )
)
# What a channel of a notice is doing: waiting for its first try, gone out, waiting for another
# try after a failure (rq's backoff), or given up on (in the failed registry, for a person).
ChannelState = Literal["queued", "sent", "retrying", "failed"]
ChannelStates = tuple[tuple[Channel, ChannelState], ...]  # in CHANNELS order
_GIVEN_UP: Final = frozenset({JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
log = logging.getLogger(__name__)


class NotificationNotFound(DomainError):
    """No notice has this ID (or it is past its markers' 30 days, or another client's)."""

    def __init__(self, notification_id: str) -> None:
        super().__init__(f"notification {notification_id!r} does not exist")
        self.notification_id = notification_id


def notice_id(order_id: str, event: str) -> str:
    return f"{NOTICE_PREFIX}{order_id}_{event}"


def shipment_event(status: str, warehouse_id: str) -> str:
    """The event of one shipment's step (a basket's): `shipped-<warehouse, escaped>`."""
    escaped = "".join(chr(b) if b in _PLAIN else f"-{b:02x}" for b in warehouse_id.encode())
    return f"{status}-{escaped}"


def automatic_notice(order_id: str, event: str) -> tuple[str, str] | None:
    """(subject, text) of the notice an event sends without anyone asking, or None when it
    sends none (a status without a notice, a message, no event at all)."""
    if event in AUTOMATIC:
        subject, text = AUTOMATIC[event]
        return subject, text.format(order=order_id)
    shipment = _SHIPMENT_EVENT.fullmatch(event)
    if shipment is None:
        return None
    status, escaped = shipment.groups()
    # Split at the escapes: plain text and escaped bytes (as hex) alternate.
    parts = _ESCAPED.split(escaped)
    raw = b"".join(bytes.fromhex(p) if i % 2 else p.encode() for i, p in enumerate(parts))
    warehouse_id = raw.decode(errors="replace")
    subject, text = SHIPMENT_AUTOMATIC[status]
    return subject, text.format(order=order_id, warehouse=warehouse_id)


def parse_notice_id(text: str) -> tuple[str, str] | None:
    """(order ID, event) of a notice ID, or None when the text is not one."""
    if not text.startswith(NOTICE_PREFIX):
        return None
    order_id, _, event = text[len(NOTICE_PREFIX) :].rpartition("_")
    if not order_id or _EVENT.fullmatch(event) is None:
        return None
    return order_id, event


def sent_marker(notice: str, channel: str) -> str:
    return f"{notice}:sent:{channel}"


def send_notice(
    order_id: str,
    event: str,
    subject: str,
    body: str,
    channels: Sequence[Channel] | None = None,
) -> list[str]:
    """The rq job: email, then SMS, as `channels` (fixed when queued) say, each skipped if it
    already went out. Returns the channels sent by this run. Raises on any failure, so rq
    retries. A job queued before channels were fixed (None) goes by this worker's settings."""
    job = get_current_job()
    assert job is not None, "send_notice runs inside an rq worker"
    connection: redis.Redis = job.connection
    settings = load_notice_settings()
    wanted = channels_of(settings) if channels is None else channels
    contact = contact_for(order_id)
    ref = notice_id(order_id, event)
    sent = []
    if "email" in wanted and not connection.exists(sent_marker(ref, "email")):
        send_email(settings, contact.email, subject, body, ref, smtp_breaker(connection))
        connection.set(sent_marker(ref, "email"), 1, nx=True, ex=SENT_MARKER_TTL_S)
        sent.append("email")
    if "sms" in wanted and not connection.exists(sent_marker(ref, "sms")):
        if not settings.sms_url:
            raise ChannelNotConfigured("sms", "SMS_URL")
        send_sms(settings, contact.phone, body, ref)
        connection.set(sent_marker(ref, "sms"), 1, nx=True, ex=SENT_MARKER_TTL_S)
        sent.append("sms")
    return sent


@dataclass(frozen=True, slots=True)
class FailedNotice:
    job_id: str
    error: str  # the last line of the last failure


@dataclass(frozen=True, slots=True)
class NoticeStatus:
    notice_id: str
    order_id: str
    channels: ChannelStates


class Notices:
    """Enqueue notices and manage the failed ones; `redis` is a blocking client (stores.redis)."""

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self.queue = Queue(QUEUE_NAME, connection=connection)

    def enqueue_automatic(self, changes: Sequence[tuple[str, str]]) -> int:
        """One job per (order, event: a status, or a shipment's `shipment_event`) with an
        automatic notice whose job does not exist yet. Returns how many were enqueued."""
        wanted = {
            notice_id(order_id, event): (order_id, event, notice)
            for order_id, event in changes
            if (notice := automatic_notice(order_id, event)) is not None
        }
        if not wanted:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for job_id in wanted:
            pipe.exists(Job.key_for(job_id))
        known = pipe.execute()
        datas: list[EnqueueData] = []
        channels = channels_of(load_notice_settings())
        for (job_id, (order_id, event, (subject, text))), exists in zip(
            wanted.items(), known, strict=True
        ):
            if exists:  # a replayed event: the job is queued, running, done or failed already
                continue
            datas.append(self._data(job_id, order_id, event, subject, text, channels))
        if datas:
            self.queue.enqueue_many(datas)
        return len(datas)

    def enqueue_message(self, order_id: str, message: str) -> NoticeStatus:
        """A message someone asked to send (POST /notifications): its notice ID (the API's
        notificationId) and the channels it was queued for."""
        event = f"{MESSAGE_EVENT_PREFIX}{uuid.uuid4().hex}"
        ref = notice_id(order_id, event)
        channels = channels_of(load_notice_settings())
        data = self._data(ref, order_id, event, "About your order", message, channels)
        self.queue.enqueue_many([data])
        return NoticeStatus(ref, order_id, tuple((c, "queued") for c in channels))

    def status(self, notice: str) -> NoticeStatus | None:
        """Where each channel of a notice stands, or None for an ID no notice has. rq keeps a
        job for 500 s after it finished (its result TTL) and a failed one for FAILED_TTL_S; past
        that the sent markers (SENT_MARKER_TTL_S) still tell which channels went out."""
        parsed = parse_notice_id(notice)
        if parsed is None:
            return None
        pipe = self._redis.pipeline(transaction=False)
        for channel in CHANNELS:
            pipe.exists(sent_marker(notice, channel))
        sent = {c for c, hit in zip(CHANNELS, pipe.execute(), strict=True) if hit}
        try:
            job = Job.fetch(notice, connection=self._redis)
        except NoSuchJobError:
            if not sent:
                return None
            # The job finished and left: it sent every channel it had, each of which is marked.
            went_out: ChannelStates = tuple((c, "sent") for c in CHANNELS if c in sent)
            return NoticeStatus(notice, parsed[0], went_out)
        status = job.get_status(refresh=False)
        unsent: ChannelState
        if status == JobStatus.FINISHED:  # the job returns only when every channel went out
            unsent = "sent"
        elif status in _GIVEN_UP:
            unsent = "failed"
        elif job.retries_left is not None and job.retries_left < len(RETRY_INTERVALS_S):
            unsent = "retrying"  # it failed before (a replayed failed job has 0 retries left)
        else:
            unsent = "queued"
        return NoticeStatus(
            notice,
            parsed[0],
            tuple((c, "sent" if c in sent else unsent) for c in _channels_of(job)),
        )

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
        # rq sets its own SIGINT and SIGTERM handlers and leaves them set: in a process that goes
        # on afterwards (a test run), Ctrl-C would then ask a worker that is gone to stop.
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            worker.work(burst=burst, with_scheduler=not burst, logging_level="WARNING")
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _data(
        self,
        job_id: str,
        order_id: str,
        event: str,
        subject: str,
        body: str,
        channels: Sequence[Channel],
    ) -> EnqueueData:
        return Queue.prepare_data(
            send_notice,
            (order_id, event, subject, body),
            {"channels": list(channels)},
            job_id=job_id,
            retry=Retry(max=len(RETRY_INTERVALS_S), interval=RETRY_INTERVALS_S),
            timeout=JOB_TIMEOUT_S,
            failure_ttl=FAILED_TTL_S,
        )


def _channels_of(job: Job) -> tuple[Channel, ...]:
    """The channels a job was queued for; one queued before they were fixed goes by what its
    worker has configured, read here as this process has it."""
    channels = job.kwargs.get("channels")
    if channels is None:
        return channels_of(load_notice_settings())
    return tuple(c for c in CHANNELS if c in channels)
