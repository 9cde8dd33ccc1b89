"""Stopping a task that talks to a store: one cancellation is not always enough on Python 3.11."""

from __future__ import annotations

import asyncio
from typing import Any, Final

# How long one cancellation is given before it is sent again. Long against a cancellation that
# lands (a turn of the loop, or a connection's disconnect), short against a shutdown.
RECANCEL_AFTER_S: Final = 0.1


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and return once it has ended; raises what it raised, if not cancelled.

    Python 3.11's `asyncio.wait_for` returns its inner result when a cancellation lands in the
    loop turn where that result arrives, and the cancellation is lost. redis-py sends every
    command through `wait_for` (its write drain), so a task cancelled while it sends goes on as if
    nothing happened, and a single `cancel(); await task` then waits for ever. The cancellation is
    sent again until the task has ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_AFTER_S)
    if not task.cancelled():
        task.result()
