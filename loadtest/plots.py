"""The benchmark's pictures, PNG files beside BENCHMARKS.md: throughput against latency for the
API and the SQL baseline, and Redis memory over the soak.

Drawn on matplotlib `Figure`s directly, not through pyplot: no backend to choose, no global
figure state, nothing to close.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from loadtest.curves import Curve
from loadtest.soak import FLAT_TOLERANCE, STEADY_AFTER_WINDOWS, SoakResult

DPI: Final = 110
P99_TARGET_MS: Final = 10.0  # the brief's: p99 under 10 ms at half the peak
LEGEND_FONT: Final = 8
# One colour per system in the throughput-latency plot, in the order the curves come.
SYSTEM_COLOURS: Final = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def _finish(axis: Axes, ylabel: str, legend_columns: int) -> None:
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper center", fontsize=LEGEND_FONT, ncol=legend_columns)


def _log_label(value: float, _: int) -> str:
    label = f"{value:g}"
    return label if label[0] in "1235" else ""


def throughput_latency(curves: Sequence[Curve], path: Path) -> None:
    """p50 and p99 against the rate achieved, one colour per system, each point labelled with its
    share of that system's peak; the peak itself as a dotted line."""
    figure = Figure(figsize=(9, 5.5))
    axis = figure.subplots()
    for curve, colour in zip(curves, SYSTEM_COLOURS, strict=False):
        achieved = [p.achieved_per_s for p in curve.points]
        p99 = [p.p99_ms for p in curve.points]
        p50 = [p.p50_ms for p in curve.points]
        axis.plot(achieved, p99, "s-", color=colour, label=f"{curve.system}: p99")
        axis.plot(achieved, p50, "o--", color=colour, label=f"{curve.system}: p50")
        peak = f"{curve.system}: peak, closed loop"
        axis.axvline(curve.peak_per_s, color=colour, lw=0.8, ls=":", label=peak)
        for point in curve.points:
            axis.annotate(
                f"{point.offered_per_s / curve.peak_per_s:.0%}",
                (point.achieved_per_s, point.p99_ms),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=LEGEND_FONT,
                color=colour,
            )
    target = f"target: p99 < {P99_TARGET_MS:g} ms at half the peak"
    axis.axhline(P99_TARGET_MS, color="grey", lw=0.8, ls="--", label=target)
    axis.set_yscale("log")
    # Plain numbers on the log scale (1, 2, 3, 5, 10, 20 ms ...), and headroom above the curves
    # for the legend, so it hides no data.
    axis.yaxis.set_major_formatter(FuncFormatter(_log_label))
    axis.yaxis.set_minor_formatter(FuncFormatter(_log_label))
    highest = max(p.p99_ms for curve in curves for p in curve.points)
    axis.set_ylim(top=max(highest, P99_TARGET_MS) * 4)
    axis.set_xlim(left=0)
    axis.set_xlabel(
        "orders (requests)/s achieved (open loop, offered at a share of each system's peak)"
    )
    axis.set_title(
        "Throughput against latency: " + " vs ".join(c.system for c in curves),
        fontsize=10,
    )
    _finish(axis, "latency (ms, log scale)", len(curves))
    _save(figure, path)


def soak_memory(soak: SoakResult, path: Path) -> None:
    """Redis memory (total, streams) and the hot keys over time, the steady part shaded."""
    samples = soak.samples
    t = [s.t_s / 60 for s in samples]
    mean = soak.memory[1]
    figure = Figure(figsize=(9, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(t, [s.used_bytes / 2**20 for s in samples], label="used_memory")
    top.plot(t, [s.stream_bytes / 2**20 for s in samples], label="streams (MEMORY USAGE)")
    top.axhline(soak.baseline_bytes / 2**20, color="grey", lw=0.8, ls=":", label="empty")
    start = STEADY_AFTER_WINDOWS * soak.window_s / 60
    top.fill_between(
        [start, soak.load_s / 60],
        mean * (1 - FLAT_TOLERANCE) / 2**20,
        mean * (1 + FLAT_TOLERANCE) / 2**20,
        color="green",
        alpha=0.12,
        label=f"mean ±{FLAT_TOLERANCE:.0%}",
    )
    # Headroom above the curves for the legends, so they hide no data.
    top.set_ylim(0, max(s.used_bytes for s in samples) / 2**20 * 1.4)
    top.set_title(
        f"Soak: {soak.rate:,.0f} orders/s, ORDER_HOT_WINDOW_S={soak.window_s}, "
        f"IDEMPOTENCY_TTL_S={soak.window_s}"
    )
    _finish(top, "Redis memory (MiB)", 4)
    bottom.plot(t, [s.order_keys for s in samples], label="hot order records")
    bottom.plot(t, [s.idempotency_keys for s in samples], label="idempotency keys")
    bottom.plot(t, [s.stream_entries for s in samples], label="stream entries")
    for group in ("orders", "inventory", "notifier"):
        backlog = [getattr(s, group + "_lag") + getattr(s, group + "_pending") for s in samples]
        bottom.plot(t, backlog, lw=0.9, ls="--", label=f"{group} writer's backlog")
    bottom.set_xlabel("minutes since the load started")
    highest = max(max(s.order_keys, s.idempotency_keys, s.stream_entries) for s in samples)
    bottom.set_ylim(0, highest * 1.45)
    _finish(bottom, "keys / entries", 3)
    for axis in (top, bottom):
        axis.axvline(soak.load_s / 60, color="black", lw=0.8, ls="--")
    bottom.annotate(
        "load stops",
        (soak.load_s / 60, highest * 0.5),
        xytext=(4, 0),
        textcoords="offset points",
        fontsize=LEGEND_FONT,
    )
    _save(figure, path)
