"""BENCHMARKS.md from the benchmark's results: the Targets table, the sections (throughput and
latency, baskets, swarm, soak, memory, the scaling table), written whole by a full run or updated
in place by a run of some parts. The figures and curves of every run are kept under BENCH_DIR, one
file per report, so that a run of some parts still draws the scaling table and the
throughput-latency plot whole, from the last run of each part."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from loadtest import curves, host_cpu
from loadtest.processes import BENCH_DIR

TARGET_ORDERS_PER_S: Final = 100_000
READING: Final = (
    "What the figures mean, where each missed target's time goes and what would close it: "
    "README.md, section Performance and scaling."
)
# Among the facts above the Targets table, once a run of some parts has replaced rows.
ROWS_REPLACED: Final = "- rows replaced since by runs of some parts:"
LATENCY: Final = "Throughput and latency"
BASKETS: Final = "Baskets"
SWARM: Final = "Swarm"
SOAK: Final = "Soak"
MEMORY: Final = "Memory"
SCALING: Final = "Scaling to 100,000 orders/s"
MACHINE: Final = "The machine during the run"
SECTION_ORDER: Final = (LATENCY, BASKETS, SWARM, SOAK, MEMORY, SCALING, MACHINE)
# Drawn from the stored figures of every part, not only those of the run that writes them.
DERIVED_SECTIONS: Final = (LATENCY, SCALING, MACHINE)


@dataclass
class Row:
    what: str
    measured: str
    reference: str = ""
    target: str = ""
    verdict: str = ""


class PartMachine(msgspec.Struct, frozen=True):
    """What the CPUs did while one part of the benchmark ran, and when it started."""

    started: str  # UTC, to the minute
    span: host_cpu.Span


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    curves: dict[str, curves.Curve] = field(default_factory=dict)
    machine: dict[str, PartMachine] = field(default_factory=dict)  # by part, in the order run
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what}: {row.measured}  {row.reference}  {row.verdict}", flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


class Stored(msgspec.Struct):
    """Every figure and curve measured, each from the last run that measured it."""

    figures: dict[str, float] = msgspec.field(default_factory=dict)
    curves: dict[str, curves.Curve] = msgspec.field(default_factory=dict)
    machine: dict[str, PartMachine] = msgspec.field(default_factory=dict)


def figures_file(report: Path) -> Path:
    """Where the figures behind `report` are kept: one file per report, so that a run written to
    a copy elsewhere (--report) leaves the figures of BENCHMARKS.md alone."""
    digest = hashlib.sha256(str(report.resolve()).encode()).hexdigest()[:12]
    return BENCH_DIR / f"figures-{report.stem}-{digest}.json"


def remember(results: Results, report: Path) -> Stored:
    """This run's figures, curves and machine spans over those stored for `report`, stored
    again, and returned."""
    path = figures_file(report)
    stored = Stored()
    if path.exists():
        try:
            stored = msgspec.json.decode(path.read_bytes(), type=Stored)
        except msgspec.MsgspecError:  # written by an older benchmark: start again
            stored = Stored()
    stored.figures.update(results.figures)
    stored.curves.update(results.curves)
    stored.machine.update(results.machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(stored))
    return stored


# --- sections drawn from the stored figures ---


# The systems of the throughput-latency section, in the order the table and the plot show them,
# each with how it was driven.
CURVE_SYSTEMS: Final = {
    "api": "The API: one worker, `loadtest/ratedriver` (Go, on one thread: 64 keep-alive "
    "connections, as wrk has for the peaks, each one request at a time; requests go out at the "
    "driver's ticks, ~1 ms apart, those due by then together; past 512 queued or on the wire, "
    "one scheduled is dropped and counted), spread traffic.",
    "noop": "The no-op handler (the API's reference for its peak): one worker, the same driver "
    "and bodies, at shares of its own peak, right after the API's curve: what this machine "
    "gives a worker that does nothing.",
    "sql": "The SQL baseline: one transaction per order, pgbench with 32 clients and `-R` (a "
    "fixed rate), latencies from its per-transaction log.",
}


def ordered_curves(stored: Stored) -> list[curves.Curve]:
    return [stored.curves[name] for name in CURVE_SYSTEMS if name in stored.curves]


def latency_lines(stored: Stored, plot_name: str) -> list[str]:
    shown = ordered_curves(stored)
    return [
        "Each system driven open loop at "
        + ", ".join(f"{share:.0%}" for share in curves.SHARES)
        + " of the peak it reached closed loop just before, each point after "
        f"{curves.SETTLE_S} s at its rate; latency counted from each request's scheduled time, "
        "so a queue is charged to the system. "
        + " ".join(text for name, text in CURVE_SYSTEMS.items() if name in stored.curves)
        + " Each shares the 2 cores with its load generator.",
        "",
        f"![Throughput against latency: {', '.join(c.system for c in shown)}]({plot_name})",
        "",
        *curves.table_lines(shown),
    ]


@dataclass(frozen=True)
class Tier:
    name: str
    how: str  # which processes, under which load
    per_core: str  # the figure's key: orders (requests) per CPU-second of the tier's processes
    wall_clock: str = ""  # the key of its rate on the clock, for comparison
    wall_clock_of: str = ""  # what that rate is of


TIERS: Final = (
    Tier(
        "Gateway (nginx)",
        "master and worker, in front of 2 API workers under wrk (64 connections)",
        "gateway_per_core",
    ),
    Tier(
        "API workers",
        "2 workers behind the gateway, same run",
        "api_per_core",
        "workers_2_per_s",
        "2 workers together",
    ),
    Tier(
        "Redis masters (lua/place_orders.lua, the decision point)",
        "the API's Redis in the same run, at the batches the API forms",
        "redis_per_core",
    ),
    Tier(
        "Orders writer (to PostgreSQL)",
        "one process, from a backlog",
        "orders-writer_per_core",
        "orders-writer_per_s",
        "one process",
    ),
    Tier(
        "Inventory writer (to MongoDB)",
        "one process, from a backlog",
        "inventory-writer_per_core",
        "inventory-writer_per_s",
        "one process",
    ),
)


# What the scaling table is drawn from.
SCALING_FIGURES: Final = frozenset(
    {key for tier in TIERS for key in (tier.per_core, tier.wall_clock) if key}
    | {"engine_8_per_core"}
)


def redrawn(results: Results, whole: bool) -> frozenset[str]:
    """The sections drawn from the stored figures that a run draws again, and marks with its
    command: every one when it writes the report whole, else those it measured something for
    (a run of the baskets part leaves the curves and the scaling table as they were)."""
    if whole:
        return frozenset(DERIVED_SECTIONS)
    return frozenset(
        name
        for name, measured in (
            (LATENCY, bool(results.curves)),
            (SCALING, bool(results.figures.keys() & SCALING_FIGURES)),
            (MACHINE, bool(results.machine)),
        )
        if measured
    )


def cores_for(per_core: float, rate: float = TARGET_ORDERS_PER_S) -> int:
    return math.ceil(rate / per_core)


def machine_lines(machine: dict[str, PartMachine]) -> list[str]:
    """Each part's share of the CPUs' time that was busy, idle and stolen by the host."""
    lines = [
        "What this machine's CPUs did while each part ran (/proc/stat, all cores): busy, idle, "
        "and stolen by the host (its hypervisor ran something else while this virtual machine "
        "had work). Stolen time slows whatever runs then and shows in no process's CPU time: "
        "a part with a share of it stolen ran on a slower machine than the parts without.",
        "",
        "| part | started | duration | busy | idle | stolen by the host |",
        "|---|---|---|---|---|---|",
    ]
    for name, part in machine.items():
        span = part.span
        lines.append(
            f"| {name} | {part.started} UTC | {span.seconds:,.0f} s | {span.busy:.0%} | "
            f"{span.idle:.0%} | {span.stolen:.1%} |"
        )
    return lines


def scaling_lines(figures: dict[str, float]) -> list[str]:
    """The cores each tier needs for TARGET_ORDERS_PER_S, from what its processes did per
    CPU-second they used."""
    lines = [
        "Each tier's figure per core is what its processes did per CPU-second they used, while "
        "under load: user + system time of the process group (from /proc) of nginx, of each API "
        "worker and of each writer, `INFO cpu` of Redis. That is what one process does with a "
        "core to itself. On these 2 cores every tier shares the CPUs with the others, the stores "
        "and the load generator, so rates on the clock understate each tier; CPU-seconds do "
        f"not. Cores for {TARGET_ORDERS_PER_S:,} orders/s = {TARGET_ORDERS_PER_S:,} / per core, "
        "rounded up, with no headroom; each tier scales out on its own (API workers behind the "
        "gateway, Redis Cluster masters by partition, writer processes in their consumer "
        "groups).",
        "",
        f"| tier | measured on | per core | on the clock | cores for {TARGET_ORDERS_PER_S:,} "
        "orders/s |",
        "|---|---|---|---|---|",
    ]
    total = 0
    for tier in TIERS:
        per_core = figures.get(tier.per_core, 0.0)
        clock = figures.get(tier.wall_clock, 0.0)
        clock_text = f"{clock:,.0f} /s, {tier.wall_clock_of}" if clock else ""
        if per_core:
            total += cores_for(per_core)
            lines.append(
                f"| {tier.name} | {tier.how} | {per_core:,.0f} /s | {clock_text} | "
                f"{cores_for(per_core)} |"
            )
        else:
            lines.append(f"| {tier.name} | {tier.how} | not measured | {clock_text} | |")
    complete = all(figures.get(tier.per_core) for tier in TIERS)
    lines += [f"| **total** | | | | **{total}**{'' if complete else ' (measured tiers)'} |", ""]
    engine = figures.get("engine_8_per_core")
    if engine:
        lines += [
            f"Engine alone (lua/place_orders.lua pipelined from one client, 8 orders per call): "
            f"{engine:,.0f} orders per Redis CPU-second, {cores_for(engine)} masters; the Redis "
            "row above is at the batches the API forms at the rates measured here.",
            "",
        ]
    lines.append(
        "Not in the table: the PostgreSQL and MongoDB servers' own cores (README, Scaling to "
        "100,000 orders/s) and the load generators (see Swarm)."
    )
    return lines


# --- BENCHMARKS.md ---


def format_row(row: Row) -> str:
    return f"| {row.what} | {row.measured} | {row.reference} | {row.target} | {row.verdict} |"


def write_report(
    path: Path, results: Results, facts: list[str], sections: dict[str, list[str]], command: str
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (loadtest/bench.py); numbers of one run.",
        "",
    ]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        "",
        "## Targets",
        "",
        "| what | measured | side by side | target | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [format_row(r) for r in results.rows]
    for name in SECTION_ORDER:
        if name in sections:
            lines += ["", f"## {name}", "", *sections[name]]
    lines.append("")
    if results.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in results.notes], ""]
    lines += [READING, ""]
    path.write_text("\n".join(lines))


def update_report(
    path: Path, results: Results, sections: dict[str, list[str]], command: str, date: str
) -> None:
    """A run of some parts only: its rows replace the rows of the same name in the Targets table
    (new ones are added at its end) and its sections replace theirs, each marked with this run's
    command and date, and the run is named beside the full run's date; the rest of BENCHMARKS.md
    stays as the full run left it."""
    lines = path.read_text().split("\n")
    for row in results.rows:
        same = [i for i, line in enumerate(lines) if line.startswith(f"| {row.what} |")]
        if same:
            lines[same[0]] = format_row(row)
        else:
            lines.insert(_end_of_targets(lines), format_row(row))
    if results.rows:
        _say_rows_replaced(lines, f"`{command}` ({date})")
    for name, body in sections.items():
        marked = [_marking(name, command, date), ""]
        heading = f"## {name}"
        if heading in lines:
            start = lines.index(heading) + 1
            end = _section_end(lines, start)
            lines[start:end] = ["", *marked, *body, ""]
        else:
            at = _section_insert_at(lines, name)
            lines[at:at] = [heading, "", *marked, *body, ""]
    path.write_text("\n".join(lines))


def _say_rows_replaced(lines: list[str], run: str) -> None:
    """Names the run among the facts above the Targets table: the full run's date no longer
    dates every row."""
    named = [i for i, line in enumerate(lines) if line.startswith(ROWS_REPLACED)]
    if named:
        lines[named[0]] += f"; {run}"
    else:
        lines.insert(lines.index("## Targets") - 1, f"{ROWS_REPLACED} {run}")


def _marking(section: str, command: str, date: str) -> str:
    if section in DERIVED_SECTIONS:
        return (
            f"Computed by `{command}` on {date} from its figures and, for the parts it did not "
            "run, from the last run that did."
        )
    return f"Measured by `{command}` on {date}, apart from the run named at the top."


def _end_of_targets(lines: Sequence[str]) -> int:
    end = lines.index("## Targets") + 1
    while end < len(lines) and not lines[end].startswith("## "):
        end += 1
    while not lines[end - 1].startswith("|"):
        end -= 1
    return end


def _section_end(lines: Sequence[str], start: int) -> int:
    end = start
    while end < len(lines) and not lines[end].startswith("## ") and lines[end] != READING:
        end += 1
    return end


def _section_insert_at(lines: Sequence[str], name: str) -> int:
    """Before the first section that follows `name` in SECTION_ORDER, else before the notes."""
    later = SECTION_ORDER[SECTION_ORDER.index(name) + 1 :]
    for heading in [f"## {n}" for n in later] + ["## Notes"]:
        if heading in lines:
            return lines.index(heading)
    return lines.index(READING)
