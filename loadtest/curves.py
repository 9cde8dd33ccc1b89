"""Throughput against latency: a system driven open loop at fixed shares of the peak it reached
closed loop just before, with the rate it achieved and its latency at each (counted from each
request's scheduled time, so a queue is charged to the system); their table for BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import msgspec

from loadtest import progress

SHARES: Final = (0.25, 0.5, 0.75, 0.9)
# A system's offered rate for each share, measured over this many seconds, after SETTLE_S at it.
SETTLE_S: Final = 2
# Per point, for the expected durations: two starts of the driver (pgbench also rebuilds its
# tables each time).
POINT_OVERHEAD_S: Final = 2


class Point(msgspec.Struct, frozen=True):
    offered_per_s: float
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    dropped: int = 0  # requests the driver could not send (too many in flight)


class Curve(msgspec.Struct, frozen=True):
    system: str  # as the plot's legend and the table name it
    peak_per_s: float  # closed loop, the shares are of it
    driver: str  # what drove it open loop
    points: list[Point]

    def at(self, share: float) -> Point:
        return self.points[SHARES.index(share)]


# Drives the system at a rate (orders/s) for a number of seconds, and returns what it did.
Measure = Callable[[float, int], Awaitable[Point]]


async def sweep(system: str, driver: str, peak_per_s: float, seconds: int, run: Measure) -> Curve:
    """The system at each share of `peak_per_s`, lowest first, each point after SETTLE_S at its
    rate; a progress line before and after each."""
    points = []
    point_s = SETTLE_S + seconds + POINT_OVERHEAD_S
    total_s = len(SHARES) * point_s
    for i, share in enumerate(SHARES):
        rate = share * peak_per_s
        what = f"{system} at {share:.0%} of its peak ({rate:,.0f} /s), point {i + 1}/{len(SHARES)}"
        async with progress.step(f"{what}, sweep ~{progress.duration(total_s)}", point_s):
            await run(rate, SETTLE_S)
            point = await run(rate, seconds)
        progress.say(
            f"{system} at {rate:,.0f} /s offered: {point.achieved_per_s:,.0f} /s achieved, "
            f"p50 {point.p50_ms:.1f} ms, p99 {point.p99_ms:.1f} ms"
        )
        points.append(point)
    return Curve(system, peak_per_s, driver, points)


def table_lines(curves: Sequence[Curve]) -> list[str]:
    lines = [
        "| system | offered (share of its peak) | achieved | p50 | p99 | p99.9 |",
        "|---|---|---|---|---|---|",
    ]
    for curve in curves:
        lines += [
            f"| {curve.system} | {p.offered_per_s:,.0f} /s "
            f"({p.offered_per_s / curve.peak_per_s:.0%} of {curve.peak_per_s:,.0f}) | "
            f"{p.achieved_per_s:,.0f} /s"
            + (f" ({p.dropped:,} dropped)" if p.dropped else "")
            + f" | {p.p50_ms:.1f} ms | {p.p99_ms:.1f} ms | {p.p999_ms:.1f} ms |"
            for p in curve.points
        ]
    return lines
