"""Sweeps the writers process runs on a clock: expired holds go back to stock, and so do the units
of cancelled baskets whose worker did not give them all back (every second); orders resting in
one status past its deadline (`engine.lifecycle.STUCK_AFTER_S`) are flagged `failed`, with the
reason, for a person to re-drive.

Stuck orders are found in PostgreSQL (indexed by status and updated_at) but flagged through
`lua/transition.lua`, which moves an order only if Redis still holds the very record PostgreSQL
showed (same status, same sequence number): an order that moved on meanwhile, even to the same
status (a re-route restarts it as confirmed), is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import asyncpg

from engine import lifecycle
from engine.errors import InvalidTransition, OrderMovedOn, OrderNotFound
from engine.hold_sweep import release_expired_holds
from engine.live_baskets import return_units_of_cancelled_baskets
from engine.live_orders import LiveOrders
from engine.orders import OrderStatus
from engine.scripts import ScriptRunner
from stores.order_archive import OrderArchive
from stores.postgres import TRANSIENT_ERRORS as POSTGRES_TRANSIENT_ERRORS
from stores.redis import TRANSIENT_ERRORS as REDIS_TRANSIENT_ERRORS

HOLD_RELEASE_INTERVAL_S: Final = 1.0
STUCK_SWEEP_INTERVAL_S: Final = 60.0
STUCK_PER_STATUS_PER_SWEEP: Final = 1_000
log = logging.getLogger(__name__)

# One-product orders only (a basket's row has no product): a basket's shipments move on their own.
FIND_STUCK: Final = """
SELECT order_id::text, seq FROM orders
WHERE status = $1 AND updated_at < now() - make_interval(secs => $2)
  AND product_id IS NOT NULL
ORDER BY updated_at
LIMIT $3
"""


def stuck_deadlines(overrides: str) -> dict[OrderStatus, float]:
    """The defaults of engine.lifecycle, overridden by the setting STUCK_AFTER_S, e.g.
    `confirmed=86400,shipped=1209600` (seconds; a status left out keeps its default)."""
    deadlines: dict[OrderStatus, float] = dict(lifecycle.STUCK_AFTER_S)
    for part in filter(None, overrides.split(",")):
        status, _, seconds = part.partition("=")
        if status.strip() not in deadlines:
            raise ValueError(f"STUCK_AFTER_S: {status!r} is not a status that can get stuck")
        deadlines[status.strip()] = float(seconds)  # type: ignore[index]
    return deadlines


async def flag_stuck_orders(
    pool: asyncpg.Pool, orders: LiveOrders, deadlines: Mapping[OrderStatus, float]
) -> int:
    """Flag `failed` every order past its status's deadline; returns how many were flagged."""
    flagged = 0
    for status, deadline_s in deadlines.items():
        rows = await pool.fetch(FIND_STUCK, status, deadline_s, STUCK_PER_STATUS_PER_SWEEP)
        for row in rows:
            reason = f"stuck in {status} for more than {deadline_s:g} s"
            try:
                await orders.transition(
                    row["order_id"],
                    "failed",
                    allowed_from=(status,),
                    reason=reason,
                    expected_seq=row["seq"],
                )
            except (InvalidTransition, OrderMovedOn, OrderNotFound):
                continue  # Redis has it elsewhere (or not at all): not stuck after all
            log.warning("order %s flagged failed: %s", row["order_id"], reason)
            flagged += 1
    return flagged


async def every(
    interval_s: float, what: str, sweep: Callable[[], Awaitable[int]], stop: asyncio.Event
) -> None:
    """Run `sweep` every interval until `stop`. A store outage is logged and waited out: the
    next tick tries again, and nothing a sweep does is lost by skipping one."""
    while not stop.is_set():
        try:
            done = await sweep()
            if done:
                log.info("%s: %d", what, done)
        except (*REDIS_TRANSIENT_ERRORS, *POSTGRES_TRANSIENT_ERRORS):
            log.warning("%s: a store is unavailable; next tick retries", what)
        except Exception:
            log.exception("%s failed; next tick retries", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def run_sweeps(
    runner: ScriptRunner,
    pool: asyncpg.Pool | None,
    stop: asyncio.Event,
    *,
    stuck_after_s: str = "",
    stuck_interval_s: float = STUCK_SWEEP_INTERVAL_S,
) -> None:
    """`stuck_after_s`: the setting STUCK_AFTER_S (see stuck_deadlines)."""
    sweeps = [
        every(
            HOLD_RELEASE_INTERVAL_S,
            "expired holds released",
            lambda: release_expired_holds(runner),
            stop,
        ),
        every(
            HOLD_RELEASE_INTERVAL_S,
            "cancelled baskets' units given back",
            lambda: return_units_of_cancelled_baskets(runner),
            stop,
        ),
    ]
    if pool is not None:
        orders, deadlines = LiveOrders(runner, OrderArchive(pool)), stuck_deadlines(stuck_after_s)
        sweeps.append(
            every(
                stuck_interval_s,
                "stuck orders flagged failed",
                lambda: flag_stuck_orders(pool, orders, deadlines),
                stop,
            )
        )
    await asyncio.gather(*sweeps)
