"""The baskets part's figures: confirmed baskets per second of one API worker for a few basket
sizes, each beside single orders measured the same way, what each costs the worker and Redis in
CPU, and their table for BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

CONFIRMED: Final = "201"


@dataclass(frozen=True, slots=True)
class BasketRun:
    """One closed-loop run of one fresh API worker on bodies of `lines` lines (0: single orders)."""

    lines: int
    seconds: float  # measured, as wrk counted it
    confirmed: int  # 201 answers
    p50_ms: float  # wrk's, over every answer
    p99_ms: float
    # Answers other than 201, by status; wrk's socket errors (connect, read, write, timeout)
    # under "socket".
    not_confirmed: Mapping[str, int]
    worker_cpu_s: float  # the worker's process group over the measured run
    redis_cpu_s: float  # INFO cpu of Redis over the measured run

    @classmethod
    def of(
        cls, lines: int, run: Mapping[str, Any], worker_cpu_s: float, redis_cpu_s: float
    ) -> BasketRun:
        """From the summary of loadtest/wrk_post.lua run with STATUSES=1."""
        statuses = {str(status): int(n) for status, n in run["statuses"].items()}
        refused = {status: n for status, n in statuses.items() if status != CONFIRMED}
        if run["socket_errors"]:
            refused["socket"] = int(run["socket_errors"])
        return cls(
            lines=lines,
            seconds=float(run["duration_s"]),
            confirmed=statuses.get(CONFIRMED, 0),
            p50_ms=float(run["p50_ms"]),
            p99_ms=float(run["p99_ms"]),
            not_confirmed=refused,
            worker_cpu_s=worker_cpu_s,
            redis_cpu_s=redis_cpu_s,
        )

    @property
    def per_s(self) -> float:
        """Confirmed baskets (orders) per second."""
        return self.confirmed / self.seconds

    @property
    def lines_per_s(self) -> float:
        return self.per_s * max(self.lines, 1)

    def cpu_ms_each(self, cpu_s: float) -> float:
        return 1000 * cpu_s / self.confirmed if self.confirmed else float("nan")

    def refused_text(self) -> str:
        if not self.not_confirmed:
            return "0"
        return ", ".join(f"{n:,} {status}" for status, n in sorted(self.not_confirmed.items()))


def report_lines(single: BasketRun, baskets: Sequence[BasketRun], machine: str) -> list[str]:
    """The Baskets section: how it was measured, then one row per basket size under the single
    orders they are compared with."""
    seconds = round(single.seconds)
    return [
        "One API worker started as the API rows above start theirs (`python -m api`: uvicorn, one "
        "process, uvloop, the bench's settings), on a Redis of its own (AOF everysec, as the stack "
        "runs it) stocked with the bench's catalogue: 10,000 products, 10^9 units of each at every "
        "one of the 8 warehouses, so no line runs short and every basket ships whole from its "
        "nearest warehouse. Each row is a fresh worker driven closed loop by wrk -t1 -c64 "
        "(`loadtest/wrk_post.lua`, answers counted by status), after 2 s of the same load, for "
        f"{seconds} s. A basket's lines are distinct products drawn by the catalogue's popularity "
        "(Zipf), 1 unit (80%) or 2-4 each, for a customer around a city, with no "
        "Idempotency-Key; the single orders are the same traffic one product at a time (the API "
        "rows' spread bodies), on the same setup, just before. Only 201 answers count; the "
        "latencies are wrk's, over every answer. CPU per basket: the worker's process group "
        "(from /proc) and Redis (`INFO cpu`) over the measured run, per confirmed basket.",
        "",
        f"- machine: {machine}",
        "",
        "| lines per basket | baskets/s | lines/s | vs single orders/s | p50 | p99 "
        "| API worker CPU per basket | Redis CPU per basket | not 201 |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_row(run, single) for run in (single, *baskets)],
    ]


def _row(run: BasketRun, single: BasketRun) -> str:
    what = str(run.lines) if run.lines else "single orders (reference)"
    return (
        f"| {what} | {run.per_s:,.0f} | {run.lines_per_s:,.0f} | {run.per_s / single.per_s:.2f}x "
        f"| {run.p50_ms:.1f} ms | {run.p99_ms:.1f} ms | {run.cpu_ms_each(run.worker_cpu_s):.3f} ms "
        f"| {run.cpu_ms_each(run.redis_cpu_s):.3f} ms | {run.refused_text()} |"
    )
