"""Retrying what is transient in the writers: a store down, restarting, failing over or timing
out is waited out with capped exponential backoff, for as long as it takes, since the entries
are safe in the stream meanwhile; anything else propagates at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

log = logging.getLogger(__name__)

RETRY_BACKOFF_MIN_S: Final = 0.05
RETRY_BACKOFF_MAX_S: Final = 5.0

T = TypeVar("T")


class Stopping(Exception):
    """Raised inside a round when the consumer was asked to stop while waiting to retry."""


async def retry_transient(
    what: str,
    operation: Callable[[], Awaitable[T]],
    transient: tuple[type[BaseException], ...],
    stop: asyncio.Event,
    *,
    permanent: tuple[type[BaseException], ...] = (),
) -> T:
    """Retry transient store errors (a store down, restarting, timing out) with capped
    exponential backoff, for as long as it takes: the entries are safe in the stream meanwhile.
    Raises Stopping when `stop` is set during a wait; anything not transient propagates, and so
    does a permanent error that subclasses a transient one (it is about the data, not the store)."""
    delay_s = RETRY_BACKOFF_MIN_S
    while True:
        try:
            return await operation()
        except permanent:
            raise
        except transient as exc:
            log.warning(
                "%s failed (%s: %s); retrying in %.2f s", what, type(exc).__name__, exc, delay_s
            )
        if await sleep_unless(stop, delay_s):
            raise Stopping
        delay_s = min(delay_s * 2, RETRY_BACKOFF_MAX_S)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when `stop` is set; True when it was."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
