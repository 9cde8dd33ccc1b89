"""Notification service: send a message about an order to its customer (email and/or SMS).

The notice is queued (rq, `notify.jobs`) and answered 202 at once; sending, retrying and the
failed registry are the job's. Confirmation, shipping, delivery and cancellation notices need no
call: the notifier consumer group sends them from the order events.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.auth import require_owner
from api.types import OrderId
from engine.errors import OrderNotFound

MAX_MESSAGE_CHARS: Final = 1_000
Message = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MESSAGE_CHARS)]


class SendNotification(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: OrderId
    message: Message


class NotificationQueued(msgspec.Struct, rename="camel"):
    status: Literal["queued"]
    notification_id: str


class NotificationController(Controller):
    path = "/notifications"
    tags = ("notifications",)

    @post("/", status_code=202)
    async def send(
        self, state: State, request: Request[Any, Any, Any], data: JSONBody[SendNotification]
    ) -> NotificationQueued:
        require_owner(request, data.order_id)
        # Redis holds every order the system accepted: no record there means no such order.
        if await state.services.live_orders.get(data.order_id) is None:
            raise OrderNotFound(data.order_id)
        # rq's client is blocking: keep it off the event loop.
        notification_id = await asyncio.to_thread(
            state.services.notices.enqueue_message, data.order_id, data.message
        )
        return NotificationQueued("queued", notification_id)
