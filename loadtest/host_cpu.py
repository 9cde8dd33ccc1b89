"""What this machine's CPUs did while a part of the benchmark ran, from /proc/stat: busy, idle,
and stolen, the time the hypervisor ran something else while this virtual machine had work to
run. Stolen time slows whatever runs then without showing in any process's CPU time, so it is
reported beside the figures it may have moved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

# The first line of /proc/stat, after "cpu": user nice system idle iowait irq softirq steal ...
# (guest time is counted in user already).
_IDLE: Final = (3, 4)
_STEAL: Final = 7
_FIELDS: Final = 8


@dataclass(frozen=True)
class Sample:
    at_s: float  # time.monotonic()
    ticks: tuple[int, ...]  # the first _FIELDS counters of the line "cpu" in /proc/stat


@dataclass(frozen=True)
class Span:
    seconds: float
    busy: float  # shares of the CPUs' time over the span: busy + idle + stolen = 1 (or all 0)
    idle: float
    stolen: float


def sample() -> Sample:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1 : 1 + _FIELDS]
    return Sample(time.monotonic(), tuple(int(field) for field in fields))


def span(before: Sample, after: Sample) -> Span:
    """The shares between two samples; all 0 when no counter moved (samples a tick apart)."""
    moved = [b - a for a, b in zip(before.ticks, after.ticks, strict=True)]
    seconds, total = after.at_s - before.at_s, sum(moved)
    if not total:
        return Span(seconds, 0.0, 0.0, 0.0)
    idle = sum(moved[i] for i in _IDLE)
    stolen = moved[_STEAL]
    return Span(seconds, (total - idle - stolen) / total, idle / total, stolen / total)
