"""The two ways a notice leaves: email through an SMTP server (smtplib) and SMS through an HTTP
provider (a JSON POST). Where they are comes from the environment at send time, so a worker picks
up a changed setting without a code change: SMTP_HOST, SMTP_PORT, NOTICE_FROM, SMS_URL (unset: no
SMS is sent). Which channels a notice goes by is fixed when it is queued (`channels_of`
of the process that queues it), so that what the API tells a client is what the worker sends.

The SMTP send goes through a breaker shared by every worker process (stores.breaker): while the
server is down, jobs fail at once and rq retries them on its backoff, instead of each holding a
worker for a connect timeout."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from email import policy
from email.message import EmailMessage
from typing import Final, Literal

import redis

from stores.breaker import SharedBreaker
from stores.settings import NoticeSettings

SEND_TIMEOUT_S: Final = 10.0
SMTP_FAILURES_TO_OPEN: Final = 5
# Short against rq's first retry intervals (1, 2, 5 s): a server that is back is used soon.
SMTP_COOLDOWN_S: Final = 5.0
# Lines up to RFC 5322's hard limit: at the default 78 a message's X-Notice-Id (84 characters) would
# be folded into RFC 2047 encoded words, which a receiver matching IDs as text would not recognise.
EMAIL_POLICY: Final = policy.SMTP.clone(max_line_length=998)

Channel = Literal["email", "sms"]
CHANNELS: Final[tuple[Channel, ...]] = ("email", "sms")


def channels_of(settings: NoticeSettings) -> tuple[Channel, ...]:
    """What a notice queued now goes by: email always, SMS when a provider is configured."""
    return CHANNELS if settings.sms_url else ("email",)


class SmsRefused(Exception):
    """The SMS provider answered, but not with success: retried like a network error."""


class ChannelNotConfigured(Exception):
    """The notice was queued to go by a channel this worker has no settings for (SMS_URL unset
    here but set where it was queued): failed rather than skipped, since the customer was
    promised it; set the variable on the worker and replay the failed notices."""

    def __init__(self, channel: Channel, variable: str) -> None:
        super().__init__(f"the notice goes by {channel}, but {variable} is not set on this worker")


def smtp_breaker(connection: redis.Redis) -> SharedBreaker:
    return SharedBreaker(
        connection, "smtp", failures_to_open=SMTP_FAILURES_TO_OPEN, cooldown_s=SMTP_COOLDOWN_S
    )


def send_email(
    settings: NoticeSettings,
    to: str,
    subject: str,
    body: str,
    ref: str,
    breaker: SharedBreaker | None = None,
) -> None:
    message = EmailMessage(policy=EMAIL_POLICY)
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = subject
    # Lets a receiving system drop a copy that slipped through (crash between send and marker).
    message["X-Notice-Id"] = ref
    message.set_content(body)
    if breaker is None:
        _send_smtp(settings, message)
        return
    # smtplib's errors (refused, timed out, SMTPException) are all OSErrors.
    with breaker.guard((OSError,)):
        _send_smtp(settings, message)


def _send_smtp(settings: NoticeSettings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SEND_TIMEOUT_S) as smtp:
        smtp.send_message(message)


def send_sms(settings: NoticeSettings, to: str, body: str, ref: str) -> None:
    payload = json.dumps({"to": to, "message": body, "reference": ref}).encode()
    request = urllib.request.Request(
        settings.sms_url,
        data=payload,
        headers={"Content-Type": "application/json", "Idempotency-Key": ref},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as response:
        if not 200 <= response.status < 300:
            raise SmsRefused(f"SMS provider answered {response.status}")
