"""Progress of a long benchmark on stderr, flushed line by line so that a CI log shows it as it
happens: which step starts and how long it should take, when it ends, and during a long step a
line every TICK_S with the time elapsed of the time expected and the current rate."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from stores.tasks import cancel_and_wait

TICK_S: Final = 15.0

# A count that moves one way (orders confirmed so far; minus a backlog): the rate shown is how
# fast it moves.
Count = Callable[[], Awaitable[float]]


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"


@contextlib.asynccontextmanager
async def step(
    what: str, expected_s: float, count: Count | None = None, unit: str = "orders/s"
) -> AsyncIterator[None]:
    """Says that `what` starts and how long it should take, then when it ended. With `count`,
    also a line every TICK_S while it runs: elapsed of expected, and the rate of `count`."""
    say(f"{what}: starting, expected ~{duration(expected_s)}")
    started = time.monotonic()
    ticker = asyncio.create_task(_tick(what, expected_s, count, unit)) if count else None
    try:
        yield
    finally:
        if ticker:
            await cancel_and_wait(ticker)
        say(f"{what}: ended after {duration(time.monotonic() - started)}")


async def _tick(what: str, expected_s: float, count: Count, unit: str) -> None:
    started = last_at = time.monotonic()
    last = await _read(count)
    while True:
        await asyncio.sleep(TICK_S)
        now, value = time.monotonic(), await _read(count)
        rate = "rate unknown"
        if value is not None and last is not None:
            rate = f"{(value - last) / (now - last_at):,.0f} {unit} now"
        say(f"{what}: {duration(now - started)} of ~{duration(expected_s)}, {rate}")
        last, last_at = value, now


async def _read(count: Count) -> float | None:
    # A progress line must never fail the benchmark: a count that cannot be read is shown as
    # unknown (a worker busy past the timeout, a server between two steps).
    try:
        return await count()
    except Exception:
        return None
