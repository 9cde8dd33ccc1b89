"""Notification service: send a message about an order to its customer (email and/or SMS).

The notice is queued (rq, `notify.jobs`) and answered 202 at once, saying so and by which
channels; sending, retrying and the failed registry are the job's, and `GET
/notifications/{notificationId}` reads where each channel stands. Confirmation, shipping, delivery
and cancellation notices need no call: the notifier consumer group sends them from the order
events (their IDs, `notice_{orderId}_{status}`, can be read the same way).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody, PathParameter

from api.auth import may_touch, require_owner
from api.state import Services
from api.types import LINES, Injected, OrderId
from engine.errors import OrderNotFound
from notify.channels import Channel
from notify.jobs import (
    ChannelState,
    ChannelStates,
    NoticeStatus,
    NotificationNotFound,
    parse_notice_id,
)

MAX_MESSAGE_CHARS: Final = 1_000
Message = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=LINES)]


class SendNotification(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    message: Message


# `notice_` + an order ID (up to 64) + `_message-` + 32 hex digits: 105 at most; a basket's
# shipment notice, `notice_` + its ID (36) + `_rerouted-` + a warehouse ID of up to 64 characters
# each escaped in at most 3 (notify.jobs.shipment_event): 245. A longer text is no notice's ID:
# 404 like any other unknown ID, without a store read.
MAX_NOTIFICATION_ID_CHARS: Final = 256
NotificationIdPath = Annotated[str, PathParameter(min_length=1)]
CHANNEL_NAMES: Final[dict[Channel, str]] = {"email": "email", "sms": "SMS"}


class NotificationQueued(msgspec.Struct, rename="camel"):
    """The brief's shape first (`status`, `message`), then the ID to follow the notice by."""

    status: Literal["success"]
    message: str  # says the notice is queued, and for which channels
    notification_id: str


class ChannelStatus(msgspec.Struct):
    channel: Channel
    status: ChannelState


class NotificationStatus(msgspec.Struct, rename="camel"):
    notification_id: str
    order_id: str
    channels: list[ChannelStatus]


def queued_message(channels: ChannelStates) -> str:
    names = " and ".join(CHANNEL_NAMES[channel] for channel, _ in channels)
    return f"Notification queued for delivery by {names}"


def _status_body(notice: NoticeStatus) -> NotificationStatus:
    channels = [ChannelStatus(channel, state) for channel, state in notice.channels]
    return NotificationStatus(notice.notice_id, notice.order_id, channels)


class NotificationController(Controller):
    path = "/notifications"
    tags = ("notifications",)

    @post("/", status_code=202)
    async def send(
        self,
        services: Injected[Services],
        request: Request[Any, Any, Any],
        data: JSONBody[SendNotification],
    ) -> NotificationQueued:
        require_owner(request, data.order_id)
        # Found wherever it is: Redis while hot, PostgreSQL after (engine.live_orders).
        if await services.live_orders.get(data.order_id) is None:
            raise OrderNotFound(data.order_id)
        # rq's client is blocking: keep it off the event loop.
        queued: NoticeStatus = await asyncio.to_thread(
            services.notices.enqueue_message, data.order_id, data.message
        )
        return NotificationQueued("success", queued_message(queued.channels), queued.notice_id)

    @get("/{notification_id:str}")
    async def status(
        self,
        services: Injected[Services],
        request: Request[Any, Any, Any],
        notification_id: NotificationIdPath,
    ) -> NotificationStatus:
        """Each channel of a notice (sent by POST /notifications, or an automatic one): queued,
        sent, retrying (it failed, rq tries again after its backoff) or failed (given up on,
        waiting for an operator's replay). 404 `notification_not_found` for an ID no notice
        has, and for another storefront's."""
        too_long = len(notification_id) > MAX_NOTIFICATION_ID_CHARS
        parsed = None if too_long else parse_notice_id(notification_id)
        # The order ID in the notice ID carries its owner: no store is read for another's.
        if parsed is None or not may_touch(request, parsed[0]):
            raise NotificationNotFound(notification_id)
        notice = await asyncio.to_thread(services.notices.status, notification_id)
        if notice is None:
            raise NotificationNotFound(notification_id)
        return _status_body(notice)
